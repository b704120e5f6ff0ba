"""The shape of the command line, held by a test: every verb in ``camloc/commands`` is parse ->
one library call -> print, so no function there (the ``register`` wrapper, the decorated command
inside it, a printer) is longer than :data:`MAX_LINES`. Option declarations belong in
``commands/options.py`` or in ``Annotated`` aliases at module level, the work in the library's
job runners (``camloc.explain.job``, ``camloc.train.run``, ``camloc.probe.job``, ...)."""

from __future__ import annotations

import ast
from pathlib import Path

import camloc.commands

MAX_LINES = 60
COMMANDS = Path(camloc.commands.__file__).parent

#: ``"module.py:function"`` allowed over the limit for now, each with its reason. Empty: none.
KNOWN_EXCEPTIONS: dict[str, str] = {}


def _function_lengths(path: Path) -> dict[str, int]:
    """``{qualified name: lines from the first decorator to the last line}`` of every function
    (nested ones included) in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    lengths: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([child.lineno] + [d.lineno for d in child.decorator_list])
                name = f"{prefix}{child.name}"
                lengths[name] = child.end_lineno - start + 1  # type: ignore[operator]
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return lengths


def test_the_commands_are_all_checked():
    names = {p.name for p in COMMANDS.glob("*.py")}
    assert {"explain.py", "compare.py", "train.py", "evaluate.py", "options.py"} <= names


def test_no_function_in_commands_is_longer_than_the_limit():
    too_long = []
    for path in sorted(COMMANDS.glob("*.py")):
        for name, lines in _function_lengths(path).items():
            key = f"{path.name}:{name}"
            if lines > MAX_LINES and key not in KNOWN_EXCEPTIONS:
                too_long.append(f"{key} has {lines} lines")
    assert not too_long, (f"functions in camloc/commands over {MAX_LINES} lines (move the work "
                          f"into the library's job runner, the options into aliases): {too_long}")


def test_the_known_exceptions_are_still_needed():
    """An exception that is no longer over the limit is removed from the list."""
    for key in KNOWN_EXCEPTIONS:
        module, name = key.split(":")
        assert _function_lengths(COMMANDS / module).get(name, 0) > MAX_LINES, key


def test_the_measure_counts_a_long_nested_command(tmp_path):
    """The check sees a command function inside ``register`` (decorators included), so a verb
    cannot pass by nesting its body."""
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_LINES))
    src = tmp_path / "verb.py"
    src.write_text(f"def register(app):\n    @app.command('v')\n    def v_cmd():\n{body}\n",
                   encoding="utf-8")
    lengths = _function_lengths(src)
    assert lengths["register.v_cmd"] == MAX_LINES + 2
    assert lengths["register"] == MAX_LINES + 3
