"""The row shuffle as Beam transforms: written shards → parts by destination → shuffled shards (``shuffle``)."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.pvalue import AsSingleton

from transforms.pack.shuffle import ordered, plan_sources, split_source, write_destination


class ShuffleRows(beam.PTransform):
    """(the list of stream results) → the shuffled shard items, in their final order (a singleton list)."""

    def __init__(self, seed: int, shard_rows: int, temp_prefix: str, inline: bool = False) -> None:
        super().__init__()
        self.seed = seed
        self.shard_rows = shard_rows
        self.temp_prefix = temp_prefix
        self.inline = inline  # parts travel through the runner's shuffle instead of part files (remote runners)

    def expand(self, gathered):
        sources = gathered | "PlanSources" >> beam.FlatMap(plan_sources, self.shard_rows)
        layouts = (
            sources
            | "Layouts" >> beam.Map(lambda s: (s.group, s.layout))
            | "LayoutDict" >> beam.combiners.ToDict()
        )
        return (
            sources
            | "Spread" >> beam.Reshuffle()
            | "SplitShards" >> beam.FlatMap(split_source, self.seed, f"{self.temp_prefix}/part", self.inline)
            | "ByDestination" >> beam.GroupByKey()
            | "WriteDestinations" >> beam.Map(write_destination, AsSingleton(layouts), self.shard_rows,
                                              f"{self.temp_prefix}/out")
            | "AllShuffled" >> beam.combiners.ToList()
            | "InOrder" >> beam.Map(ordered)
        )

