"""Scale on one machine: the full recipe over 1, 2 and 4 GB of real text; throughput and peak memory at each size.

The text is Debian's ``linux-source`` package (fetched with ``apt-get download``: a package registry, nothing is
crawled): every C source and header, every document of ``Documentation/`` (English, and the Chinese, Japanese,
Korean, Italian, Spanish translations) and the rest of the tree's text files, about 1.3 GB, one document per file
(files over 1 MB and non-UTF-8 files are left out). Sizes past what the tree holds repeat it in variants whose
paragraphs are reordered and about 1 in 4 distinct words respelled (``prepare_throughput.perturb``), so that the
corpus grows the way more real text would rather than by exact copies (MinHash still finds many: a real crawl has
near-copies too). Each size is a prefix of the next, written once as 256 MB JSONL files in the workdir (cached).

Each size runs ``tokenmill prepare`` (the whole command, default options, a fresh process) with the full recipe:
language ID (any language), Gopher repetition and C4 filters, exact and MinHash dedup, a length scorer with a token
budget of a third of the tokens, best-fit packing, a row shuffle; a 32k BPE trained on the first size's text. The
peak RSS of the whole process tree is sampled every 50 ms. Targets (informational, printed PASS/MISS): 4x the input
gives at most 1.5x the peak RSS, and throughput (MB of input per second) falls by at most 20%.

    .venv/bin/python benchmarks/scale.py [--sizes-gb 1 2 4] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any, Iterator

from prepare_throughput import fmt_gb, log, machine_line, perturb, run_benchmark, run_measured, tail, verdict
from prepare_throughput import tokenmill_command as tokenmill  # the argv of a tokenmill command

PACKAGE = "linux-source-6.1"
FILE_BYTES = 256 << 20
MAX_DOC_BYTES = 1 << 20
GB = 1 << 30
CORPUS_VERSION = 1
TARGET_RSS_GROWTH = 1.5
TARGET_THROUGHPUT_FALL = 0.20
RECIPE = """\
filters:
  - {name: language, params: {languages: null, min_score: 0.0}}
  - {name: gopher_repetition}
  - {name: c4_quality, params: {filter_no_terminal_punct: false}}
