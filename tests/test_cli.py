"""The command line: complete help, summary table, Beam pass-through, the demo, the progress side channel."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipelines import cli, demo
from schemas import manifest as m
from tests.conftest import write_jsonl
from transforms.report.progress import ProgressDisplay, ProgressWriter, read_progress

README = Path(__file__).resolve().parent.parent / "README.md"


def test_top_level_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "prepare" in out and "filter" in out and "demo" in out


@pytest.mark.parametrize("command, at_least", [("prepare", 20), ("filter", 14)])
def test_every_option_is_in_help_and_readme(command, at_least, capsys):
    parser = cli.build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    options = [s for a in sub._actions for s in a.option_strings if s.startswith("--") and s != "--help"]
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    help_text = capsys.readouterr().out
    readme = README.read_text()
    assert len(options) >= at_least
    for opt in options:
        assert opt in help_text
        assert f"`{opt}" in readme, f"{opt} is not documented in README.md"


def test_prepare_prints_summary_and_passes_beam_options(tmp_path, tokenizer_path, ml_texts, capsys):
    data = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in ml_texts[:200]] + [b"{oops\n"])
    out = tmp_path / "out"
    code = cli.main(["prepare", "-i", data, "-t", tokenizer_path, "--seq-len", "128", "-o", str(out),
                     "--runner=FnApiRunner", "--direct_num_workers=1"])
    assert code == 0
    err = capsys.readouterr().err
    assert re.search(r"documents written\s+200", err)
    assert re.search(r"malformed_json\s+1", err)
    assert "padding" in err and "throughput" in err and str(out) in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest[m.K_JOB]["argv"][:2] == ["tokenmill", "prepare"]
    assert manifest[m.K_RUNNER]["runner"] == "FnApiRunner"


def test_stray_positional_argument_is_an_error(tmp_path, tokenizer_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["prepare", "-i", "x.jsonl", "-t", tokenizer_path, "--seq-len", "8", "-o", str(tmp_path), "extra"])
    assert exc.value.code == 2
    assert "unrecognized arguments: extra" in capsys.readouterr().err


def test_demo_runs_with_no_download(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "_TRAIN_SAMPLE_CHARS", 400_000)
    out = tmp_path / "demo"
    assert cli.main(["demo", "--output", str(out), "--vocab-size", "600", "--seq-len", "512", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert f"manifest: {out.resolve()}/result/manifest.json" in captured.out
    assert "documents written" in captured.err
    manifest = json.loads((out / "result" / "manifest.json").read_text())
    c = manifest[m.K_COUNTS]
    assert c["docs_written"] > 1000 and c["records"] == c["docs_written"] + sum(c["docs_rejected"].values())
    assert any(i["url"].endswith(".jsonl.gz") for i in manifest[m.K_INPUTS])


def test_progress_side_channel_sums_workers(tmp_path):
    a, b = ProgressWriter(str(tmp_path)), ProgressWriter(str(tmp_path))
    a.add(force=True, docs=3, records=5, bytes=1_000_000)
    b.add(force=True, docs=4, records=4, bytes=2_000_000, streams=1)
    b.add(docs=100)  # within the interval: not written yet
    assert read_progress(str(tmp_path)) == {"docs": 7, "records": 9, "bytes": 3_000_000, "tokens": 0, "streams": 1}
    display = ProgressDisplay(str(tmp_path), total_bytes=6_000_000, total_streams=None)
    line = display.line()
    assert "9 records  7 docs" in line and "3.0 MB (50.0%)" in line and "MB/s" in line and "docs/s" in line
    assert "ETA" not in line  # too early to tell
    display._start -= 10  # ten seconds in, half the input read: about ten seconds left
    assert "ETA 10s" in display.line()
    assert "tokens" not in line  # a filter run has none
    a.add(force=True, tokens=2_500_000)
    assert "2.5M tokens" in ProgressDisplay(str(tmp_path), total_bytes=6_000_000, total_streams=None).line()


def test_workers_run_prints_only_the_summary(tmp_path, tokenizer_path, ml_texts):
    import subprocess
    import sys

    texts = ml_texts[:1500]
    for part in range(3):  # three files of about a stream each: several streams for the two workers
        write_jsonl(tmp_path / f"in-{part}.jsonl", [{"text": t * 24} for t in texts[part::3]])
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "tokenmill"), "prepare", "-i", str(tmp_path / "in-*.jsonl"),
         "-t", tokenizer_path,
         "--seq-len", "128", "-o", str(out), "--workers", "2", "--stream-mb", "1"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest[m.K_COUNTS]["docs_written"] == len(texts) and len(manifest[m.K_SHARDS]) >= 2
    noise = [line for line in proc.stderr.splitlines() if re.match(r"(INFO|WARNING|DEBUG)\b", line)]
    assert not noise, proc.stderr
    assert re.search(r"documents written\s+1,500", proc.stderr)
