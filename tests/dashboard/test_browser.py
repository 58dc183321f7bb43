"""The dashboard as a person sees it, in a real headless Chromium, over a real PostgreSQL
holding a finished run and a live one (both searched by `pnas search` with the instant
trainer): the runs page, live counts, sorting, a child's diagram and learning curve, and
retry, allowed or refused."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from shared.jobs import TrainResult
from shared.space import Cell
from shared.store import Store
from tests.conftest import ROOT, fresh_pg_database
from tests.dashboard.conftest import SCREENSHOTS, start_dashboard
from tests.fakes import fake_search_env

CONFIG = """
ops = ["sep3x3", "max3x3"]
blocks = 2
beam = 3
ensemble = 1
predictor = "mlp"
predictor_epochs = 10
seed = 5
[train]
dataset = "digits"
validation_size = 0.2
epochs = 3
"""
EPOCHS = 3
FAILING = Cell.of([[-2, "max3x3", -2, "max3x3"]], ["sep3x3", "max3x3"]).arch_id
TOKEN = "s3cret-dashboard-token"


@dataclass(frozen=True)
class World:
    store: Store
    env: dict
    readonly: str  # base URL of the read-only dashboard
    actions: str  # base URL of the one started with --allow-actions
    live: subprocess.Popen


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``check`` until it is truthy; an element the page replaced meanwhile (the live
    fragments refresh themselves) counts as not yet."""
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except StaleElementReferenceException:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    d: Path = tmp_path_factory.mktemp("dashboard")
    url = fresh_pg_database()
    (d / "search.toml").write_text(CONFIG)
    env = fake_search_env(url, PNAS_FAKE_FAIL=FAILING, PNAS_POLL_SECONDS="0.2")
    subprocess.run([sys.executable, "-m", "pnas.cli", "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)

    def search(name: str, extra_env: dict, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "pnas.cli", "search", "--config", str(d / "search.toml"),
                                 "--name", name, *args], cwd=ROOT, env={**env, **extra_env},
                                stdout=subprocess.DEVNULL, stderr=open(d / f"{name}.log", "w"))  # fmt: skip

    done = search("done", {}, "--workers", "2")
    ro, ro_url = start_dashboard(env, log=d / "readonly.log")
    act, act_url = start_dashboard({**env, "PNAS_DASHBOARD_TOKEN": TOKEN}, "--allow-actions", log=d / "actions.log")
    store = Store(url)
    live = None
    try:
        assert done.wait(timeout=600) == 0, (d / "done.log").read_text()[-3000:]
        # The live run, started once the other is done (its pace then does not depend on
        # how busy the machine was): one worker, each child six seconds, its 10 children of
        # level 1 a minute, so that children finish while we watch.
        live = search("live", {"PNAS_FAKE_SLEEP": "6", "PNAS_FAKE_FAIL": ""}, "--workers", "1")
        wait_for("the live run to start", lambda: store.get_run("live") is not None, timeout=120)
        yield World(store, env, ro_url, act_url, live)
    finally:
        for p in [q for q in (live, ro, act, done) if q is not None]:
            p.terminate()
        for p in [q for q in (live, ro, act, done) if q is not None]:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        store.dispose()


def run_id(w: World, name: str) -> int:
    r = w.store.get_run(name)
    assert r is not None
    return r.id


def shot(browser: Any, name: str) -> None:
    browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def test_runs_page_lists_both_runs(world: World, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(world.readonly + "/")
    names = [e.get_attribute("data-run") for e in browser.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")]
    assert {"done", "live"} <= set(names)  # later tests add runs of their own
    shot(browser, "runs")


def test_live_run_counts_change_without_a_reload(world: World, browser: Any) -> None:
    rid = run_id(world, "live")
    wait_for("the live run's first child to start training",
             lambda: sum(world.store.level_overview(rid).get(1, {}).get("states", {}).get(st, 0)
                         for st in ("running", "succeeded")), timeout=120)  # fmt: skip
    browser.get(f"{world.readonly}/runs/{rid}")
    def done() -> str:  # read in the page: the fragment may be swapped between find and read
        return str(browser.execute_script("return document.getElementById('run-done').textContent;"))

    first = done()
    browser.execute_script("window.__sameDocument = true;")  # gone if the page were reloaded
    later = wait_for("the done count to change on the page", lambda: (t := done()) != first and t, timeout=60)
    assert browser.execute_script("return window.__sameDocument === true;")
    assert int(later) > int(first)
    assert world.live.poll() is None, "the live run ended before we watched it"
    shot(browser, "run-live")


def test_children_open_best_first_and_the_address_keeps_the_sort(world: World, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    rid = run_id(world, "done")
    best = world.store.top(rid, k=1)[0]
    browser.get(f"{world.readonly}/runs/{rid}")
    # read in one script: a live refresh may replace the rows between two WebDriver calls
    accs = [float(a) for a in browser.execute_script(
        "return [...document.querySelectorAll('#children-table tbody tr')].map(r => r.dataset.accuracy).filter(Boolean);")]  # fmt: skip
    assert accs == sorted(accs, reverse=True) and accs[0] == pytest.approx(best.reward), "the table does not open best first"
    assert browser.find_element(By.CSS_SELECTOR, "#children-table tbody tr").get_attribute("data-id") == str(best.id)
    assert browser.execute_script("return getComputedStyle(document.querySelector('#children-table td.w')).whiteSpace;") == "nowrap"
    browser.find_element(By.CSS_SELECTOR, "#children-table th[data-sort=id]").click()
    first = min(j.id for j in world.store.jobs(rid))
    wait_for("the table sorted by id", lambda: browser.find_element(
        By.CSS_SELECTOR, "#children-table tbody tr").get_attribute("data-id") == str(first))  # fmt: skip
    assert "sort=id" in browser.current_url and "order=asc" in browser.current_url, browser.current_url
    browser.get(browser.current_url)  # a reload (or a shared link) opens the same view
    assert browser.find_element(By.CSS_SELECTOR, "#children-table tbody tr").get_attribute("data-id") == str(first)
    assert "sorted-asc" in browser.find_element(By.CSS_SELECTOR, "#children-table th[data-sort=id]").get_attribute("class")
    wait_for("the run's charts", lambda: browser.execute_script(
        "return ['best', 'levels', 'pred'].every(k => window.pnasCharts[k]);"))  # fmt: skip
    n_trained = len(world.store.trained_children(rid))
    assert browser.execute_script("return window.pnasCharts.best.data[0].length;") >= n_trained
    shot(browser, "run-done")


def _trained_run(w: World, name: str, strategy: str) -> int:
    """A run of ``strategy`` written straight into the store: level (generation) 1 trained."""
    run, _ = w.store.create_run(name=name, config={"strategy": strategy, "blocks": 2, "beam": 3,
                                                   "train": {"dataset": "other"}}, seed=0)  # fmt: skip
    w.store.start_level(run.id, 1, candidates=2)
    cells = [[[-1, "sep3x3", -2, "max3x3"]], [[-2, "max3x3", -1, "sep3x3"]]]
    for jid, acc in zip(w.store.add_jobs(run.id, level=1, children=[(f"{name}{i}", c, None, None) for i, c in enumerate(cells)],
                                         max_attempts=1), (0.6, 0.7)):  # fmt: skip
        a = w.store.claim(jid, worker="w-test", lease_seconds=60)
        w.store.finish(jid, attempt=a, result=TrainResult(reward=acc, reward_epoch=1, history=[], params=1,
                                                          wall_seconds=1.0, device="cpu"))  # fmt: skip
    return run.id


def test_an_empty_predicted_chart_says_why(world: World, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    def pred_text() -> str:
        return str(browser.execute_script("return document.getElementById('chart-pred').textContent;"))

    evo = _trained_run(world, "evo-b", "evolution")
    browser.get(f"{world.readonly}/runs/{evo}")
    wait_for("the evolution message", lambda: "evolution has no predictor" in pred_text())
    assert "generation" in browser.find_element(By.CSS_SELECTOR, "#levels-table th").text
    assert "Accuracy per generation" in browser.page_source
    wait_for("the levels chart", lambda: browser.execute_script("return !!window.pnasCharts.levels;"))
    assert browser.execute_script("return window.pnasCharts.levels.axes[0].label;") == "generation"
    shot(browser, "run-evolution")
    level1 = _trained_run(world, "lv1-b", "pnas")
    browser.get(f"{world.readonly}/runs/{level1}")
    wait_for("the level-1 message", lambda: "level 1 has no prediction" in pred_text())
    assert "no trained child yet" not in pred_text()


def test_final_trainings_are_on_the_run_page(world: World, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    rid = run_id(world, "done")
    best = world.store.top(rid, k=1)[0]
    (fid,) = world.store.add_jobs(rid, level=0, children=[(best.arch_id, best.cell, None, None)], max_attempts=1,
                                  kind="final", train={"recipe": "paper-cifar"})  # fmt: skip
    browser.get(f"{world.readonly}/runs/{rid}")
    row = browser.find_element(By.CSS_SELECTOR, f"#finals-table tr[data-id='{fid}']")
    wait_for("the finals box to refresh itself", lambda: browser.execute_script(
        "return document.getElementById('finals').dataset.updated;"))  # fmt: skip
    row = browser.find_element(By.CSS_SELECTOR, f"#finals-table tr[data-id='{fid}']")
    assert "paper-cifar" in row.text and "queued" in row.text
    row.find_element(By.TAG_NAME, "a").click()
    wait_for("the final training's page", lambda: f"/children/{fid}" in browser.current_url)
    summary = browser.find_element(By.ID, "final-of").text
    assert "final training (paper-cifar) of search child" in summary and f"{best.id} (rank 1" in summary
    assert browser.find_element(By.ID, "child-where").text == "not taken by a worker yet"
    assert "level 0" not in browser.find_element(By.CSS_SELECTOR, "#child p.summary").text
    shot(browser, "final")


def test_a_retried_child_shows_each_attempt_s_log_under_its_label(world: World, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    rid = _trained_run(world, "retried-b", "pnas")
    (jid,) = world.store.add_jobs(rid, level=1, children=[("r0", [[-1, "max3x3", -1, "max3x3"]], None, None)], max_attempts=2)
    a = world.store.claim(jid, worker="w-test", lease_seconds=60)
    world.store.fail(jid, attempt=a, error_class="retryable", message="OOM", log_tail="Traceback: OOM", retryable=True)
    a = world.store.claim(jid, worker="w-test", lease_seconds=60)
    world.store.finish(jid, attempt=a, result=TrainResult(reward=0.8, reward_epoch=1, history=[], params=1, wall_seconds=1.0,
                                                          device="cpu"), log_tail="epoch 1: val 0.8")  # fmt: skip
    browser.get(f"{world.readonly}/children/{jid}")
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#child-attempts h3.log-label")]
    logs = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#child-attempts pre.log")]
    assert labels == ["attempt 1: failed, to be retried (retryable: OOM)", "attempt 2: succeeded (accuracy 0.8000)"]
    assert logs == ["Traceback: OOM", "epoch 1: val 0.8"]
    shot(browser, "child-retried-logs")


def test_the_favicon_is_served(world: World, browser: Any) -> None:
    browser.get(f"{world.readonly}/")
    status = browser.execute_async_script(
        "const done = arguments[0]; const href = document.querySelector('link[rel=icon]').href;"
        "fetch(href).then(r => done([r.status, r.headers.get('content-type')]));")  # fmt: skip
    assert status[0] == 200 and status[1].startswith("image/svg+xml")
    assert urllib.request.urlopen(f"{world.readonly}/favicon.ico", timeout=10).status == 200


def test_child_page_shows_the_diagram_and_one_point_per_epoch(world: World, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    best = world.store.top(run_id(world, "done"), k=1)[0]
    browser.get(f"{world.readonly}/children/{best.id}")
    img = browser.find_element(By.ID, "diagram")
    wait_for("the diagram to load", lambda: browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth;", img))
    svg = urllib.request.urlopen(f"{world.readonly}/api/children/{best.id}/diagram.svg", timeout=10).read().decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "concat" in svg
    wait_for("the learning curve", lambda: browser.execute_script("return !!window.pnasCharts.curve;"))
    xs = browser.execute_script("return Array.from(window.pnasCharts.curve.data[0]);")
    val = browser.execute_script("return Array.from(window.pnasCharts.curve.data[1]);")
    assert xs == list(range(1, EPOCHS + 1)) and all(v is not None for v in val)
    epochs = [e for e in world.store.epochs(best.id)]
    assert [e["epoch"] for e in epochs] == xs and val == pytest.approx([e["val_accuracy"] for e in epochs])
    assert len(browser.find_elements(By.CSS_SELECTOR, "table.epochs tbody tr")) == EPOCHS
    shot(browser, "child")


def _failed_child(w: World) -> int:
    (j,) = w.store.jobs(run_id(w, "done"), states=["failed"])
    return j.id


def _post(url: str, *, token: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=b"{}", method="POST", headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_without_actions_no_button_and_the_api_refuses(world: World, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    jid = _failed_child(world)
    browser.get(f"{world.readonly}/children/{jid}")
    assert "planted failure" in browser.find_element(By.CSS_SELECTOR, "p.error").text
    assert browser.find_elements(By.CSS_SELECTOR, "button.action") == []
    status, body = _post(f"{world.readonly}/api/children/{jid}/retry")
    assert status == 403 and "--allow-actions" in body["error"]
    assert world.store.job(jid).state == "failed"
    wait_for("the diagram to load", lambda: browser.execute_script(
        "const i = document.getElementById('diagram'); return i.complete && i.naturalWidth;"), timeout=60)  # fmt: skip
    shot(browser, "child-failed")
    browser.get(f"{world.readonly}/workers")
    shot(browser, "workers")
    assert browser.find_elements(By.CSS_SELECTOR, "#workers-live tbody tr"), "the live run's worker is not listed"


def test_retry_with_actions_requeues_the_child(world: World, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    jid = _failed_child(world)
    assert _post(f"{world.actions}/api/children/{jid}/retry")[0] == 401  # no token, no action
    try:
        urllib.request.urlopen(f"{world.actions}/api/runs", timeout=10)
        raise AssertionError("the dashboard with actions answered without its token")
    except urllib.error.HTTPError as exc:
        assert exc.code == 401
    browser.get(f"{world.actions}/children/{jid}?token={TOKEN}")  # the token becomes a cookie
    assert "token" not in browser.current_url
    browser.find_element(By.ID, "retry-child").click()
    WebDriverWait(browser, 10).until(lambda b: b.switch_to.alert).accept()
    wait_for("the child requeued in the database", lambda: world.store.job(jid).state == "queued", timeout=15)
    j = world.store.job(jid)
    assert j.max_attempts == j.attempts + 1
    assert world.store.get_run("done").state == "stopped"  # what `pnas retry` does to a finished run
    wait_for("the diagram to load", lambda: browser.execute_script(
        "const i = document.getElementById('diagram'); return i.complete && i.naturalWidth;"), timeout=60)  # fmt: skip
    shot(browser, "child-retried")
