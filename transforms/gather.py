"""Bringing a small PCollection together in one place."""

from __future__ import annotations

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
