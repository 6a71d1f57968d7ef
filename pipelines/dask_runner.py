"""tokenmill's Dask runner: Beam's DaskRunner with the five faults that lose or repeat data fixed, and sane tasks.

Beam 2.77's ``DaskRunner`` translates a pipeline into ``dask.bag`` operations. Checked against FnApiRunner with
ten-line pipelines (``tests/test_dask_runner.py`` pins each), it:

1. collects a ParDo's outputs before ``finish_bundle`` runs, so what a DoFn emits there is lost;
2. merges tagged outputs into the main output (a consumer of ``result.rejected`` sees every tag);
3. computes only the last visited transform's bag, so branches that do not lead there never run;
4. shares one output list per ParDo between the tasks of a worker process, so outputs accumulate across bundles;
5. recomputes a side input's whole upstream inside every task that reads it (``list(bag)`` in the task).

Here every PCollection has its own bag (a ParDo's partitions hold ``(tag, value)`` pairs, each output keeps its
tag's values); a bundle's receivers are made in its task and read after ``finish_bundle``; every bag no transform
consumes is computed; a side input is one task's result (its partitions concatenated), which Dask sends to the
tasks that read it. Tasks: ``Create`` and ``Reshuffle`` spread elements over ``partitions`` bags (by default twice
the cluster's threads), ``GroupByKey`` is one task-based shuffle into as many (keys placed by a hash of their pickled
bytes, the same in every process). The graph is computed without Dask's optimisation: fusing would inline a step into
each of its consumers' chains and run it (and its side effects: written files) once per consumer. Only the global
window is supported (tokenmill's pipelines use no other); state and timers are not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import operator
import os
import pickle
import threading
import uuid
from typing import Any, Iterable

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.internal import pickler
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor, PTransformOverride
from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, Receiver
from apache_beam.runners.common import _OutputHandler  # the output routing Beam's own Dask runner uses
from apache_beam.runners.dask.dask_runner import DaskOptions as BeamDaskOptions
from apache_beam.runners.runner import PipelineResult, PipelineRunner, PipelineState
from apache_beam.transforms.sideinputs import SideInputMap
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

MAIN = None  # the tag of a ParDo's main output


class LocalDaskOptions(PipelineOptions):
    """The option of a local cluster (Beam's ``DaskOptions`` has the others: ``--dask_client_address``,
    ``--dask_npartitions``, ``--dask_scheduler_file``, ``--dask_connection_timeout``, ``--dask_client_name``)."""

    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        parser.add_argument("--dask_workers", type=int, default=None,
                            help="worker processes of the local cluster started when no address is given")


# ------------------------------------------------------------------------------------ primitives the graph keeps


class _Primitive(beam.PTransform):
    """A transform the translator maps to a bag operation itself (no expansion)."""

    def expand(self, pcoll: Any) -> Any:
        if isinstance(pcoll, (tuple, list)):
            return pvalue.PCollection(self.pipeline, is_bounded=True)
        return pvalue.PCollection.from_(pcoll)

    def get_windowing(self, inputs: Any) -> beam.Windowing:
        return beam.Windowing(GlobalWindows())


class _Create(_Primitive):
    def __init__(self, values: Iterable[Any]) -> None:
        super().__init__()
        self.values = tuple(values)

    def expand(self, pbegin: Any) -> Any:
        return pvalue.PCollection(pbegin.pipeline, is_bounded=True)


class _Reshuffle(_Primitive):
    pass


class _GroupByKey(_Primitive):
    pass


class _Flatten(_Primitive):
    pass


def _override(cls: type, make: Any) -> PTransformOverride:
    class Override(PTransformOverride):
        def matches(self, applied: AppliedPTransform) -> bool:
            return applied.transform.__class__ is cls

        def get_replacement_transform_for_applied_ptransform(self, applied: AppliedPTransform) -> Any:
            return make(applied.transform)

    return Override()


OVERRIDES = [
    _override(beam.Create, lambda t: _Create(t.values)),
    _override(beam.Reshuffle, lambda t: _Reshuffle()),
    _override(beam.GroupByKey, lambda t: _GroupByKey()),
    _override(beam.Flatten, lambda t: _Flatten()),
]


# ------------------------------------------------------------------------------------------ a bundle in a task


class _Collect(Receiver):
    """Appends each value it receives to ``out`` as ``(tag, value)``."""

    def __init__(self, tag: str | None, out: list[tuple[str | None, Any]]) -> None:
        self.tag = tag
        self.out = out

    def receive(self, windowed_value: WindowedValue) -> None:
        self.out.append((self.tag, windowed_value.value))


class _Receivers(dict):
    def __init__(self, out: list[tuple[str | None, Any]]) -> None:
        super().__init__()
        self.out = out

    def __missing__(self, tag: str) -> _Collect:
        self[tag] = receiver = _Collect(tag, self.out)
        return receiver


_DOFNS: dict[tuple[str, str, int], tuple[DoFnInvoker, list[tuple[str | None, Any]]]] = {}  # set-up DoFns
_DOFNS_LOCK = threading.Lock()  # by (run, transform, worker thread): each set up once, reused by its bundles


def teardown_run(run: str) -> int:
    """Tear down the DoFns a run set up in this worker process (run on every worker at the run's end)."""
    with _DOFNS_LOCK:
        done = [k for k in _DOFNS if k[0] == run]
        invokers = [_DOFNS.pop(k)[0] for k in done]
    for invoker in invokers:
        invoker.invoke_teardown()
    return len(invokers)


@dataclasses.dataclass
class _Bundle:
    """Runs one partition of a ParDo's input through its DoFn, the DoFn set up once per worker thread and run."""

    run: str
    label: str
    fn: bytes  # the pickled DoFn, its arguments and keyword arguments (side inputs as placeholders)
    side_views: list[tuple[type, dict[str, Any]]]

    def _invoker(self, side_values: tuple[list[Any], ...]) -> tuple[DoFnInvoker, list[tuple[str | None, Any]]]:
        out: list[tuple[str | None, Any]] = []
        receivers = _Receivers(out)
        handler = _OutputHandler(window_fn=GlobalWindows(), main_receivers=receivers[MAIN],
                                 tagged_receivers=receivers, per_element_output_counter=None,
                                 output_batch_converter=None, process_yields_batches=False,
                                 process_batch_yields_elements=False)
        sides = [SideInputMap(view, options, [WindowedValue(v, 0, (GlobalWindow(),)) for v in values])
                 for (view, options), values in zip(self.side_views, side_values)]
        fn, args, kwargs = pickler.loads(self.fn)
        invoker = DoFnInvoker.create_invoker(
            DoFnSignature(fn), handler, context=DoFnContext(self.label, state=None),
            side_inputs=sides, input_args=list(args), input_kwargs=dict(kwargs), user_state_context=None,
            bundle_finalizer_param=beam.DoFn.BundleFinalizerParam())
        invoker.invoke_setup()
        return invoker, out

    def __call__(self, items: Iterable[Any], *side_values: list[Any]) -> list[tuple[str | None, Any]]:
        key = (self.run, self.label, threading.get_ident())
        with _DOFNS_LOCK:
            found = _DOFNS.get(key)
        if found is None:
            found = self._invoker(side_values)
            with _DOFNS_LOCK:
                _DOFNS[key] = found
        invoker, out = found
        out.clear()
        invoker.invoke_start_bundle()
        for item in items:
            invoker.invoke_process(WindowedValue(item, 0, (GlobalWindow(),)))
        invoker.invoke_finish_bundle()  # what it emits here belongs to the bundle too (fault 1)
        result = list(out)
        out.clear()
        return result


def _tagged(pairs: list[tuple[str | None, Any]], tag: str | None) -> list[Any]:
    """One output's values of a ParDo partition (fault 2: each output keeps its own tag's values)."""
    return [v for t, v in pairs if t == tag]


def _concat(*parts: list[Any]) -> list[Any]:
    return [v for part in parts for v in part]


def _slot(key: Any, n: int) -> int:
    """The shuffle bag of a key: a hash of its pickled bytes, the same in every process (``hash()`` of a str is
    not)."""
    return int.from_bytes(hashlib.blake2b(pickle.dumps(key, protocol=4), digest_size=8).digest(), "big") % n


def _deal(part: list[Any], n: int, by_key: bool) -> list[list[Any]]:
    """A partition's elements dealt into n lists: round-robin, or (by_key) by their key's slot."""
    if not by_key:
        return [part[i::n] for i in range(n)]
    out: list[list[Any]] = [[] for _ in range(n)]
    for kv in part:
        out[_slot(kv[0], n)].append(kv)
    return out


def _take(*pieces: list[Any]) -> list[Any]:
    """One slot's pieces of every dealt partition, concatenated."""
    return [v for piece in pieces for v in piece]


def _group(*pieces: list[tuple[Any, Any]]) -> list[tuple[Any, list[Any]]]:
    """One slot's keys with their values, in the order they were dealt."""
    groups: dict[Any, list[Any]] = {}
    for piece in pieces:
        for k, v in piece:
            groups.setdefault(k, []).append(v)
    return list(groups.items())


# ---------------------------------------------------------------------------------------------- the translation


class _Translator(PipelineVisitor):
    """Builds a bag per PCollection, in the pipeline's topological order."""

    def __init__(self, run: str, partitions: int) -> None:
        self.run = run
        self.partitions = partitions
        self.bags: dict[Any, Any] = {}
        self.consumed: set[Any] = set()

    def leaves(self) -> list[Any]:
        """The bags no transform reads (fault 3: every one is computed, not only the last visited)."""
        return [bag for pcoll, bag in self.bags.items() if pcoll not in self.consumed]

    def visit_transform(self, node: AppliedPTransform) -> None:
        import dask.bag as db

        transform = node.transform
        inputs = [pc for pc in node.inputs if not isinstance(pc, pvalue.PBegin)]
        self.consumed.update(inputs)
        bags = [self.bags[pc] for pc in inputs]
        outputs = dict(node.outputs)
        if isinstance(transform, _Create):
            values = list(transform.values)
            bag = db.from_sequence(values, npartitions=max(1, min(len(values), self.partitions)))
        elif isinstance(transform, _Reshuffle):
            bag = self._exchange(bags[0], False, node.full_label)
        elif isinstance(transform, _GroupByKey):
            bag = self._exchange(bags[0], True, node.full_label)
        elif isinstance(transform, _Flatten):
            bag = db.concat(bags) if bags else db.from_sequence([], npartitions=1)
        elif isinstance(transform, beam.ParDo):
            self._pardo(node, bags[0], outputs)
            return
        elif not outputs:
            return
        else:
            raise NotImplementedError(f"the Dask runner cannot run {type(transform).__name__} ({node.full_label})")
        for pcoll in outputs.values():
            self.bags[pcoll] = bag

    def _exchange(self, bag: Any, by_key: bool, label: str) -> Any:
        """``bag`` dealt over ``partitions`` bags: a Reshuffle (round-robin) or a GroupByKey (by key): a task per
        input partition deals it, a task per (partition, bag) takes one piece where it was dealt, a task per bag
        gathers its pieces."""
        import dask.bag as db
        from dask.delayed import delayed

        n = self.partitions
        name = f"{label}-{self.run}"
        dealt = [delayed(_deal)(part, n, by_key, dask_key_name=f"{name}-deal-{k}")
                 for k, part in enumerate(bag.to_delayed(optimize_graph=False))]
        # each slot's piece is its own task, run where its partition was dealt: only the piece travels
        pieces = [[delayed(operator.getitem)(d, i, dask_key_name=f"{name}-piece-{k}-{i}")
                   for k, d in enumerate(dealt)] for i in range(n)]
        gather = _group if by_key else _take
        return db.from_delayed([delayed(gather)(*pieces[i], dask_key_name=f"{name}-take-{i}") for i in range(n)])

    def _pardo(self, node: AppliedPTransform, bag: Any, outputs: dict[Any, Any]) -> None:
        from dask.delayed import delayed

        transform = node.transform
        side_views, side_values = [], []
        for si in transform.side_inputs:  # in the order of the placeholders in transform.args / kwargs
            self.consumed.add(si.pvalue)
            side_views.append((type(si), si._view_options()))
            # fault 5: one task's result, sent to the tasks that read it, not recomputed in each
            side_values.append(delayed(_concat)(*self.bags[si.pvalue].to_delayed(optimize_graph=False)))
        run = _Bundle(self.run, node.full_label, pickler.dumps((transform.fn, transform.args, transform.kwargs)),
                      side_views)
        pairs = bag.map_partitions(run, *side_values, token=node.full_label)  # task names: the step's label
        for tag, pcoll in outputs.items():
            self.bags[pcoll] = pairs.map_partitions(_tagged, None if tag in (None, "None") else tag,
                                                    token=f"{node.full_label}[{tag}]")


# ------------------------------------------------------------------------------------------------- the runner


class DaskRunner(PipelineRunner):
    """Runs a pipeline on a Dask cluster: ``--dask_client_address`` (or ``--dask_scheduler_file``) names its
    scheduler, else a local cluster of ``--dask_workers`` processes (one thread each, default: a process per core)
    is started for the run and stopped after it; ``--dask_npartitions``: bags per spread or shuffle."""

    def run_pipeline(self, pipeline: beam.Pipeline, options: PipelineOptions) -> DaskResult:
        import dask.distributed as ddist

        from transforms.recipe.spawn import children_skip_main

        if logging.getLogger().getEffectiveLevel() > logging.INFO:  # not verbose: no cluster start/stop lines
            logging.getLogger("distributed").setLevel(logging.ERROR)
        opts = options.view_as(BeamDaskOptions)
        cluster = None
        if opts.address or opts.scheduler_file:
            client = ddist.Client(opts.address, scheduler_file=opts.scheduler_file, name=opts.name,
                                  **({} if opts.timeout is None else {"timeout": opts.timeout}))
        else:
            with children_skip_main():
                workers = options.view_as(LocalDaskOptions).dask_workers or os.cpu_count() or 1
                cluster = ddist.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                             host="127.0.0.1", dashboard_address=None,
                                             preload=["pipelines.dask_worker"])
            client = ddist.Client(cluster)
        try:
            threads = sum(client.nthreads().values()) or 1
            pipeline.replace_all(OVERRIDES)
            translator = _Translator(uuid.uuid4().hex, opts.npartitions or 2 * threads)
            pipeline.visit(translator)
            # no graph optimisation: fusing would inline a step into each of its outputs' chains (run it twice)
            futures = client.compute([bag.count() for bag in translator.leaves()], optimize_graph=False)
        except BaseException:
            _close(client, cluster)
            raise
        return DaskResult(client, cluster, futures, translator.run)


def _close(client: Any, cluster: Any) -> None:
    client.close()
    if cluster is not None:
        cluster.close()


class DaskResult(PipelineResult):
    """A running pipeline's futures; waiting raises the first task's error, tears the run's DoFns down on every
    worker and closes the client (and the local cluster)."""

    def __init__(self, client: Any, cluster: Any, futures: list[Any], run: str) -> None:
        super().__init__(PipelineState.RUNNING)
        self.client, self.cluster, self.futures, self.run = client, cluster, futures, run

    def wait_until_finish(self, duration: int | None = None) -> str:
        if self._state != PipelineState.RUNNING:
            return self._state
        try:
            for future in self.futures:
                future.result(timeout=None if duration is None else duration / 1000)
            self._state = PipelineState.DONE
        except BaseException:
            self._state = PipelineState.FAILED
            self.client.cancel(self.futures)
            raise
        finally:
            try:
                self.client.run(teardown_run, self.run)
            finally:
                _close(self.client, self.cluster)
        return self._state

    def cancel(self) -> str:
        self.client.cancel(self.futures)
        _close(self.client, self.cluster)
        self._state = PipelineState.CANCELLED
        return self._state
