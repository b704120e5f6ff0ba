"""The ``camloc`` command line: a thin shell over the library.

Each verb lives in ``camloc.commands.<verb>`` and exposes ``register(app)``; this module only
assembles them, so a verb's heavy imports (torch, OpenCV) happen when that verb runs.

Exit codes: 0 success; 1 the run finished but some inputs failed (see ``errors.jsonl``);
2 bad arguments or a fatal camloc error (message printed).
"""

from __future__ import annotations

import importlib
import sys

import typer

from camloc.errors import CamlocError

app = typer.Typer(
    name="camloc",
    help="Class Activation Mapping and weakly-supervised object localization.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Verb modules, in the order they appear in --help. A missing module is skipped so that a
# partial install still offers the verbs it has.
VERBS = ("explain", "evaluate", "score", "synth", "train", "probe", "units")

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_ERROR = 2


def _register_verbs() -> None:
    for verb in VERBS:
        try:
            module = importlib.import_module(f"camloc.commands.{verb}")
        except ModuleNotFoundError as exc:
            if exc.name == f"camloc.commands.{verb}":
                continue
            raise
        module.register(app)


@app.callback()
def _root() -> None:
    """camloc: explain classifiers with CAMs, turn maps into boxes, evaluate WSOL."""


_register_verbs()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (also used by ``python -m camloc``)."""
    try:
        rv = app(args=argv, standalone_mode=False)
        if isinstance(rv, int):
            return rv
    except CamlocError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        return EXIT_ERROR
    except SystemExit as exc:  # typer.Exit from a verb
        return int(exc.code or 0)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return EXIT_ERROR
        if isinstance(exc, click.exceptions.Exit):
            return int(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            return 130
        raise
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
