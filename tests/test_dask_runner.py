"""tokenmill's Dask runner against a real cluster: each of the five faults of Beam's own DaskRunner it corrects is
pinned by a ten-line pipeline run on both (if Beam's starts passing one, its fix here can go), the option
spelling, and a prepare on Dask that fails loudly when a task fails."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

pytest.importorskip("distributed")

import apache_beam as beam  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from apache_beam.transforms.window import GlobalWindow  # noqa: E402
from apache_beam.utils.windowed_value import WindowedValue  # noqa: E402

from pipelines.runner import DASK_RUNNER, RunnerOptionError, beam_arguments, is_local  # noqa: E402

BEAMS = "apache_beam.runners.dask.dask_runner.DaskRunner"


class Sink(beam.DoFn):
    """Writes every element it gets as one JSON file under ``folder`` (what a run computed, seen from outside)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def process(self, element):
        Path(self.folder, f"{uuid.uuid4().hex}.json").write_text(json.dumps(element))


def seen(folder: Path) -> list:
    return sorted((json.loads(p.read_text()) for p in folder.glob("*.json")), key=json.dumps)


def run(runner: str, address: str, build) -> None:
    options = PipelineOptions([f"--runner={runner}", f"--dask_client_address={address}"])
    if runner == DASK_RUNNER:
        import pipelines.dask_runner  # noqa: F401  (its options)
    p = beam.Pipeline(options=options)
    build(p)
    result = p.run()
    try:
        result.wait_until_finish()
    finally:
        if runner == BEAMS:  # Beam's leaves its client open (ours closes it)
            result.client.close()


def both(tmp_path: Path, address: str, build) -> tuple[list, list]:
    """What Beam's DaskRunner and tokenmill's computed for ``build(p, folder)``."""
    out = []
    for name, runner in (("beam", BEAMS), ("ours", DASK_RUNNER)):
        folder = tmp_path / name
        folder.mkdir()
        run(runner, address, lambda p: build(p, str(folder)))
        out.append(seen(folder))
    return out[0], out[1]


class CountsInFinishBundle(beam.DoFn):
    def start_bundle(self):
        self.n = 0

    def process(self, x):
        self.n += 1
        yield ["element", x]

    def finish_bundle(self):
        yield WindowedValue(["bundle", self.n], 0, [GlobalWindow()])


def test_fault_1_what_finish_bundle_emits_is_kept(tmp_path, dask_address):
    def build(p, folder):
        p | beam.Create(list(range(10))) | beam.ParDo(CountsInFinishBundle()) | beam.ParDo(Sink(folder))

    beams, ours = both(tmp_path, dask_address, build)
    assert not any(v[0] == "bundle" for v in beams), "Beam's DaskRunner keeps finish_bundle output now: drop fix 1"
    assert sorted(v[1] for v in ours if v[0] == "element") == list(range(10))
    assert sum(v[1] for v in ours if v[0] == "bundle") == 10


def split(x):
    yield beam.pvalue.TaggedOutput("odd", x) if x % 2 else x


def test_fault_2_tagged_outputs_stay_apart(tmp_path, dask_address):
    def build(p, folder):
        parts = p | beam.Create(list(range(10))) | beam.FlatMap(split).with_outputs("odd", main="even")
        parts.even | beam.ParDo(Sink(folder))

    beams, ours = both(tmp_path, dask_address, build)
    assert sorted(beams) != [0, 2, 4, 6, 8], "Beam's DaskRunner keeps tagged outputs apart now: drop fix 2"
    assert ours == [0, 2, 4, 6, 8]


def test_fault_3_every_branch_runs(tmp_path, dask_address):
    def build(p, folder):
        xs = p | beam.Create([1, 2, 3])
        xs | "A" >> beam.Map(lambda x: ["a", x]) | "SinkA" >> beam.ParDo(Sink(folder))
        xs | "B" >> beam.Map(lambda x: ["b", x]) | "SinkB" >> beam.ParDo(Sink(folder))

    beams, ours = both(tmp_path, dask_address, build)
    assert {v[0] for v in beams} != {"a", "b"}, "Beam's DaskRunner computes every branch now: drop fix 3"
    assert ours == [["a", 1], ["a", 2], ["a", 3], ["b", 1], ["b", 2], ["b", 3]]


