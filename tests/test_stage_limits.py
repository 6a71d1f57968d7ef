"""Per-document stage time limits: a document a stage cannot finish in time is rejected as ``<stage>/timeout`` and
the run goes on; user regular expressions run on RE2 where they mean the same as in ``re``."""

from __future__ import annotations

import json
import re
import time
from types import SimpleNamespace

import pytest

from pipelines import cli
from tests.conftest import write_jsonl
from transforms.filter.chain import run_chain
from transforms.filter.stage import StageRule, Verdict
from transforms.recipe.work import RecipeRunner, RecipeWork
from transforms.recipe.errors import RecipeError
from transforms.recipe.recipes import parse_recipe
from transforms.recipe.limits import StageClock, compile_search, re2_pattern

CATASTROPHIC = r"^(a+)+$"  # exponential backtracking in re on 'a'*40 + 'b'
BACKREFERENCE = r"^(\w+)+\1$"  # needs re (RE2 has no backreferences), and backtracks as badly
HOSTILE = "a" * 40 + "!"


def _recipe(pattern: str, timeout: float = 1.0):
    return parse_recipe({"filters": [{"name": "regex", "params": {"regex_exp": pattern}}],
                         "stage_timeout": timeout}, "t")


@pytest.mark.parametrize("pattern", [
    r"abc", r"^abc", r"abc$", r"a.c", r"[a-c]+x", r"[^ ]{3,}", r"(?:ab)+c", r"colou?r", r"x{2}", r"\.", r"[]a]",
    r"^$", r"\n$", r"a|b$", r"[$]", r"\$", "機器人", r"[а-я]+", r"x{,3}", r"ax{,3}b", r"x{,}", r"x{2,}",
])
def test_re2_patterns_match_exactly_where_re_does(pattern):
    engine, compiled = compile_search(pattern, 1.0)
    assert engine == "re2", pattern
    texts = ["abc", "xabc\n", "abc\n\n", "a-c", "color colour", "xx", "a.c", "]", "", "\n", "$ sign",
             "机器人 機器人", "привет мир", "ab abab abc", "   aaax", "ab", "axxb", "axxxxb"]
    for text in texts:
        assert bool(compiled.search(text)) == bool(re.search(pattern, text)), (pattern, text)


@pytest.mark.parametrize("pattern", [r"\w+", r"\d", r"\bword\b", r"(a)\1", r"(?i)abc", r"(?=a)", r"(?P<x>a)",
                                     r"\Aabc", r"[[:alpha:]]", r"a{,x}", r"a{}"])
def test_patterns_whose_meaning_differs_in_re2_stay_on_re(pattern):
    assert re2_pattern(pattern) is None
    engine, searcher = compile_search(pattern, 1.0)
    assert engine == "re"
    searcher.close()


def test_the_catastrophic_pattern_runs_on_re2_in_linear_time():
    work = RecipeWork(_recipe(CATASTROPHIC), keys=False)
    assert work.engine.stages[0][1].regex_engine == "re2"
    started = time.monotonic()
    decisions, _ = work(["a" * 40 + "b", "aaaa", "hello"])
    assert time.monotonic() - started < 1
    assert [(d.keep, d.reason) for d in decisions] == [(True, None), (False, "regex"), (True, None)]


@pytest.mark.parametrize("processes", [1, 2])
def test_a_regex_past_the_limit_on_re_is_rejected_and_the_rest_kept(processes):
    runner = RecipeRunner(_recipe(BACKREFERENCE), processes)
    runner.start()
    try:
        batch = SimpleNamespace(texts=["abab", HOSTILE, "hello", "xyxy"], metas=[])
        started = time.monotonic()
        ((_, decisions, _),) = list(runner.map([batch]))
        assert time.monotonic() - started < 8
    finally:
        runner.close()
    assert [(d.keep, d.stage, d.reason) for d in decisions] == [
        (False, "regex", "regex"), (False, "regex", "timeout"), (True, None, None), (False, "regex", "regex")]


class _Spin(StageRule):
    """A pure-Python stage that never ends on texts starting with 'spin'."""

    def check(self, text, fields):
        while text.startswith("spin"):
            pass
        return Verdict(True, text=text.upper())


class _Mark(StageRule):
    def check(self, text, fields):
        return Verdict(True, text=text + "!")


def test_a_slow_python_stage_is_stopped_at_the_limit():
    clock = StageClock(0.5)
    started = time.monotonic()
    decisions = run_chain([("mark", _Mark()), ("spin", _Spin())], ["ok", "spin forever", "fine"], clock=clock)
    assert time.monotonic() - started < 3
    assert [(d.keep, d.stage, d.reason, d.text) for d in decisions] == [
        (True, None, None, "OK!"), (False, "spin", "timeout", "spin forever!"), (True, None, None, "FINE!")]
    assert decisions[1].modified_by == ("mark",)
    # quick calls after a timeout are not affected
    assert run_chain([("spin", _Spin())], ["a"] * 1000, clock=clock)[-1].keep


@pytest.mark.parametrize("value", [0, -1, "10s", True, None])
def test_a_bad_stage_timeout_names_the_option(value):
    with pytest.raises(RecipeError, match="stage_timeout"):
        parse_recipe({"stage_timeout": value}, "t")


def test_the_default_limit_keeps_a_recipes_identity():
    plain = parse_recipe({"filters": ["gopher_quality"]}, "t")
    assert "stage_timeout" not in plain.to_dict() and plain.stage_timeout == 10
    assert parse_recipe({"filters": ["gopher_quality"], "stage_timeout": 2}, "t").to_dict()["stage_timeout"] == 2


def test_filter_command_rejects_the_hanging_document_and_finishes(tmp_path, capsys):
    data = write_jsonl(tmp_path / "in.jsonl", [{"id": "good", "text": "an ordinary document"},
                                               {"id": "bad", "text": HOSTILE},
                                               {"id": "twice", "text": "abab"}])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"stage_timeout: 1\nfilters:\n  - {{name: regex, params: {{regex_exp: '{BACKREFERENCE}'}}}}\n")
    out = tmp_path / "out"
    started = time.monotonic()
    assert cli.main(["filter", "-i", data, "-o", str(out), "--recipe", str(recipe), "--no-progress"]) == 0
    assert time.monotonic() - started < 60
    manifest = json.loads((out / "manifest.json").read_text())
    c = manifest["counts"]
    assert c["docs_rejected"] == {"regex/timeout": 1, "regex/regex": 1} and c["docs_written"] == 1
    assert manifest["recipe"]["stage_timeout"] == 1.0
    rejected = [json.loads(line) for p in sorted((out / "rejected").glob("*.jsonl")) for line in p.open()]
    assert {r["id"]: r["detail"] for r in rejected} == {"bad": "regex/timeout", "twice": "regex/regex"}
