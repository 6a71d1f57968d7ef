"""The recipe runner: the same decisions and keys in a pool of processes as in one, in order; a script without a
main guard is not run again by the pool's processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from transforms.read.readers import DocBatch
from transforms.recipe.work import RecipeRunner
from transforms.recipe.recipes import parse_recipe

RECIPE = {"filters": [{"name": "c4_quality", "params": {"filter_no_terminal_punct": False}},
                      {"name": "language", "params": {"min_score": 0.0}}],
          "dedup": {"exact": True, "minhash": True}}


def test_pool_gives_the_same_decisions_and_keys_in_order(ml_texts, monkeypatch):
    import transforms.recipe.work as recipe_work

    monkeypatch.setattr(recipe_work, "PART_CHARS", 5_000)  # batches travel in several parts, put back in order
    recipe = parse_recipe(RECIPE, "r")
    policy = "Read our privacy policy here."
    pages = ["\n".join(ml_texts[i:i + 30] + [policy]) for i in range(0, 600, 30)]
    batches = [DocBatch(texts=pages[i:i + 3], ids=[str(j) for j in range(i, i + 3)]) for i in range(0, 20, 3)]
    batches.insert(2, DocBatch())  # a batch whose records were all rejected by the reader
    one = list(RecipeRunner(recipe, 1, keys=True).map(batches))
    runner = RecipeRunner(recipe, 2, keys=True)
    try:
        two = list(runner.map(batches))
    finally:
        runner.close()
    assert [b for b, _, _ in two] == batches
    assert [(d, k) for _, d, k in two] == [(d, k) for _, d, k in one]
    kept = [d for _, ds, _ in one for d in ds if d.keep]
    assert kept and all(policy not in d.text and d.meta["lang"] for d in kept)  # C4's text travels back


def test_a_script_without_main_guard_runs_once(tmp_path):
    marker = tmp_path / "runs.txt"
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from transforms.read.readers import DocBatch
        from transforms.recipe.work import RecipeRunner
        from transforms.recipe.recipes import load_recipe
        with open({str(marker)!r}, "a") as fh:
            fh.write("run\\n")
        runner = RecipeRunner(load_recipe("c4"), 2)
        batches = [DocBatch(texts=["A line of text here. " * 20] * 4, ids=list("abcd")) for _ in range(4)]
        print(sum(len(d) for _, d, _ in runner.map(batches)))
        runner.close()
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "16" and marker.read_text() == "run\n"


def test_parts_cover_every_text_once():
    from transforms.recipe.work import _parts

    texts = ["a" * n for n in (3, 9, 1, 1, 1, 20, 2)]
    parts = _parts(texts, 10)
    assert parts == [(0, 2), (2, 6), (6, 7)]
    assert _parts([], 10) == [] and _parts(["x" * 50], 10) == [(0, 1)]


def test_warmed_up_processes_are_taken_once_and_the_rest_stopped():
    from transforms.recipe.work import _WARM, cool_down, warm_up

    recipe = parse_recipe(RECIPE, "r")
    warm_up(recipe, 2, keys=True)
    warmed = next(iter(_WARM.values()))
    assert RecipeRunner.obtain(recipe, 2, keys=True) is warmed and not _WARM  # taken by the first who asks
    other = RecipeRunner.obtain(recipe, 2, keys=True)  # the next one starts its own
    assert other is not warmed
    for runner in (warmed, other):
        runner.close()
    warm_up(recipe, 2, keys=False)
    fresh = RecipeRunner.obtain(recipe, 2, keys=True)  # different work: not the warmed one
    assert fresh._pool is not None and _WARM
    fresh.close()
    pool = _WARM[next(iter(_WARM))]
    cool_down()
    assert not _WARM and pool._pool is None
    warm_up(recipe, 1, keys=True)  # one process: nothing to start ahead
    assert not _WARM
