"""deploy/: the Airflow manifest check, the images' Beam version, the flex template, the scripts and the DAGs.

Nothing here reaches the network: the scripts run against stand-in gcloud/docker commands, hadolint and shellcheck
run only where they are installed, and the Airflow tests only where Airflow and its Beam provider are.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import apache_beam
import pytest
from packaging.requirements import Requirement

from pipelines import cli
from schemas import manifest as m
from tests.conftest import prepare, write_jsonl

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
LAUNCHER_DOCKERFILE = DEPLOY / "dataflow" / "Dockerfile.launcher"
METADATA = DEPLOY / "dataflow" / "metadata.json"
SCRIPTS = [DEPLOY / "dataflow" / "build.sh", DEPLOY / "dataflow" / "run.sh"]
AIRFLOW_DIR = DEPLOY / "airflow"
BEAM_BOOT = "/opt/apache/beam/boot"


def load(path: Path):
    """A deploy/ module by file path (deploy/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"deploy_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


manifest_check = load(AIRFLOW_DIR / "manifest_check.py")
launch_prepare = load(DEPLOY / "dataflow" / "launch_prepare.py")
make_metadata = load(DEPLOY / "dataflow" / "make_metadata.py")


def prepare_actions():
    """prepare's options (without --help), from the parser the tokenmill command uses."""
    sub = cli.build_parser()._subparsers._group_actions[0].choices["prepare"]
    return [a for a in sub._actions if a.option_strings and a.dest != "help"]


# -- the manifest check (Airflow's check task) --------------------------------------------------------------------

@pytest.fixture(scope="module")
def prepared(tmp_path_factory, ml_texts, tokenizer_path):
    """A real small prepare output: 300 documents and one malformed line."""
    d = tmp_path_factory.mktemp("deploy-corpus")
    data = write_jsonl(d / "in.jsonl", [{"text": t} for t in ml_texts[:300]] + [b"{oops\n"])
    out = d / "out"
    manifest = prepare(data, out, tokenizer_path, seq_len=64, shard_rows=50)
    return out, manifest


def test_check_manifest_accepts_a_real_output(prepared):
    out, manifest = prepared
    assert len(manifest[m.K_SHARDS]) > 1 and manifest[m.K_COUNTS]["docs_rejected"] == {m.MALFORMED_JSON: 1}
    assert manifest_check.check_manifest(manifest) == []
    assert manifest_check.check_output(str(out)) == {
        "records": 301, "docs_written": 300, "tokens": manifest[m.K_COUNTS]["tokens"],
        "shards": len(manifest[m.K_SHARDS])}


def _edit(manifest, change):
    edited = copy.deepcopy(manifest)
    change(edited)
    return edited


def _no_written(x):
    x[m.K_COUNTS]["docs_written"] = 0
    x[m.K_COUNTS]["records"] = 1  # the malformed line alone: the sum still holds


@pytest.mark.parametrize("change, expected", [
    (lambda x: x[m.K_COUNTS].update(records=x[m.K_COUNTS]["records"] + 1),
     r"counts\.records is 302, but docs_written \+ Σ docs_rejected is 300 \+ 1 = 301"),
    (lambda x: x[m.K_COUNTS]["docs_rejected"].update({m.MALFORMED_JSON: 0}), r"counts\.records is 301, but .* = 300"),
    (_no_written, r"counts\.docs_written is 0"),
    (lambda x: x[m.K_COUNTS].update(tokens=0), r"counts\.tokens is 0"),
    (lambda x: x.update({m.K_SHARDS: []}), r"no shards listed"),
    (lambda x: x.pop(m.K_SHARDS), r"no shards listed"),
    (lambda x: x[m.K_SHARDS][0].pop("path"), r"entry has no 'path'"),
    (lambda x: x[m.K_SHARDS][0].update(rows=x[m.K_SHARDS][0]["rows"] + 1), r"the shards list \d+ rows, but counts"),
    (lambda x: x.update({m.K_FORMAT: m.DOCUMENTS_FORMAT}), r"format is 'tokenmill.documents/1'"),
    (lambda x: x.pop(m.K_COUNTS), r"no 'counts' section"),
    (lambda x: x[m.K_COUNTS].update(records="many"), r"not a whole number: counts\.records$"),
    (lambda x: x[m.K_COUNTS].update(docs_rejected=[1]), r"docs_rejected is not an object"),
    (lambda x: x[m.K_SHARDS][-1].update(rows=None), r"entry's 'rows' is not a whole number"),
])
def test_check_manifest_names_each_problem(prepared, change, expected):
    _, manifest = prepared
    problems = manifest_check.check_manifest(_edit(manifest, change))
    assert len(problems) == 1, problems
    assert re.search(expected, problems[0]), problems


def test_check_output_reads_any_fsspec_url_and_fails_without_manifest(prepared, memfs, tmp_path):
    out, manifest = prepared
    fs, root = memfs
    fs.pipe(f"{root}/manifest.json", (out / "manifest.json").read_bytes())
    assert manifest_check.check_output(f"memory://{root}")["docs_written"] == 300
    with pytest.raises(FileNotFoundError, match=r"manifest\.json does not exist"):
        manifest_check.check_output(str(tmp_path))
    fs.pipe(f"{root}/manifest.json", json.dumps(_edit(manifest, lambda x: x[m.K_COUNTS].update(tokens=0))).encode())
    with pytest.raises(ValueError, match=r"counts\.tokens is 0"):
        manifest_check.check_output(f"memory://{root}")


# -- the images ---------------------------------------------------------------------------------------------------

def _beam_requirement() -> Requirement:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return next(Requirement(d) for d in project["dependencies"] if Requirement(d).name == "apache-beam")


def test_image_beam_version_is_the_installed_one_and_pyproject_allows_it():
    text = DOCKERFILE.read_text()
    base = re.findall(r"^FROM apache/beam_python(\d+\.\d+)_sdk:(\S+)\s*$", text, re.M)
    assert len(base) == 1, "deploy/Dockerfile must start FROM apache/beam_pythonX.Y_sdk:VERSION"
    python, version = base[0]
    pins = re.findall(r'"apache-beam\[[a-z,]+\]==([^"]+)"', text)
    assert pins == [version], "the pip pin of apache-beam must be the base image's version"
    assert version == apache_beam.__version__, "the image's Beam must be the one jobs are launched with"
    assert _beam_requirement().specifier.contains(version), "pyproject's apache-beam pin must allow the image's"
    assert re.fullmatch(r"3\.\d+", python)


def test_extras_pin_beam_like_the_main_dependency():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    main = _beam_requirement()
    for name, beam_extra, fs_package in (("gcp", "gcp", "gcsfs"), ("aws", "aws", "s3fs")):
        reqs = [Requirement(r) for r in extras[name]]
        beam = next(r for r in reqs if r.name == "apache-beam")
        assert beam.extras == {beam_extra} and beam.specifier == main.specifier
        assert fs_package in {r.name for r in reqs}
    assert {Requirement(r).name for r in extras["airflow"]} == {
        "apache-airflow", "apache-airflow-providers-apache-beam", "apache-airflow-providers-google"}
    assert not any(Requirement(r).name.startswith("apache-airflow") for r in extras["test"])


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    lines = [ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln.strip() else "")
            for ln in joined.splitlines() if ln.strip()]


