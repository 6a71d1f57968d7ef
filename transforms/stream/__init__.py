"""The fused per-stream work of prepare and filter: read, recipe, tokenize, pack and write in one DoFn."""
