"""Real benchmark corpora built reproducibly from text shipped in Debian packages: multilingual, code and mix.

The text is real and nobody on the project wrote it: documentation, manual pages and source code as Debian ships
them, fetched with ``apt-get download`` (a package registry, so nothing is crawled) and unpacked with ``dpkg-deb -x``.

* ``multilingual`` (~110 MB of text: Latin ~62%, Cyrillic ~18%, CJK ~20% by the dominant script of documents): prose in Latin, Cyrillic and CJK scripts. LibreOffice's help in 11 languages
  (HTML pages), manual pages in Russian, Ukrainian, Serbian, Japanese and Chinese (troff, turned into plain text
  here), GIMP's Russian help, the Debian Reference in 9 languages, the Debian installation guide in 10, Russian
  and Ukrainian documentation of Debian, aptitude and Double Commander, and the kernel's ``Documentation/`` (an
  8 MB part of the English reST, and all of its Chinese, Japanese, Korean and Italian translations). HTML becomes text with resiliparse (every visible element, navigation and footers left out), one
  document per page or file; documents under 200 bytes and exact duplicates are dropped. Translations are often
  partial (untranslated paragraphs stay English), so a document's ``lang`` is its package's language and its
  script (in the counts) the dominant script of its letters.
* ``code`` (~100 MB): C and headers of the kernel tree (a subset spread over the whole tree), shell scripts of the
  tree, Python (the 3.11 standard library and its test suite), Rust (the standard library and compiler of rust-src),
  Go (the 1.19 standard library) and Perl modules, each language a fixed budget of bytes; ``lang`` is the language.
* ``mix`` (~1.1 GB): both corpora plus every other UTF-8 text file of the kernel tree (up to 1 MB, no NUL bytes,
  one document per file: C, assembly, device trees, Kconfig, Makefiles, scripts, documentation, ...).

Every corpus interleaves its streams (languages; for the mix: multilingual, code, the rest of the tree) by bytes,
deterministically, so that any prefix (``slice_files``) has about the shares of the whole. Records are
``{"id", "text", "meta": {"source": package, "lang"}}``, one JSON object a line (only ``\\n`` ends a line: texts
may hold U+2028), written as ``part-0000.jsonl``... files of at most 64 MB.

Building twice gives byte-identical files (paths sorted, no clock, no randomness). The cache directory
(``.bench-cache/corpora`` at the repository root, or ``--cache DIR``, or ``$TOKENMILL_BENCH_CACHE``) keeps the .deb
files (``debs/``), their unpacked trees (``unpacked/``) and each corpus with its ``corpus.json``: package versions
and .deb sha256, every file's size and sha256, documents and bytes by language, script and source. A corpus is
reused only once every file's sha256 matches; otherwise it is rebuilt. ``EXPECTED`` holds the fingerprint (sha256
of the sorted (file, sha256) pairs) of each corpus as first built; a build that gives another one (a newer Debian
package, another resiliparse) says so, so that benchmark figures from different corpora can be told apart.

    .venv/bin/python benchmarks/corpora.py [multilingual code mix] [--cache DIR]
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import hashlib
import heapq
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from prepare_throughput import log  # noqa: E402  (a sibling script)

NAMES = ("multilingual", "code", "mix")
BUILDER_VERSION = 1  # bump when what a corpus holds or how it is written changes: cached corpora are then rebuilt
MB = 1_000_000
FILE_BYTES = 64 * MB  # the most a JSONL file holds
MIN_PROSE_BYTES = 200  # shorter pages are navigation stubs, redirects (.so manual pages), empty index pages
MAX_FILE_BYTES = 1 << 20  # source files over 1 MB are generated tables (register maps, firmware), not code
KERNEL = "linux-source-6.1"
SCRIPTS = ("Latin", "Cyrillic", "CJK", "other")
DEFAULT_CACHE = Path(__file__).resolve().parent.parent / ".bench-cache" / "corpora"
CACHE_ENV = "TOKENMILL_BENCH_CACHE"

# the fingerprint of each corpus as built when this module was written (Debian 12 packages, resiliparse 2.0.1)
EXPECTED = {
    "multilingual": "1deaf18ccba0737e8346470266f2ca18a407b6182206c0cbdd00fac022165aaa",
    "code": "91474d11e93918f87ec9a181fa2a87ed823edb6cb3a5588443f37f641b8bd97e",
    "mix": "0cd3a192403e9ea6eeaa1a68c98d8f5209dd563c1d4842416ccfd53d56f205c0",
}


# ---------------------------------------------------------------------------------------------------------------
# what goes in
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Files of one package in one language: under ``root`` (a glob; the kernel tree for the kernel package), names
    matching ``patterns``, read as ``kind`` (html, man, text or code), paths starting with ``exclude`` left out;
    with ``budget_mb``, a part of them of about that many MB spread over the whole (see ``chosen``)."""

    package: str
    lang: str
    kind: str
    root: str
    patterns: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    budget_mb: float | None = None


LIBREOFFICE = {"en-us": "en", "de": "de", "fr": "fr", "es": "es", "it": "it", "pt": "pt", "ru": "ru", "ja": "ja",
               "zh-cn": "zh-cn", "zh-tw": "zh-tw", "ko": "ko"}
DEBIAN_REFERENCE = ("en", "de", "fr", "es", "it", "pt", "ja", "zh-cn", "zh-tw")
INSTALL_GUIDE = {"en": "en", "de": "de", "fr": "fr", "es": "es", "it": "it", "pt": "pt", "ru": "ru", "ja": "ja",
                 "ko": "ko", "zh_CN": "zh-cn"}
