"""Entry point of the `pnas` command.

Each command lives in its own module under `pnas/commands/` with a `register(app)` function;
every module there is registered, in name order.
A `UserError` anywhere becomes one line on stderr and exit status 2, never a stack trace.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

import typer

from shared.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts say H[c-1]: brackets are not markup
    help="Progressive Neural Architecture Search (Liu et al., ECCV 2018) on local processes or Celery GPU workers.",
)

@app.callback()
def _root() -> None:
    """Progressive Neural Architecture Search (Liu et al., ECCV 2018)."""


def _register() -> None:
    import pnas.commands

    for mod in sorted(pkgutil.iter_modules(pnas.commands.__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):  # helpers shared by commands, not commands
            continue
        importlib.import_module(f"pnas.commands.{mod.name}").register(app)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    _register()
    try:
        app(args=argv, standalone_mode=False)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:
        # click's own errors (bad flags, usage) come here in standalone_mode=False.
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            print("aborted", file=sys.stderr)
            sys.exit(130)
        raise


if __name__ == "__main__":
    main()
