"""A multi-fidelity run's page as a person sees it, in a real headless Chromium over PostgreSQL:
each level's rungs, the children ranked full epochs first with their epochs, and accuracy
against cost (parameters or FLOPs) with the front `pnas pareto` prints. The run is made by
`pnas search --fidelity asha` with the instant trainer (random strategy: no predictor to fit)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.store import Store
from tests.conftest import ROOT, fresh_pg_database
from tests.dashboard.conftest import SCREENSHOTS, start_dashboard
from tests.dashboard.test_browser import wait_for
from tests.fakes import fake_search_env

CONFIG = """
strategy = "random"
ops = ["sep3x3", "max3x3"]
blocks = 2
beam = 4
seed = 5
fidelity = "asha"
min_epochs = 1
reduction_factor = 2
[train]
dataset = "digits"
validation_size = 0.2
epochs = 4
"""
RUNGS = [1, 2, 4]


@dataclass(frozen=True)
class Asha:
    store: Store
    env: dict
    url: str  # the dashboard's base URL
    run_id: int
    empty_id: int  # an asha run with no child trained yet


@pytest.fixture(scope="module")
def asha(tmp_path_factory) -> Iterator[Asha]:
    d: Path = tmp_path_factory.mktemp("dashboard-asha")
    db = fresh_pg_database()
    (d / "asha.toml").write_text(CONFIG)
    env = fake_search_env(db, PNAS_POLL_SECONDS="0.2")
    subprocess.run(
        [sys.executable, "-m", "pnas.cli", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    p = subprocess.run([sys.executable, "-m", "pnas.cli", "search", "--config", str(d / "asha.toml"), "--name", "asha",
                        "--workers", "2"], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    store = Store(db)
    run = store.get_run("asha")
    empty, _ = store.create_run(name="asha-empty", config=run.config, seed=1)
    proc, url = start_dashboard(env, log=d / "dashboard.log")
    try:
        yield Asha(store, env, url, run.id, empty.id)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        store.dispose()


def _table(browser: Any, css: str) -> list[list[str]]:
    """The text of every cell of a table's rows (header row first), read in one script: a live
    refresh may replace the rows between two WebDriver calls."""
    return browser.execute_script(
        "return [...document.querySelectorAll(arguments[0] + ' tr')].map(r => [...r.cells].map(c => c.textContent.trim()));",
        css,
    )


def test_each_level_s_rungs_and_children_ranked_full_epochs_first(
    asha: Asha, browser: Any
) -> None:
    jobs = asha.store.jobs(asha.run_id)
    browser.get(f"{asha.url}/runs/{asha.run_id}")
    rows = _table(browser, "#rungs-table")
    assert rows[0] == ["level", "children", "1 epoch", "2 epochs", "4 epochs (full)"]
    shown = {
        int(r[0]): (int(r[1]), [int(c.split()[0]) for c in r[2:]]) for r in rows[1:]
    }
    expected = {
        b: (len(of), [sum(str(e) in (j.rung_rewards or {}) for j in of) for e in RUNGS])
        for b in sorted({j.level for j in jobs})
        for of in [[j for j in jobs if j.level == b]]
    }
    assert shown == expected and sorted(shown) == [1, 2]
    children, (done1, done2, done4) = shown[1]
    assert (
        done1 == children == 10 and 1 <= done4 < done2 < done1
    )  # every child a rung; some stopped early
    # the children table: epochs trained of the full 4, the full-epoch children first
    kids = _table(browser, "#children-table")
    col = kids[0].index("epochs")
    epochs = [r[col] for r in kids[1:]]
    assert sorted(epochs, key=lambda e: e != "4/4") == epochs and {
        "4/4",
        "1/4",
        "2/4",
    } <= set(epochs)
    # the order `pnas top` ranks in (tests/dashboard/test_api_fidelity.py plants a more accurate
    # early-stopped child; here the instant trainer's curves decide whether one exists)
    ranked = asha.store.top(asha.run_id, k=len(jobs))
    assert ranked[0].epochs_trained == 4 and [r[0] for r in kids[1:]] == [
        str(j.id) for j in ranked
    ]
    browser.save_screenshot(str(SCREENSHOTS / "run-asha.png"))


def _pareto(asha: Asha, cost: str) -> list[dict]:
    p = subprocess.run([sys.executable, "-m", "pnas.cli", "pareto", "asha", "--cost", cost, "--json"], check=False, cwd=ROOT,
                       env=asha.env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_accuracy_against_cost_marks_the_front_pnas_pareto_prints(
    asha: Asha, browser: Any
) -> None:
    from selenium.webdriver.support.ui import Select

    jobs = asha.store.jobs(asha.run_id)
    full, early = (
        sum(j.epochs_trained == 4 for j in jobs),
        sum(j.epochs_trained < 4 for j in jobs),
    )
    browser.get(f"{asha.url}/runs/{asha.run_id}")
    for cost, word, axis in (("params", "parameters", "parameters (count)"),
                             ("flops", "FLOPs", "FLOPs (multiply-adds per image)")):  # fmt: skip
        front = _pareto(asha, cost)
        assert front and all(f["epochs"] == 4 for f in front)
        Select(browser.find_element("id", "cost-axis")).select_by_value(cost)
        wait_for(f"the chart against {word}", lambda a=axis: browser.execute_script(
            "const u = window.pnasCharts.cost; return u && u.axes[0].label === arguments[0];", a))  # fmt: skip
        assert (
            browser.execute_script("return window.pnasCharts.cost.axes[1].label;")
            == "accuracy (validation, fraction)"
        )
        legend = browser.execute_script(
            "return document.querySelector('#chart-cost .u-legend').textContent;"
        )
        for label in (f"trained to the full 4 epochs ({full})", f"stopped early, not on the front ({early})",
                      f"non-dominated front ({len(front)})"):  # fmt: skip
            assert label in legend, (label, legend)
        rows = _table(browser, "#front-table")
        assert rows[0] == ["job", "level", "accuracy", word]
        assert rows[1:] == [
            [str(f["id"]), str(f["level"]), f"{f['accuracy']:.4f}", f"{f[cost]:,}"]
            for f in front
        ]
        # the front's points are the ones drawn as the front series
        drawn = browser.execute_script(
            "const d = window.pnasCharts.cost.data; return [...d[d.length - 1]].filter(v => v !== null);"
        )
        assert drawn == pytest.approx([f["accuracy"] for f in front])
        note = browser.find_element("id", "cost-note").text
        assert (
            f"{len(front)} of the {full} children trained to the full 4 epochs are on the front"
            in note
        )
    browser.save_screenshot(str(SCREENSHOTS / "run-asha-cost.png"))


def test_the_best_so_far_and_the_levels_chart_keep_early_stopped_children_apart(asha: Asha, browser: Any) -> None:
    jobs = [j for j in asha.store.jobs(asha.run_id) if j.reward is not None]
    full = [j for j in jobs if j.epochs_trained == 4]
    early = len(jobs) - len(full)
    assert full and early and max(j.reward for j in full) == asha.store.top(asha.run_id, k=1)[0].reward
    browser.get(f"{asha.url}/runs/{asha.run_id}")
    wait_for("the charts", lambda: browser.execute_script("return !!(window.pnasCharts.best && window.pnasCharts.levels);"))
    best = browser.execute_script("return [...window.pnasCharts.best.data[1]].filter(v => v !== null);")
    assert best and max(best) == pytest.approx(max(j.reward for j in full))
    legend = browser.execute_script("return document.querySelector('#chart-levels .u-legend').textContent;")
    for label in (f"trained to the full 4 epochs ({len(full)})", f"stopped early, fewer epochs ({early})"):
        assert label in legend, (label, legend)
    grey = browser.execute_script("return [...window.pnasCharts.levels.data[2]].filter(v => v !== null);")
    assert len(grey) == early


def test_predicted_vs_measured_draws_early_stopped_children_in_grey(asha: Asha, browser: Any) -> None:
    """Planted (the asha run is random search: no predictions): two children trained to the
    full 4 epochs and one stopped after 1, each with a prediction."""
    from shared.jobs import EpochMetrics, TrainResult
    from tests.shared.test_store import _cell

    store = asha.store
    run, _ = store.create_run(name="asha-pred", config=store.get_run(asha.run_id).config, seed=2)
    ids = store.add_jobs(run.id, level=2, children=[(f"p{i}", _cell(i), p, i + 1) for i, p in enumerate((0.9, 0.8, 0.6))],
                         max_attempts=1)  # fmt: skip
    for jid, acc, epochs in zip(ids, (0.85, 0.7, 0.95), (4, 4, 1)):
        a = store.claim(jid, worker="w", lease_seconds=60)
        history = [EpochMetrics(epoch=e, loss=1.0, accuracy=acc, val_loss=1.0, val_accuracy=acc, seconds=0.1)
                   for e in range(1, epochs + 1)]  # fmt: skip
        assert store.finish(jid, attempt=a, result=TrainResult(reward=acc, reward_epoch=epochs, history=history, params=1,
                                                               wall_seconds=1.0, device="cpu"))  # fmt: skip
    browser.get(f"{asha.url}/runs/{run.id}")
    wait_for("the predicted chart", lambda: browser.execute_script("return !!window.pnasCharts.pred;"))
    legend = browser.execute_script("return document.querySelector('#chart-pred .u-legend').textContent;")
    assert "level 2" in legend and "stopped early, fewer epochs (1)" in legend, legend
    series = browser.execute_script("return window.pnasCharts.pred.data.slice(1).map(s => [...s].filter(v => v !== null));")
    assert series == [pytest.approx([0.7, 0.85]), pytest.approx([0.95])]  # by prediction: 0.8, 0.9; grey apart


def test_a_run_with_nothing_trained_says_so(asha: Asha, browser: Any) -> None:
    browser.get(f"{asha.url}/runs/{asha.empty_id}")
    wait_for("the empty cost chart's sentence", lambda: "no trained child yet" in browser.execute_script(
        "return document.getElementById('chart-cost').textContent;"))  # fmt: skip
    assert not browser.find_element("id", "front-table").is_displayed()
    assert _table(browser, "#rungs-table") == [
        ["level", "children", "1 epoch", "2 epochs", "4 epochs (full)"]
    ]
