"""A search with a latency table (`--latency-table`, `--max-latency-ms`, `--objective pareto
--cost latency`): no child predicted over the budget is inserted, level 1 included, the
children come from the (predicted accuracy, latency) fronts, every job keeps its predicted latency, and
`pnas pareto --cost latency` and `pnas top` show it. The table is made up (each piece's
multiply-adds as its milliseconds): what is checked is the budget, not a device."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from shared.latency import load_table, predict_latency
from shared.space import Cell
from shared.store import Store
from tests.conftest import ROOT
from tests.controller.test_budget import DIGITS, SPACE
from tests.controller.test_search import _env, _search
from tests.shared.test_latency import table_of


def test_a_search_with_max_latency_ms_trains_no_child_predicted_over_it(sqlite_url, tmp_path):
    path = tmp_path / "latency.json"
    table_of(DIGITS, SPACE.ops, SPACE.blocks, lambda p: p.flops() / 1e6).save(path)
    table = load_table(path)
    one = predict_latency(SPACE.one_block_cells().tokens, SPACE.ops, DIGITS, table)
    budget = float(np.sort(one)[10])  # 11 of the 21 one-block networks fit
    env = _env(sqlite_url, tmp_path)
    p = _search(tmp_path, env, "--latency-table", str(path), "--max-latency-ms", str(budget), "--objective", "pareto",
                "--cost", "latency")  # fmt: skip
    said = " ".join(p.stderr.split())
    assert "11 of 21 distinct networks fit max_latency_ms" in said
    assert "level 2: 8 children from the fronts of (predicted accuracy, latency)" in said
    store = Store(sqlite_url)
    jobs = store.jobs(store.require_run("t").id)
    store.dispose()
    assert {j.level for j in jobs} == {1, 2, 3} and sum(j.level == 1 for j in jobs) == 11
    for b in (1, 2, 3):
        level = [j for j in jobs if j.level == b]
        want = predict_latency(SPACE.batch([Cell.from_json(j.cell, SPACE.ops) for j in level]).tokens, SPACE.ops, DIGITS, table)
        assert np.all(want <= budget), b
        np.testing.assert_allclose([j.latency_ms for j in level], want)
    front = subprocess.run([sys.executable, "-m", "pnas.cli", "pareto", "t", "--cost", "latency", "--json"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert front.returncode == 0, front.stderr
    rows = json.loads(front.stdout)
    assert rows and [r["latency_ms"] for r in rows] == sorted(r["latency_ms"] for r in rows)
    top = subprocess.run([sys.executable, "-m", "pnas.cli", "top", "t"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert top.returncode == 0 and "latency ms" in top.stdout, top.stderr
    space = subprocess.run([sys.executable, "-m", "pnas.cli", "space", "--ops", ",".join(SPACE.ops), "-B", "3", "-K", "8",
                            "--dataset", "digits", "-F", "24", "-N", "2", "--latency-table", str(path),
                            "--max-latency-ms", str(budget), "--json"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert space.returncode == 0, space.stderr
    assert json.loads(space.stdout)["levels"][0]["within_budget"] == 11
