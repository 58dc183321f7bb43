"""Run the `pnas` command in this process and capture what a person would see."""

from __future__ import annotations


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``pnas ARGV...``; output captured so far is dropped."""
    from pnas.cli import main

    capsys.readouterr()
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err
