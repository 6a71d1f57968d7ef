"""Evaluation sets of benchmark decontamination: which files a set names and the texts of each of its items.

A set is a path (local or fsspec URL; a glob or a folder names several files, read in sorted order, as ``--input``
expands them) and the fields holding its texts. An item is one record of a JSONL, Parquet or Arrow file (its
``fields``, in the order listed; a list of strings counts as its strings in order) or one whole text file (its
lines belong together, as the text reader reads a ``.txt`` input as one document; ``fields`` does not apply).
Anything that keeps a set from being read is a RecipeError naming the set, the file and, where there is one, the
line or row: the index is built at launch, so a bad evaluation file stops the run before the output is touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from schemas.options import ARROW, EVAL_SET_FORMATS, JSONL, PARQUET, TEXT
from transforms.recipe.errors import RecipeError

# the readers (fsspec, pyarrow) are imported where a set is read: the decontam stage imports this module, and the
# stage registry behind prepare's --help imports every stage
DEFAULT_FIELDS = ("text",)
FORMATS = EVAL_SET_FORMATS


@dataclass(frozen=True)
class EvalSet:
    """One evaluation set: its name (as counts and rejected records name it), path or glob, fields, format."""

    name: str
    path: str
    fields: tuple[str, ...] = DEFAULT_FIELDS
    format: str | None = None  # None: from each file's name (.jsonl, .parquet, .txt, .arrow; .gz etc.)


def eval_items(spec: EvalSet, where: str) -> Iterator[list[str]]:
    """The texts of each item of the set, file by file in sorted order; RecipeError (prefixed ``where``) when a
    file cannot be read, a value is not text, or no item has one of the fields."""
    from transforms.read.sources import InputError, expand_inputs

    try:
        files = expand_inputs([spec.path], spec.format)
    except InputError as exc:
        message = str(exc).replace("pass --input-format", "set the eval set's format:").replace("--input ", "path ")
        raise RecipeError(f"{where}: {message}") from exc
    seen = dict.fromkeys(spec.fields, 0)  # per field: the items that have it
    for f in files:
        url = f.open_url
        try:
            if f.format == TEXT:
                yield from _text_items(url, f.compression)
            elif f.format == JSONL:
                yield from _jsonl_items(url, f.compression, spec.fields, seen, where)
            elif f.format in (PARQUET, ARROW):
                yield from _table_items(url, f.format, spec.fields, seen, where)
            else:
                raise RecipeError(f"{where}: {f.url!r} is {f.format}; an evaluation set is {', '.join(FORMATS)}")
        except RecipeError:
            raise
        except (OSError, ValueError, EOFError) as exc:
            raise RecipeError(f"{where}: cannot read {f.url!r} ({exc})") from exc
    if any(f.format != TEXT for f in files):
        missing = [name for name, n in seen.items() if n == 0]
        if missing:
            raise RecipeError(f"{where}: no item of {spec.path!r} has the field(s) "
                              f"{', '.join(map(repr, missing))} (fields: {', '.join(spec.fields)})")


def _texts(record: dict[str, Any], fields: tuple[str, ...], seen: dict[str, int], where: str) -> list[str]:
    """The record's texts, field by field; missing and null fields are skipped."""
    texts: list[str] = []
    for name in fields:
        value = record.get(name)
        if value is None:
            continue
        seen[name] += 1
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            texts.extend(value)
        else:
            raise RecipeError(f"{where}: field {name!r} is a {type(value).__name__}, not a string or a list of "
                              "strings")
    return texts


def _text_items(url: str, compression: str | None) -> Iterator[list[str]]:
    import fsspec

    with fsspec.open(url, "rb", compression=compression) as fh:
        data = fh.read()
    yield [data.decode("utf-8", "replace")]


def _jsonl_items(url: str, compression: str | None, fields: tuple[str, ...], seen: dict[str, int],
                 where: str) -> Iterator[list[str]]:
    import fsspec
    import orjson

    with fsspec.open(url, "rb", compression=compression) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise RecipeError(f"{where}: {url}:{number} is not valid JSON ({exc})") from exc
            if not isinstance(record, dict):
                raise RecipeError(f"{where}: {url}:{number} is a JSON {type(record).__name__}, not an object")
            yield _texts(record, fields, seen, f"{where}: {url}:{number}")


def _table_items(url: str, fmt: str, fields: tuple[str, ...], seen: dict[str, int],
                 where: str) -> Iterator[list[str]]:
    import fsspec

    from transforms.read.readers import arrow_batches

    with fsspec.open(url, "rb") as fh:
        if fmt == PARQUET:
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(fh)
            columns = [name for name in fields if name in pf.schema_arrow.names]
            batches = pf.iter_batches(columns=columns) if columns else iter(())
        else:
            batches = (batch.select([n for n in fields if n in batch.schema.names]) for batch in arrow_batches(fh))
        row = 0
        for batch in batches:
            for record in batch.to_pylist():
                yield _texts(record, fields, seen, f"{where}: {url} row {row}")
                row += 1
