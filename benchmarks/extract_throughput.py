"""Throughput, agreement and memory benchmark of HTML text extraction from WARC files against datatrove's pipeline.

What it measures, in one run, on the same ``.warc.gz`` files and the same cores (every system in a fresh process):

* datatrove itself: ``WarcReader -> Trafilatura() -> JsonlWriter`` on a ``LocalPipelineExecutor`` with tasks =
  workers = cores; Trafilatura with datatrove's defaults (favour_precision, deduplicate, no comments, 1 s per
  document in its sandbox process; a document over the limit is dropped); ``executor.run()`` timed, imports not.
* ``tokenmill filter --input F.warc.gz ... --recipe R`` where R is a recipe holding only the extract stage,
  ``{name: extract, params: {engine: trafilatura}}``, and the same with ``engine: resiliparse``; timed twice, each
  in a fresh process: ``pipelines.filter.run()`` from the call to the manifest written, imports not (as datatrove's
  ``executor.run()``: like for like, the figure the 10x target is checked on), and the whole command (interpreter
  start and imports included: about 1.5 s more); default options (which give the recipe every core once the input
  is 16 MB or more).

Throughput is MB of HTML (the HTTP payload bytes of the response records whose payload type is text/html or
application/xhtml+xml, MB = 10^6 bytes) and documents (those records) per wall-clock second; documents in and out
(kept with non-empty text) for each system and each tokenmill engine's ratio to datatrove.
Agreement, so that a speed win is not a behaviour change: documents are matched by WARC-Record-ID (or by URL, when a
reader names them otherwise); the share of HTML records on which a system and datatrove make the same decision
(both kept or both dropped) and, of those both kept, the share with identical text. Time-outs are a wall-clock
limit (1 s per page on both sides), so which big pages hit it varies with machine load; and datatrove's trafilatura
dedup cache spans the documents of a process, tokenmill's is emptied per document. So every record the trafilatura
engine kept with another text than datatrove's (or that datatrove dropped) is extracted again here, alone, with
datatrove's Trafilatura (no time limit, cache empty; at most 300 of them); the target is the same outcome on the
records left once those that match it, and those tokenmill timed out on, are set aside.

The default corpus is real HTML nobody here wrote: the Debian packages ``debian-handbook`` (the Debian
Administrator's Handbook in 26 languages: Latin, Cyrillic, Greek, Arabic/Persian and CJK scripts, DocBook XHTML, ~62
MB) and ``python3.11-doc`` (the Python documentation: English prose and code, Sphinx HTML, ~51 MB), fetched with
``apt-get download`` (a package registry, so nothing is crawled; both packages ship plain HTML files as a web server
would serve them, in several scripts and in prose and code) and unpacked with ``dpkg-deb -x`` into the workdir,
cached there. Every page gets the URL it has on the web (debian-handbook.info/browse/LANG/stable/...,
docs.python.org/3.11/...). The pages (all of them, or a deterministic random subset of about --size-mb) are shuffled
with a fixed seed and written as several ``.warc.gz`` files laid out as Common Crawl's: a warcinfo record, then for
each capture a request, a response (HTTP/1.1 status and headers, Content-Type text/html with the charset the page
declares, WARC-Identified-Payload-Type, SHA-1 block and payload digests) and a metadata record, one gzip member per
record, fixed dates and record ids derived from the URL; about 1 in 20 captures is a non-HTML file of the same sites
(CSS, JavaScript, images, reST sources as text/plain) that a WARC reader must skip. The same pages give
byte-identical files on every run. ``--warc GLOB`` uses your own WARC files instead.

Memory (``--memory``): a ~1 GB WARC (1 GB of HTML payload in one ``.warc.gz`` file of ~280 MB) is built by
repeating the corpus pages in variants: variant 0 is the page itself, variant v > 0 has ``?rev=v`` appended to its
URL and about 1 in 4 distinct words of 5+ characters in the text between tags respelled (two neighbouring letters
swapped, the same way everywhere in the variant; tags, attributes and entities untouched), so that no copy is an
exact one (MinHash dedup still finds many of them, as it finds the near-copies of a real crawl). A 32k byte-level
BPE tokenizer (4k with --quick) is trained with ``tokenmill train-tokenizer`` on the text the resiliparse engine
extracted from the corpus. Then ``tokenmill prepare --recipe fineweb-full --input big.warc.gz --tokenizer tok.json
--seq-len 2048`` runs (default options) while the RSS of its whole process tree is summed every 50 ms with psutil
(and the largest single process's peak from wait4). The preset is FineWeb's whole chain: url_filter -> extract
(trafilatura) -> language (en) -> gopher_repetition -> gopher_quality -> c4_quality -> fineweb_quality -> MinHash
(keys of that text) -> pii; ``--recipe PATH`` runs another recipe.

Targets (printed with PASS/MISS, never asserted): the resiliparse engine >= 10x datatrove's MB/s on the same cores;
the trafilatura engine's outcome (decision and text) the same as datatrove's on >= 99% of the records, time-outs
aside (as above); with --memory, peak RSS of the prepare process tree <= 4 GB.

Usage (from the repository root):

    .venv/bin/python benchmarks/extract_throughput.py [--size-mb MB] [--workdir DIR] [--quick]
    .venv/bin/python benchmarks/extract_throughput.py --warc 'crawl/*.warc.gz'
    .venv/bin/python benchmarks/extract_throughput.py --memory [--recipe PATH] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import base64
import codecs
import glob
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from prepare_throughput import (GB, MB, fmt_gb, fmt_ratio, log, machine_line, run_benchmark, run_measured, tail,
                                tokenmill_command, verdict)

CORPUS_VERSION = 1  # bump when the WARC writer or the page choice changes, so cached corpora are rebuilt
DEBIAN_PACKAGES = ("debian-handbook", "python3.11-doc")
HANDBOOK_DIR = "usr/share/doc/debian-handbook/html"
PYDOC_DIR = "usr/share/doc/python3.11/html"
HTML_TYPES = ("text/html", "application/xhtml+xml")
OTHER_TYPES = {".css": "text/css", ".js": "application/javascript", ".png": "image/png", ".svg": "image/svg+xml",
               ".gif": "image/gif", ".txt": "text/plain"}
PAGES_PER_OTHER = 20  # one non-HTML capture per this many HTML pages
WARC_FILES = 8
QUICK_MB = 4
SEED = 20240101
CRAWL_START = datetime(2024, 1, 1, tzinfo=timezone.utc)
ENGINES = ("trafilatura", "resiliparse")
FAST_ENGINE = "resiliparse"
TARGET_VS_DATATROVE = 10.0
TARGET_AGREEMENT = 0.99
ALONE_CHECKS = 300  # differing documents re-extracted alone with datatrove's Trafilatura, at most
MEMORY_MB = 1000
QUICK_MEMORY_MB = 50
MEMORY_PRESET = "fineweb-full"
TARGET_RSS_BYTES = 4 * GB
TOKENIZER_VOCAB = 32_000
QUICK_TOKENIZER_VOCAB = 4_000  # what the text of a --quick corpus supports
TOKENIZER_SAMPLE = "20MB"
SEQ_LEN = 2048
_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_.:-]+)|<\?xml[^>]+encoding=["']([A-Za-z0-9_.:-]+)""",
                      re.IGNORECASE)


