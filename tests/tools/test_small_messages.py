"""The small messages of issue 23: `pnas --help` keeps each command's first sentence whole,
`search --help` names every kind of dataset, `cancel --job` says why nothing was cancelled."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from shared.jobs import RunState
from tests.conftest import ROOT
from tests.tools.test_truthful_status import _level_one, cli  # noqa: F401  (a fixture)


def _help(*args: str) -> str:
    env = {"COLUMNS": "80", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "pnas.cli", *args, "--help"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stderr
    return " ".join(p.stdout.split())


def test_help_wraps_descriptions_instead_of_cutting_them() -> None:
    text = _help()
    assert "..." not in text.split("Commands:")[1]
    assert "Per level: scored, children by state, best, Spearman, elapsed, ETA; and the workers." in text
    assert "folder:PATH" in _help("search")


def test_cancel_of_a_job_that_does_not_match_says_why(store: Any, cli) -> None:  # noqa: F811
    rid, ids = _level_one(store, succeed=1, fail=0, cancel=0)
    store.set_run_state(rid, RunState.stopped)
    code, _, err = cli("cancel", "r", "--job", "4242")
    assert code == 2 and err.strip() == "error: job 4242 does not exist; `pnas top r` or the dashboard lists the run's children"
    code, out, _ = cli("cancel", "r", "--job", str(ids[0]))
    assert code == 0 and out.strip() == (f"job {ids[0]} is succeeded: only queued or running children can be cancelled; "
                                         "nothing to cancel")  # fmt: skip