dedup: {exact: true, minhash: {ngram: 5, bands: 14, rows: 8}}
scorers: [length]
select: {tokens: BUDGET}
"""


def source_tarball(workdir: Path) -> Path:
    """The kernel source tarball inside the package (downloaded and unpacked once)."""
    root = workdir / "debian"
    found = sorted(root.glob("root/usr/src/linux-source-*.tar.xz"))
    if found:
        return found[-1]
    root.mkdir(parents=True, exist_ok=True)
    log(f"downloading {PACKAGE} with apt-get download ...")
    done = subprocess.run(["apt-get", "download", PACKAGE], cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"apt-get download {PACKAGE} failed (apt-get update first?): {done.stderr.strip()}")
    deb = sorted(root.glob(f"{PACKAGE}_*.deb"))[-1]
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root / "root")], check=True)
    return sorted(root.glob("root/usr/src/linux-source-*.tar.xz"))[-1]


def tree_documents(tarball: Path) -> Iterator[tuple[str, str]]:
    """(path, text) of every UTF-8 regular file up to 1 MB in the tarball, in its order."""
    with tarfile.open(tarball, "r:xz") as tar:
        for member in tar:
            if not member.isfile() or member.size == 0 or member.size > MAX_DOC_BYTES:
                continue
            data = tar.extractfile(member).read()
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if "\x00" not in text and text.strip():
                yield member.name, text


def corpus(workdir: Path, tarball: Path, sizes: list[float]) -> dict[float, list[str]]:
    """{size in GB: its JSONL files}, each size a prefix of the next (cached in the workdir)."""
    directory = workdir / "corpus"
    meta_path = directory / "corpus.json"
    want = {"version": CORPUS_VERSION, "tarball": tarball.name, "sizes": sorted(sizes)}
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in want} == want and all(os.path.exists(p) for ps in meta["files"].values()
                                                          for p in ps):
            log(f"reusing the corpus in {directory}")
            return {float(k): v for k, v in meta["files"].items()}
    directory.mkdir(parents=True, exist_ok=True)
    log(f"writing {', '.join(f'{s:g}' for s in sorted(sizes))} GB of kernel text as JSONL ...")
    docs = list(tree_documents(tarball))
    written, paths, out = 0, [], None
    marks: dict[float, list[str]] = {}
    targets = sorted(sizes)
    variant = 0
    while targets:
        respell: dict[str, str] = {}
        for path, text in docs:
            text = text if variant == 0 else perturb(text, variant, 17, respell)
            line = json.dumps({"id": f"v{variant}/{path}", "text": text}, ensure_ascii=False) + "\n"
            if out is None or out.tell() >= FILE_BYTES:
                if out is not None:
                    out.close()
                paths.append(str(directory / f"part-{len(paths):04d}.jsonl"))
                out = open(paths[-1], "w", encoding="utf-8")
            out.write(line)
            written += len(line.encode("utf-8"))
            while targets and written >= targets[0] * GB:
                out.flush()
                marks[targets.pop(0)] = list(paths)  # the last file may be shared with the next size: cut it here
                out.close()
                out = None
            if not targets:
                break
        variant += 1
    meta_path.write_text(json.dumps(want | {"files": {str(k): v for k, v in marks.items()}}))
    return marks


def benchmark(args: argparse.Namespace, workdir: Path, cores: int) -> int:
    """Each size in turn; the report on stdout."""
    tarball = source_tarball(workdir)
    files = corpus(workdir, tarball, args.sizes_gb)
    tok = workdir / "tok.json"
    first = files[min(files)]
    if not tok.exists():
        log("training a 32k tokenizer on the first size ...")
        argv = tokenmill("train-tokenizer", "--vocab-size", "32000", "-o", str(tok), "--no-progress", "--overwrite",
                         *[a for f in first for a in ("-i", f)])
        code, _, _, _ = run_measured(argv, workdir / "tok.log")
        if code != 0:
            raise SystemExit(f"train-tokenizer failed:\n{tail(workdir / 'tok.log')}")
    rows: list[dict[str, Any]] = []
    for size in sorted(files):
        size_bytes = sum(os.path.getsize(f) for f in files[size])
        recipe = workdir / f"recipe-{size:g}.yaml"
        recipe.write_text(RECIPE.replace("BUDGET", str(size_bytes // 12)))  # ~a third of the tokens (4 B a token)
        out = workdir / f"out-{size:g}gb"
        log(f"running tokenmill prepare on {size:g} GB ...")
        argv = tokenmill("prepare", "-t", str(tok), "--seq-len", "2048", "--recipe", str(recipe), "--packing",
                         "best-fit", "--shuffle-seed", "7", "-o", str(out), "--overwrite", "--no-progress",
                         *[a for f in files[size] for a in ("-i", f)])
        code, seconds, peak, _ = run_measured(argv, workdir / f"run-{size:g}.log")
        if code != 0:
            raise SystemExit(f"prepare on {size:g} GB failed:\n{tail(workdir / f'run-{size:g}.log')}")
        manifest = json.loads((out / "manifest.json").read_text())
        rows.append({"size": size, "bytes": size_bytes, "seconds": seconds, "peak": peak,
                     "records": manifest["counts"]["records"], "written": manifest["counts"]["docs_written"]})
        log(f"  {seconds:.0f} s, peak {fmt_gb(peak)}")
    print("")
    print(f"machine: {machine_line()}")
    print(f"corpus: {tarball.name} (C, headers, Documentation/ in several languages), variants past the tree")
    print(f"recipe: {' '.join(RECIPE.split())}; best-fit 2048, shuffle; 32k BPE")
    print(f"{'input':>8} {'documents':>11} {'kept':>10} {'seconds':>8} {'MB/s':>7} {'peak RSS':>9}")
    for r in rows:
        print(f"{r['bytes'] / GB:>7.2f}G {r['records']:>11,} {r['written']:>10,} {r['seconds']:>8.0f} "
              f"{r['bytes'] / 1e6 / r['seconds']:>7.2f} {fmt_gb(r['peak']):>9}")
    small, big = rows[0], rows[-1]
    growth = big["peak"] / small["peak"]
    fall = 1 - (big["bytes"] / big["seconds"]) / (small["bytes"] / small["seconds"])
    scale = big["bytes"] / small["bytes"]
    print(f"target: {scale:.1f}x the input gives <= {TARGET_RSS_GROWTH:g}x the peak RSS: {growth:.2f}x "
          f"{verdict(growth <= TARGET_RSS_GROWTH)}")
    print(f"target: throughput falls by <= {TARGET_THROUGHPUT_FALL:.0%}: {fall:+.1%} "
          f"{verdict(fall <= TARGET_THROUGHPUT_FALL)}")
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes-gb", type=float, nargs="+", default=[1.0, 2.0, 4.0], help="input sizes (default 1 2 4)")
    ap.add_argument("--workdir", default=None, metavar="DIR", help="kept and reused (default: a temporary folder)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    return run_benchmark(list(sys.argv[1:] if argv is None else argv), parse_args, lambda spec: 0, benchmark,
                         "tokenmill-scale-bench-")


if __name__ == "__main__":
    sys.exit(main())
