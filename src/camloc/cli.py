"""The ``camloc`` command line: a thin shell over the library.

Each verb lives in ``camloc.commands.<verb>`` and exposes ``register(app)``; this module only
assembles them. Verb modules import nothing heavy at module level (torch, OpenCV, Pillow and rich
are imported inside the command function), so ``camloc --help`` and usage errors stay fast.

Exit codes: 0 success; 1 the run finished but some inputs failed (see ``errors.jsonl``);
2 bad arguments or a fatal camloc error (a one-line message, no traceback); 130 interrupted
(Ctrl-C). Anything else escaping a verb is a bug in camloc and keeps its traceback. Set
``CAMLOC_DEBUG=1`` to see the traceback of every error.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import typer

from camloc.errors import CamlocError

app = typer.Typer(
    name="camloc",
    help="Class Activation Mapping and weakly-supervised object localization.",
    no_args_is_help=False,  # `camloc` alone is a usage error (exit 2, one line), see main()
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Verb modules, in the order they appear in --help: adding a verb is adding its name here (and
# writing camloc/commands/<name>.py with a register(app)). A missing module is skipped so that a
# partial install still offers the verbs it has.
VERBS = ("explain", "evaluate", "score", "compare", "synth", "train", "probe", "methods", "units", "serve",
         "export", "localizer")

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


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


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _error(message: str) -> int:
    typer.secho(f"error: {_one_line(message)}", err=True, fg="red")
    return EXIT_ERROR


def _usage_error_code(exc: BaseException) -> int | None:
    """If ``exc`` is a click/typer usage error, print it on one line and return its exit code.

    Typer < 0.24 raises ``click.exceptions.*``, newer typer its vendored ``typer._click`` copies;
    both carry ``exit_code`` and ``format_message()``, which is all this relies on (no private
    module is imported)."""
    fmt = getattr(exc, "format_message", None)
    code = getattr(exc, "exit_code", None)
    if not callable(fmt) or not isinstance(code, int) or not callable(getattr(exc, "show", None)):
        return None
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) if ctx is not None else None
    path = path if isinstance(path, str) and path else "camloc"
    if type(exc).__name__ == "NoArgsIsHelpError":  # its message is the whole help text
        message = f"missing arguments for '{path}'"
    else:
        message = _one_line(fmt()).rstrip(".")
    _error(f"{message}; see '{path} --help'")
    # a usage error is always 2 (click's UsageError); a ClickException (e.g. FileError) is 1 in
    # click, but for camloc every error that is the user's to fix exits 2
    return EXIT_ERROR


def _os_error_message(exc: OSError) -> str:
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{where}: {reason}" if where else reason


def _debug() -> bool:
    return os.environ.get("CAMLOC_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (also used by ``python -m camloc``).

    >>> main(["--no-such-flag"])
    2
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        verbs = ", ".join(c.name or "" for c in app.registered_commands)
        return _error(f"no command given: camloc COMMAND [OPTIONS], where COMMAND is one of "
                      f"{verbs} (see 'camloc --help')")
    from camloc.runtime import tune_cpu_allocator

    tune_cpu_allocator()  # large tensors stay in the heap: see camloc.runtime
    try:
        rv: Any = app(args=args, standalone_mode=False, prog_name="camloc")
    except CamlocError as exc:
        if _debug():
            raise
        return _error(str(exc))
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # sys.exit() inside a verb
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_ERROR)
    except typer.Exit as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except typer.Abort:  # typer < 0.24 turns Ctrl-C into Abort
        typer.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except OSError as exc:
        # a file or folder the user named cannot be read or written (permissions, full disk, a
        # name too long): an environment problem, not a camloc bug
        if _debug() or (exc.filename is None and exc.errno is None):
            raise
        return _error(_os_error_message(exc))
    except Exception as exc:
        code = _usage_error_code(exc)
        if code is None or _debug():
            raise
        return code
    if isinstance(rv, int) and not isinstance(rv, bool):
        if rv == EXIT_INTERRUPTED:  # typer >= 0.24 turns Ctrl-C into Exit(130) silently
            typer.echo("interrupted", err=True)
        return rv
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