KERNEL_TRANSLATIONS = {"zh_CN": "zh-cn", "zh_TW": "zh-tw", "ja_JP": "ja", "ko_KR": "ko", "it_IT": "it"}
HTML = ("*.html", "*.htm")

PROSE_SOURCES: tuple[Source, ...] = (
    *(Source(f"libreoffice-help-{p}", lang, "html", "usr/share/libreoffice/help", HTML)
      for p, lang in LIBREOFFICE.items()),
    *(Source(p, "ru", "man", "usr/share/man/ru", ("*.gz",)) for p in ("manpages-ru", "manpages-ru-dev")),
    *(Source(p, "uk", "man", "usr/share/man/uk", ("*.gz",)) for p in ("manpages-uk", "manpages-uk-dev")),
    Source("manpages-sr", "sr", "man", "usr/share/man/sr", ("*.gz",)),
    Source("manpages-ja", "ja", "man", "usr/share/man/ja", ("*.gz",)),
    Source("manpages-zh", "zh-cn", "man", "usr/share/man/zh_CN", ("*.gz",)),
    Source("manpages-zh", "zh-tw", "man", "usr/share/man/zh_TW", ("*.gz",)),
    *(Source(f"debian-reference-{lang}", lang, "html", "usr/share/debian-reference", HTML)
      for lang in DEBIAN_REFERENCE),
    *(Source("installation-guide-amd64", lang, "html", f"usr/share/doc/installation-guide-amd64/{d}", HTML)
      for d, lang in INSTALL_GUIDE.items()),
    Source("gimp-help-ru", "ru", "html", "usr/share/gimp/2.0/help/ru", HTML),
    Source("aptitude-doc-ru", "ru", "html", "usr/share/doc/aptitude/html/ru", HTML),
    Source("developers-reference-ru", "ru", "html", "usr/share/developers-reference/ru", HTML),
    Source("debian-faq-ru", "ru", "html", "usr/share/doc/debian/FAQ/ru", HTML),
    Source("maint-guide-ru", "ru", "html", "usr/share/doc/maint-guide-ru/html", HTML),
    Source("doublecmd-help-ru", "ru", "html", "usr/share/doublecmd/doc/ru", HTML),
    Source("doublecmd-help-uk", "uk", "html", "usr/share/doublecmd/doc/uk", HTML),
    # 21 MB in all: a part, so that English does not crowd out the other languages
    Source(KERNEL, "en", "text", "Documentation", ("*.rst",), exclude=("Documentation/translations/",),
           budget_mb=8),
    *(Source(KERNEL, lang, "text", f"Documentation/translations/{d}", ("*.rst",))
      for d, lang in KERNEL_TRANSLATIONS.items()),
)

CODE_SOURCES: tuple[Source, ...] = (
    Source(KERNEL, "C", "code", ".", ("*.c", "*.h"), exclude=("Documentation/",)),
    Source(KERNEL, "Shell", "code", ".", ("*.sh",)),
    *(Source(p, "Python", "code", "usr/lib/python3.*", ("*.py",))
      for p in ("libpython3.11-minimal", "libpython3.11-stdlib", "libpython3.11-testsuite")),
    Source("rust-src", "Rust", "code", "usr/src/rustc-*/library", ("*.rs",)),
    Source("rust-src", "Rust", "code", "usr/src/rustc-*/compiler", ("*.rs",)),
    Source("golang-1.19-src", "Go", "code", "usr/share/go-*/src", ("*.go",)),
    Source("perl-modules-5.36", "Perl", "code", "usr/share/perl", ("*.pm", "*.pl")),
)
# MB of text per language: C most, as in the code a tokenizer meets; the shell scripts of the tree are ~4 MB
CODE_BUDGET_MB = {"C": 40, "Python": 25, "Rust": 12, "Go": 12, "Perl": 8, "Shell": 3}

# the mix's kernel files by name: what a reader of the counts wants to know the tree is made of
TREE_LANGS = {".c": "C", ".h": "C", ".S": "Assembly", ".s": "Assembly", ".py": "Python", ".pl": "Perl",
              ".pm": "Perl", ".sh": "Shell", ".rs": "Rust", ".rst": "en", ".txt": "en", ".dts": "DeviceTree",
              ".dtsi": "DeviceTree", ".yaml": "YAML", ".json": "JSON", ".awk": "Awk", ".mk": "Make",
              ".cocci": "Coccinelle", ".bpf": "C", ".lds": "LinkerScript"}


class Doc(NamedTuple):
    """One document and its UTF-8 size (what the interleaving and the counts are in)."""

    id: str
    text: str
    source: str
    lang: str
    size: int


def make_doc(doc_id: str, text: str, source: str, lang: str) -> Doc:
    """A Doc with its size."""
    return Doc(doc_id, text, source, lang, len(text.encode("utf-8")))


# ---------------------------------------------------------------------------------------------------------------
# Debian packages
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """A downloaded, unpacked package: where its files are, and what it is exactly."""

    name: str
    version: str
    deb: Path
    sha256: str
    root: Path  # the unpacked package, or the kernel tree for the kernel package


def cache_dir(cache: Path | None = None) -> Path:
    """The cache directory: ``cache``, else $TOKENMILL_BENCH_CACHE, else .bench-cache/corpora in the repository."""
    if cache is not None:
        return Path(cache)
    return Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else DEFAULT_CACHE


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 4 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(4 << 20):
            digest.update(block)
    return digest.hexdigest()


def cached_deb(debs: Path, name: str) -> Path | None:
    """The .deb of a package already in ``debs`` (the underscore keeps ``pt`` from matching ``pt-br``)."""
    found = sorted(debs.glob(f"{name}_*.deb"))
    if len(found) > 1:
        log(f"  several .deb files of {name} in {debs}: using {found[-1].name} (delete the others)")
    return found[-1] if found else None


