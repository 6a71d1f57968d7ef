"""Reporting: the end-of-run summary table, run report pages, live progress and the HTML chart blocks."""
