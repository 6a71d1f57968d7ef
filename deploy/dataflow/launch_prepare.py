"""Dataflow flex template launcher: runs ``tokenmill prepare`` with the template's parameters.

Dataflow's launcher runs this file (FLEX_TEMPLATE_PYTHON_PY_FILE) with every template parameter as ``--NAME=VALUE``,
NAME as declared in metadata.json: the prepare option's argparse name (``seq_len`` for ``--seq-len``), spelled like
Beam's and Dataflow's own options (``temp_location``). ``cli_arguments`` turns them back into
prepare's own options; Beam and Dataflow options (project, region, temp_location, sdk_container_image, ...) pass
through unchanged, so the file also runs by hand with prepare's usual options.

Dataflow launches the template with ``--template_location``: Beam then writes the job description instead of
submitting a job, and prepare returns without waiting (``pipelines.runner.template_location``); the job starts when
this process has exited, and its last step writes ``manifest.json`` and ``report.html``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from pipelines import prepare
from pipelines.cli import main as tokenmill_main
from pipelines.runner import runner_name

TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no", "")
LIST_SEPARATOR = ","  # a repeatable option (--input, --meta-field) takes one template parameter: a comma-separated list


def prepare_options() -> list[argparse.Action]:
    """prepare's options (not --help), read from the parser the ``tokenmill`` command uses."""
    ap = argparse.ArgumentParser(add_help=False)
    prepare.add_arguments(ap)
    return [a for a in ap._actions if a.option_strings]


def long_option(action: argparse.Action) -> str:
    """The option as typed on the command line, e.g. --seq-len."""
    return next(s for s in action.option_strings if s.startswith("--"))


def is_flag(action: argparse.Action) -> bool:
    """Whether the option takes no value (store_true)."""
    return action.nargs == 0


def is_repeatable(action: argparse.Action) -> bool:
    """Whether the option may be given several times (action="append")."""
    return isinstance(action, argparse._AppendAction)


def cli_arguments(argv: Sequence[str]) -> list[str]:
    """prepare's command line from a template launch's arguments.

    ``--seq_len=4096`` becomes ``--seq-len=4096``; a flag's ``--overwrite=true`` becomes ``--overwrite`` (``false``:
    left out); ``--input=a,b`` becomes ``--input=a --input=b``. Anything else passes through unchanged.
    """
    by_name = {a.dest: a for a in prepare_options()}
    out: list[str] = []
    for arg in argv:
        name, eq, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        action = by_name.get(name)
        if action is None or not eq:
            out.append(arg)
        elif is_flag(action):
            word = value.strip().lower()
            if word not in TRUE_WORDS + FALSE_WORDS:
                raise SystemExit(f"template parameter {name}: expected true or false, got {value!r}")
            if word in TRUE_WORDS:
                out.append(long_option(action))
        elif is_repeatable(action):
            out += [f"{long_option(action)}={item.strip()}" for item in value.split(LIST_SEPARATOR) if item.strip()]
        else:
            out.append(f"{long_option(action)}={value}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run tokenmill prepare on Dataflow with the template's parameters; 0 once the job is described or done."""
    args = cli_arguments(sys.argv[1:] if argv is None else argv)
    if runner_name(args) is None:  # this file exists to launch on Dataflow; prepare's own default is local
        args.append("--runner=DataflowRunner")
    return tokenmill_main(["prepare", *args])


if __name__ == "__main__":
    sys.exit(main())
