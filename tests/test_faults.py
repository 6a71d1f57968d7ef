"""The fault matrix: a run killed at any point (reading, either pass of a dedup job, mid-commit, clearing an earlier
result) leaves an output that the rerun turns into the same bytes as an undisturbed run; two runs started together
into one output give exactly one result and one clean refusal; Ctrl-C is one line, rc 130, no temp files.

Kills are SIGKILLs at named points (``transforms.output.faults``) of a real ``tokenmill`` process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines import cli
from schemas import manifest as m
from schemas.shards import LOCK_FILE, TEMP_DIR
from tests.conftest import write_jsonl
from transforms.output.faults import ENV as FAULT_ENV

REPO = Path(__file__).resolve().parent.parent
VOLATILE = (m.K_WALL_TIME, m.K_STAGE_SECONDS, m.K_JOB)  # timings, and the job's argv (its output path)
DEDUP_RECIPE = "dedup: {exact: true, minhash: {ngram: 5, bands: 14, rows: 8}}\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, ml_texts):
    """Two JSONL files with exact and near copies (two streams at --stream-mb 1) and a dedup recipe."""
    d = tmp_path_factory.mktemp("faults")
    texts = list(ml_texts)  # each file over 1 MiB: a stream of its own at --stream-mb 1
    write_jsonl(d / "a.jsonl", [{"id": f"a{i}", "text": t} for i, t in enumerate(texts)])
    write_jsonl(d / "b.jsonl", [{"id": f"b{i}", "text": f"{t}\n{t}"} for i, t in enumerate(texts[:5000])]
                + [{"id": f"c{i}", "text": t} for i, t in enumerate(texts[:600])] + [b"{not json"])
    (d / "dedup.yaml").write_text(DEDUP_RECIPE)
    return d


def argv(corpus: Path, out: Path, tokenizer: str, *extra: str, seq_len: int = 64) -> list[str]:
    return ["prepare", "-i", str(corpus / "a.jsonl"), "-i", str(corpus / "b.jsonl"), "-t", tokenizer,
            "--seq-len", str(seq_len), "-o", str(out), "--no-progress", "--emit-documents", "--stream-mb", "1",
            *extra]


def tokenmill(args: list[str], fault: str | None = None, **popen) -> subprocess.Popen:
    """A real ``tokenmill`` process (killed at ``fault`` if given)."""
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    if fault:
        env[FAULT_ENV] = fault
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def result(out: Path) -> dict:
    """What must be identical between two runs: every file's bytes but the manifest's and report's, and the
    manifest without timings and argv."""
    files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    manifest = json.loads(files.pop("manifest.json"))
    files.pop("report.html")
    return {"files": files, "manifest": {k: v for k, v in manifest.items() if k not in VOLATILE}}


def assert_clean(out: Path) -> None:
    assert not (out / TEMP_DIR).exists() and not (out / LOCK_FILE).exists()
    assert cli.main(["inspect", str(out), "--verify"]) == 0


@pytest.fixture(scope="module")
def reference(corpus, tokenizer_path, tmp_path_factory):
    """Undisturbed results of the plain and the dedup job."""
    out = {}
    for name, extra in (("plain", ()), ("dedup", ("--recipe", str(corpus / "dedup.yaml")))):
        d = tmp_path_factory.mktemp(f"ref-{name}") / "out"
        assert cli.main(argv(corpus, d, tokenizer_path, *extra)) == 0
        out[name] = result(d)
    assert out["dedup"]["manifest"][m.K_STREAMS] > 1
    return out


@pytest.mark.parametrize("job, fault", [
    ("plain", "pass-p:2"),  # mid-read of a one-pass run
    ("dedup", "read:2"),  # pass 1 of a dedup run
    ("dedup", "pass-b:2"),  # pass 2
    ("plain", "commit-move:3"),  # mid-commit: some files moved into place, no manifest
    ("dedup", "commit-manifest"),  # every file in place, no manifest
    ("plain", "commit-cleanup"),  # the manifest written, temp folder left
])
def test_a_killed_run_reruns_to_the_same_bytes(corpus, tokenizer_path, reference, tmp_path, job, fault):
    extra = ("--recipe", str(corpus / "dedup.yaml")) if job == "dedup" else ()
    out = tmp_path / "out"
    killed = tokenmill(argv(corpus, out, tokenizer_path, *extra), fault=fault)
    killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL, "the fault point was not reached"
    assert (out / LOCK_FILE).exists()  # the dead run's lock: the rerun takes it over
    if fault != "commit-cleanup":
        assert not (out / "manifest.json").exists()
    else:
        assert cli.main(["inspect", str(out), "--verify"]) == 1  # the leftover temp folder is reported
    assert cli.main(argv(corpus, out, tokenizer_path, *extra)) == 0
    assert result(out) == reference[job]
    assert_clean(out)


def test_a_run_killed_while_clearing_an_earlier_result_reruns_to_the_same_bytes(corpus, tokenizer_path, reference,
                                                                               tmp_path):
    out = tmp_path / "out"
    assert cli.main(argv(corpus, out, tokenizer_path, seq_len=32)) == 0  # another job's result
    killed = tokenmill(argv(corpus, out, tokenizer_path, "--overwrite"), fault="clear-file:3")
    killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert not (out / "manifest.json").exists() and (out / "shards").exists()  # half cleared
    # the earlier result's remaining files are still provably tokenmill's: no --overwrite needed any more
    assert cli.main(argv(corpus, out, tokenizer_path)) == 0
    assert result(out) == reference["plain"]
    assert_clean(out)


def test_two_runs_into_one_output_give_one_result_and_one_clean_refusal(corpus, tmp_path, tokenizer_path):
    small = tmp_path / "small.jsonl"
    write_jsonl(small, [{"text": f"document {i} of the race"} for i in range(30)])
    outcomes = []
    for attempt in range(20):
        out = tmp_path / f"race{attempt}"
        delay = (attempt % 10) * 0.25  # 0 .. 2.25 s: before, during and after the first run's claim
        jobs = []
        for seq_len in (16, 32):  # two different jobs: a late second run is refused as another job's result
            jobs.append(tokenmill(["prepare", "-i", str(small), "-t", tokenizer_path, "--seq-len", str(seq_len),
                                   "-o", str(out), "--no-progress"]))
            if seq_len == 16:
                time.sleep(delay)
        finished = [(p, *p.communicate(timeout=300)) for p in jobs]
        codes = sorted(p.returncode for p, _, _ in finished)
        assert codes == [0, 2], (attempt, [(p.returncode, err) for p, _, err in finished])
        (loser_err,) = [err for p, _, err in finished if p.returncode == 2]
        (winner_seq,) = [s for (p, _, _), s in zip(finished, (16, 32)) if p.returncode == 0]
        line = loser_err.strip()
        assert "\n" not in line and "Traceback" not in line and line.startswith("tokenmill: error: --output"), line
        outcomes.append("in use" in line)
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest[m.K_SEQ_LEN] == winner_seq
        assert_clean(out)
    assert any(outcomes), "no pair overlapped: the lock was never tested"


def test_ctrl_c_is_one_line_rc_130_and_no_temp_files(tmp_path, tokenizer_path, ml_texts):
    data = tmp_path / "big.jsonl"
    write_jsonl(data, [{"text": t} for _ in range(40) for t in ml_texts[:2000]])
    out = tmp_path / "out"
    for workers in ("1", "2"):
        run = tokenmill(["prepare", "-i", str(data), "-t", tokenizer_path, "--seq-len", "64", "-o", str(out),
                         "--no-progress", "--workers", workers, "--stream-mb", "2"], start_new_session=True)
        deadline = time.time() + 120
        while not list((out / TEMP_DIR).glob("s*")) and time.time() < deadline:  # streams are being written
            time.sleep(0.1)
        os.killpg(run.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
        _, err = run.communicate(timeout=120)
        assert run.returncode == 130, err
        assert err.strip() == "tokenmill: interrupted; the output has no manifest and is not a result (rerun to " \
                              "finish)", err
        time.sleep(0.5)
        assert sorted(p.name for p in out.iterdir()) == [], list(out.rglob("*"))
