import ingest  # noqa: F401  (configures polars' allocator before polars loads)
