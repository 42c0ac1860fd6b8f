"""The latent z as data: the z frames table (``ztable``: schema, writer, reader)."""
