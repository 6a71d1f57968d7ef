"""Write metadata.json (the flex template's parameters) from ``tokenmill prepare``'s own argument parser.

    python deploy/dataflow/make_metadata.py          # rewrite deploy/dataflow/metadata.json
    python deploy/dataflow/make_metadata.py --check  # exit 1 when the file is not what the parser gives

Every prepare option becomes a parameter named by its argparse name (``seq_len``), with its help as help text,
optional unless the option is required, and a regex where the values are known (choices, numbers, true/false).
Options that only matter on this machine (LOCAL_ONLY) are left out. launch_prepare.py turns the parameters back
into prepare's options.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # launch_prepare.py beside this file

from pipelines.arguments import positive  # noqa: E402
from launch_prepare import LIST_SEPARATOR, is_flag, is_repeatable, long_option, prepare_options  # noqa: E402

METADATA = Path(__file__).resolve().parent / "metadata.json"
NAME = "tokenmill prepare"
DESCRIPTION = ("Read text corpora (JSONL, Parquet, text, Arrow), optionally filter and deduplicate them by a recipe, "
               "tokenize every document, pack the tokens into rows of exactly seq_len tokens and write Parquet "
               "shards, rejected records and manifest.json (written last) to the output directory.")
# Options of a local run only: the default runner's worker processes and the terminal's progress line.
LOCAL_ONLY = {
    "workers": "local worker processes of the default runner; on Dataflow use max_num_workers",
    "no_progress": "the launcher has no terminal, so no progress line is drawn anyway",
}
WHOLE_NUMBER = r"^[1-9][0-9_]*$"
INTEGER = r"^-?[0-9]+$"
TRUE_OR_FALSE = r"^(true|false)$"
PATTERNS = {"decompose_range": r"^[0-9]+:[0-9]+$"}  # values no type or choices describe


def label(action: argparse.Action) -> str:
    """A short label: the option's name in words, e.g. 'Seq len'."""
    return action.dest.replace("_", " ").capitalize()


def regexes(action: argparse.Action) -> list[str]:
    """What a value must look like, where the parser knows it."""
    if is_flag(action):
        return [TRUE_OR_FALSE]
    if action.choices:
        return ["^(" + "|".join(re.escape(str(c)) for c in action.choices) + ")$"]
    if action.dest in PATTERNS:
        return [PATTERNS[action.dest]]
    if action.type is int:
        return [INTEGER]
    if action.type is positive:
        return [WHOLE_NUMBER]
    return []


def help_text(action: argparse.Action) -> str:
    """The option's help, with how to give a flag or a list as one template parameter."""
    text = f"{long_option(action)}: {action.help}"
    if is_flag(action):
        text += " (true or false)"
    if is_repeatable(action):
        text += f" (as a template parameter: one value, or several separated by '{LIST_SEPARATOR}')"
    return text


def parameters() -> list[dict]:
    """The template parameters, in the parser's order."""
    out = []
    for action in prepare_options():
        if action.dest in LOCAL_ONLY:
            continue
        param = {"name": action.dest, "label": label(action), "helpText": help_text(action),
                 "isOptional": not action.required}
        if regexes(action):
            param["regexes"] = regexes(action)
        out.append(param)
    return out


def metadata() -> dict:
    """The whole metadata.json."""
    return {"name": NAME, "description": DESCRIPTION, "streaming": False, "parameters": parameters()}


def render() -> str:
    """metadata.json's text."""
    return json.dumps(metadata(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    """Write metadata.json, or with --check say whether it is up to date."""
    if "--check" in argv:
        if METADATA.read_text(encoding="utf-8") != render():
            print(f"{METADATA} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    METADATA.write_text(render(), encoding="utf-8")
    print(f"wrote {METADATA} ({len(parameters())} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
