"""The ``pii`` stage: datatrove's PIIFormatter decisions document by document, on real text (the standard library's
sources carry authors' e-mail addresses and IP addresses) and on edge cases, and end to end with --emit-modified."""

from __future__ import annotations

import itertools
import json

import pytest

from pipelines.filter import FilterConfig, run
from schemas import manifest as m
from schemas.documents import iter_documents
from tests.conftest import write_jsonl
from transforms.filter.chain import make_engine
from transforms.filter.registry import STAGES
from transforms.read.demo_corpus import demo_records
from transforms.recipe.errors import RecipeError
from transforms.recipe.recipes import parse_recipe

EDGE_CASES = [
    "write to alice@example.net or bob.smith@mail.example.co.uk, and carol+tag@example.io",
    "public 8.8.8.8, private 192.168.1.20 and 10.0.0.1, loopback 127.0.0.1, again 1.1.1.1 and 9.9.9.9",
    "an address in brackets: user@[93.184.216.34] and a version 3.11.4.2 that is not an IP 300.1.1.1",
    "nothing to see here",
    "mail@host.org 8.8.4.4 mail2@host.org 208.67.222.222 mail3@host.org 4.2.2.2 5.6.7.8 64.6.64.6 76.76.2.0",
    "",
]


def _datatrove_alone(texts: list[str], **params) -> list[str]:
    """datatrove's PIIFormatter applied to each text alone (a fresh formatter per document)."""
    from datatrove.pipeline.formatters import PIIFormatter

    return [PIIFormatter(**params).format(t) for t in texts]


def _replacements(texts: list[str]) -> tuple[int, int]:
    """(e-mail addresses, public IP addresses) datatrove's PIIFormatter replaces in the texts, counted from its own
    patterns and check: e-mails first, then IPs in the text the e-mail pass left."""
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.formatters.pii import public_ip_validator

    formatter = PIIFormatter()
    emails = ips = 0
    for text in texts:
        emails += len(formatter.emails_replacer.regex.findall(text))
        left = formatter.emails_replacer.replace(text)
        ips += sum(public_ip_validator(ip) for ip in formatter.ip_replacer.regex.findall(left))
    return emails, ips


def test_pii_counts_by_kind_and_nothing_for_other_stages():
    texts = EDGE_CASES
    recipe = parse_recipe({"filters": [{"name": "pii"}, {"name": "gopher_repetition"}]}, "test")
    decisions = make_engine(recipe).apply(texts, [str(i) for i in range(len(texts))])
    found = [d.counts or {} for d in decisions]
    assert found[0] == {"pii/email": 3} and found[1] == {"pii/ip": 3} and found[3] == {} == found[5]
    assert found[4] == {"pii/email": 3, "pii/ip": 6}
    assert sum(sum(f.values()) for f in found) == sum(_replacements(texts))


def _tokenmill(texts: list[str], params: dict, engine: str) -> list[str]:
    recipe = parse_recipe({"engine": engine, "filters": [{"name": "pii", "params": params}]}, "test")
    decisions = make_engine(recipe).apply(texts, [str(i) for i in range(len(texts))])
    assert all(d.keep for d in decisions)
    return [d.text for d in decisions]


@pytest.fixture(scope="module")
def stdlib_texts() -> list[str]:
    return [r["text"] for r in itertools.islice(demo_records(), 3000)]


@pytest.mark.parametrize("engine", ["datatrove", "fast"])
@pytest.mark.parametrize("params", [{}, {"only_remove_public_ips": False}, {"remove_emails": False},
                                    {"remove_ips": False, "email_replacement": ["x@y.z"]}])
def test_pii_equals_datatrove_document_by_document(stdlib_texts, params, engine):
    texts = stdlib_texts + EDGE_CASES
    expected = _datatrove_alone(texts, **{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})
    got = _tokenmill(texts, params, engine)
    assert got == expected
    changed = sum(a != b for a, b in zip(texts, got))
    assert changed >= (40 if params.get("remove_emails", True) else 5)  # real addresses were found and replaced


def test_replacements_cycle_within_a_document_and_restart_with_the_next():
    text = "a@b.org c@d.org e@f.org"
    once, twice = _tokenmill([text, text], {}, "fast")
    assert once == twice == "email@example.com firstname.lastname@example.org email@example.com"


def test_private_addresses_are_kept_unless_asked():
    text = "192.168.1.20 and 8.8.8.8"
    assert _tokenmill([text], {}, "fast") == ["192.168.1.20 and 22.214.171.124"]
    assert _tokenmill([text], {"only_remove_public_ips": False}, "fast") == ["22.214.171.124 and 126.96.36.199"]


def test_pii_stage_parameters_are_checked():
    with pytest.raises(RecipeError, match=r"filter 1 \(pii\): 'email_replacement' must list at least one"):
        parse_recipe({"filters": [{"name": "pii", "params": {"email_replacement": []}}]}, "r.yaml")
    with pytest.raises(RecipeError, match="expected true or false"):
        parse_recipe({"filters": [{"name": "pii", "params": {"remove_ips": "yes"}}]}, "r.yaml")
    from pipelines.stream_job import recipe_epilog

    assert f"  {'pii':<18} {STAGES['pii'].doc}" in recipe_epilog()  # listed in prepare/filter --help


def test_filter_with_pii_redacts_and_keeps_the_originals(stdlib_texts, tmp_path):
    records = [{"id": f"doc{i}", "text": t} for i, t in enumerate(stdlib_texts[:600] + EDGE_CASES[:-1])]
    path = write_jsonl(tmp_path / "in.jsonl", records)
    recipe = tmp_path / "pii.yaml"
    recipe.write_text("filters:\n  - {name: pii}\n")
    manifest = run(FilterConfig(inputs=[path], output=str(tmp_path / "out"), recipe=str(recipe), emit_modified=True))
    texts = [r["text"] for r in records]
    expected = dict(zip((r["id"] for r in records), _datatrove_alone(texts)))
    kept = {d["id"]: d["text"] for d in iter_documents(str(tmp_path / "out"))}
    assert kept == expected  # nothing dropped, every text as datatrove redacts it
    changed = {r["id"] for r in records if expected[r["id"]] != r["text"]}
    modified = [json.loads(x) for f in sorted((tmp_path / "out" / "modified").glob("*.jsonl")) for x in f.open()]
    assert {rec["id"] for rec in modified} == changed and len(changed) >= 10
    assert manifest[m.K_COUNTS]["docs_modified"] == {"pii": len(changed)}
    emails, ips = _replacements(texts)
    assert manifest[m.K_COUNTS]["stage_counts"] == {"pii/email": emails, "pii/ip": ips} and emails > ips > 0
    from transforms.report.summary import summary_table

    table = summary_table(manifest, str(tmp_path / "out"))
    assert "found by stages" in table and "pii/email" in table and f"{emails:,}" in table
    report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "Found by stages" in report and "pii/ip" in report
    originals = {r["id"]: r["text"] for r in records}
    assert all(rec["original_text"] == originals[rec["id"]] and rec["stages"] == ["pii"] for rec in modified)
