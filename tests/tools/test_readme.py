"""Every `pnas` command in the README's shell examples runs as written (those that need no GPU,
no Celery worker and no download), against a copy of a small finished run where it needs one.

`EXAMPLES` lists each README line with how it is checked; a line added to or removed from the
README without a change here fails `test_the_list_matches_the_readme`, so the two cannot drift.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.tools.conftest import Finished

RUN = "t"  # the finished run's name stands in for the README's RUN
# README line (comment stripped) -> None to run it, or why it is not run here
EXAMPLES: dict[str, str | None] = {
    "bash scripts/setup.sh && .venv/bin/pnas search --preset quick":
        "re-points the shared venv and trains for minutes; the same search runs with the instant trainer in tests/tools/conftest.py",
    "pnas space --blocks 5 --beam 256": None,
    "pnas model --cell pnasnet5 --dataset cifar10 --n 3 --filters 48 --json": None,
    "pnas train --cell pnasnet5 --dataset digits --epochs 2 --n 1 --filters 8": None,
    "pnas search --preset quick --workers 2 --name my-first-run":
        "minutes of CPU training; the same command path runs with the instant trainer in tests/tools/conftest.py",
    "pnas dashboard": "serves until stopped: tests/dashboard runs it and drives it with a browser",
    "pnas latency-table --device cpu-laptop --out latency-cpu-laptop.json": None,
    "pnas search --preset quick --latency-table latency-cpu-laptop.json --max-latency-ms 5":
        "minutes of CPU training; tests/controller/test_latency_budget.py runs these flags with the instant trainer",
    "pnas db upgrade": None,
    "pnas worker --gpu 0": "needs a GPU",
    "pnas worker --gpu auto": "a Celery worker: tests/integration runs real ones",
    "pnas worker --gpu none": "a Celery worker: tests/integration runs real ones",
    "pnas worker --queue big --concurrency 1": "a Celery worker: tests/integration runs real ones",
    "pnas search --preset quick --fidelity asha --min-epochs 1 --reduction-factor 2 --epochs 4 --name digits-asha":
        "minutes of CPU training; tests/integration/test_fidelity_digits.py runs these flags with real training",
    "pnas retry RUN --dry-run": None,
    "pnas retry RUN": None,
    "pnas retry RUN --level 2 --state failed": None,
    "pnas retry RUN --job 17 --job 42": None,
    "pnas cancel RUN --dry-run": None,
    "pnas cancel RUN": None,
    "pnas cancel RUN --level 2": None,
    "pnas cancel RUN --job 17 --job 42": None,
}


def readme_commands() -> list[str]:
    """The `pnas` lines of the README's ```bash blocks, without their comments."""
    text = (ROOT / "README.md").read_text()
    out = []
    for body in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in body.splitlines():
            line = line.split("  #", 1)[0].strip()
            if re.match(r"pnas |.*&& \.venv/bin/pnas ", line):
                out.append(line)
    return out


def test_the_list_matches_the_readme() -> None:
    assert readme_commands() == list(EXAMPLES)


@pytest.fixture
def env(finished_runs: dict[str, Finished], tmp_path: Path) -> dict[str, str]:
    shutil.copy(finished_runs["sqlite"].dir / "pnas.db", tmp_path / "pnas.db")
    base = {k: v for k, v in os.environ.items() if not k.startswith("PNAS_")}
    return {**base, "PYTHONPATH": str(ROOT), "PNAS_DATABASE_URL": f"sqlite:///{tmp_path / 'pnas.db'}", "PNAS_OFFLINE": "1"}


@pytest.mark.parametrize("line", [k for k, why in EXAMPLES.items() if why is None])
def test_readme_example_runs_as_written(line: str, env: dict[str, str], tmp_path: Path) -> None:
    argv = line.replace(" RUN", f" {RUN}").split()[1:]
    p = subprocess.run([sys.executable, "-m", "pnas.cli", *argv], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, f"{line}: {p.stderr[-2000:]}"
    assert "Traceback" not in p.stderr
    if argv[0] == "space":
        assert "301,056" in p.stdout
    if argv[0] == "model":
        assert 3.0e6 < json.loads(p.stdout)["params"] < 3.4e6  # the README says about 3.2M
    if argv[0] == "latency-table":  # a table of every piece of the quick preset's networks
        assert len(json.loads((tmp_path / "latency-cpu-laptop.json").read_text())["entries"]) == 41
    if argv[0] == "train":
        assert "reward " in p.stdout and " validation / " in p.stdout and "test accuracy " in p.stdout