def download(name: str, debs: Path) -> Path:
    """The .deb of a package, downloaded with apt-get download unless it is in ``debs`` already."""
    found = cached_deb(debs, name)
    if found:
        return found
    log(f"  apt-get download {name}")
    hint = ("run `apt-get update` (as root) and try again: apt-get download needs apt and a reachable Debian "
            "mirror, and the package must be in the configured suite (these corpora are Debian 12 bookworm's)")
    try:
        done = subprocess.run(["apt-get", "download", name], cwd=debs, capture_output=True, text=True)
    except FileNotFoundError:
        raise SystemExit(f"cannot download the Debian package {name}: apt-get is not installed; {hint}") from None
    found = cached_deb(debs, name)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"`apt-get download {name}` failed (in {debs}):\n{done.stderr.strip()}\n{hint}")
    return found


def deb_field(deb: Path, name: str) -> str:
    """A control field of a .deb (its exact Version, with the epoch the file name spells %3a)."""
    try:
        return subprocess.run(["dpkg-deb", "-f", str(deb), name], check=True, capture_output=True,
                              text=True).stdout.strip()
    except FileNotFoundError:
        raise SystemExit("dpkg-deb is not installed (it comes with dpkg, on Debian and Ubuntu)") from None


def unpacked(deb: Path, sha256: str, target: Path) -> Path:
    """``dpkg-deb -x`` of the .deb into ``target``, done once (a marker holds the .deb's sha256)."""
    marker = target / ".deb-sha256"
    if marker.exists() and marker.read_text() == sha256:
        return target
    shutil.rmtree(target, ignore_errors=True)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(partial)], check=True)
    (partial / ".deb-sha256").write_text(sha256)
    partial.rename(target)
    return target


def kernel_tree(package_root: Path, sha256: str) -> Path:
    """The kernel source tree, extracted once from the tarball the package ships (then the tarball is deleted)."""
    target = package_root.with_name(package_root.name + "-tree")
    marker = target / ".deb-sha256"
    if marker.exists() and marker.read_text() == sha256:
        return next(p for p in sorted(target.iterdir()) if p.is_dir())
    tarballs = sorted(package_root.glob("usr/src/linux-source-*.tar.xz"))
    if not tarballs:
        raise SystemExit(f"no usr/src/linux-source-*.tar.xz in {package_root}: delete it and build again")
    log(f"  extracting {tarballs[0].name} ...")
    shutil.rmtree(target, ignore_errors=True)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(tarballs[0], "r:xz") as tar:
        tar.extractall(partial, filter="data")  # no links out of the tree, no device files, no odd modes
    (partial / ".deb-sha256").write_text(sha256)
    partial.rename(target)
    tarballs[0].unlink()  # 138 MB nobody reads again; the .deb is kept
    (package_root / ".deb-sha256").unlink()  # so that a rebuild of the tree unpacks the .deb again first
    return next(p for p in sorted(target.iterdir()) if p.is_dir())


def packages(names: Iterable[str], cache: Path) -> dict[str, Package]:
    """Every named package downloaded (once) into cache/debs and unpacked (once) under cache/unpacked."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in sorted(set(names)):
        deb = download(name, debs)
        sha256 = file_sha256(deb)
        root = cache / "unpacked" / name
        if name == KERNEL:
            tree_marker = root.with_name(name + "-tree") / ".deb-sha256"
            fresh = tree_marker.exists() and tree_marker.read_text() == sha256
            root = kernel_tree(root if fresh else unpacked(deb, sha256, root), sha256)
        else:
            root = unpacked(deb, sha256, root)
        out[name] = Package(name, deb_field(deb, "Version"), deb, sha256, root)
    return out


def package_record(pkgs: Iterable[Package]) -> dict[str, dict[str, str]]:
    """What corpus.json says of the packages: exact version, .deb file name and sha256."""
    return {p.name: {"version": p.version, "deb": p.deb.name, "sha256": p.sha256} for p in sorted(pkgs, key=lambda p: p.name)}


# ---------------------------------------------------------------------------------------------------------------
# files to text
# ---------------------------------------------------------------------------------------------------------------


def walk_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(path relative to ``root``, path) of every regular file under ``root`` in sorted order, symlinks left out."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(filenames):
            path = base / name
            if not path.is_symlink() and path.is_file():
                yield path.relative_to(root).as_posix(), path


def source_files(pkg: Package, source: Source) -> list[tuple[str, Path]]:
    """(path relative to the package, path) of the source's files, sorted."""
    out = []
    roots = sorted(pkg.root.glob(source.root)) if any(c in source.root for c in "*?[") else [pkg.root / source.root]
    for root in (r for r in roots if r.is_dir()):
        for _, path in walk_files(root):
            rel = path.relative_to(pkg.root).as_posix()
            if any(fnmatch.fnmatchcase(path.name, p) for p in source.patterns) and not rel.startswith(source.exclude):
                out.append((rel, path))
    return sorted(out)


# navigation bars, side panels and footers repeat on every page; LibreOffice's #DEBUG footer names the page's
# source file, its .MAC spans are the macOS spelling of the key names next to the others
HTML_SKIP = ["header", "footer", "nav", "aside", "div.navheader", "div.navfooter", "#DEBUG", "span.MAC"]
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


def html_text(html: str) -> str:
    """The visible text of an HTML page: every element (not only the "main content"), no alt texts."""
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(html, main_content=False, alt_texts=False, skip_elements=HTML_SKIP)


