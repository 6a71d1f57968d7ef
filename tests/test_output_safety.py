"""The output directory is tokenmill's only where it can prove it: user files refused (with --overwrite too), the
lock, the commit that refuses a result missing or repeating a stream, every file a recipe names checked up front,
and --verify naming every file the manifest does not list."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import cli
from schemas import manifest as m
from schemas.shards import LOCK_FILE, TEMP_DIR
from schemas.stream_result import StreamResult
from tests.test_bad_input import good_jsonl, manifest_of, run_main
from transforms.output.commit import IncompleteResultError, check_complete, commit, stream_plan
from transforms.output.guard import claim_output
from transforms.output.location import OutputError
from transforms.output.lock import acquire_lock
from transforms.read.sources import InputFile, plan_streams


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path → bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def done(tmp_path, tokenizer_path):
    """A finished prepare output and its input."""
    data = good_jsonl(tmp_path / "in.jsonl", [f"document number {i} with some words" for i in range(40)])
    out = tmp_path / "out"
    assert run_main(data, out, tokenizer_path, "--emit-documents")[0] == 0
    return data, out


# ------------------------------------------------------------------------------------------- user files


def _user_file(out: Path, rel: str) -> Path:
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("precious")
    return path


@pytest.mark.parametrize("rel", ["notes.txt", "shards/mydata.parquet", "documents/thesis.txt",
                                 "rejected/keep.jsonl", "report.html", "_tokenmill_tmp/mine.txt"])
def test_a_user_file_in_a_fresh_directory_is_refused_with_or_without_overwrite(tmp_path, tokenizer_path, rel):
    data = good_jsonl(tmp_path / "in.jsonl", ["one document"])
    out = tmp_path / "d"
    _user_file(out, rel)
    before = tree(out)
    for extra in ((), ("--overwrite",)):
        code, err = run_main(data, out, tokenizer_path, *extra)
        assert code == 2, err
        line = err.strip()
        assert "\n" not in line and rel in line and "did not write" in line, line
        assert tree(out) == before  # nothing touched


@pytest.mark.parametrize("rel", ["notes.txt", "shards/mydata.parquet", "documents/thesis.txt", "rejected/x.jsonl"])
def test_a_user_file_beside_a_result_is_refused_and_the_result_kept(done, tokenizer_path, rel):
    data, out = done
    _user_file(out, rel)
    before = tree(out)
    for extra in ((), ("--overwrite",)):
        code, err = run_main(data, out, tokenizer_path, "--emit-documents", *extra)
        assert code == 2 and rel in err and "did not write" in err, err
        assert tree(out) == before


def test_a_symlinked_subfolder_is_refused_and_what_it_points_at_is_kept(done, tmp_path, tokenizer_path):
    data, out = done
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "part-00000.jsonl").write_text("mine")
    for name in sorted(p.name for p in (out / "documents").iterdir()):
        (out / "documents" / name).unlink()
    (out / "documents").rmdir()
    (out / "documents").symlink_to(elsewhere, target_is_directory=True)
    for extra in ((), ("--overwrite",)):
        code, err = run_main(data, out, tokenizer_path, "--emit-documents", *extra)
        assert code == 2 and "documents" in err and "symbolic link" in err, err
        assert (elsewhere / "part-00000.jsonl").read_text() == "mine"
        assert (out / "documents").is_symlink()


def test_a_rerun_replaces_only_listed_files(done, tokenizer_path):
    data, out = done
    before = tree(out)
    assert run_main(data, out, tokenizer_path, "--emit-documents")[0] == 0
    after = tree(out)
    assert after.keys() == before.keys()
    assert {k: v for k, v in after.items() if k != "manifest.json" and k != "report.html"} == \
        {k: v for k, v in before.items() if k != "manifest.json" and k != "report.html"}
    # --overwrite with another job: the earlier files go, nothing else remains
    assert run_main(data, out, tokenizer_path, "--overwrite", seq_len=32)[0] == 0
    assert not (out / "documents").exists() and not (out / TEMP_DIR).exists() and not (out / LOCK_FILE).exists()
    assert manifest_of(out)[m.K_SEQ_LEN] == 32


def test_a_foreign_manifest_is_refused(tmp_path, tokenizer_path):
    data = good_jsonl(tmp_path / "in.jsonl", ["one document"])
    out = tmp_path / "d"
    out.mkdir()
    (out / "manifest.json").write_text('{"name": "my package"}')
    for extra in ((), ("--overwrite",)):
        code, err = run_main(data, out, tokenizer_path, *extra)
        assert code == 2 and "manifest.json" in err and "did not write" in err, err
    assert (out / "manifest.json").read_text() == '{"name": "my package"}'


# ---------------------------------------------------------------------------------------------- the lock


def test_a_live_holder_is_refused_naming_it(tmp_path, tokenizer_path):
    data = good_jsonl(tmp_path / "in.jsonl", ["one document"])
    out = tmp_path / "d"
    out.mkdir()
    lock = acquire_lock(str(out), ["tokenmill", "prepare", "--the-holder"])
    try:
        code, err = run_main(data, out, tokenizer_path)
        line = err.strip()
        assert code == 2 and "\n" not in line and "in use by another tokenmill run" in line, line
        assert f"pid {os.getpid()}" in line and socket.gethostname() in line and "--the-holder" in line
    finally:
        lock.release()
    assert not (out / LOCK_FILE).exists()
    assert run_main(data, out, tokenizer_path)[0] == 0


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, tokenizer_path):
    data = good_jsonl(tmp_path / "in.jsonl", ["one document"])
    out = tmp_path / "d"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "token": "x"}))
    assert run_main(data, out, tokenizer_path)[0] == 0
    assert not (out / LOCK_FILE).exists()


def test_a_store_lock_is_exclusive_and_a_dead_local_holder_taken_over(memfs):
    out = f"memory://{memfs}/out"
    claim = claim_output(out, "fp", overwrite=False)
    with pytest.raises(OutputError, match="in use by another tokenmill run .*pid"):
        acquire_lock(out)
    claim.release()
    again = acquire_lock(out)
    again.release()
    import fsspec

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    fs = fsspec.filesystem("memory")
    fs.pipe_file(f"{memfs}/out/{LOCK_FILE}", json.dumps({"host": socket.gethostname(),
                                                          "pid": int(dead.stdout)}).encode())
    taken = acquire_lock(out)
    assert taken.took_over["pid"] == int(dead.stdout)
    taken.release()
    fs.pipe_file(f"{memfs}/out/{LOCK_FILE}", json.dumps({"host": "another-host", "pid": 1}).encode())
    with pytest.raises(OutputError, match="another-host"):
        acquire_lock(out)


# ---------------------------------------------------------------------------------------------- the commit


def _plan(tmp_path, n_files: int = 3):
    files = []
    for i in range(n_files):
        path = tmp_path / f"in{i}.jsonl"
        path.write_text("".join(json.dumps({"text": f"doc {i} {j}"}) + "\n" for j in range(5)))
        files.append(InputFile(str(path), "jsonl", None, path.stat().st_size))
    streams = plan_streams(files, stream_bytes=min(f.size for f in files))  # one whole file a stream
    return files, [stream_plan(s) for s in streams]


def _result(stream: int) -> StreamResult:
    from schemas.manifest import Counts

    return StreamResult(stream=stream, counts=Counts())


def test_the_commit_refuses_a_missing_and_a_repeated_stream_naming_them(tmp_path):
    files, planned = _plan(tmp_path)
    inputs = [{"url": f.url, "format": f.format, "compression": None, "size": f.size} for f in files]
    out = tmp_path / "out"
    out.mkdir()
    base = {m.K_FORMAT: m.DOCUMENTS_FORMAT, m.K_INPUTS: inputs}
    with pytest.raises(IncompleteResultError, match=r"no result from stream 1 of 3"):
        commit([_result(0), _result(2)], str(out), base, 0.0, planned)
    with pytest.raises(IncompleteResultError, match=r"more than one result from stream 2 of 3"):
        commit([_result(0), _result(1), _result(2), _result(2)], str(out), base, 0.0, planned)
    with pytest.raises(IncompleteResultError, match=r"no result from streams 0, 1.*results from unplanned stream 7"):
        commit([_result(2), _result(7)], str(out), base, 0.0, planned)
    assert not (out / "manifest.json").exists()
    check_complete([_result(0), _result(1), _result(2)], planned, inputs)  # complete: no error
    commit([_result(0), _result(1), _result(2)], str(out), base, 0.0, planned)
    assert manifest_of(out)[m.K_STREAMS] == 3


def test_the_commit_refuses_a_plan_that_leaves_part_of_an_input_unread(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps({"text": f"document {j}"}) + "\n" for j in range(50)))
    f = InputFile(str(path), "jsonl", None, path.stat().st_size)
    inputs = [{"url": f.url, "format": f.format, "compression": None, "size": f.size}]
    planned = [stream_plan(s) for s in plan_streams([f], stream_bytes=100)]  # byte ranges of whole lines
    assert len(planned) > 3
    results = [_result(i) for i, _ in planned]
    check_complete(results, planned, inputs)
    for drop in (len(planned) - 1, 1):  # the tail of the file, a range in the middle
        holed = [(i, splits) for i, splits in planned if i != drop]
        with pytest.raises(IncompleteResultError, match=f"does not cover input '{path}'"):
            check_complete([r for r in results if r.stream != drop], holed, inputs)
    with pytest.raises(IncompleteResultError, match="never-planned"):
        check_complete(results, planned, inputs + [{"url": "never-planned.jsonl", "format": "jsonl", "size": 5}])


def test_an_incomplete_run_is_one_line_rc_1_and_no_manifest(tmp_path, tokenizer_path, monkeypatch, capsys):
    import transforms.output.commit as commit_module

    data = good_jsonl(tmp_path / "in.jsonl", ["one document", "two documents"])
    real = commit_module.check_complete
    monkeypatch.setattr(commit_module, "check_complete", lambda results, planned, inputs: real(
        results + results, planned, inputs))  # as if the runner had delivered every result twice
    out = tmp_path / "out"
    code = cli.main(["prepare", "-i", data, "-t", tokenizer_path, "--seq-len", "16", "-o", str(out),
                     "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and "more than one result from stream 0" in err, err
    assert not (out / "manifest.json").exists()


# ------------------------------------------------------------------------------------- files a recipe names


def test_a_fasttext_scorer_given_a_non_model_fails_before_the_output_is_touched(done, tmp_path, tokenizer_path,
                                                                                 capsys):
    data, out = done
    (tmp_path / "not-a-model.bin").write_bytes(b"\x00" * 64)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"scorers:\n  - {{name: fasttext, params: {{model: {tmp_path / 'not-a-model.bin'}}}}}\n"
                      "select: {min_score: 0.5}\n")
    before = tree(out)
    code = cli.main(["prepare", "-i", data, "-t", tokenizer_path, "--seq-len", "16", "-o", str(out),
                     "--no-progress", "--recipe", str(recipe), "--overwrite"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "not a fastText model" in err and "not-a-model.bin" in err, err
    assert tree(out) == before
    recipe.write_text(f"filters:\n  - {{name: c4_badwords, params: {{lists_dir: {tmp_path / 'nowhere'}}}}}\n")
    code = cli.main(["filter", "-i", data, "-o", str(tmp_path / "f"), "--no-progress", "--recipe", str(recipe)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "lists_dir" in err and "nowhere" in err, err
    assert not (tmp_path / "f").exists()


# --------------------------------------------------------------------------------------------- --verify


def test_verify_names_every_file_the_manifest_does_not_list(done, capsys):
    _, out = done
    assert cli.main(["inspect", str(out), "--verify"]) == 0
    capsys.readouterr()
    (out / "stray.txt").write_text("x")
    (out / TEMP_DIR).mkdir()
    (out / TEMP_DIR / "s00000-p-0123456789ab-rejected.jsonl").write_text("x")
    (out / "shards" / "extra").mkdir()
    (out / "shards" / "extra" / "x.parquet").write_text("x")
    assert cli.main(["inspect", str(out), "--verify"]) == 1
    report = capsys.readouterr().out
    for rel in ("stray.txt", f"{TEMP_DIR}/s00000-p-0123456789ab-rejected.jsonl", "shards/extra/x.parquet"):
        assert rel in report, report


def test_a_store_without_exclusive_create_still_refuses_a_live_holder(memfs, monkeypatch):
    import fsspec

    fs = fsspec.filesystem("memory")
    real_open = type(fs)._open

    def no_exclusive(self, path, mode="rb", **kwargs):
        if "x" in mode:
            raise NotImplementedError("no exclusive create here")
        return real_open(self, path, mode, **kwargs)

    monkeypatch.setattr(type(fs), "_open", no_exclusive)
    out = f"memory://{memfs}/plain"
    fs.makedirs(f"{memfs}/plain", exist_ok=True)
    first = acquire_lock(out, ["tokenmill", "prepare", "--first"])
    with pytest.raises(OutputError, match="--first"):
        acquire_lock(out)  # the holder is this (live) process
    first.release()
    assert not fs.exists(f"{memfs}/plain/{LOCK_FILE}")
    acquire_lock(out).release()
