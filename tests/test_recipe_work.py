"""The recipe runner: the same decisions and keys in a pool of processes as in one, in order; a script without a
main guard is not run again by the pool's processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from transforms.readers import DocBatch
from transforms.recipe_work import RecipeRunner
from transforms.recipes import parse_recipe

RECIPE = {"filters": [{"name": "c4_quality", "params": {"filter_no_terminal_punct": False}},
                      {"name": "language", "params": {"min_score": 0.0}}],
          "dedup": {"exact": True, "minhash": True}}


def test_pool_gives_the_same_decisions_and_keys_in_order(ml_texts):
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
        from transforms.readers import DocBatch
        from transforms.recipe_work import RecipeRunner
        from transforms.recipes import load_recipe
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
