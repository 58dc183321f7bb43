"""Entry point of the `pnas` command.

Each command lives in its own module under `pnas/commands/` with a `register(app)` function;
every module there is registered, in name order.
A `UserError` anywhere becomes one line on stderr and exit status 2, never a stack trace;
`NothingToShow` one line and exit status 1; a bad argument or flag one line and exit status 2; a database role that lacks a privilege one line
naming the role and what to grant. TensorFlow's start-up lines are dropped unless
``--verbose`` is given (anywhere on the command line).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import pkgutil
import sys
from contextlib import nullcontext

import typer

from shared.errors import NothingToShow, UserError
from shared.tf_noise import hush_tensorflow, quiet_stderr

# Commands whose stderr is left alone here: `worker` filters the Celery it becomes, and `search`
# filters its own predictor fit and keeps its local workers' logs (TF errors there matter).
LOUD_COMMANDS = frozenset({"worker", "search"})

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts say H[c-1]: brackets are not markup
    help="Progressive Neural Architecture Search (Liu et al., ECCV 2018) on local processes or Celery GPU workers.",
)

@app.callback(epilog="--verbose (anywhere): also show TensorFlow's own log lines.")
def _root() -> None:
    """Progressive Neural Architecture Search (Liu et al., ECCV 2018)."""


def _register() -> None:
    import pnas.commands

    for mod in sorted(pkgutil.iter_modules(pnas.commands.__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):  # helpers shared by commands, not commands
            continue
        importlib.import_module(f"pnas.commands.{mod.name}").register(app)
    for info in app.registered_commands:
        if info.short_help is None:
            info.short_help = short_help(info.help or info.callback.__doc__ if info.callback else None)


def short_help(doc: str | None) -> str | None:
    """The first sentence of a command's help, whole: `pnas --help` wraps it rather than
    cutting it at the terminal's width with "..." (click's default short help)."""
    if not doc:
        return None
    para = " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())
    end = para.find(". ")
    return para if end < 0 else para[: end + 1]


def _no_interrupted_close_tracebacks() -> None:
    """A Ctrl-C (or a SIGTERM, raised as one) that lands while SQLAlchemy's pool closes a
    connection is logged by the pool as "Exception closing connection" with a traceback before
    the interrupt goes on; the command then says "stopped" itself, so that record is dropped.
    SQLAlchemy's other warnings and errors print as before (Python's last-resort format)."""
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    handler.addFilter(lambda r: not (r.exc_info and isinstance(r.exc_info[1], KeyboardInterrupt)))
    logging.getLogger("sqlalchemy").addHandler(handler)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in args
    args = [a for a in args if a != "--verbose"]
    if verbose:  # for the processes a command starts (a worker's Celery and its pool children)
        os.environ["PNAS_VERBOSE"] = "1"
    command = next((a for a in args if not a.startswith("-")), None)
    hush = not verbose and command not in LOUD_COMMANDS
    if hush:
        hush_tensorflow()  # before anything imports TensorFlow
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    _no_interrupted_close_tracebacks()
    _register()
    with quiet_stderr() if hush else nullcontext():
        _run(args)


def _run(args: list[str]) -> None:
    try:
        app(args=args, standalone_mode=False)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except NothingToShow as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:
        # click's own errors (bad flags, usage) come here in standalone_mode=False.
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            line = _usage_line(exc)
            if line is None:
                exc.show()
            else:
                print(f"error: {line}", file=sys.stderr)
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            print("aborted", file=sys.stderr)
            sys.exit(130)
        denied = _privilege_error(exc)
        if denied:
            print(f"error: {denied}", file=sys.stderr)
            sys.exit(2)
        raise


def _usage_line(exc: BaseException) -> str | None:
    """A bad argument or flag as one line, naming the command's --help; None for what click
    shows as a page (`pnas` or `pnas db` alone: the help)."""
    usage = any(c.__name__ == "UsageError" for c in type(exc).__mro__)  # typer carries its own click
    if not usage or type(exc).__name__ == "NoArgsIsHelpError":
        return None
    names, ctx = [], getattr(exc, "ctx", None)
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    command = " ".join(["pnas", *reversed(names)])
    message = " ".join(exc.format_message().split()).rstrip(".")  # type: ignore[attr-defined]
    return f"{message}; `{command} --help` lists what it takes"


def _privilege_error(exc: BaseException) -> str | None:
    """One line for PostgreSQL's "permission denied" (SQLSTATE 42501), else None."""
    orig = getattr(exc, "orig", None)
    if (getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)) != "42501":  # psycopg2 / psycopg
        return None
    from sqlalchemy.engine import make_url

    from shared.errors import first_line
    from shared.settings import get_settings

    role = make_url(get_settings().database_url).username or os.environ.get("PGUSER") or "(the connecting role)"
    return (
        f"the database role {role!r} lacks a privilege on the pnas tables ({first_line(exc)}); as their owner, run "
        f"`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}` (and USAGE on its sequences) "
        f"to search, or `pnas db grant-readonly {role}` to read"
    )


if __name__ == "__main__":
    main()
