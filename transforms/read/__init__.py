"""Reading: input discovery and split planning, streaming readers per format, record validation, the demo corpus."""
