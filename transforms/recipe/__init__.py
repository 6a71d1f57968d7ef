"""Recipes: the YAML model of a run's stages, the files they name, per-document stage work and its time limits."""
