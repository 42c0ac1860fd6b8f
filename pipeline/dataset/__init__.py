"""The prepared dataset: ``tfrecord`` (the shard format: spec, feature names, encoding, shard names,
readable by ddsp's TFRecordProvider) and ``reader`` (the one reader of those shards)."""
