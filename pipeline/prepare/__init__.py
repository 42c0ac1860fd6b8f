"""Stage ``prepare``: the Apache Beam pipeline from an audio folder to TFRecord shards (``beam``)."""
