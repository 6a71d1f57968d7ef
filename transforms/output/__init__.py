"""Writing results: shard and document writers, claiming an output directory, committing the manifest last."""
