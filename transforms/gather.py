"""Bringing a small PCollection together in one place."""

from __future__ import annotations

from typing import Any

import apache_beam as beam


class GatherAll(beam.PTransform):
    """All elements of a (small) PCollection as one list, via one GroupByKey (cheaper than ToList locally).

    Emits nothing for an empty input.
    """

    def expand(self, pcoll):
        return (
            pcoll
            | "Key" >> beam.Map(lambda x: (0, x))
            | "Group" >> beam.GroupByKey()
            | "Values" >> beam.MapTuple(lambda _, xs: list(xs))
        )


def write_pickle(value: Any, url: str) -> None:
    """The pipeline's result for the launcher to read back (``read_pickle``), through fsspec."""
    import pickle

    import fsspec

    with fsspec.open(url, "wb") as fh:
        pickle.dump(value, fh)


def read_pickle(url: str) -> Any:
    """What ``write_pickle`` wrote."""
    import pickle

    import fsspec

    with fsspec.open(url, "rb") as fh:
        return pickle.load(fh)
