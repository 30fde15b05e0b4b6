from ingest import allocator

allocator.configure()
