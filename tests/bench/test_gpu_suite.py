"""bench/gpu_suite.py --smoke: every part of the GPU suite runs on the CPU and writes its figures.

The GPU figures come only from a GPU run; this checks that the script a scarce GPU slot
will run does not fail on a typo, and that its JSON and summary lines are complete.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

PARTS = ["child", "train", "share", "score", "final"]


def test_gpu_suite_smoke_runs_every_part(tmp_path) -> None:  # noqa: ANN001
    out = tmp_path / "suite.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    res = subprocess.run(
        [sys.executable, "bench/gpu_suite.py", "--smoke", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    doc = json.loads(out.read_text())
    failed = {p: v.get("error") or v.get("summary") for p, v in doc["parts"].items() if not v.get("ok")}
    assert res.returncode == 0 and not failed, (failed, res.stdout[-3000:])
    assert list(doc["parts"]) == ["child", "share", "train", "score", "final"]  # smoke groups
    lines = [line for line in res.stdout.splitlines() if line.startswith("SUMMARY ")]
    assert [line.split()[1].rstrip(":") for line in lines] == ["child", "share", "train", "score", "final", "suite"]
    parts = doc["parts"]
    assert parts["child"]["succeeded"] == parts["child"]["children"] >= 1 and all(
        0 <= r <= 1 for r in parts["child"]["rewards"]
    )
    assert set(parts["train"]["rows"]) == {"fp32", "mixed", "mixed+xla"}
    assert all(v["images_per_second"] > 0 for v in parts["train"]["rows"].values())
    assert set(parts["share"]["ratio_vs_one"]) == {"1", "2"} and parts["share"]["recommended_k"] in (1, 2)
    assert parts["score"]["max_abs_diff"] < 1e-3 and parts["score"]["tf_seconds"] > 0
    assert parts["final"]["images_per_second"] > 0