# ---------------------------------------------------------------------------------------------------------------
# the pages: Debian packages of HTML documentation
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capture:
    """One fetched URL: its body and the content type the server sends."""

    url: str
    body: bytes
    mime: str
    charset: str | None = None

    @property
    def content_type(self) -> str:
        """The HTTP Content-Type header."""
        return f"{self.mime}; charset={self.charset}" if self.charset else self.mime


def debian_root(workdir: Path) -> tuple[Path, list[str]]:
    """The unpacked packages (downloaded and unpacked once, then reused from the workdir) and their .deb names."""
    debs_dir, root = workdir / "debian" / "debs", workdir / "debian" / "root"
    marker = root / ".unpacked.json"
    if marker.exists():
        return root, json.loads(marker.read_text())
    debs_dir.mkdir(parents=True, exist_ok=True)
    if not all(list(debs_dir.glob(f"{p}_*.deb")) for p in DEBIAN_PACKAGES):
        log(f"downloading {', '.join(DEBIAN_PACKAGES)} with apt-get download ...")
        done = subprocess.run(["apt-get", "download", *DEBIAN_PACKAGES], cwd=debs_dir, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"apt-get download {' '.join(DEBIAN_PACKAGES)} failed (run apt-get update first?):\n"
                             f"{done.stderr.strip()}\n(or pass --warc with WARC files of your own)")
    debs = sorted(str(p) for name in DEBIAN_PACKAGES for p in sorted(debs_dir.glob(f"{name}_*.deb"))[-1:])
    shutil.rmtree(root, ignore_errors=True)
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", deb, str(root)], check=True)
    names = [os.path.basename(d) for d in debs]
    marker.write_text(json.dumps(names))
    return root, names


def page_url(site: str, rel: str) -> str:
    """The URL a file of the packages has on the web."""
    if site == HANDBOOK_DIR:
        lang, rest = rel.split("/", 1)
        return f"https://debian-handbook.info/browse/{lang}/stable/{rest}"
    return f"https://docs.python.org/3.11/{rel}"


def declared_charset(body: bytes) -> str | None:
    """The charset a page declares in its first 4 KB (meta charset, http-equiv or the XML declaration)."""
    match = _CHARSET.search(body[:4096])
    return (match.group(1) or match.group(2)).decode("ascii") if match else None


