"""Column names, Arrow schemas, the manifest model and the shard reader: the one place they are spelled."""