def test_fault_4_bundles_do_not_share_their_outputs(tmp_path):
    """Seen where a worker's tasks share the graph's objects: a cluster of this process (inproc://, nothing is
    serialized), as a notebook's ``LocalCluster(processes=False)``."""
    import distributed

    def build(p, folder):
        p | beam.Create(list(range(600))) | beam.Map(lambda x: x * 10) | beam.ParDo(Sink(folder))

    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        beams, ours = both(tmp_path, cluster.scheduler_address, build)  # Beam's: 5 bundles of 128
    assert len(beams) > 600, "Beam's DaskRunner no longer repeats outputs across bundles: drop fix 4"
    assert sorted(ours) == [x * 10 for x in range(600)]


class Once(beam.DoFn):
    """Emits its input and records each time it runs (a side input's producer)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def process(self, x):
        Path(self.folder, f"ran-{uuid.uuid4().hex}").write_text("")
        yield x


def test_fault_5_a_side_input_is_computed_once(tmp_path, dask_address):
    runs = {}

    def build(p, folder):
        side = p | "Side" >> beam.Create([100]) | "Once" >> beam.ParDo(Once(folder))
        (p | beam.Create(list(range(600))) | beam.Map(lambda x, s: x + s, beam.pvalue.AsSingleton(side))
         | beam.ParDo(Sink(folder)))

    for name, runner in (("beam", BEAMS), ("ours", DASK_RUNNER)):
        folder = tmp_path / name
        folder.mkdir()
        run(runner, dask_address, lambda p: build(p, str(folder)))
        runs[name] = (len(list(folder.glob("ran-*"))), seen(folder))
    assert runs["beam"][0] > 1, "Beam's DaskRunner computes a side input once now: drop fix 5"  # once a bundle
    assert runs["ours"][0] == 1 and sorted(runs["ours"][1]) == [x + 100 for x in range(600)]


def test_group_by_key_and_combine_on_many_keys(tmp_path, dask_address):
    folder = tmp_path / "out"
    folder.mkdir()

    def build(p):
        words = p | beam.Create([f"w{i % 37}" for i in range(2000)])
        counts = words | beam.combiners.Count.PerElement()
        grouped = words | "Key" >> beam.Map(lambda w: (w, 1)) | beam.GroupByKey() | beam.MapTuple(
            lambda k, v: [k, len(list(v))])
        total = words | beam.combiners.Count.Globally()
        ((counts | "List" >> beam.Map(list), grouped, total | "Wrap" >> beam.Map(lambda n: ["total", n]))
         | beam.Flatten() | beam.ParDo(Sink(str(folder))))

    run(DASK_RUNNER, dask_address, build)
    got = seen(folder)
    expected = [[f"w{k}", sum(1 for i in range(2000) if i % 37 == k)] for k in range(37)]
    assert sorted(v for v in got if v[0] != "total") == sorted(expected + expected)
    assert ["total", 2000] in got


def failing(x):
    if x == 7:
        raise ValueError("document 7 is bad")
    return x


def test_a_failing_task_fails_the_run(dask_address):
    with pytest.raises(ValueError, match="document 7 is bad"):
        run(DASK_RUNNER, dask_address, lambda p: p | beam.Create(list(range(10))) | beam.Map(failing))


def test_runner_option_spellings():
    assert beam_arguments(["--runner", "dask", "--dask-address", "h:1"]) == [f"--runner={DASK_RUNNER}",
                                                                             "--dask_client_address=h:1"]
    assert beam_arguments(["--runner=Dask", "--dask-workers=3"]) == [f"--runner={DASK_RUNNER}", "--dask_workers=3"]
    assert not is_local(beam_arguments(["--runner", "dask"]))
    with pytest.raises(RunnerOptionError, match="--dask-address is an option of the Dask runner"):
        beam_arguments(["--dask-address", "h:1"])
    with pytest.raises(RunnerOptionError, match="--dask-workers needs a value"):
        beam_arguments(["--runner", "dask", "--dask-workers"])
    for spelling in (["--job_endpoint", "embed"], ["--job_endpoint=embed"]):
        args = beam_arguments(["--runner", "PortableRunner", *spelling])
        assert is_local(args) and is_local(["--runner", "PortableRunner", *spelling]), spelling