_TROFF_ESCAPE = re.compile(r"\\(?:[fF](?:\[[^\]]*\]|\(..|.)|s[+-]?\d+|\*(?:\[[^\]]*\]|\(..|.)|\((..)|\[([^\]]*)\]|(.))")
_TROFF_ARG = re.compile(r'"((?:[^"]|"")*)"?|(\S+)')
TROFF_GLYPHS = {"em": "—", "en": "–", "hy": "-", "bu": "•", "co": "©", "rg": "®", "aq": "'", "dq": '"', "lq": "“",
                "rq": "”", "oq": "‘", "cq": "’", "mu": "×", "de": "°", "<=": "≤", ">=": "≥", "->": "→", "<-": "←",
                "tm": "™", "ti": "~", "ha": "^", "rs": "\\", "ga": "`", "sl": "/", "ba": "|", "pl": "+", "mi": "−",
                "eq": "=", "Fo": "«", "Fc": "»", "fo": "‹", "fc": "›", "br": "│", "ul": "_", "sq": "□"}
TROFF_CHARS = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "t": "\t", "&": "", "|": "", "^": "",
               "c": "", "%": "", ",": "", "/": "", ":": "", "'": "'", "`": "`", ".": "."}
TROFF_FONT_MACROS = {"B", "I", "SM", "SB"}
TROFF_ALTERNATING = {"BR", "RB", "IR", "RI", "BI", "IB"}
TROFF_BREAKS = {"PP", "P", "LP", "TP", "TQ", "IP", "HP", "sp", "br", "RS", "RE", "nf", "fi", "EX", "EE", "SY", "YS"}


def troff_escape(match: re.Match) -> str:
    """The text of one troff escape: a glyph, a character, or nothing (fonts, sizes, strings)."""
    glyph, named, char = match.groups()
    if glyph is not None:
        return TROFF_GLYPHS.get(glyph, "")
    if named is not None:
        if re.fullmatch(r"u[0-9A-Fa-f]{4,6}", named):
            return chr(int(named[1:], 16))
        return TROFF_GLYPHS.get(named, "")
    if char is not None:
        return TROFF_CHARS.get(char, char)
    return ""


def troff_args(args: str) -> list[str]:
    """The arguments of a macro line ("quoted" ones may hold spaces, "" is a quote)."""
    return [m[1].replace('""', '"') if m[1] is not None else m[2] for m in _TROFF_ARG.finditer(args)]


def man_text(source: str) -> str:
    """The text of a manual page in troff (man macros): headings, paragraphs and text lines, no markup.

    Not a formatter: lines are not filled or justified, tables keep their tab-separated source; what matters here
    is that the words a reader sees are there, and no macro names or escapes are.
    """
    out: list[str] = []
    skipping_definition = False
    for line in source.splitlines():
        if skipping_definition:
            skipping_definition = not line.startswith("..")
            continue
        line = re.sub(r'\\".*', "", line)  # a comment, to the end of the line
        if line[:1] not in (".", "'"):
            out.append(line)
            continue
        name, _, args = line[1:].strip().partition(" ")
        if name in ("de", "de1", "am", "ig"):
            skipping_definition = True
        elif name in ("SH", "SS"):
            out += ["", " ".join(troff_args(args))]
        elif name in TROFF_FONT_MACROS:
            out.append(" ".join(troff_args(args)))
        elif name in TROFF_ALTERNATING:
            out.append("".join(troff_args(args)))
        elif name in TROFF_BREAKS:
            out.append("")
            if name in ("IP", "HP") and args.strip():
                out.append(troff_args(args)[0])
        # other requests (.TH, .so, .ad, .nh, .ft, .in, .UR/.UE, ...) carry no text a reader sees
    text = _TROFF_ESCAPE.sub(troff_escape, "\n".join(out))
    return _BLANK_LINES.sub("\n\n", text)


def read_text(path: Path) -> str | None:
    """A file's text: gunzipped if .gz, UTF-8 (else None), no NUL bytes (else None)."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def prose_text(raw: str, kind: str) -> str:
    """Plain text of a prose file of the given kind, without leading/trailing blank space or runs of blank lines."""
    if kind == "html":
        raw = html_text(raw)
    elif kind == "man":
        raw = man_text(raw)
    return _BLANK_LINES.sub("\n\n", raw).strip()


def text_digest(text: str) -> bytes:
    """A digest of a text, to drop exact duplicates."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


# ---------------------------------------------------------------------------------------------------------------
# scripts and interleaving
# ---------------------------------------------------------------------------------------------------------------

_LATIN = re.compile(r"[A-Za-z\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u024F\u1E00-\u1EFF]+")
_CYRILLIC = re.compile(r"[\u0400-\u052F\u1C80-\u1C8F\u2DE0-\u2DFF\uA640-\uA69F]+")
# Hangul jamo and syllables, kana, CJK ideographs and their extensions, half-width kana
_CJK = re.compile(r"[\u1100-\u11FF\u3040-\u30FF\u3130-\u318F\u31F0-\u31FF\u3400-\u4DBF\u4E00-\u9FFF\uAC00-\uD7AF"
                  r"\uF900-\uFAFF\uFF66-\uFF9F\U00020000-\U0003134F]+")
_LETTERS = re.compile(r"[^\W\d_]+")
_ASCII_LETTER = re.compile(r"[A-Za-z]")


def script_counts(text: str) -> dict[str, int]:
    """Letters of the text by script (Latin, Cyrillic, CJK, other)."""
    def count(pattern: re.Pattern) -> int:
        return sum(map(len, pattern.findall(text)))

    latin, cyrillic, cjk = count(_LATIN), count(_CYRILLIC), count(_CJK)
    return {"Latin": latin, "Cyrillic": cyrillic, "CJK": cjk, "other": count(_LETTERS) - latin - cyrillic - cjk}