def test_images_keep_beams_boot_entrypoint_and_flex_settings():
    runtime = _instructions(DOCKERFILE)
    assert all(arg == f'["{BEAM_BOOT}"]' for ins, arg in runtime if ins == "ENTRYPOINT")
    flex = _instructions(LAUNCHER_DOCKERFILE)
    assert [arg for ins, arg in flex if ins == "ENTRYPOINT"][-1] == f'["{BEAM_BOOT}"]'
    froms = [arg for ins, arg in flex if ins == "FROM"]
    assert froms[0].startswith("gcr.io/dataflow-templates-base/python311-template-launcher-base")
    assert froms[-1] == "${RUNTIME_IMAGE}"  # the runtime image: launcher and workers share their packages
    env = dict(arg.split("=", 1) for ins, arg in flex if ins == "ENV")
    copies = [arg.split() for ins, arg in flex if ins == "COPY" and not arg.startswith("--from")]
    assert ["deploy/dataflow/launch_prepare.py", env["FLEX_TEMPLATE_PYTHON_PY_FILE"]] in copies
    assert "python_template_launcher" in " ".join(arg for ins, arg in flex if ins == "COPY")


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, LAUNCHER_DOCKERFILE], ids=lambda p: p.name)
def test_dockerignore_lets_through_what_the_build_copies(dockerfile):
    kept = [ln[1:].rstrip("/") for ln in Path(f"{dockerfile}.dockerignore").read_text().splitlines()
            if ln.startswith("!")]
    sources = [src for ins, arg in _instructions(dockerfile) if ins == "COPY" and not arg.startswith("--from")
               for src in arg.split()[:-1]]
    assert sources
    for src in sources:
        assert src.rstrip("/") in kept, f"{src} is copied but {dockerfile.name}.dockerignore leaves it out"
        assert (ROOT / src).exists()


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint is not installed")
def test_hadolint_passes():
    result = subprocess.run(["hadolint", str(DOCKERFILE), str(LAUNCHER_DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_passes():
    result = subprocess.run(["shellcheck", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# -- the flex template --------------------------------------------------------------------------------------------

def test_metadata_covers_every_prepare_option():
    meta = json.loads(METADATA.read_text())
    assert meta["name"] and meta["description"]
    params = {p["name"]: p for p in meta["parameters"]}
    assert len(params) == len(meta["parameters"]), "duplicate parameter names"
    actions = prepare_actions()
    assert len(actions) >= 25
    assert set(make_metadata.LOCAL_ONLY) <= {a.dest for a in actions}, "LOCAL_ONLY names an option that is gone"
    for action in actions:
        if action.dest in make_metadata.LOCAL_ONLY:
            assert action.dest not in params
            continue
        assert action.dest in params, f"prepare's {action.option_strings} is missing from metadata.json"
        p = params[action.dest]
        assert re.fullmatch(r"[a-z][a-z0-9_]*", p["name"])
        assert p["label"] and p["helpText"].startswith(launch_prepare.long_option(action))
        assert p["isOptional"] is (not action.required)
        samples = [str(c) for c in action.choices or ()]
        if action.nargs == 0:
            samples = ["true", "false"]
        elif action.default not in (None, [], False):
            samples.append(str(action.default))
        for regex in p.get("regexes", []):
            for sample in samples:
                assert re.fullmatch(regex, sample), f"{p['name']}: {sample!r} does not match {regex}"
    required = {n for n, p in params.items() if not p["isOptional"]}
    assert required == {"input", "output", "tokenizer", "seq_len"}
    assert set(params) <= {a.dest for a in actions}


def test_metadata_is_what_the_generator_writes():
    assert METADATA.read_text(encoding="utf-8") == make_metadata.render(), \
        "metadata.json is out of date: python deploy/dataflow/make_metadata.py"


def test_launcher_turns_template_parameters_into_prepare_options():
    argv = ["--input=gs://b/a.jsonl, gs://b/more/", "--output=gs://b/out", "--tokenizer=gs://b/tok.json",
            "--seq_len=4096", "--overwrite=true", "--strict=false", "--meta_field=url,lang", "--emit_documents=True",
            "--runner=DataflowRunner", "--temp_location=gs://b/tmp", "--sdk_container_image=img:1", "--shard-rows=9"]
    out = launch_prepare.cli_arguments(argv)
    assert out == ["--input=gs://b/a.jsonl", "--input=gs://b/more/", "--output=gs://b/out",
                   "--tokenizer=gs://b/tok.json", "--seq-len=4096", "--overwrite", "--meta-field=url",
                   "--meta-field=lang", "--emit-documents", "--runner=DataflowRunner", "--temp_location=gs://b/tmp",
                   "--sdk_container_image=img:1", "--shard-rows=9"]
    args, beam_args = cli.build_parser().parse_known_args(["prepare", *out])
    assert args.input == ["gs://b/a.jsonl", "gs://b/more/"] and args.seq_len == 4096 and args.shard_rows == 9
    assert args.overwrite and args.emit_documents and not args.strict and args.meta_field == ["url", "lang"]
    assert beam_args == ["--runner=DataflowRunner", "--temp_location=gs://b/tmp", "--sdk_container_image=img:1"]
    with pytest.raises(SystemExit, match="template parameter overwrite: expected true or false"):
        launch_prepare.cli_arguments(["--overwrite=maybe"])


def test_launcher_runs_prepare(tmp_path, ml_texts, tokenizer_path):
    data = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in ml_texts[:50]])
    out = tmp_path / "out"
    code = launch_prepare.main([f"--input={data}", f"--output={out}", f"--tokenizer={tokenizer_path}",
                                "--seq_len=32", "--no_progress=true", "--runner=FnApiRunner"])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest_check.check_manifest(manifest) == []
    assert manifest[m.K_RUNNER]["runner"] == "FnApiRunner" and manifest[m.K_COUNTS]["docs_written"] == 50


def test_launcher_passes_the_template_parameters_to_prepare(monkeypatch):
    seen = []
    monkeypatch.setattr(launch_prepare, "tokenmill_main", lambda argv: seen.append(argv) or 0)
    template = "--template_location=gs://b/job.json"
    assert launch_prepare.main(["--output=gs://b/out", "--seq_len=8", template]) == 0
    assert seen[-1] == ["prepare", "--output=gs://b/out", "--seq-len=8", template, "--runner=DataflowRunner"]


def test_a_template_launch_returns_without_waiting_for_the_manifest(tmp_path, tokenizer_path, ml_texts, capsys,
                                                                     monkeypatch):
    """With --template_location prepare does not wait for (or read back) the manifest: the job runs later."""
    from pipelines import cli

    class Result:
        def wait_until_finish(self):
            raise AssertionError("a template launch must not wait for the job")

    monkeypatch.setattr("apache_beam.Pipeline.run", lambda self, *a, **k: Result())
    data = write_jsonl(tmp_path / "in.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(ml_texts[:20])])
    assert cli.main(["prepare", "-i", data, "-t", tokenizer_path, "--seq-len", "64", "-o", str(tmp_path / "out"),
                     "--no-progress", f"--template_location={tmp_path / 'job.json'}"]) == 0
    assert "job described for a Dataflow template" in capsys.readouterr().err
    assert not (tmp_path / "out" / "manifest.json").exists()


# -- the scripts, against stand-in gcloud and docker commands -----------------------------------------------------

@pytest.fixture
def stub_path(tmp_path):
    """A directory with gcloud and docker commands that record their arguments (one file per call)."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    calls.mkdir()
    for name in ("gcloud", "docker"):
        stub = bin_dir / name
        stub.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "{calls}/$(date +%s%N)-{name}"\n')
        stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    return bin_dir, calls


def _calls(calls: Path) -> list[tuple[str, list[str]]]:
    return [(p.name.split("-", 1)[1], p.read_text().splitlines()) for p in sorted(calls.iterdir())]


def _run_script(script: Path, bin_dir: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(["bash", str(script)], env=environment | env, capture_output=True, text=True,
                          cwd=bin_dir)


def test_run_sh_launches_the_template_with_its_parameters(stub_path):
    bin_dir, calls = stub_path
    result = _run_script(SCRIPTS[1], bin_dir, PROJECT="p", BUCKET="gs://b", TEMPLATE="gs://b/t.json", IMAGE="img:1",
                         INPUT="gs://b/x.jsonl,gs://b/y/", OUTPUT="gs://b/out", TOKENIZER="gs://b/tok.json",
                         SEQ_LEN="4096", RECIPE="fineweb", EXTRA_PARAMETERS="shard_rows=4096~overwrite=true")
    assert result.returncode == 0, result.stderr
    [(command, args)] = _calls(calls)
    assert command == "gcloud" and args[:4] == ["dataflow", "flex-template", "run", args[3]]
    assert args[3].startswith("tokenmill-prepare-")
    options = dict(zip(args[4::2], args[5::2]))
    assert options["--template-file-gcs-location"] == "gs://b/t.json" and options["--project"] == "p"
    assert options["--staging-location"] == "gs://b/staging" and options["--temp-location"] == "gs://b/tmp"
    packed = options["--parameters"]
    assert packed.startswith("^~^")
    parameters = dict(item.split("=", 1) for item in packed[3:].split("~"))
    assert parameters == {"input": "gs://b/x.jsonl,gs://b/y/", "output": "gs://b/out", "tokenizer": "gs://b/tok.json",
                          "seq_len": "4096", "sdk_container_image": "img:1", "recipe": "fineweb",
                          "shard_rows": "4096", "overwrite": "true"}
    declared = {p["name"] for p in json.loads(METADATA.read_text())["parameters"]}
    assert set(parameters) - declared == {"sdk_container_image"}  # a Beam option, not a template parameter


def test_run_sh_says_what_is_missing(stub_path):
    bin_dir, calls = stub_path
    result = _run_script(SCRIPTS[1], bin_dir, PROJECT="p", BUCKET="gs://b")
    assert result.returncode == 2 and "error: set TEMPLATE" in result.stderr and "usage:" in result.stderr
    assert _calls(calls) == []


def test_build_sh_builds_both_images_and_the_template(stub_path):
    bin_dir, calls = stub_path
    result = _run_script(SCRIPTS[0], bin_dir, PROJECT="p", BUCKET="gs://b", TAG="t1", BUILDER="docker")
    assert result.returncode == 0, result.stderr
    done = _calls(calls)
    registry = "us-central1-docker.pkg.dev/p/tokenmill"
    image, flex = f"{registry}/tokenmill:t1", f"{registry}/tokenmill-flex:t1"
    assert [c for c, _ in done] == ["docker"] * 4 + ["gcloud"]
    assert done[0][1] == ["build", "-f", "deploy/Dockerfile", "-t", image, "."]
    assert done[1][1] == ["build", "-f", "deploy/dataflow/Dockerfile.launcher", "--build-arg",
                          f"RUNTIME_IMAGE={image}", "-t", flex, "."]
    assert done[2][1] == ["push", image] and done[3][1] == ["push", flex]
    gcloud = done[4][1]
    assert gcloud[:4] == ["dataflow", "flex-template", "build", "gs://b/templates/tokenmill-prepare.json"]
    options = dict(zip(gcloud[4::2], gcloud[5::2]))
    assert options["--image"] == flex and options["--sdk-language"] == "PYTHON"
    assert (ROOT / options["--metadata-file"]).resolve() == METADATA  # the script runs from the repository root


# -- the Airflow DAGs (where Airflow and its Beam provider are installed) -------------------------------------------

@pytest.fixture(scope="module")
def airflow_dags(tmp_path_factory):
    """The DAG folder loaded by Airflow's DagBag, with AIRFLOW_HOME in a temporary directory."""
    home = tmp_path_factory.mktemp("airflow-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_HOME", str(home))  # before Airflow is imported: it writes there, not in ~/airflow
        mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        mp.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(AIRFLOW_DIR))
        pytest.importorskip("airflow.providers.apache.beam", reason="Airflow with the Apache Beam provider is not "
                                                                    "installed (pip install 'tokenmill[airflow]')")
        from airflow.models import DagBag

        kwargs = {"include_examples": False} if "include_examples" in inspect.signature(DagBag).parameters else {}
        bag = DagBag(dag_folder=str(AIRFLOW_DIR), **kwargs)
        yield bag


def test_dags_load_with_their_tasks(airflow_dags):
    from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator

    assert airflow_dags.import_errors == {}
    assert {"tokenmill_daily", "tokenmill_manual"} <= set(airflow_dags.dags)
    schedules = {}
    for dag_id in ("tokenmill_daily", "tokenmill_manual"):
        dag = airflow_dags.dags[dag_id]
        schedules[dag_id] = getattr(dag, "schedule", getattr(dag, "schedule_interval", None))
        assert dag.catchup is False
        assert {t.task_id for t in dag.tasks} == {"prepare", "check_manifest"}
        beam = dag.get_task("prepare")
        assert isinstance(beam, BeamRunPythonPipelineOperator)
        assert beam.downstream_task_ids == {"check_manifest"}
        assert Path(beam.py_file) == AIRFLOW_DIR / "run_tokenmill.py"
    assert schedules == {"tokenmill_daily": "@daily", "tokenmill_manual": None}
    params = airflow_dags.dags["tokenmill_manual"].params
    assert {"input", "output", "recipe", "tokenizer", "seq_len", "runner"} <= set(params)
    assert params["runner"] == "FnApiRunner" and params["seq_len"] == 2048


def _render(dag, task_id: str, context: dict):
    task = copy.deepcopy(dag.get_task(task_id))
    task.render_template_fields(context)
    return task


def _command_line(task) -> list[str]:
    """The command the operator runs: interpreter, pipeline file, --runner, then its options as --KEY=VALUE."""
    from airflow.providers.apache.beam.hooks.beam import beam_options_to_args

    options = {**task.default_pipeline_options, **task.pipeline_options}
    return [task.py_interpreter, task.py_file, f"--runner={task.runner}", *beam_options_to_args(options)]


def test_manual_dag_renders_prepare_options_for_the_run_date(airflow_dags):
    dag = airflow_dags.dags["tokenmill_manual"]
    params = {k: dag.params[k] for k in dag.params} | {
        "input": ["/c/a.jsonl", "/c/b.parquet"], "output": "/out/", "tokenizer": "/t/tok.json", "seq_len": 4096,
        "recipe": "fineweb"}
    prepare_task = _render(dag, "prepare", {"params": params, "ds_nodash": "20240315"})
    assert prepare_task.runner == "FnApiRunner"
    options = prepare_task.pipeline_options
    assert options["output"] == "/out/20240315"
    assert {"input", "output", "tokenizer", "seq-len"} <= set(options)
    command = _command_line(prepare_task)
    assert command[1].endswith("run_tokenmill.py")
    args, beam_args = cli.build_parser().parse_known_args(["prepare", *command[2:]])
    assert args.input == ["/c/a.jsonl", "/c/b.parquet"] and args.output == "/out/20240315"
    assert args.tokenizer == "/t/tok.json" and args.seq_len == 4096 and args.recipe == "fineweb"
    assert "--runner=FnApiRunner" in beam_args and not args.verbose
    check = _render(dag, "check_manifest", {"params": params, "ds_nodash": "20240315"})
    assert check.op_kwargs == {"output": "/out/20240315"}
    no_recipe = _render(dag, "prepare", {"params": params | {"recipe": ""}, "ds_nodash": "20240315"})
    assert not any(a.startswith("--recipe") for a in _command_line(no_recipe))


def test_daily_dag_reads_the_variable_and_configures_dataflow(airflow_dags):
    dag = airflow_dags.dags["tokenmill_daily"]
    settings = {"input": "gs://b/corpus/*.jsonl.zst", "output": "gs://b/tok", "tokenizer": "gs://b/tok.json",
                "runner": "DataflowRunner", "project": "proj", "region": "europe-west4",
                "beam_options": {"temp_location": "gs://b/tmp", "sdk_container_image": "img:1"}}
    context = {"params": {}, "ds_nodash": "20240316", "var": {"json": {"tokenmill_daily": settings}}}
    task = _render(dag, "prepare", context)
    assert task.runner == "DataflowRunner"
    assert task.dataflow_config == {"job_name": "tokenmill-daily", "project_id": "proj", "location": "europe-west4"}
    args, beam_args = cli.build_parser().parse_known_args(["prepare", *_command_line(task)[2:]])
    assert args.output == "gs://b/tok/20240316" and args.seq_len == 2048 and args.recipe is None and args.verbose
    assert {"--runner=DataflowRunner", "--temp_location=gs://b/tmp", "--sdk_container_image=img:1"} <= set(beam_args)


def test_manual_dag_runs_prepare_and_checks_its_manifest(airflow_dags, tmp_path, ml_texts, tokenizer_path,
                                                         monkeypatch):
    """The operator really runs run_tokenmill.py (FnApiRunner), then the check task reads the manifest."""
    pytest.importorskip("airflow.providers.google", reason="the Beam operator builds a DataflowConfiguration on "
                                                           "every run: it needs apache-airflow-providers-google")
    monkeypatch.syspath_prepend(str(AIRFLOW_DIR))  # Airflow puts the DAG folder on sys.path for the check task
    dag = airflow_dags.dags["tokenmill_manual"]
    data = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in ml_texts[:40]] + [b"[1]\n"])
    params = {k: dag.params[k] for k in dag.params} | {
        "input": data, "output": str(tmp_path / "out"), "tokenizer": tokenizer_path, "seq_len": 32}
    context = {"params": params, "ds_nodash": "20240317"}
    prepare_task = _render(dag, "prepare", context)
    assert prepare_task.py_interpreter == sys.executable
    prepare_task.execute(context)
    check = _render(dag, "check_manifest", context)
    summary = check.execute(context)
    assert summary["docs_written"] == 40 and summary["records"] == 41 and summary["shards"] >= 1
    assert (tmp_path / "out" / "20240317" / "manifest.json").exists()
    later = _render(dag, "check_manifest", {**context, "ds_nodash": "20240318"})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        later.execute(context)
