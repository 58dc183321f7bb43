"""The dashboard's JSON API and its guards, in process (Starlette's test client) over the
store fixture (SQLite and PostgreSQL); the browser tests drive the pages themselves."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from pnas.dashboard import create_app
from shared.jobs import EpochMetrics, TrainResult
from shared.settings import Settings
from shared.store import Store
from tests.cli import run_cli

CELLS = [[[-1, "sep3x3", -2, "max3x3"]], [[-2, "identity", -1, "sep3x3"]], [[-1, "max3x3", -1, "max3x3"]],
         [[-2, "sep3x3", -2, "sep3x3"]]]  # fmt: skip


@pytest.fixture
def seeded(store: Any) -> tuple[Any, int, list[int]]:
    """A run with four children of level 1: three succeeded (0.7, 0.9, 0.8) with 2 epochs, one failed."""
    run, _ = store.create_run(name="r", config={"strategy": "pnas", "train": {"dataset": "digits"}}, seed=0)
    store.start_level(run.id, 1, candidates=4)
    ids = store.add_jobs(run.id, level=1, children=[(f"a{i}", c, None, None) for i, c in enumerate(CELLS)], max_attempts=1)
    for jid, acc in zip(ids, (0.7, 0.9, 0.8)):
        a = store.claim(jid, worker="w1", lease_seconds=60)
        for e in (1, 2):
            store.add_epoch(jid, attempt=a, metrics=EpochMetrics(epoch=e, loss=1.0 / e, accuracy=acc, val_loss=1.0 / e,
                                                                 val_accuracy=acc - 0.1 / e, seconds=0.1))  # fmt: skip
        store.finish(jid, attempt=a, result=TrainResult(reward=acc, reward_epoch=2, history=[], params=10, wall_seconds=1.0, device="cpu"))
    a = store.claim(ids[3], worker="w2", lease_seconds=60)
    store.fail(ids[3], attempt=a, error_class="final", message="boom")
    return store, run.id, ids


def client(store: Any, **kw: Any) -> TestClient:
    return TestClient(create_app(store, Settings(database_url=store.url), **kw))


def test_api_answers_for_every_page(seeded: tuple[Any, int, list[int]]) -> None:
    store, rid, ids = seeded
    c = client(store)
    runs = c.get("/api/runs").json()["runs"]
    assert [(r["name"], r["children_done"], r["children_total"], r["best"]) for r in runs] == [("r", 4, 4, 0.9)]
    assert c.get("/api/runs/r").json()["run"]["id"] == rid  # by name too
    run = c.get(f"/api/runs/{rid}").json()
    (lv,) = run["levels"]
    assert (lv["level"], lv["states"]["succeeded"], lv["states"]["failed"], lv["best"]) == (1, 3, 1, 0.9)
    assert lv["mean"] == pytest.approx(0.8)
    assert run["charts"]["best_so_far"] == [0.7, 0.9, 0.9]
    assert run["charts"]["baseline"] is None  # no run of the other strategy on digits yet
    other, _ = store.create_run(name="rnd", config={"strategy": "random", "train": {"dataset": "digits"}}, seed=0)
    (jid,) = store.add_jobs(other.id, level=1, children=[("b0", CELLS[0], None, None)], max_attempts=1)
    a = store.claim(jid, worker="w1", lease_seconds=60)
    store.finish(jid, attempt=a, result=TrainResult(reward=0.6, reward_epoch=1, history=[], params=10, wall_seconds=1.0, device="cpu"))
    base = c.get(f"/api/runs/{rid}").json()["charts"]["baseline"]
    assert (base["name"], base["strategy"], base["best_so_far"]) == ("rnd", "random", [0.6])
    child = c.get(f"/api/children/{ids[1]}").json()
    assert [len(a["epochs"]) for a in child["curves"]] == [2] and child["accuracy"] == 0.9
    assert c.get(f"/api/children/{ids[1]}/diagram.svg").text.count("<svg") == 1
    w = c.get("/api/workers").json()
    assert sorted(x["name"] for x in w["live"]) == ["w1", "w2"] and w["offline"] == []
    for page in ("/", f"/runs/{rid}", f"/children/{ids[3]}", "/workers"):
        assert c.get(page).status_code == 200, page


def test_children_sort_filter_and_page(seeded: tuple[Any, int, list[int]]) -> None:
    store, rid, ids = seeded
    c = client(store)

    def kids(q: str) -> list[int]:
        return [k["id"] for k in c.get(f"/api/runs/{rid}/children?{q}").json()["children"]]

    assert kids("sort=accuracy&order=desc") == [ids[1], ids[2], ids[0], ids[3]]  # no accuracy: last
    assert kids("sort=accuracy&order=asc") == [ids[0], ids[2], ids[1], ids[3]]
    assert kids("state=failed") == [ids[3]]
    assert kids("q=identity") == [ids[1]]
    assert kids("sort=id&limit=2&offset=2") == ids[2:]
    assert c.get(f"/api/runs/{rid}/children?limit=1").json()["total"] == 4


def test_test_accuracy_is_shown_beside_the_accuracy(seeded: tuple[Any, int, list[int]]) -> None:
    store, rid, ids = seeded
    (jid,) = store.add_jobs(rid, level=1, children=[("t", [[-1, "identity", -1, "identity"]], None, None)], max_attempts=1)
    a = store.claim(jid, worker="w1", lease_seconds=60)
    store.finish(jid, attempt=a, result=TrainResult(reward=0.85, reward_epoch=1, history=[], params=10, wall_seconds=1.0,
                                                    device="cpu", test_accuracy=0.8125))  # fmt: skip
    c = client(store)
    rows = {k["id"]: k for k in c.get(f"/api/runs/{rid}/children?sort=test_accuracy&order=desc").json()["children"]}
    assert list(rows)[0] == jid and rows[jid]["test_accuracy"] == 0.8125 and rows[jid]["accuracy"] == 0.85
    assert rows[ids[1]]["test_accuracy"] is None  # a search child without a test evaluation
    assert c.get(f"/api/children/{jid}").json()["test_accuracy"] == 0.8125
    page = c.get(f"/children/{jid}").text
    assert 'id="test-accuracy">test accuracy 0.8125<' in page and "accuracy <b>0.8500</b>" in page
    assert "test accuracy" not in c.get(f"/children/{ids[1]}").text


def test_bad_requests_are_one_clear_line(seeded: tuple[Any, int, list[int]]) -> None:
    store, rid, _ = seeded
    c = client(store)
    r = c.get(f"/api/runs/{rid}/children?sort=colour")
    assert r.status_code == 400 and r.json()["error"].startswith("sort must be one of id, level")
    assert c.get(f"/api/runs/{rid}/children?level=x").json() == {"error": "level must be a whole number, not 'x'"}
    assert c.get("/api/runs/nope").status_code == 404
    assert c.get("/api/children/999999").status_code == 404
    assert "no child job" in c.get("/children/999999").text


def test_retry_only_with_actions_and_the_token(seeded: tuple[Any, int, list[int]]) -> None:
    store, rid, ids = seeded
    failed = ids[3]
    r = client(store).post(f"/api/children/{failed}/retry", json={})
    assert r.status_code == 403 and "--allow-actions" in r.json()["error"]
    assert "retry-child" not in client(store).get(f"/children/{failed}").text
    assert store.job(failed).state == "failed"

    c = client(store, allow_actions=True, token="t0k")
    assert c.get("/api/runs").status_code == 401
    assert c.post(f"/api/children/{failed}/retry", json={}).status_code == 401
    auth = {"Authorization": "Bearer t0k"}
    assert c.post(f"/api/children/{failed}/retry", content="x", headers=auth).status_code == 415
    assert 'id="retry-child"' in c.get(f"/children/{failed}", headers=auth).text
    r = c.post(f"/api/children/{failed}/retry", json={}, headers=auth)
    assert r.status_code == 200 and r.json()["requeued"] == [failed]
    j = store.job(failed)
    assert (j.state, j.max_attempts) == ("queued", j.attempts + 1)
    assert c.get("/api/runs", auth=("anyone", "t0k")).status_code == 200  # basic auth: the token as password
    assert c.get("/api/runs", auth=("anyone", "wrong")).status_code == 401


def test_the_command_refuses_to_expose_itself_without_a_token(capsys: Any, monkeypatch: Any, sqlite_url: str) -> None:
    from shared.settings import get_settings

    monkeypatch.setenv("PNAS_DATABASE_URL", sqlite_url)
    monkeypatch.delenv("PNAS_DASHBOARD_TOKEN", raising=False)
    get_settings.cache_clear()
    try:
        code, _, err = run_cli(capsys, "dashboard", "--host", "0.0.0.0")
        assert code == 2 and err.count("\n") == 1 and "PNAS_DASHBOARD_TOKEN" in err
        code, _, err = run_cli(capsys, "dashboard", "--allow-actions")
        assert code == 2 and err.count("\n") == 1 and "--allow-actions needs a token" in err
    finally:
        get_settings.cache_clear()


def test_the_read_only_url_is_used_for_reads(seeded: tuple[Any, int, list[int]]) -> None:
    """Reads go through the store given (the read-only role's); retry through action_store."""
    store, rid, ids = seeded

    class Refuses:
        def __getattr__(self, name: str) -> Any:
            if name in ("retry", "set_run_state"):
                raise AssertionError("wrote through the read-only store")
            return getattr(store, name)

    c = client(Refuses(), allow_actions=True, token="t", action_store=store)
    r = c.post(f"/api/children/{ids[3]}/retry", json={}, headers={"Authorization": "Bearer t"})
    assert r.status_code == 200 and store.job(ids[3]).state == "queued"


def test_retry_a_whole_run_by_level(seeded: tuple[Any, int, list[int]]) -> None:
    store, rid, ids = seeded
    c = client(store, allow_actions=True, token="t")
    auth = {"Authorization": "Bearer t"}
    r = c.post(f"/api/runs/{rid}/retry", json={"level": "one"}, headers=auth)
    assert r.status_code == 400 and r.json()["error"] == "level must be a whole number, not 'one'"
    assert c.post(f"/api/runs/{rid}/retry", json={"level": 2}, headers=auth).json()["requeued"] == []
    assert c.post(f"/api/runs/{rid}/retry", json={"level": 1}, headers=auth).json()["requeued"] == [ids[3]]
    assert store.job(ids[3]).state == "queued"


def test_cancel_only_with_actions_as_pnas_cancel_does(seeded: tuple[Any, int, list[int]]) -> None:
    store, rid, ids = seeded
    store.retry(rid, job_ids=[ids[3]])  # queued again: something to cancel
    assert client(store).post(f"/api/children/{ids[3]}/cancel", json={}).status_code == 403
    assert "cancel-child" not in client(store).get(f"/children/{ids[3]}").text
    c = client(store, allow_actions=True, token="t")
    auth = {"Authorization": "Bearer t"}
    assert 'id="cancel-child"' in c.get(f"/children/{ids[3]}", headers=auth).text
    assert 'id="cancel-child"' not in c.get(f"/children/{ids[1]}", headers=auth).text  # succeeded: nothing to cancel
    r = c.post(f"/api/children/{ids[3]}/cancel", json={}, headers=auth)
    assert r.status_code == 200 and r.json()["cancelled"] == [ids[3]]
    assert store.job(ids[3]).state == "cancelled"
    assert c.post(f"/api/runs/{rid}/cancel", json={}, headers=auth).json()["cancelled"] == []
    lv = c.get(f"/api/runs/{rid}", headers=auth).json()["levels"][0]
    # the progress bar counts trained children: a cancelled one does not fill it (shared.progress)
    assert (lv["states"]["cancelled"], lv["done"], lv["cancelled"], lv["total"]) == (1, 3, 1, 4)


def test_children_open_sorted_by_accuracy_best_first(seeded: tuple[Any, int, list[int]]) -> None:
    store, rid, ids = seeded
    c = client(store)
    kids = c.get(f"/api/runs/{rid}/children").json()
    assert (kids["sort"], kids["order"]) == ("accuracy", "desc")
    assert [k["id"] for k in kids["children"]] == [ids[1], ids[2], ids[0], ids[3]]  # 0.9, 0.8, 0.7, failed last
    page = c.get(f"/runs/{rid}").text
    assert 'data-sort="accuracy" data-order="desc"' in page
    assert 'data-sort="id" data-order="asc"' in c.get(f"/runs/{rid}?sort=id&order=asc").text  # the address keeps it
    assert '<td class="w">w1</td>' in page  # the worker column does not wrap (td.w: white-space: nowrap)


def _retried_then_succeeded(store: Any, run_id: int) -> int:
    (jid,) = store.add_jobs(run_id, level=1, children=[("z", [[-1, "sep3x3", -1, "sep3x3"]], None, None)], max_attempts=2)
    a = store.claim(jid, worker="w1", lease_seconds=60)
    store.fail(jid, attempt=a, error_class="retryable", message="ResourceExhaustedError: OOM",
               log_tail="Traceback (most recent call last):\nResourceExhaustedError: OOM", retryable=True)  # fmt: skip
    a = store.claim(jid, worker="w2", lease_seconds=60)
    store.finish(jid, attempt=a, result=TrainResult(reward=0.75, reward_epoch=1, history=[], params=10, wall_seconds=1.0,
                                                    device="cpu"), log_tail="epoch 1: val_accuracy 0.75")  # fmt: skip
    return jid


def test_each_attempt_s_log_tail_is_shown_under_its_label(seeded: tuple[Any, int, list[int]], capsys: Any,
                                                          monkeypatch: Any) -> None:  # fmt: skip
    store, rid, ids = seeded
    jid = _retried_then_succeeded(store, rid)
    c = client(store)
    logs = c.get(f"/api/children/{jid}").json()["logs"]
    assert [(a["attempt"], a["label"]) for a in logs] == [
        (1, "attempt 1: failed, to be retried (retryable: ResourceExhaustedError: OOM)"),
        (2, "attempt 2: succeeded (accuracy 0.7500)")]
    assert "OOM" in logs[0]["text"] and logs[1]["text"] == "epoch 1: val_accuracy 0.75"
    page = c.get(f"/children/{jid}").text
    assert page.index("attempt 1: failed") < page.index("Traceback") < page.index("attempt 2: succeeded") < page.index("epoch 1: val")
    from shared.settings import get_settings

    monkeypatch.setenv("PNAS_DATABASE_URL", store.url)
    get_settings.cache_clear()
    try:
        code, out, _ = run_cli(capsys, "show", str(jid))
    finally:
        get_settings.cache_clear()
    assert code == 0
    assert out.index("log tail of attempt 1: failed") < out.index("ResourceExhaustedError: OOM\n") < out.index(
        "log tail of attempt 2: succeeded (accuracy 0.7500)") < out.index("epoch 1: val_accuracy 0.75")


def test_final_trainings_are_listed_and_say_what_they_are(seeded: tuple[Any, int, list[int]]) -> None:
    store, rid, ids = seeded
    c = client(store)
    assert 'id="no-finals"' in c.get(f"/runs/{rid}").text
    best = store.job(ids[1])
    (fid,) = store.add_jobs(rid, level=0, children=[(best.arch_id, best.cell, None, None)], max_attempts=2, kind="final",
                            train={"recipe": "paper-cifar", "epochs": 600})  # fmt: skip
    (row,) = c.get(f"/api/runs/{rid}").json()["finals"]
    assert (row["id"], row["state"], row["recipe"]) == (fid, "queued", "paper-cifar")
    assert f'href="/children/{fid}"' in c.get(f"/runs/{rid}").text
    child = c.get(f"/api/children/{fid}").json()
    assert child["final"] == {"recipe": "paper-cifar", "source_job": ids[1], "source_rank": 1, "source_accuracy": 0.9}
    assert child["where"] == "not taken by a worker yet"
    page = c.get(f"/children/{fid}").text
    assert "final training (paper-cifar) of search child" in page and "level 0" not in page and "- on -" not in page
    store.register_worker("gpu-node-1", hostname="h", device="GPU 0: H100")
    store.claim(fid, worker="gpu-node-1", lease_seconds=60)
    assert c.get(f"/api/children/{fid}").json()["where"] == "gpu-node-1 on GPU 0: H100"


def test_the_predicted_chart_says_why_it_is_empty(store: Any) -> None:
    c = client(store)
    evo, _ = store.create_run(name="evo", config={"strategy": "evolution", "train": {"dataset": "digits"}}, seed=0)
    pn, _ = store.create_run(name="pn", config={"strategy": "pnas", "train": {"dataset": "digits"}}, seed=0)
    for run in (evo, pn):
        store.start_level(run.id, 1, candidates=1)
        (jid,) = store.add_jobs(run.id, level=1, children=[("a", CELLS[0], None, None)], max_attempts=1)
        a = store.claim(jid, worker="w1", lease_seconds=60)
        store.finish(jid, attempt=a, result=TrainResult(reward=0.5, reward_epoch=1, history=[], params=1, wall_seconds=1.0, device="cpu"))
    d = c.get(f"/api/runs/{evo.id}").json()
    assert "evolution has no predictor" in d["charts"]["predicted_vs_measured_note"]
    assert d["run"]["level_word"] == "generation"
    page = c.get(f"/runs/{evo.id}").text
    assert "Accuracy per generation" in page and "<th>generation</th>" in page
    assert "level 1 has no prediction" in c.get(f"/api/runs/{pn.id}").json()["charts"]["predicted_vs_measured_note"]
    assert "Accuracy per level" in c.get(f"/runs/{pn.id}").text


def test_favicon_is_served(store: Any) -> None:
    r = client(store).get("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml") and b"<svg" in r.content


def test_the_start_line_says_what_the_dashboard_allows(capsys: Any, monkeypatch: Any, sqlite_url: str) -> None:
    import uvicorn

    from shared.settings import get_settings

    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: None)  # the line, not the server
    made = Store(sqlite_url)  # the dashboard refuses a database that is not there
    made.ensure_schema(auto_upgrade=True)
    made.dispose()
    monkeypatch.setenv("PNAS_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PNAS_DASHBOARD_TOKEN", "t0k")
    get_settings.cache_clear()
    try:
        code, out, _ = run_cli(capsys, "dashboard", "--allow-actions")
        assert code == 0 and "(retry and cancel allowed, token required)" in out
        code, out, _ = run_cli(capsys, "dashboard")
        assert code == 0 and "(read-only, token required)" in out
    finally:
        get_settings.cache_clear()


def test_pnas_show_says_a_final_training_is_one(seeded: tuple[Any, int, list[int]], capsys: Any, monkeypatch: Any) -> None:
    from shared.settings import get_settings

    store, rid, ids = seeded
    best = store.job(ids[1])
    (fid,) = store.add_jobs(rid, level=0, children=[(best.arch_id, best.cell, None, None)], max_attempts=2, kind="final",
                            train={"recipe": "paper-cifar"})  # fmt: skip
    monkeypatch.setenv("PNAS_DATABASE_URL", store.url)
    get_settings.cache_clear()
    try:
        code, out, _ = run_cli(capsys, "show", str(fid))
    finally:
        get_settings.cache_clear()
    assert code == 0 and "final training, queued" in out and "level 0" not in out
    assert "attempts 0 of 2; not taken by a worker yet" in out and "- on -" not in out
