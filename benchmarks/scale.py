"""Scale on one machine: the full recipe over 1, 2 and 4 GB of real text; throughput and peak memory at each size.

The text is by default the real ``mix`` corpus of ``benchmarks/corpora.py`` (~1.1 GB of text, 1.2 GB of JSONL =
1.12 GiB: the multilingual prose corpus, the code corpus and every other UTF-8 text file of Debian's
``linux-source`` tree up to 1 MB, one document per file, interleaved; built and cached in ``.bench-cache/corpora``
on first use, with ``apt-get download``). ``--corpus multilingual`` or ``code`` takes a smaller one, ``--slice-mb N``
the first N MB of one, a glob for your JSONL files, ``--corpus generated`` the generated corpus of prepare_throughput.py
(about --size-mb MB). A size is in GB of JSONL (GB = 2^30 bytes here). Sizes past what the corpus holds (2 and 4 GB
of the mix) repeat it in variants whose paragraphs are reordered and about 1 in 4 distinct words respelled
(``prepare_throughput.perturb``), so that the corpus grows the way more real text would rather than by exact copies
(MinHash still finds many: a real crawl has near-copies too); the report says how many variants each size holds.
Each size is a prefix of the next, written once as 256 MB JSONL files in the workdir (cached). The corpus used is
printed first.

Each size runs ``tokenmill prepare`` (the whole command, default options, a fresh process) with the full recipe:
language ID (any language), Gopher repetition and C4 filters, exact and MinHash dedup, a length scorer with a token
budget of a third of the tokens, best-fit packing, a row shuffle; a 32k BPE trained on the first size's text. The
peak RSS of the whole process tree is sampled every 50 ms. Targets (informational, printed PASS/MISS): 4x the input
gives at most 1.5x the peak RSS, and throughput (MB of input per second) falls by at most 20%.

    .venv/bin/python benchmarks/scale.py [--sizes-gb 1 2 4] [--corpus mix] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from prepare_throughput import (corpus_arguments, corpus_files, fmt_gb, generated_corpus, iter_json_records, log,
                                machine_line, perturb, run_benchmark, run_measured, tail, verdict)
from prepare_throughput import tokenmill_command as tokenmill  # the argv of a tokenmill command

FILE_BYTES = 256 << 20
GB = 1 << 30
CORPUS_VERSION = 2
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


def base_key(files: list[str]) -> tuple[list[list[Any]], str]:
    """The identity of the base corpus's files (paths, sizes, mtimes) and a short key of it."""
    identity = [[os.path.abspath(f), os.path.getsize(f), os.stat(f).st_mtime_ns] for f in files]
    return identity, hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:12]


def corpus(workdir: Path, base: list[str], sizes: list[float], text_field: str,
           id_field: str) -> tuple[dict[float, list[str]], dict[float, int]]:
    """({size in GB: its JSONL files}, {size: variants of the base it holds}), each size a prefix of the next (cached
    in the workdir): the base corpus's records in order, then again in respelled variants until the size is reached."""
    identity, key = base_key(base)
    directory = workdir / f"corpus-{key}"
    meta_path = directory / "corpus.json"
    want = {"version": CORPUS_VERSION, "base": identity, "sizes": sorted(sizes)}
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in want} == want and all(os.path.exists(p) for ps in meta["files"].values()
                                                          for p in ps):
            log(f"reusing the corpus in {directory}")
            return ({float(k): v for k, v in meta["files"].items()},
                    {float(k): v for k, v in meta["variants"].items()})
    directory.mkdir(parents=True, exist_ok=True)
    log(f"writing {', '.join(f'{s:g}' for s in sorted(sizes))} GB of JSONL from the corpus ...")
    written, paths, out = 0, [], None
    marks: dict[float, list[str]] = {}
    variants: dict[float, int] = {}
    targets = sorted(sizes)
    variant = 0
    while targets:
        respell: dict[str, str] = {}
        any_record = False
        if variant:
            log(f"  past the corpus at {written / GB:.2f} GB: variant {variant} (paragraphs reordered, words "
                "respelled) ...")
        for path in base:
            for rec in iter_json_records(path):
                text = rec.get(text_field) if isinstance(rec, dict) else None
                if not isinstance(text, str):
                    continue
                any_record = True
                text = text if variant == 0 else perturb(text, variant, 17, respell)
                line = json.dumps({"id": f"v{variant}/{rec.get(id_field)}", "text": text}, ensure_ascii=False) + "\n"
                if out is None or out.tell() >= FILE_BYTES:
                    if out is not None:
                        out.close()
                    paths.append(str(directory / f"part-{len(paths):04d}.jsonl"))
                    out = open(paths[-1], "w", encoding="utf-8")
                out.write(line)
                written += len(line.encode("utf-8"))
                while targets and written >= targets[0] * GB:
                    out.flush()
                    variants[targets[0]] = variant + 1
                    marks[targets.pop(0)] = list(paths)  # the last file may be shared with the next size: cut it
                    out.close()
                    out = None
                if not targets:
                    break
            if not targets:
                break
        if not any_record:
            raise SystemExit("the corpus has no record with text")
        variant += 1
    if out is not None:
        out.close()
    meta_path.write_text(json.dumps(want | {"files": {str(k): v for k, v in marks.items()},
                                            "variants": {str(k): v for k, v in variants.items()}}))
    return marks, variants


def benchmark(args: argparse.Namespace, workdir: Path, cores: int) -> int:
    """Each size in turn; the report on stdout."""
    base, description = corpus_files(args, workdir, generated_corpus,
                                     "stdlib sources/docstrings + chatterbot multilingual")
    log(f"corpus: {description}")
    files, variants = corpus(workdir, base, args.sizes_gb, args.text_field, args.id_field)
    base_bytes = sum(os.path.getsize(f) for f in base)
    tok = workdir / f"tok-{base_key(files[min(files)])[1]}.json"
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
    print(f"corpus: {description}")
    held = {size: "a prefix of it" if n == 1 else f"it and {n - 1} respelled variant(s)"
            for size, n in variants.items()}
    print(f"        {base_bytes / GB:.2f} GB of JSONL; "
          + ", ".join(f"{size:g} GB: {held[size]}" for size in sorted(held)))
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
    ap.add_argument("--sizes-gb", type=float, nargs="+", default=[1.0, 2.0, 4.0],
                    help="input sizes, GB (2^30 bytes) of JSONL (default 1 2 4)")
    corpus_arguments(ap, 1000, default="mix")
    ap.add_argument("--workdir", default=None, metavar="DIR", help="kept and reused (default: a temporary folder)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    return run_benchmark(list(sys.argv[1:] if argv is None else argv), parse_args, lambda spec: 0, benchmark,
                         "tokenmill-scale-bench-")


if __name__ == "__main__":
    sys.exit(main())