def site_files(root: Path) -> tuple[list[Path], list[Path]]:
    """(HTML files, other servable files) of both sites, sorted; symbolic links left out."""
    html, other = [], []
    for site in (HANDBOOK_DIR, PYDOC_DIR):
        for path in sorted((root / site).rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue
            if path.suffix == ".html":
                html.append(path)
            elif path.suffix in OTHER_TYPES:
                other.append(path)
    return html, other


def capture_of(root: Path, path: Path) -> Capture:
    """The capture of one file of the packages."""
    site = HANDBOOK_DIR if str(path).startswith(str(root / HANDBOOK_DIR)) else PYDOC_DIR
    url = page_url(site, path.relative_to(root / site).as_posix())
    body = path.read_bytes()
    if path.suffix == ".html":
        return Capture(url, body, "text/html", declared_charset(body))
    mime = OTHER_TYPES[path.suffix]
    return Capture(url, body, mime, "utf-8" if mime.startswith("text/") or mime.endswith("javascript") else None)


def corpus_captures(root: Path, size_bytes: int | None) -> list[Capture]:
    """The pages (all, or a seeded random subset of about ``size_bytes`` of HTML) in crawl order, with one
    non-HTML capture after every ``PAGES_PER_OTHER`` pages."""
    html, other = site_files(root)
    rng = random.Random(SEED)
    rng.shuffle(html)
    rng.shuffle(other)
    chosen: list[Path] = []
    total = 0
    for path in html:
        if size_bytes is not None and total >= size_bytes:
            break
        chosen.append(path)
        total += path.stat().st_size
    out: list[Capture] = []
    for n, path in enumerate(chosen):
        out.append(capture_of(root, path))
        if (n + 1) % PAGES_PER_OTHER == 0 and other:
            out.append(capture_of(root, other[(n // PAGES_PER_OTHER) % len(other)]))
    return out


# ---------------------------------------------------------------------------------------------------------------
# writing WARC files as a crawler does
# ---------------------------------------------------------------------------------------------------------------


def record_id(*parts: object) -> str:
    """A deterministic WARC-Record-ID."""
    digest = hashlib.sha1("\x00".join(map(str, parts)).encode("utf-8")).digest()
    return f"<urn:uuid:{uuid.UUID(bytes=digest[:16], version=4)}>"


def sha1_digest(data: bytes) -> str:
    """A WARC digest header value: sha1:BASE32."""
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode("ascii")


def warc_record(headers: list[tuple[str, str]], block: bytes) -> bytes:
    """One WARC/1.0 record, gzipped as its own member (mtime 0: the same bytes every time)."""
    head = "WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    head += f"Content-Length: {len(block)}\r\n\r\n"
    return gzip.compress(head.encode("utf-8") + block + b"\r\n\r\n", compresslevel=6, mtime=0)


def http_date(when: datetime) -> str:
    """RFC 7231 date."""
    return when.strftime("%a, %d %b %Y %H:%M:%S GMT")


def capture_records(cap: Capture, index: int, warcinfo_id: str) -> bytes:
    """request, response and metadata records of one capture, as Common Crawl writes them."""
    when = CRAWL_START + timedelta(seconds=7 * index)
    date = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    host, _, path = cap.url.split("://", 1)[1].partition("/")
    request = (f"GET /{path} HTTP/1.1\r\nUser-Agent: CCBot/2.0 (https://commoncrawl.org/faq/)\r\n"
               "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
               f"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: br,gzip\r\nHost: {host}\r\n"
               "Connection: Keep-Alive\r\n\r\n").encode("ascii")
    http_head = (f"HTTP/1.1 200 OK\r\nDate: {http_date(when)}\r\nServer: nginx\r\nContent-Type: {cap.content_type}\r\n"
                 f"Last-Modified: {http_date(CRAWL_START - timedelta(days=30))}\r\n"
                 f"X-Crawler-Content-Length: {len(cap.body)}\r\nContent-Length: {len(cap.body)}\r\n"
                 "Connection: keep-alive\r\n\r\n").encode("ascii")
    response = http_head + cap.body
    request_id, response_id = record_id("request", cap.url), record_id("response", cap.url)
    fetch_ms = zlib.crc32(cap.url.encode("utf-8")) % 900 + 50
    metadata = f"fetchTimeMs: {fetch_ms}\r\ncharset-detected: {(cap.charset or 'UTF-8').upper()}\r\n".encode("ascii")
    common = [("WARC-Date", date), ("WARC-Warcinfo-ID", warcinfo_id), ("WARC-Target-URI", cap.url)]
    return (
        warc_record([("WARC-Type", "request"), ("WARC-Record-ID", request_id), *common,
                     ("Content-Type", "application/http; msgtype=request"),
                     ("WARC-Block-Digest", sha1_digest(request))], request)
        + warc_record([("WARC-Type", "response"), ("WARC-Record-ID", response_id), *common,
                       ("WARC-Concurrent-To", request_id), ("Content-Type", "application/http; msgtype=response"),
                       ("WARC-Block-Digest", sha1_digest(response)), ("WARC-Payload-Digest", sha1_digest(cap.body)),
                       ("WARC-Identified-Payload-Type", cap.mime)], response)
        + warc_record([("WARC-Type", "metadata"), ("WARC-Record-ID", record_id("metadata", cap.url)), *common,
                       ("WARC-Concurrent-To", response_id), ("Content-Type", "application/warc-fields"),
                       ("WARC-Block-Digest", sha1_digest(metadata))], metadata)
    )


def write_warc(path: Path, captures: Iterable[Capture], first_index: int) -> None:
    """A .warc.gz file: a warcinfo record, then the captures."""
    info_id = record_id("warcinfo", path.name)
    info = ("software: tokenmill-benchmark\r\nformat: WARC File Format 1.0\r\nisPartOf: benchmark-crawl\r\n"
            "description: real HTML documentation pages\r\n").encode("ascii")
    with open(path, "wb") as fh:
        fh.write(warc_record([("WARC-Type", "warcinfo"), ("WARC-Date", CRAWL_START.strftime("%Y-%m-%dT%H:%M:%SZ")),
                              ("WARC-Filename", path.name), ("WARC-Record-ID", info_id),
                              ("Content-Type", "application/warc-fields")], info))
        for n, cap in enumerate(captures):
            fh.write(capture_records(cap, first_index + n, info_id))


def write_warc_files(captures: list[Capture], directory: Path, n_files: int) -> list[str]:
    """The captures in order, as ``n_files`` files of about equal HTML bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    total = sum(len(c.body) for c in captures)
    paths, i, done = [], 0, 0
    for f in range(n_files):
        start = i
        while i < len(captures) and (f == n_files - 1 or done < total * (f + 1) / n_files):
            done += len(captures[i].body)
            i += 1
        path = directory / f"crawl-{f:05d}.warc.gz"
        write_warc(path, captures[start:i], start)
        paths.append(str(path))
    return paths


def cached_warcs(directory: Path, identity: dict[str, Any], build: Any) -> list[str]:
    """WARC files in ``directory``, reused when an earlier run built them with the same ``identity``."""
    meta_path = directory / "corpus.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in identity} == identity and all(os.path.exists(p) for p in meta["paths"]):
            log(f"reusing the WARC files in {directory}")
            return meta["paths"]
    shutil.rmtree(directory, ignore_errors=True)
    t0 = time.perf_counter()
    paths = build(directory)
    meta_path.write_text(json.dumps(identity | {"paths": paths}))
    log(f"  {len(paths)} file(s), {sum(os.path.getsize(p) for p in paths) / MB:.1f} MB compressed, "
        f"{time.perf_counter() - t0:.1f} s")
    return paths


def generated_corpus(workdir: Path, size_mb: float | None, n_files: int) -> list[str]:
    """The Debian-pages corpus as WARC files (built, or reused from the workdir)."""
    root, debs = debian_root(workdir)
    identity = {"version": CORPUS_VERSION, "debs": debs, "size_mb": size_mb, "files": n_files}
    tag = "all" if size_mb is None else f"{size_mb:g}mb"

    def build(directory: Path) -> list[str]:
        """Write the files."""
        log(f"writing {'all the' if size_mb is None else f'~{size_mb:g} MB of'} HTML pages of {', '.join(debs)} "
            f"as {n_files} .warc.gz files ...")
        return write_warc_files(corpus_captures(root, None if size_mb is None else int(size_mb * MB)), directory,
                                n_files)

    return cached_warcs(workdir / f"warc-{tag}-{n_files}", identity, build)


# ---------------------------------------------------------------------------------------------------------------
# reading WARC files back (warcio, independent of both systems): the HTML records and their sizes
# ---------------------------------------------------------------------------------------------------------------


def iter_html_records(files: list[str]) -> Iterator[tuple[str, str, bytes, str]]:
    """(WARC-Record-ID, URL, payload, Content-Type) of every HTML response record of the files."""
    from warcio.archiveiterator import ArchiveIterator

    for path in files:
        with open(path, "rb") as fh:
            for rec in ArchiveIterator(fh):
                if rec.rec_type != "response":
                    continue
                content_type = rec.http_headers.get_header("Content-Type", "") if rec.http_headers else ""
                mime = rec.rec_headers.get_header("WARC-Identified-Payload-Type") or content_type.split(";")[0]
                if mime.strip().lower() in HTML_TYPES:
                    yield (rec.rec_headers.get_header("WARC-Record-ID"), rec.rec_headers.get_header("WARC-Target-URI"),
                           rec.content_stream().read(), content_type)


def html_universe(files: list[str]) -> tuple[dict[str, str], int]:
    """({record id: URL} of the HTML records, their payload bytes)."""
    ids: dict[str, str] = {}
    total = 0
    for rid, url, body, _ in iter_html_records(files):
        ids[rid] = url
        total += len(body)
    return ids, total


# ---------------------------------------------------------------------------------------------------------------
# the systems (datatrove runs in a child process: ``--_child spec.json``; tokenmill as its CLI)
# ---------------------------------------------------------------------------------------------------------------


def text_digest(text: str) -> str:
    """A short digest of an extracted text."""
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def stat_total(value: Any) -> int:
    """A datatrove stats value (an int or a MetricStats dict) as a count."""
    return int(value.get("total", 0)) if isinstance(value, dict) else int(value or 0)


def child_datatrove(spec: dict[str, Any]) -> dict[str, Any]:
    """datatrove's WarcReader -> Trafilatura -> JsonlWriter on a LocalPipelineExecutor; run() timed."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers import JsonlWriter

    output = Path(spec["output"])
    executor = LocalPipelineExecutor(
        pipeline=[WarcReader(spec["input_dir"], glob_pattern="*"), Trafilatura(),
                  JsonlWriter(str(output / "kept"), compression=None)],
        tasks=spec["workers"], workers=spec["workers"], logging_dir=str(output / "logs"), skip_completed=False)
    t0 = time.perf_counter()
    executor.run()
    seconds = time.perf_counter() - t0
    kept = {}
    for path in sorted((output / "kept").glob("*.jsonl")):
        with open(path, "rb") as fh:
            for line in fh:
                obj = json.loads(line)
                kept[obj["id"]] = text_digest(obj["text"])
    stats = json.loads((output / "logs" / "stats.json").read_text())
    reader = next(s["stats"] for s in stats if "Warc" in s["name"])
    extractor = next(s["stats"] for s in stats if "Trafilatura" in s["name"])
    return {"seconds": seconds, "kept": kept, "docs_in": stat_total(reader.get("documents")),
            "extractor": {k: stat_total(extractor.get(k)) for k in ("timeout", "clean_error", "broken_process",
                                                                   "dropped", "forwarded")}}


def child_tokenmill(spec: dict[str, Any]) -> dict[str, Any]:
    """tokenmill filter through its Python API, timed as datatrove is: run() from the call to the manifest written
    (planning, Beam, the recipe's processes and their helpers, reading, extraction, writing, commit), imports not."""
    import logging

    logging.basicConfig(level=logging.ERROR)
    for name in ("apache_beam", "root", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from pipelines.filter import FilterConfig, run

    cfg = FilterConfig(inputs=list(spec["files"]), output=spec["output"], recipe=spec["recipe"], overwrite=True)
    t0 = time.perf_counter()
    manifest = run(cfg, beam_args=[])
    return {"seconds": time.perf_counter() - t0, "docs_out": manifest["counts"]["docs_written"]}


def child_main(spec_path: str) -> int:
    """Entry point of a child process: run datatrove (or tokenmill's API) and write its result next to the spec."""
    spec = json.loads(Path(spec_path).read_text())
    child = child_tokenmill if spec.get("kind") == "tokenmill" else child_datatrove
    Path(spec["result"]).write_text(json.dumps(child(spec)))
    return 0


def run_tokenmill_api(files: list[str], recipe: Path, output: Path, runs: Path, engine: str) -> float:
    """Seconds of ``pipelines.filter.run`` in a fresh interpreter (imports not timed, as datatrove's run())."""
    spec = {"kind": "tokenmill", "files": files, "recipe": str(recipe), "output": str(output),
            "result": str(runs / f"tokenmill-api-{engine}.result.json")}
    spec_path = runs / f"tokenmill-api-{engine}.spec.json"
    spec_path.write_text(json.dumps(spec))
    log_path = runs / f"tokenmill-api-{engine}.log"
    code, _, _, _ = run_measured([sys.executable, str(Path(__file__).resolve()), "--_child", str(spec_path)],
                                 log_path)
    shutil.rmtree(output, ignore_errors=True)
    if code != 0 or not Path(spec["result"]).exists():
        raise RuntimeError(f"tokenmill's run() failed (exit {code}); its output is in {log_path}:\n{tail(log_path)}")
    return json.loads(Path(spec["result"]).read_text())["seconds"]


def run_datatrove(files: list[str], workdir: Path, runs: Path, cores: int) -> dict[str, Any]:
    """datatrove in a fresh interpreter, on a folder of links to exactly these files."""
    dt_input = workdir / "datatrove-input"
    shutil.rmtree(dt_input, ignore_errors=True)
    dt_input.mkdir()
    for n, f in enumerate(files):
        os.symlink(f, dt_input / f"{n:05d}-{os.path.basename(f)}")
    output = workdir / "out" / "datatrove"
    shutil.rmtree(output, ignore_errors=True)
    spec = {"input_dir": str(dt_input), "output": str(output), "workers": cores,
            "result": str(runs / "datatrove.result.json")}
    spec_path = runs / "datatrove.spec.json"
    spec_path.write_text(json.dumps(spec))
    log_path = runs / "datatrove.log"
    code, seconds, _, _ = run_measured([sys.executable, str(Path(__file__).resolve()), "--_child", str(spec_path)],
                                       log_path)
    if code != 0 or not Path(spec["result"]).exists():
        raise RuntimeError(f"datatrove failed (exit {code}); its output is in {log_path}:\n{tail(log_path)}")
    shutil.rmtree(output, ignore_errors=True)
    return json.loads(Path(spec["result"]).read_text()) | {"process_seconds": seconds}


def extract_recipe(workdir: Path, engine: str) -> Path:
    """A recipe YAML with only the extract stage, on ``engine``."""
    path = workdir / f"extract-{engine}.yaml"
    path.write_text(f"filters:\n  - {{name: extract, params: {{engine: {engine}}}}}\n")
    return path


def run_tokenmill_filter(files: list[str], recipe: Path, output: Path, log_path: Path) -> dict[str, Any]:
    """``tokenmill filter --recipe RECIPE``, the whole command timed; kept documents and rejection reasons."""
    cmd = tokenmill_command() + ["filter", "--recipe", str(recipe), "--output", str(output), "--no-progress",
                                 "--overwrite"]
    for f in files:
        cmd += ["--input", f]
    shutil.rmtree(output, ignore_errors=True)
    code, seconds, _, _ = run_measured(cmd, log_path)
    if code != 0:
        last = (tail(log_path, 1) or "no output").strip()
        return {"failed": f"exit {code}: {last} (log: {log_path})"}
    from schemas.documents import iter_documents

    manifest = json.loads((output / "manifest.json").read_text())
    kept = {doc["id"]: (doc["meta"].get("url"), text_digest(doc["text"])) for doc in iter_documents(str(output))}
    rejected: dict[str, str] = {}
    for path in sorted(output.glob("rejected/*.jsonl")):
        with open(path, "rb") as fh:
            for line in fh:
                obj = json.loads(line)
                # a filter stage's rejection names the stage in detail: "<stage>/<reason>"
                detail = str(obj.get("detail") or "")
                rejected[obj.get("id")] = detail if "/" in detail else f"{obj['stage']}/{obj['reason']}"
    counts = manifest["counts"]
    return {"seconds": seconds, "kept": kept, "rejected": rejected,
            "docs_in": counts["records"], "docs_out": counts["docs_written"]}


# ---------------------------------------------------------------------------------------------------------------
# agreement
# ---------------------------------------------------------------------------------------------------------------


def keyed(result: dict[str, Any], universe: dict[str, str]) -> tuple[dict[str, str], dict[str, str], int]:
    """A tokenmill run's documents by WARC-Record-ID (matched by id, else by URL): ({id: kept text digest},
    {id: rejection}, how many kept documents matched no HTML record)."""
    by_url = {url: rid for rid, url in universe.items()}
    kept: dict[str, str] = {}
    unmatched = 0
    for doc_id, (url, digest) in result["kept"].items():
        rid = doc_id if doc_id in universe else by_url.get(url) or by_url.get(doc_id)
        if rid is None:
            unmatched += 1
        else:
            kept[rid] = digest
    rejected = {doc_id if doc_id in universe else by_url.get(doc_id, doc_id): why
                for doc_id, why in result["rejected"].items()}
    return kept, rejected, unmatched


def agreement(ours: dict[str, str], ours_rejected: dict[str, str], ref: dict[str, str], universe: dict[str, str],
              alone_equal: set[str]) -> dict[str, Any]:
    """Same decision (of every HTML record), identical text (of those both kept), the disagreements, and the share
    of records with the same outcome once time-outs are set aside: a record tokenmill timed out on, or one whose
    text tokenmill kept is exactly datatrove's extractor on that record alone (``alone_equal``: datatrove timed out
    on it, or its cross-document dedup cache removed text)."""
    both = ours.keys() & ref.keys()
    n = max(len(universe), 1)
    same_outcome = {rid for rid in universe if (rid in ours) == (rid in ref) and ours.get(rid) == ref.get(rid)}
    ours_timeouts = {rid for rid, why in ours_rejected.items() if why.endswith("/timeout")}
    set_aside = (set(universe) - same_outcome) & (ours_timeouts | alone_equal)
    return {"decision": sum((rid in ours) == (rid in ref) for rid in universe) / n, "both": len(both),
            "text": sum(ours[r] == ref[r] for r in both) / len(both) if both else 1.0,
            "outcome": len(same_outcome) / n, "set_aside": len(set_aside),
            "apart": len(same_outcome) / max(n - len(set_aside), 1),
            "only_ours": len(ours.keys() - ref.keys()), "only_ref": len(ref.keys() - ours.keys()),
            "only_ref_timeouts": len((ref.keys() - ours.keys()) & ours_timeouts), "timeouts": len(ours_timeouts)}


def decode_html(body: bytes) -> str:
    """A payload as datatrove's WarcReader decodes it: UTF-8, else the charset cchardet detects."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        import cchardet

        return body.decode(cchardet.detect(body)["encoding"] or "utf-8", errors="replace")


def alone_check(files: list[str], ours: dict[str, str], ref: dict[str, str]) -> tuple[int, int, set[str]]:
    """(records the trafilatura engine kept with another text than datatrove's or that datatrove dropped, how many
    of them were checked (at most ALONE_CHECKS, evenly spread), those whose text is exactly what datatrove's
    Trafilatura gives for that record alone: its dedup cache empty, no time limit)."""
    from datatrove.pipeline.extractors import Trafilatura
    from trafilatura.deduplication import LRU_TEST

    differing = sorted(rid for rid, digest in ours.items() if ref.get(rid) != digest)
    sample = set(differing[:: max(1, -(-len(differing) // ALONE_CHECKS))])
    extractor = Trafilatura()
    equal = set()
    for rid, _, body, _ in iter_html_records(files):
        if rid in sample:
            LRU_TEST.clear()
            text = extractor.extract(decode_html(body))
            if text is not None and text_digest(text) == ours[rid]:
                equal.add(rid)
    return len(differing), len(sample), equal


# ---------------------------------------------------------------------------------------------------------------
# the throughput benchmark
# ---------------------------------------------------------------------------------------------------------------


def corpus(args: argparse.Namespace, workdir: Path) -> tuple[list[str], str]:
    """(WARC files, description): the user's --warc files or the Debian-pages corpus."""
    if args.warc:
        files = [os.path.abspath(f) for f in sorted(glob.glob(os.path.expanduser(args.warc)))]
        if not files:
            raise SystemExit(f"--warc {args.warc!r} matches no file")
        return files, f"{len(files)} WARC file(s) matching {args.warc!r}"
    files = generated_corpus(workdir, args.size_mb, args.files)
    what = "all pages" if args.size_mb is None else f"~{args.size_mb:g} MB of pages"
    return files, (f"Debian packages {', '.join(DEBIAN_PACKAGES)} ({what}, 26+1 sites' languages), "
                   f"{len(files)} .warc.gz files in {Path(files[0]).parent}")


def benchmark(args: argparse.Namespace, workdir: Path, cores: int) -> int:
    """The whole benchmark in ``workdir``: throughput, or with --memory the memory run."""
    if args.memory:
        return memory_benchmark(args, workdir)
    started = time.perf_counter()
    files, corpus_desc = corpus(args, workdir)
    universe, html_bytes = html_universe(files)
    mb = html_bytes / MB
    runs = workdir / "runs"
    runs.mkdir(exist_ok=True)
    log(f"running datatrove WarcReader -> Trafilatura -> JsonlWriter (tasks={cores}) ...")
    dt = run_datatrove(files, workdir, runs, cores)
    log(f"  {dt['seconds']:.1f} s, {mb / dt['seconds']:.2f} MB/s")
    results: dict[str, dict[str, Any]] = {}
    for engine in ENGINES:
        log(f"running tokenmill filter, extract engine {engine} ...")
        out = workdir / "out" / f"tokenmill-{engine}"
        results[engine] = run_tokenmill_filter(files, extract_recipe(workdir, engine), out,
                                               runs / f"tokenmill-{engine}.log")
        shutil.rmtree(out, ignore_errors=True)
        r = results[engine]
        log(f"  {r['seconds']:.1f} s, {mb / r['seconds']:.2f} MB/s" if "seconds" in r else f"  FAILED: {r['failed']}")
        if "seconds" in r:
            log(f"running tokenmill's filter run(), extract engine {engine} (timed as datatrove's run()) ...")
            r["api_seconds"] = run_tokenmill_api(files, extract_recipe(workdir, engine), out, runs, engine)
            log(f"  {r['api_seconds']:.1f} s, {mb / r['api_seconds']:.2f} MB/s")
    agreements: dict[str, dict[str, Any]] = {}
    for engine, r in results.items():
        if "failed" not in r:
            ours, ours_rejected, unmatched = keyed(r, universe)
            alone: tuple[int, int, set[str]] = (0, 0, set())
            if engine == "trafilatura":
                log("re-extracting the differing documents alone with datatrove's Trafilatura ...")
                alone = alone_check(files, ours, dt["kept"])
            agreements[engine] = agreement(ours, ours_rejected, dt["kept"], universe, alone[2]) | {
                "unmatched": unmatched, "alone": alone[:2] + (len(alone[2]),)}
    print_report(dt, results, agreements, universe, corpus_desc, mb, cores, time.perf_counter() - started)
    return 0


def print_report(dt: dict[str, Any], results: dict[str, dict[str, Any]], agreements: dict[str, dict[str, Any]],
                 universe: dict[str, str], corpus_desc: str, mb: float, cores: int, total_seconds: float) -> None:
    """The final report on stdout."""
    p = print
    n = len(universe)
    dt_rate = mb / dt["seconds"]
    p("")
    p("tokenmill HTML extraction throughput benchmark (WARC -> text)")
    p("=" * 62)
    p(f"machine:    {machine_line()}")
    p(f"corpus:     {corpus_desc}; {n} HTML response records, {mb:.1f} MB of HTML")
    ex = dt["extractor"]
    p(f"datatrove:  read {dt['docs_in']} documents; Trafilatura kept {len(dt['kept'])}, timed out on {ex['timeout']} "
      f"(1 s limit), failed on {ex['clean_error']}, died on {ex['broken_process']}, empty {ex['dropped']}")
    p("throughput: MB of HTML payload (10^6 bytes) and HTML documents per wall second, each system a fresh process")
    p("")
    header = (f"{'system':<60} {'seconds':>8} {'MB/s':>7} {'docs/s':>8} {'docs in':>8} {'docs out':>8} "
              f"{'vs datatrove':>13}")
    p(header)
    p("-" * len(header))
    p(f"{f'datatrove WarcReader->Trafilatura (tasks={cores})':<60} {dt['seconds']:>8.1f} {dt_rate:>7.2f} "
      f"{n / dt['seconds']:>8.1f} {dt['docs_in']:>8} {len(dt['kept']):>8} {'(reference)':>13}")
    for engine, r in results.items():
        name = f"tokenmill filter, extract engine {engine}"
        if "failed" in r:
            p(f"{name:<60} FAILED ({r['failed'].splitlines()[0]})")
            continue
        for label, seconds in ((f"{name}, run()", r["api_seconds"]), (f"{name}, whole command", r["seconds"])):
            rate = mb / seconds
            p(f"{label:<60} {seconds:>8.1f} {rate:>7.2f} {n / seconds:>8.1f} {r['docs_in']:>8} "
              f"{r['docs_out']:>8} {fmt_ratio(rate, dt_rate):>13}")
    p("")
    p("how each was timed: datatrove: executor.run() (imports not timed); tokenmill: pipelines.filter.run() the same "
      "way (like for like), and the whole tokenmill filter command (interpreter start and imports included); "
      "default options")
    p("")
    p("agreement with datatrove: same decision (kept or dropped) on every HTML record; identical text on those "
      "both kept; documents only one side kept")
    header = f"{'system':<60} {'decision':>9} {'both kept':>10} {'same text':>10} {'only ours':>10} {'only dt':>8}"
    p(header)
    p("-" * len(header))
    for engine, a in agreements.items():
        p(f"{f'tokenmill extract engine {engine}':<60} {a['decision']:>9.3%} {a['both']:>10} {a['text']:>10.3%} "
          f"{a['only_ours']:>10} {a['only_ref']:>8}"
          + (f"  ({a['unmatched']} kept matched no record)" if a["unmatched"] else ""))
        rejected = Counter(results[engine]["rejected"].values())
        if rejected:
            p(f"{'':<4}its rejections: " + ", ".join(f"{k} {v}" for k, v in sorted(rejected.items())))
        if engine != "trafilatura":
            p(f"{'':<4}(another extractor than datatrove's: its texts are not expected to be the same)")
            continue
        differing, checked, equal = a["alone"]
        p(f"{'':<4}same outcome (decision and text) on {a['outcome']:.3%} of the records; {differing} of its kept "
          f"texts differ from datatrove's or datatrove has none: of {checked} checked, {equal} are exactly what "
          "datatrove's Trafilatura gives for that record alone (dedup cache empty, no time limit)")
        p(f"{'':<4}{a['only_ref']} kept only by datatrove, of which tokenmill timed out on {a['only_ref_timeouts']} "
          f"({a['timeouts']} tokenmill time-outs, {dt['extractor']['timeout']} datatrove time-outs in all: a 1 s "
          f"wall-clock limit); setting aside those {a['set_aside']} records explained by time-outs or datatrove's "
          f"cross-document dedup, the same outcome on {a['apart']:.3%}")
    p("")
    p("targets (informational, never asserted):")
    fast = results.get(FAST_ENGINE, {})
    if "seconds" in fast:
        rate, whole = mb / fast["api_seconds"], mb / fast["seconds"]
        p(f"  [{verdict(rate >= TARGET_VS_DATATROVE * dt_rate)}] tokenmill extract engine {FAST_ENGINE} >= "
          f"{TARGET_VS_DATATROVE:g}x datatrove's LocalPipelineExecutor on {cores} cores, both run() timed: "
          f"{rate / dt_rate:.2f}x ({rate:.2f} vs {dt_rate:.2f} MB/s; the whole command: {whole / dt_rate:.2f}x)")
    else:
        p(f"  [MISS] tokenmill extract engine {FAST_ENGINE}: did not run")
    if "trafilatura" in agreements:
        a = agreements["trafilatura"]
        p(f"  [{verdict(a['apart'] >= TARGET_AGREEMENT)}] tokenmill extract engine trafilatura: the same outcome as "
          f"datatrove's (decision and text) on >= {TARGET_AGREEMENT:.0%} of the records, time-outs aside: "
          f"{a['apart']:.3%} (with them: {a['outcome']:.3%}; decisions {a['decision']:.3%}, texts of those both "
          f"kept {a['text']:.3%})")
    p("")
    p(f"total benchmark time: {total_seconds:.0f} s")


# ---------------------------------------------------------------------------------------------------------------
# the memory benchmark
# ---------------------------------------------------------------------------------------------------------------

_TEXT_WORD = re.compile(r"(?<![&#\w])[^\W\d_]\w{4,}")
_TAG_OR_TEXT = re.compile(r"(<[^>]*>)")


def respell_html(html: str, variant: int, respell: dict[str, str]) -> str:
    """About 1 in 4 distinct words (5+ characters) of the text between tags respelled, the same way in the whole
    variant: two neighbouring letters after the first one swapped; markup and entities untouched."""

    def swap(match: re.Match) -> str:
        """The variant's spelling of one word."""
        word = match.group(0)
        new = respell.get(word)
        if new is None:
            h = zlib.crc32(f"{variant}:{word}".encode("utf-8"))
            new = word
            if h % 4 == 0:
                i = 1 + (h >> 8) % (len(word) - 2)
                new = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
            respell[word] = new
        return new

    parts = _TAG_OR_TEXT.split(html)
    return "".join(part if k % 2 else _TEXT_WORD.sub(swap, part) for k, part in enumerate(parts))


def known_codec(name: str) -> bool:
    """Whether Python knows this charset."""
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def memory_captures(pages: list[tuple[str, bytes, str]], size_bytes: int) -> Iterator[Capture]:
    """Variants of the pages (URL, payload, Content-Type) until ``size_bytes`` of HTML, each variant shuffled."""
    total = variant = 0
    while total < size_bytes:
        order = list(range(len(pages)))
        random.Random(SEED + variant).shuffle(order)
        respell: dict[str, str] = {}
        for k in order:
            url, body, content_type = pages[k]
            mime, _, params = content_type.partition(";")
            charset = params.split("=", 1)[1].strip().strip("\"'") if "charset=" in params else None
            if variant:
                codec = charset if charset and known_codec(charset) else "utf-8"
                text = body.decode(codec, errors="surrogateescape")
                body = respell_html(text, variant, respell).encode(codec, errors="surrogateescape")
                url = f"{url}{'&' if '?' in url else '?'}rev={variant}"
            yield Capture(url, body, mime.strip(), charset)
            total += len(body)
            if total >= size_bytes:
                return
        variant += 1


def trained_tokenizer(files: list[str], workdir: Path, key: str, vocab: int) -> str:
    """A BPE tokenizer of ``vocab`` tokens trained with ``tokenmill train-tokenizer`` on the text the resiliparse
    engine extracted from ``files`` (cached in the workdir under ``key``)."""
    path = workdir / f"tokenizer-extracted-{vocab}-{key}.json"
    if path.exists():
        log(f"reusing the tokenizer {path}")
        return str(path)
    runs = workdir / "runs"
    runs.mkdir(exist_ok=True)
    extracted = workdir / "out" / "extracted-for-tokenizer"
    log("extracting the corpus text with the resiliparse engine (for the tokenizer) ...")
    r = run_tokenmill_filter(files, extract_recipe(workdir, FAST_ENGINE), extracted, runs / "extract-for-tok.log")
    if "failed" in r:
        raise SystemExit(f"tokenmill filter (extract {FAST_ENGINE}) failed: {r['failed']}")
    log(f"training a {vocab // 1000}k tokenizer with tokenmill train-tokenizer on {TOKENIZER_SAMPLE} ...")
    cmd = tokenmill_command() + ["train-tokenizer", "--input", str(extracted / "documents"), "--output", str(path),
                                 "--vocab-size", str(vocab), "--sample-bytes", TOKENIZER_SAMPLE,
                                 "--no-progress", "--overwrite"]
    code, seconds, _, _ = run_measured(cmd, runs / "train-tokenizer.log")
    if code != 0:
        raise SystemExit(f"tokenmill train-tokenizer failed (exit {code}):\n{tail(runs / 'train-tokenizer.log')}")
    log(f"  {seconds:.0f} s -> {path}")
    shutil.rmtree(extracted, ignore_errors=True)
    return str(path)


def memory_recipe(args: argparse.Namespace) -> str:
    """--recipe, else the fineweb-full preset."""
    return str(Path(args.recipe).resolve()) if args.recipe else MEMORY_PRESET


def memory_benchmark(args: argparse.Namespace, workdir: Path) -> int:
    """Build the big WARC, train the tokenizer, run tokenmill prepare with its process tree's RSS sampled."""
    started = time.perf_counter()
    files, corpus_desc = corpus(args, workdir)
    size_bytes = int(args.memory_mb * MB)
    identity = {"version": CORPUS_VERSION, "base": [[f, os.path.getsize(f)] for f in files], "bytes": size_bytes}
    key = hashlib.sha256(json.dumps(identity["base"]).encode()).hexdigest()[:12]

    def build(directory: Path) -> list[str]:
        """Write the one big file."""
        log(f"writing a WARC of {size_bytes / MB:g} MB of HTML (variants of the corpus pages) ...")
        pages = [(url, body, ct) for _, url, body, ct in iter_html_records(files)]
        directory.mkdir(parents=True)
        path = directory / "big-00000.warc.gz"
        write_warc(path, memory_captures(pages, size_bytes), 0)
        return [str(path)]

    big = cached_warcs(workdir / f"warc-memory-{args.memory_mb:g}mb-{key}", identity, build)
    universe, html_bytes = html_universe(big)
    tokenizer = trained_tokenizer(files, workdir, key, args.vocab_size)
    recipe = memory_recipe(args)
    output = workdir / "out" / "prepare-memory"
    shutil.rmtree(output, ignore_errors=True)
    cmd = tokenmill_command() + ["prepare", "--recipe", recipe, "--input", big[0], "--tokenizer", tokenizer,
                                 "--seq-len", str(SEQ_LEN), "--output", str(output), "--no-progress", "--overwrite"]
    log(f"running tokenmill prepare --recipe {recipe} on {html_bytes / MB:.0f} MB of HTML ...")
    log_path = workdir / "runs" / "prepare-memory.log"
    code, seconds, peak, single = run_measured(cmd, log_path)
    if code != 0:
        raise SystemExit(f"tokenmill prepare failed (exit {code}); see {log_path}:\n{tail(log_path)}")
    counts = json.loads((output / "manifest.json").read_text())["counts"]
    shutil.rmtree(output, ignore_errors=True)
    p = print
    p("")
    p("tokenmill prepare memory benchmark (WARC -> extract -> FineWeb filters -> MinHash -> tokens)")
    p("=" * 62)
    p(f"machine:    {machine_line()}")
    p(f"base:       {corpus_desc}")
    p(f"input:      {big[0]} ({os.path.getsize(big[0]) / MB:.0f} MB compressed): {len(universe)} HTML records, "
      f"{html_bytes / MB:.0f} MB of HTML (variants: URL ?rev=v, 1 in 4 distinct words respelled)")
    p(f"command:    tokenmill prepare --recipe {recipe} --tokenizer {Path(tokenizer).name} --seq-len {SEQ_LEN} "
      "(default options)")
    p(f"result:     {seconds:.0f} s, {html_bytes / MB / seconds:.2f} MB of HTML/s, {len(universe) / seconds:.0f} "
      f"docs/s; records {counts['records']}, written {counts['docs_written']}, tokens {counts['tokens']}, "
      f"sequences {counts.get('sequences')}")
    p("rejected:   " + ", ".join(f"{k} {v}" for k, v in sorted(counts.get("docs_rejected", {}).items())))
    p(f"memory:     peak RSS of the process tree {fmt_gb(peak)} (psutil, summed every 50 ms); largest single "
      f"process {fmt_gb(single)} (wait4)")
    p("")
    p("targets (informational, never asserted):")
    p(f"  [{verdict(peak <= TARGET_RSS_BYTES)}] peak RSS of the whole prepare process tree <= "
      f"{fmt_gb(TARGET_RSS_BYTES)} on a ~{args.memory_mb:g} MB WARC: {fmt_gb(peak)}")
    p("")
    p(f"total benchmark time: {time.perf_counter() - started:.0f} s")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warc", default=None, metavar="GLOB", help="WARC files (.warc or .warc.gz) to use instead of "
                    "the Debian-pages corpus")
    ap.add_argument("--size-mb", type=float, default=None,
                    help="MB of HTML pages in the generated corpus (default: every page, ~113 MB)")
    ap.add_argument("--files", type=int, default=WARC_FILES, help=f"WARC files to write (default {WARC_FILES})")
    ap.add_argument("--quick", action="store_true",
                    help=f"a smoke run: ~{QUICK_MB} MB of pages in 4 files (--memory: a {QUICK_MEMORY_MB} MB WARC)")
    ap.add_argument("--memory", action="store_true", help="the memory run of tokenmill prepare on a ~1 GB WARC")
    ap.add_argument("--memory-mb", type=float, default=MEMORY_MB,
                    help=f"MB of HTML in the --memory WARC (default {MEMORY_MB})")
    ap.add_argument("--recipe", default=None, metavar="PATH",
                    help=f"recipe of the --memory run (default: the {MEMORY_PRESET} preset)")
    ap.add_argument("--workdir", default=None, metavar="DIR",
                    help="where the packages, WARC files, tokenizer and outputs go; kept, and reused by later runs "
                         "(default: a temporary directory removed at the end)")
    args = ap.parse_args(argv)
    if args.quick:
        args.size_mb, args.files, args.memory_mb = QUICK_MB, 4, QUICK_MEMORY_MB
    args.vocab_size = QUICK_TOKENIZER_VOCAB if args.quick else TOKENIZER_VOCAB
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, as a child process, one system)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_benchmark(argv, parse_args, child_main, benchmark, "tokenmill-extract-bench-")


if __name__ == "__main__":
    sys.exit(main())
