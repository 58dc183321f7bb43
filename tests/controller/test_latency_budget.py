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
import pytest

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
    # `pnas final` says and stores its network's predicted latency, as the search's children
    # get theirs, when the table covers that network (the search's F and N here); the default
    # final network (N=3, F=48) it does not cover: it says so and trains all the same
    store = Store(sqlite_url)
    best = store.top(store.require_run("t").id, k=1)[0]  # rank 1, what `pnas final` trains
    store.dispose()
    cell = SPACE.batch([Cell.from_json(best.cell, SPACE.ops)])
    for flags, want in ((("--n", "2", "--filters", "24"), float(predict_latency(cell.tokens, SPACE.ops, DIGITS, table)[0])),
                        ((), None)):  # fmt: skip
        final = subprocess.run([sys.executable, "-m", "pnas.cli", "final", "t", "--run-now", "--epochs", "1", *flags],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert final.returncode == 0, final.stderr
        said = " ".join(final.stdout.split())
        store = Store(sqlite_url)
        (fin,) = [j for j in store.jobs(store.require_run("t").id, kind="final") if j.train["filters"] == (24 if flags else 48)]
        store.dispose()
        if want is None:
            assert fin.latency_ms is None and "latency: not predicted: the latency table" in said and "F=48 N=3" in said, said
        else:
            assert fin.latency_ms == pytest.approx(want)
            assert f"latency: {want:.3g} ms predicted at batch size 1 on 'test' ({path})" in said, said
