"""Pure cores (plain functions and classes) and the thin Beam adapters over them."""
