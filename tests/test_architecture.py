"""The house's shape holds: no import cycle among tokenmill modules, no module importing another's private name,
modules small (the README names the exceptions), and `tokenmill --help` (and an argument error) without Beam or the
other heavy packages."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("pipelines", "transforms", "schemas")
MAX_LINES = 400
# modules allowed past MAX_LINES, each with its reason in the README's Layout section
LONG_MODULES: dict[str, str] = {}


def _modules() -> dict[str, Path]:
    """{dotted module name: path} of every tokenmill module."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _is_extension(module: str) -> bool:
    """A C extension module of the tree: its source ``<module path>.c`` is in the repository."""
    return (REPO / Path(*module.split("."))).with_suffix(".c").is_file()


def _resolve(module: str, level: int, here: str, is_package: bool) -> str:
    """The absolute name of a (maybe relative) ``from`` import in module ``here``."""
    if not level:
        return module
    base = here.split(".") if is_package else here.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _imports(mods: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    """Import edges between tokenmill modules (at any depth of the file), and private-name imports."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in mods:
                        edges[name].add(alias.name)
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(node.module or "", node.level, name, path.name == "__init__.py")
                if target not in mods:
                    continue
                edges[name].add(target)
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in mods:
                        edges[name].add(sub)
                    elif _is_extension(sub):
                        continue  # a package's own compiled module (built from its .c source), not a private name
                    elif alias.name.startswith("_") and not alias.name.startswith("__"):
                        private.append(f"{name} imports {target}.{alias.name}")
    return edges, private


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges[v]:
                found.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _parent_edges(edges: dict[str, set[str]], mods: dict[str, Path]) -> dict[str, set[str]]:
    """The edges without those from a package's ``__init__`` to its own submodules (they define the package)."""
    return {m: {t for t in ts if not (mods[m].name == "__init__.py" and t.startswith(m + "."))}
            for m, ts in edges.items()}


def test_no_import_cycle() -> None:
    mods = _modules()
    edges, _ = _imports(mods)
    cycles = _cycles(_parent_edges(edges, mods))
    assert not cycles, "import cycles among tokenmill modules:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert _cycles(edges) == [["a", "b", "c"], ["e"]]


def test_no_private_name_imported_across_modules() -> None:
    _, private = _imports(_modules())
    assert not private, "\n".join(private)


def test_modules_are_small() -> None:
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES and name not in LONG_MODULES}
    assert not long, f"modules over {MAX_LINES} lines (split them, or say why in README's Layout): {long}"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert all(name in readme for name in LONG_MODULES), "every long module is explained in README.md"


# what `tokenmill --help`, `tokenmill COMMAND --help` and an argument error must not import: they answer in a tenth of
# a second, and these take most of a second (the commands import them where a job runs)
HEAVY_PACKAGES = ("numpy", "pyarrow", "fsspec", "orjson", "tokenizers", "apache_beam", "pandas", "datatrove")
_COMMAND_NAMES = ("prepare", "filter", "train-tokenizer", "demo", "train-classifier", "export-megatron",
                  "eval-tokenizer", "stats", "inspect")
_ARGUMENT_ERROR = ["prepare", "-i", "x", "-o", "y", "-t", "z", "--seq-len", "many"]


def _run_cli(argv: list[str]) -> tuple[int, list[str]]:
    """main(argv) in a fresh interpreter: its exit code and the modules it imported."""
    import json

    code = (
        "import sys, json\n"
        "from pipelines.cli import main\n"
        "try:\n"
        "    code = main(json.loads(sys.argv[1]))\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "print(json.dumps({'code': code, 'modules': sorted(sys.modules)}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(argv)], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["code"], result["modules"]


@pytest.mark.parametrize("argv, exit_code", [
    (["--help"], 0),
    *[([name, "--help"], 0) for name in _COMMAND_NAMES],
    (_ARGUMENT_ERROR, 2),
], ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_help_and_argument_errors_import_no_heavy_package(argv: list[str], exit_code: int) -> None:
    """`--help` and an argument error import the standard library and a few small tokenmill modules: no Beam, no
    numpy, pyarrow, fsspec, orjson or tokenizers, and no command module but the one being run."""
    from pipelines.cli import COMMANDS

    code, modules = _run_cli(argv)
    assert code == exit_code, (argv, code)
    heavy = sorted({m.split(".")[0] for m in modules} & set(HEAVY_PACKAGES))
    assert not heavy, f"tokenmill {' '.join(argv)} imported {heavy}"
    running = argv[0] if argv[0] in COMMANDS else None
    others = sorted(e.module for name, e in COMMANDS.items() if name != running and e.module in modules)
    assert not others, f"tokenmill {' '.join(argv)} imported the modules of other commands: {others}"


def test_the_help_path_test_covers_every_command() -> None:
    from pipelines.cli import COMMANDS

    assert set(_COMMAND_NAMES) == set(COMMANDS)


def test_the_worked_example_of_adding_a_stage_works(tmp_path, monkeypatch) -> None:
    """ARCHITECTURE.md's example stage, as a module of a stages package, is found, configured and run."""
    from transforms.filter.stage import NO_FIELDS, FilterStage
    from transforms.recipe.errors import RecipeError
    from transforms.registry import discover

    code = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8").split("```python\n", 1)[1].split("```", 1)[0]
    package = tmp_path / "example_stages"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "min_lines.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    import example_stages

    found = discover(example_stages, "STAGE", FilterStage)
    assert list(found) == ["min_lines"]
    spec = found["min_lines"]
    rule = spec.reference(spec.configure({"min_lines": 2}, "recipe.yaml, filter 1"), 1.0)
    assert rule.check("first line\n\nsecond line\n", NO_FIELDS).keep
    verdict = rule.check("a single line", NO_FIELDS)
    assert (verdict.keep, verdict.reason) == (False, "too_few_lines")
    assert spec.configure({}, "r").params == {"min_lines": 3}
    with pytest.raises(RecipeError, match=r"r \(min_lines\): 'min_lines' must be at least 1"):
        spec.configure({"min_lines": 0}, "r")
    with pytest.raises(RecipeError, match="expected an integer"):
        spec.configure({"min_lines": "five"}, "r")


def test_every_command_module_has_the_command_interface() -> None:
    """cli.py is a registry: each command names its module and its help line; each module exports the same small
    interface, with its help texts (the epilog: a text, None, or a function giving it when the help is shown)."""
    from pipelines.cli import COMMANDS, command_module

    for name, entry in COMMANDS.items():
        assert isinstance(entry.help, str) and entry.help, name
        module = command_module(name)
        assert module.__name__ == entry.module, name
        for attribute in ("DESCRIPTION", "EPILOG", "BEAM", "add_arguments", "config_from_args", "launch"):
            assert hasattr(module, attribute), f"pipelines command {name!r} ({module.__name__}) lacks {attribute}"
        assert not hasattr(module, "HELP"), f"{module.__name__}: the help line is the registry's (pipelines/cli.py)"
        assert isinstance(module.DESCRIPTION, str) and module.DESCRIPTION, name
        assert module.EPILOG is None or isinstance(module.EPILOG, str) or callable(module.EPILOG), name
        if callable(module.EPILOG):
            assert isinstance(module.EPILOG(), str), name