def script_of(text: str) -> str:
    """The dominant script of a text's letters: Latin, Cyrillic, CJK or other (also for a text without letters)."""
    if text.isascii():  # most of the code and the kernel tree: no need to count
        return "Latin" if _ASCII_LETTER.search(text) else "other"
    counts = script_counts(text)
    best = max(SCRIPTS, key=lambda s: counts[s])  # ties go to the first in SCRIPTS
    return best if counts[best] > 0 else "other"


def interleave(streams: dict[str, Iterable[Doc]], weights: dict[str, float]) -> Iterator[Doc]:
    """The documents of every stream merged by bytes: next comes the stream furthest behind its weight.

    With the streams' total bytes as weights, every prefix holds about each stream's share of the whole (a
    round-robin by count would let the small streams run out early and leave the tail to one language). Ties go
    to the stream first in ``streams``, so the order only depends on the documents.
    """
    iterators = {key: iter(docs) for key, docs in streams.items()}
    emitted = dict.fromkeys(streams, 0)
    heap = [(0.0, i, key) for i, key in enumerate(streams)]
    while heap:
        _, i, key = heapq.heappop(heap)
        doc = next(iterators[key], None)
        if doc is None:
            continue
        yield doc
        emitted[key] += doc.size
        heapq.heappush(heap, (emitted[key] / max(weights[key], 1.0), i, key))


def interleave_lists(groups: dict[str, list[Doc]]) -> Iterator[Doc]:
    """Documents held in lists, interleaved with their total bytes as weights."""
    return interleave(groups, {key: sum(d.size for d in docs) for key, docs in groups.items()})


# ---------------------------------------------------------------------------------------------------------------
# writing and checking a corpus
# ---------------------------------------------------------------------------------------------------------------


def fingerprint(files: Iterable[dict[str, Any]]) -> str:
    """The sha256 over the sorted (file name, sha256) pairs of a corpus: what tells corpora apart."""
    pairs = sorted((f["name"], f["sha256"]) for f in files)
    return hashlib.sha256("".join(f"{name}\t{sha}\n" for name, sha in pairs).encode()).hexdigest()


def record_line(doc: Doc) -> bytes:
    """The JSONL line of a document."""
    record = {"id": doc.id, "text": doc.text, "meta": {"source": doc.source, "lang": doc.lang}}
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")


class Tally:
    """Documents and text bytes by key."""

    def __init__(self) -> None:
        self.documents: Counter[str] = Counter()
        self.text_bytes: Counter[str] = Counter()

    def add(self, key: str, size: int) -> None:
        """Count one document."""
        self.documents[key] += 1
        self.text_bytes[key] += size

    def as_json(self) -> dict[str, dict[str, int]]:
        """{key: {documents, text_bytes}}, keys sorted."""
        return {k: {"documents": self.documents[k], "text_bytes": self.text_bytes[k]} for k in sorted(self.documents)}


