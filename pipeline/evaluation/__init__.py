"""Stage ``evaluate``: per-clip metrics aggregated per method, cluster and K, invalid clusters, the
method comparison and model-selection figures (``aggregate``)."""
