"""A budgeted search (`--max-params`, `--max-flops`): no child over budget is ever inserted,
level 1 included, checked from the database; a budget nothing fits is one clear error."""

from __future__ import annotations

import numpy as np

from shared.space import Cell, SearchSpace
from shared.space.cost import NetworkSpec, network_costs
from shared.store import Store
from tests.controller.test_search import _env, _search

SPACE = SearchSpace(ops=("sep3x3", "max3x3", "identity"), blocks=3)
DIGITS = NetworkSpec((8, 8, 1), 10, filters=24, cells_per_stage=2)  # the test config's network


def test_a_search_with_max_params_trains_no_child_over_it(sqlite_url, tmp_path):
    budget = 100_000  # 17 of the 21 one-block networks fit; about half of level 2's candidates
    p = _search(tmp_path, _env(sqlite_url, tmp_path), "--max-params", str(budget))
    assert "17 of 21 distinct networks fit max_params 100,000" in " ".join(p.stderr.split())
    store = Store(sqlite_url)
    run = store.require_run("t")
    jobs = store.jobs(run.id)
    store.dispose()
    assert run.state == "finished" and {j.level for j in jobs} == {1, 2, 3}
    assert all(j.state == "succeeded" for j in jobs)
    cells = [Cell.from_json(j.cell, SPACE.ops) for j in jobs]
    for b in (1, 2, 3):
        level = [c for c in cells if c.num_blocks == b]
        params, flops = network_costs(SPACE.batch(level).tokens, SPACE.ops, DIGITS)
        assert params.max() <= budget, b
        stored = [j.flops for j in jobs if j.level == b]
        assert stored == flops.tolist()  # every job keeps its multiply-adds from the insert
    assert sum(j.level == 1 for j in jobs) == 17


def test_a_budget_no_one_block_cell_fits_is_one_clear_error(sqlite_url, tmp_path):
    p = _search(tmp_path, _env(sqlite_url, tmp_path), "--max-params", "5000", check=False)
    assert p.returncode == 2, p.stderr[-2000:]
    said = " ".join(p.stderr.split())
    assert "no 1-block cell fits max_params 5,000" in said and "smallest needs 10,066 params" in said
    assert "Traceback" not in p.stderr


def test_costs_are_stored_with_every_job_of_an_unbudgeted_search_too(sqlite_url, tmp_path):
    _search(tmp_path, _env(sqlite_url, tmp_path), "--blocks", "1")
    store = Store(sqlite_url)
    jobs = store.jobs(store.require_run("t").id)
    store.dispose()
    _, flops = network_costs(SPACE.batch([Cell.from_json(j.cell, SPACE.ops) for j in jobs]).tokens, SPACE.ops, DIGITS)
    assert len(jobs) == 21 and [j.flops for j in jobs] == flops.tolist() and np.all(flops > 0)


def test_a_pareto_search_and_pnas_pareto_print_the_front(sqlite_url, tmp_path):
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = _env(sqlite_url, tmp_path)
    p = _search(tmp_path, env, "--objective", "pareto", "--cost", "flops", "--blocks", "2")
    assert "level 2: 8 children from the fronts of (predicted accuracy, flops)" in " ".join(p.stderr.split())
    out = subprocess.run([sys.executable, "-m", "pnas.cli", "pareto", "t", "--cost", "flops", "--json"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    front = json.loads(out.stdout)
    store = Store(sqlite_url)
    jobs = store.jobs(store.require_run("t").id)
    store.dispose()
    assert len(jobs) == 29 and front and [r["flops"] for r in front] == sorted(r["flops"] for r in front)
    on = {r["id"] for r in front}
    for j in jobs:  # every child off the front is dominated by one on it, and none on it is
        beaten = [r for r in front if r["accuracy"] >= j.reward and r["flops"] <= j.flops
                  and (r["accuracy"] > j.reward or r["flops"] < j.flops)]
        assert bool(beaten) == (j.id not in on), j.id
    # the final training of the best child stores and says its network's cost (N=3, F=48 by
    # default); no broker here, so it trains in this process (the instant trainer)
    final = subprocess.run([sys.executable, "-m", "pnas.cli", "final", "t", "--run-now", "--epochs", "1"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    store = Store(sqlite_url)
    run = store.require_run("t")
    best = store.top(run.id, k=1)[0]
    (fin,) = store.jobs(run.id, kind="final")
    store.dispose()
    params, flops = network_costs(SPACE.batch([Cell.from_json(best.cell, SPACE.ops)]).tokens, SPACE.ops,
                                  NetworkSpec((8, 8, 1), 10, 48, 3))  # fmt: skip
    said = " ".join(final.stdout.split())
    assert f"network: {int(params[0]):,} parameters, {int(flops[0]):,} multiply-adds per image" in said, final.stdout
    assert fin.flops == int(flops[0])


def test_pnas_space_counts_the_networks_within_the_budget(tmp_path):
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    out = subprocess.run([sys.executable, "-m", "pnas.cli", "space", "-B", "3", "-K", "8", "--ops", ",".join(SPACE.ops),
                          "--max-params", "100000", "--dataset", "digits", "-F", "24", "-N", "2", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    levels = doc["levels"]
    assert levels[0]["within_budget"] == 17  # as the search above keeps at level 1
    assert all(0 < lv["within_budget"] <= lv["distinct"] for lv in levels)
    assert "max_params 100,000" in doc["budget"]