class PartWriter:
    """part-0000.jsonl, part-0001.jsonl, ... of at most FILE_BYTES each, hashed while written."""

    def __init__(self, directory: Path, file_bytes: int = FILE_BYTES) -> None:
        self.directory, self.file_bytes = directory, file_bytes
        self.files: list[dict[str, Any]] = []
        self._fh = None
        self._digest = hashlib.sha256()
        self._bytes = 0

    def write(self, line: bytes) -> None:
        """Append a line, in a new file when it would not fit in the current one."""
        if self._fh is None or (self._bytes and self._bytes + len(line) > self.file_bytes):
            self._close_file()
            name = f"part-{len(self.files):04d}.jsonl"
            self.files.append({"name": name})
            self._fh = open(self.directory / name, "wb")
        self._fh.write(line)
        self._digest.update(line)
        self._bytes += len(line)

    def _close_file(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self.files[-1].update(bytes=self._bytes, sha256=self._digest.hexdigest())
        self._fh, self._digest, self._bytes = None, hashlib.sha256(), 0

    def close(self) -> list[dict[str, Any]]:
        """Finish the last file; every file's name, bytes and sha256."""
        self._close_file()
        return self.files


def write_corpus(directory: Path, name: str, docs: Iterable[Doc], package_info: dict[str, Any],
                 extra: dict[str, Any] | None = None, file_bytes: int = FILE_BYTES) -> dict[str, Any]:
    """Write the documents as JSONL files and corpus.json into ``directory`` (replaced only once complete).

    ``extra`` goes into corpus.json as it is once every document is written: counters the documents' generators
    fill (what they dropped) are complete by then.
    """
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    writer = PartWriter(partial, file_bytes)
    by_lang, by_script, by_source = Tally(), Tally(), Tally()
    for doc in docs:
        writer.write(record_line(doc))
        by_lang.add(doc.lang, doc.size)
        by_script.add(script_of(doc.text), doc.size)
        by_source.add(doc.source, doc.size)
    files = writer.close()
    meta = {
        "corpus": name,
        "builder_version": BUILDER_VERSION,
        "fingerprint": fingerprint(files),
        "documents": sum(by_lang.documents.values()),
        "text_bytes": sum(by_lang.text_bytes.values()),
        "files": files,
        "packages": package_info,
        "by_script": by_script.as_json(),
        "by_lang": by_lang.as_json(),
        "by_source": by_source.as_json(),
        **{key: dict(sorted(value.items())) if isinstance(value, Counter) else value
           for key, value in (extra or {}).items()},
    }
    (partial / "corpus.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)
    return meta


def verify_corpus(directory: Path) -> tuple[dict[str, Any] | None, str]:
    """(corpus.json, "") when every file of the corpus is there with its size and sha256, else (None, why not)."""
    meta_path = directory / "corpus.json"
    if not meta_path.exists():
        return None, "not built yet"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return None, f"unreadable corpus.json ({e})"
    if meta.get("builder_version") != BUILDER_VERSION:
        return None, f"built by builder version {meta.get('builder_version')}, this is {BUILDER_VERSION}"
    for f in meta.get("files", []):
        path = directory / f["name"]
        if not path.exists():
            return None, f"{f['name']} is missing"
        if path.stat().st_size != f["bytes"]:
            return None, f"{f['name']} has {path.stat().st_size} bytes, corpus.json says {f['bytes']}"
        if file_sha256(path) != f["sha256"]:
            return None, f"{f['name']} does not have the sha256 in corpus.json"
    if not meta.get("files") or fingerprint(meta["files"]) != meta.get("fingerprint"):
        return None, "corpus.json's fingerprint does not match its files"
    return meta, ""


def read_docs(files: Iterable[str]) -> Iterator[Doc]:
    """The documents of JSONL files written here, in order (lines split on \\n only)."""
    for path in files:
        with open(path, "rb") as fh:
            for line in fh:
                obj = json.loads(line)
                yield make_doc(obj["id"], obj["text"], obj["meta"]["source"], obj["meta"]["lang"])


# ---------------------------------------------------------------------------------------------------------------
# the corpora
# ---------------------------------------------------------------------------------------------------------------


def resiliparse_version() -> str:
    """The resiliparse version (its HTML to text is part of what the multilingual corpus is)."""
    from importlib.metadata import version

    return version("resiliparse")


def prose_docs(pkgs: dict[str, Package], dropped: Counter) -> dict[str, dict[str, list[Doc]]]:
    """{lang: {package: documents}} of every prose source, tiny pages and exact duplicates dropped."""
    seen: set[bytes] = set()
    groups: dict[str, dict[str, list[Doc]]] = {}
    for source in PROSE_SOURCES:
        pkg = pkgs[source.package]
        docs = groups.setdefault(source.lang, {}).setdefault(source.package, [])
        files = source_files(pkg, source)
        if source.budget_mb is not None:
            fraction = source.budget_mb * MB / max(sum(path.stat().st_size for _, path in files), 1)
            files = [(rel, path) for rel, path in files if chosen(rel, fraction)]
        for rel, path in files:
            raw = read_text(path)
            if raw is None:
                dropped["not UTF-8 or NUL bytes"] += 1
                continue
            text = prose_text(raw, source.kind)
            digest = text_digest(text)
            if len(text.encode("utf-8")) < MIN_PROSE_BYTES:
                dropped[f"under {MIN_PROSE_BYTES} bytes"] += 1
            elif digest in seen:
                dropped["exact duplicate"] += 1
            else:
                seen.add(digest)
                docs.append(make_doc(f"{source.package}/{rel}", text, source.package, source.lang))
    return groups


def build_multilingual(cache: Path, directory: Path) -> dict[str, Any]:
    """The multilingual corpus: every prose source, interleaved by language (and by package within one)."""
    pkgs = packages((s.package for s in PROSE_SOURCES), cache)
    dropped: Counter[str] = Counter()
    log("  reading and converting the pages ...")
    groups = prose_docs(pkgs, dropped)
    streams = {lang: list(interleave_lists(by_package)) for lang, by_package in groups.items()}
    return write_corpus(directory, "multilingual", interleave_lists(streams), package_record(pkgs.values()),
                        {"tools": {"resiliparse": resiliparse_version()}, "dropped": dropped})


def chosen(rel: str, fraction: float) -> bool:
    """Whether a file is in a language's budget: a hash of its path (spreads the choice over the whole tree and
    keeps it when other files come or go)."""
    return zlib.crc32(rel.encode("utf-8")) < fraction * 2**32


def code_docs(lang: str, pkgs: dict[str, Package], seen: set[bytes], dropped: Counter) -> dict[str, list[Doc]]:
    """{package: documents} of one language, about its budget of bytes, exact duplicates dropped."""
    candidates = []
    for source in (s for s in CODE_SOURCES if s.lang == lang):
        for rel, path in source_files(pkgs[source.package], source):
            size = path.stat().st_size
            if 0 < size <= MAX_FILE_BYTES:
                candidates.append((source.package, rel, path, size))
            else:
                dropped["empty or over 1 MB"] += 1
    total = sum(c[3] for c in candidates)
    fraction = min(1.0, CODE_BUDGET_MB[lang] * MB / max(total, 1))
    out: dict[str, list[Doc]] = {}
    for package, rel, path, _ in candidates:
        if not chosen(rel, fraction):
            continue
        text = fresh_text(path, seen, dropped)
        if text is not None:
            out.setdefault(package, []).append(make_doc(f"{package}/{rel}", text, package, lang))
    return out


def fresh_text(path: Path, seen: set[bytes], dropped: Counter) -> str | None:
    """A file's text if it is UTF-8 without NUL bytes, not blank and not seen before (counted in ``dropped`` if not)."""
    text = read_text(path)
    if text is None or not text.strip():
        dropped["not UTF-8, NUL bytes or blank"] += 1
        return None
    digest = text_digest(text)
    if digest in seen:
        dropped["exact duplicate"] += 1
        return None
    seen.add(digest)
    return text


def build_code(cache: Path, directory: Path) -> dict[str, Any]:
    """The code corpus: each language's budget, interleaved by language (and by package within one)."""
    pkgs = packages((s.package for s in CODE_SOURCES), cache)
    dropped: Counter[str] = Counter()
    seen: set[bytes] = set()
    streams = {}
    for lang in CODE_BUDGET_MB:
        log(f"  {lang} ...")
        streams[lang] = list(interleave_lists(code_docs(lang, pkgs, seen, dropped)))
    return write_corpus(directory, "code", interleave_lists(streams), package_record(pkgs.values()),
                        {"budget_mb": CODE_BUDGET_MB, "dropped": dropped})


def tree_lang(rel: str) -> str:
    """What a kernel file is, by its name (the mix's meta.lang)."""
    name = rel.rsplit("/", 1)[-1]
    if name.startswith("Kconfig"):
        return "Kconfig"
    if name.startswith(("Makefile", "Kbuild")):
        return "Make"
    return TREE_LANGS.get(os.path.splitext(name)[1], "other")


def tree_docs(files: list[tuple[str, Path]], seen: set[bytes], dropped: Counter) -> Iterator[Doc]:
    """The kernel files of the mix as documents, in order: UTF-8 without NUL bytes, not blank, not seen before."""
    for rel, path in files:
        text = fresh_text(path, seen, dropped)
        if text is not None:
            yield make_doc(f"{KERNEL}/{rel}", text, KERNEL, tree_lang(rel))


def build_mix(cache: Path, directory: Path) -> dict[str, Any]:
    """The mix: multilingual, code and the rest of the kernel tree, streamed and interleaved by bytes."""
    parts = {name: build(name, cache) for name in ("multilingual", "code")}
    pkgs = packages([KERNEL], cache)
    tree = pkgs[KERNEL].root
    # what the other corpora took from the tree is not taken again, and their texts are not repeated
    used: set[str] = set()
    seen: set[bytes] = set()
    for corpus in parts.values():
        for doc in read_docs(corpus.files):
            used.add(doc.id)
            seen.add(text_digest(doc.text))
    rest, rest_bytes = [], 0
    dropped: Counter[str] = Counter()
    for rel, path in walk_files(tree):
        size = path.stat().st_size
        if f"{KERNEL}/{rel}" in used:
            continue
        if 0 < size <= MAX_FILE_BYTES:
            rest.append((rel, path))
            rest_bytes += size  # about its text bytes: what weighs it against the two corpora
        else:
            dropped["empty or over 1 MB"] += 1
    log(f"  the rest of the kernel tree: {len(rest):,} files, {rest_bytes / MB:.0f} MB")
    streams = {"multilingual": read_docs(parts["multilingual"].files), "code": read_docs(parts["code"].files),
               "tree": tree_docs(rest, seen, dropped)}
    weights = {"multilingual": parts["multilingual"].text_bytes, "code": parts["code"].text_bytes, "tree": rest_bytes}
    merged: dict[str, dict[str, str]] = {}
    for corpus in parts.values():
        merged |= corpus.packages
    extra = {"inputs": {name: corpus.fingerprint for name, corpus in parts.items()},
             "dropped": dropped}
    return write_corpus(directory, "mix", interleave(streams, weights), dict(sorted(merged.items())), extra)


BUILDERS = {"multilingual": build_multilingual, "code": build_code, "mix": build_mix}


# ---------------------------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Corpus:
    """A built corpus: its JSONL files and what is in them."""

    name: str
    files: list[str]
    documents: int
    text_bytes: int
    by_script: dict[str, dict[str, int]]
    by_lang: dict[str, dict[str, int]]
    fingerprint: str
    by_source: dict[str, dict[str, int]] = field(default_factory=dict)
    packages: dict[str, dict[str, str]] = field(default_factory=dict)
    directory: Path | None = None

    def share(self, counts: dict[str, dict[str, int]], key: str) -> float:
        """The share of the text bytes under ``key`` of a count."""
        return counts.get(key, {}).get("text_bytes", 0) / max(self.text_bytes, 1)

    def describe(self) -> str:
        """One line for benchmark reports: size, documents, scripts, main languages, packages, fingerprint."""
        scripts = " ".join(f"{s} {self.share(self.by_script, s):.0%}" for s in SCRIPTS
                           if self.share(self.by_script, s) >= 0.005)
        langs = sorted(self.by_lang, key=lambda k: -self.by_lang[k]["text_bytes"])
        top = " ".join(f"{k} {self.share(self.by_lang, k):.0%}" for k in langs[:5])
        return (f"{self.name}: {self.text_bytes / MB:.1f} MB, {self.documents:,} docs; {scripts}; {top}"
                f"{' ...' if len(langs) > 5 else ''} ({package_summary(self.packages, self.by_source, 4)}; fingerprint "
                f"{self.fingerprint[:12]})")


_FAMILY = re.compile(r"-(?:en-us|en|de|fr|es|it|pt|ru|uk|sr|ja|ko|zh|zh-cn|zh-tw|minimal|stdlib|testsuite)(?:-dev)?$")


def package_family(name: str) -> str:
    """A package's name without its language (or part) suffix: libreoffice-help-ru -> libreoffice-help-*."""
    return _FAMILY.sub("-*", name)


def package_summary(pkgs: dict[str, dict[str, str]], by_source: dict[str, dict[str, int]] | None = None,
                    limit: int | None = None) -> str:
    """Package families and versions, largest first: "libreoffice-help-* 4:7.4.7-1+deb12u14, ..."."""
    families: dict[str, set[str]] = {}
    size: Counter[str] = Counter()
    for name, info in pkgs.items():
        families.setdefault(package_family(name), set()).add(info["version"])
        size[package_family(name)] += (by_source or {}).get(name, {}).get("text_bytes", 0)
    order = sorted(families, key=lambda f: (-size[f], f))
    shown = order if limit is None else order[:limit]
    more = f", +{len(order) - len(shown)} more" if len(order) > len(shown) else ""
    return ", ".join(f"{f} {'/'.join(sorted(families[f]))}" for f in shown) + more


def corpus_of(directory: Path, meta: dict[str, Any]) -> Corpus:
    """The Corpus a verified corpus.json describes."""
    return Corpus(name=meta["corpus"], files=[str(directory / f["name"]) for f in meta["files"]],
                  documents=meta["documents"], text_bytes=meta["text_bytes"], by_script=meta["by_script"],
                  by_lang=meta["by_lang"], fingerprint=meta["fingerprint"], by_source=meta["by_source"],
                  packages=meta["packages"], directory=directory)


def inputs_changed(meta: dict[str, Any], cache: Path) -> str:
    """Why a reused mix is stale (a corpus it was made of was rebuilt differently), or ""."""
    for part, fp in meta.get("inputs", {}).items():
        current = build(part, cache).fingerprint
        if current != fp:
            return f"{part} is not the one it was built from ({current[:12]}, not {fp[:12]})"
    return ""


def build(name: str, cache: Path | None = None) -> Corpus:
    """The named corpus, reused from the cache when every file's sha256 checks out, else built (and cached)."""
    if name not in BUILDERS:
        raise SystemExit(f"unknown corpus {name!r}: one of {', '.join(NAMES)}")
    cache = cache_dir(cache)
    directory = cache / name
    meta, why = verify_corpus(directory)
    if meta is not None:
        why = inputs_changed(meta, cache)
        if not why:
            log(f"{name}: reusing {directory} ({len(meta['files'])} files, every sha256 checked)")
            return corpus_of(directory, meta)
    log(f"{name}: {why}; building it in {directory} ..." if why != "not built yet" else
        f"{name}: building it in {directory} ...")
    t0 = time.perf_counter()
    meta = BUILDERS[name](cache, directory)
    corpus = corpus_of(directory, meta)
    log(f"{name}: built in {time.perf_counter() - t0:.0f} s: {corpus.describe()}")
    if EXPECTED.get(name) and corpus.fingerprint != EXPECTED[name]:
        log(f"WARNING: {name} has fingerprint {corpus.fingerprint}, not the expected {EXPECTED[name]}: other "
            f"package versions or tools ({package_summary(corpus.packages)}); benchmark figures on it are not "
            f"comparable with figures on the expected corpus")
    return corpus


def slice_files(corpus: Corpus, mb: float, directory: Path) -> list[str]:
    """The first ``mb`` MB of text of the corpus as JSONL files in ``directory`` (cached there)."""
    meta_path = directory / "slice.json"
    want = {"corpus": corpus.name, "fingerprint": corpus.fingerprint, "mb": mb, "builder_version": BUILDER_VERSION}
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in want} == want and all(
                (directory / f["name"]).exists() and file_sha256(directory / f["name"]) == f["sha256"]
                for f in meta["files"]):
            return [str(directory / f["name"]) for f in meta["files"]]
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    writer = PartWriter(directory)
    taken = 0
    for doc in read_docs(corpus.files):
        if taken >= mb * MB:
            break
        writer.write(record_line(doc))
        taken += doc.size
    files = writer.close()
    meta_path.write_text(json.dumps(want | {"text_bytes": taken, "files": files}, indent=1) + "\n")
    return [str(directory / f["name"]) for f in files]


# ---------------------------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------------------------


def count_table(title: str, counts: dict[str, dict[str, int]], total: int, limit: int = 40) -> list[str]:
    """Rows of one breakdown (largest first): documents, MB, share."""
    rows = [f"  {title:<26} {'docs':>9} {'MB':>9} {'share':>7}"]
    keys = sorted(counts, key=lambda k: (-counts[k]["text_bytes"], k))
    for key in keys[:limit]:
        c = counts[key]
        rows.append(f"  {key:<26} {c['documents']:>9,} {c['text_bytes'] / MB:>9.1f} "
                    f"{c['text_bytes'] / max(total, 1):>7.1%}")
    if len(keys) > limit:
        rest = keys[limit:]
        rows.append(f"  {f'({len(rest)} more)':<26} {sum(counts[k]['documents'] for k in rest):>9,} "
                    f"{sum(counts[k]['text_bytes'] for k in rest) / MB:>9.1f}")
    return rows


def report(corpus: Corpus) -> str:
    """The table the command prints for a corpus."""
    on_disk = sum(os.path.getsize(f) for f in corpus.files)
    lines = [corpus.describe(),
             f"  {len(corpus.files)} files ({on_disk / MB:.1f} MB of JSONL) in {corpus.directory}, fingerprint "
             f"{corpus.fingerprint}"]
    for title, counts in (("script", corpus.by_script), ("language", corpus.by_lang), ("source", corpus.by_source)):
        lines += count_table(title, counts, corpus.text_bytes)
    lines.append("  packages: " + ", ".join(f"{n} {p['version']}" for n, p in corpus.packages.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Build (or check and reuse) the named corpora and print what they hold."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", metavar="NAME", help=f"corpora to build: {', '.join(NAMES)} (default: all)")
    ap.add_argument("--cache", type=Path, default=None,
                    help=f"cache directory (default: ${CACHE_ENV}, else .bench-cache/corpora in the repository)")
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in NAMES]
    if unknown:
        ap.error(f"unknown corpus {', '.join(unknown)}: the corpora are {', '.join(NAMES)}")
    for name in args.names or NAMES:
        print(report(build(name, args.cache)), flush=True)
        print(flush=True)


if __name__ == "__main__":
    main()
