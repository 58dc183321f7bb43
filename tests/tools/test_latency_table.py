"""`pnas latency-table`: a table made elsewhere is checked and copied (--import); what is
missing is one line. (Measuring one: the README example in test_readme.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from shared.space.cost import NetworkSpec
from tests.conftest import ROOT
from tests.shared.test_latency import table_of


def _pnas(tmp_path, *args):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PNAS_")}, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pnas.cli", "latency-table", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_a_table_from_another_machine_is_checked_and_copied(tmp_path):
    table_of(NetworkSpec((8, 8, 1), 10, 8, 1), ("sep3x3", "identity"), 2, lambda p: 1.0).save(tmp_path / "t4.json")
    p = _pnas(tmp_path, "--import", "t4.json", "--out", "copy.json")
    assert p.returncode == 0, p.stderr
    assert "device 'test'" in p.stdout and "F=8 N=1" in p.stdout and "--latency-table copy.json" in p.stdout
    assert json.loads((tmp_path / "copy.json").read_text()) == json.loads((tmp_path / "t4.json").read_text())


def test_what_is_missing_is_one_line(tmp_path):
    p = _pnas(tmp_path)
    assert p.returncode == 2 and "give --device NAME" in p.stderr and "Traceback" not in p.stderr
    p = _pnas(tmp_path, "--import", "nowhere.json")
    assert p.returncode == 2 and "does not exist" in p.stderr and "pnas latency-table --device" in p.stderr
