"""The prepared GPU run (`bench/gpu_suite.py`) in its CPU smoke mode: every part's code path
runs and writes its JSON, so the one short GPU slot is not spent finding a broken script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARTS = {"child", "train", "share", "score", "final"}


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(1020)
def test_the_gpu_suite_smoke_run_passes_every_part(tmp_path):
    out = tmp_path / "smoke.json"
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_suite.py"), "--smoke", "--out", str(out)],
                         capture_output=True, text=True, timeout=1000, cwd=ROOT)  # fmt: skip
    summary = [line for line in res.stdout.splitlines() if line.startswith("SUMMARY")]
    assert res.returncode == 0, "\n".join(summary) + res.stderr[-3000:]
    parts = json.loads(out.read_text())["parts"]
    assert set(parts) == PARTS
    failed = {name: row.get("error") for name, row in parts.items() if not row.get("ok")}
    assert not failed, failed
    assert parts["child"]["succeeded"] == parts["child"]["children"] == 1
    assert parts["final"]["images_per_second"] > 0 and parts["final"]["recipe"].startswith("paper-cifar")
    assert parts["final"]["augment_on"] == "device"  # the recipe's augmentation runs in the training step
    assert len(summary) == len(PARTS) + 1, summary  # one line per part and the suite's
