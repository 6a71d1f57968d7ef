"""Corpus statistics: mergeable measures, their Beam steps and the stats report."""
