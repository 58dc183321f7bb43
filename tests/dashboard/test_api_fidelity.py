"""The run page's data for a multi-fidelity run, in process over the store fixture (SQLite and
PostgreSQL): each level's rungs, the children table ranked full epochs first with each child's
epochs, and accuracy against cost with the front of the children trained to the full epochs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from pnas.dashboard import create_app
from shared.jobs import EpochMetrics, TrainResult
from shared.pareto import fronts
from shared.settings import Settings
from tests.shared.test_store import _cell

CONFIG = {"strategy": "random", "fidelity": "asha", "min_epochs": 1, "reduction_factor": 2,
          "train": {"dataset": "digits", "epochs": 4}}  # fmt: skip


def _train(store: Any, jid: int, reward: float, epochs: int, params: int) -> None:
    a = store.claim(jid, worker="w", lease_seconds=60)
    history = [EpochMetrics(epoch=e, loss=1.0, accuracy=reward, val_loss=1.0, val_accuracy=reward, seconds=0.1)
               for e in range(1, epochs + 1)]  # fmt: skip
    assert store.finish(jid, attempt=a, result=TrainResult(reward=reward, reward_epoch=epochs, history=history,
                                                           params=params, wall_seconds=1.0, device="cpu"))  # fmt: skip


@pytest.fixture
def asha(store: Any) -> tuple[Any, int, list[int]]:
    """Level 1 of an asha run (rungs 1, 2, 4 epochs): six children trained one epoch; three
    go on to 2 epochs, one of them to 4, and one is training toward 4 now."""
    run, _ = store.create_run(name="asha", config=CONFIG, seed=0)
    store.start_level(run.id, 1, candidates=6)
    ids = store.add_jobs(run.id, level=1, children=[(f"c{i}", _cell(i), None, None) for i in range(6)], max_attempts=1,
                         costs=[(100, 1000 * (i + 1)) for i in range(6)])  # fmt: skip
    for jid, acc, params in zip(
        ids, (0.5, 0.6, 0.7, 0.8, 0.9, 0.95), (500, 400, 300, 600, 900, 100)
    ):
        _train(store, jid, acc, 1, params)
    assert store.promote([(ids[3], 0, 1), (ids[4], 0, 1), (ids[5], 0, 1)]) == ids[3:]
    _train(store, ids[3], 0.82, 2, 600)
    _train(store, ids[4], 0.91, 2, 900)
    _train(store, ids[5], 0.93, 2, 100)
    assert store.promote([(ids[4], 1, 2), (ids[3], 1, 2)]) == [ids[4], ids[3]]
    _train(store, ids[4], 0.92, 4, 900)  # ids[3] stays queued toward 4 epochs
    return store, run.id, ids


def test_rungs_children_and_the_cost_front(asha: tuple[Any, int, list[int]]) -> None:
    store, rid, ids = asha
    c = TestClient(create_app(store, Settings(database_url=store.url)))
    run = c.get(f"/api/runs/{rid}").json()
    assert run["rungs"]["rungs"] == [1, 2, 4]
    (lv,) = run["rungs"]["levels"]
    assert lv["children"] == 6
    assert [(r["epochs"], r["completed"], r["training"]) for r in lv["rungs"]] == [
        (1, 6, 0),
        (2, 3, 0),
        (4, 1, 1),
    ]
    kids = c.get(f"/api/runs/{rid}/children").json()["children"]
    # ids[4] (0.92 after 4 epochs) first though ids[5] (0.93 after 2) is more accurate
    assert [k["id"] for k in kids] == [ids[4], ids[5], ids[3], ids[2], ids[1], ids[0]]
    assert [k["epochs"] for k in kids] == [4, 2, 2, 1, 1, 1]
    asc = [
        k["id"]
        for k in c.get(f"/api/runs/{rid}/children?sort=accuracy&order=asc").json()[
            "children"
        ]
    ]
    assert asc == [
        ids[0],
        ids[1],
        ids[2],
        ids[3],
        ids[5],
        ids[4],
    ]  # the reverse of the ranking
    by_epochs = c.get(f"/api/runs/{rid}/children?sort=epochs&order=desc").json()
    assert [k["epochs"] for k in by_epochs["children"]] == [4, 2, 2, 1, 1, 1]
    assert by_epochs["full_epochs"] == 4
    cost = run["charts"]["cost"]
    assert cost["full_epochs"] == 4 and cost["note"] is None
    assert {p["id"]: p["full"] for p in cost["points"]} == {
        i: i == ids[4] for i in ids if i != ids[3]
    }
    # only the one child trained to 4 epochs can be on a front: the cheaper, more accurate ids[5] is not
    assert cost["front"]["params"] == [ids[4]] and cost["front"]["flops"] == [ids[4]]
    page = c.get(f"/runs/{rid}").text
    assert (
        'id="rungs-table"' in page
        and "4 epochs (full)" in page
        and 'id="cost-axis"' in page
    )


def test_the_charts_never_take_an_early_stopped_child_for_the_best(asha: tuple[Any, int, list[int]]) -> None:
    """ids[5] (0.93 after 2 of 4 epochs) is more accurate than ids[4] (0.92 after 4): the best
    so far is ids[4]'s, as `pnas top` ranks, and the accuracy chart says which are early."""
    store, rid, ids = asha
    c = TestClient(create_app(store, Settings(database_url=store.url)))
    run = c.get(f"/api/runs/{rid}").json()
    charts = run["charts"]
    curve = charts["best_so_far"]
    assert len(curve) == 5  # the five succeeded children, ids[3] is training toward 4 epochs
    # None until ids[4] reached 4 epochs (the children finish in an order the clock decides)
    assert curve[-1] == 0.92 and set(curve) <= {None, 0.92}
    assert charts["full_epochs"] == 4
    assert sorted(map(tuple, charts["accuracy"])) == [(1, 0.5, False), (1, 0.6, False), (1, 0.7, False),
                                                      (1, 0.92, True), (1, 0.93, False)]  # fmt: skip
    page = c.get(f"/runs/{rid}").text
    assert "(of the children trained to the full 4 epochs)" in page and "(stopped early in grey)" in page


def test_the_front_is_pnas_pareto_s_on_a_full_fidelity_run(store: Any) -> None:
    run, _ = store.create_run(
        name="full",
        config={"strategy": "pnas", "train": {"dataset": "digits", "epochs": 2}},
        seed=0,
    )
    rng = np.random.default_rng(0)
    accs, params, flops = (
        rng.uniform(0.5, 0.9, 12).round(3),
        rng.integers(100, 1000, 12),
        rng.integers(10**4, 10**6, 12),
    )
    ids = store.add_jobs(run.id, level=1, children=[(f"c{i}", _cell(i), None, None) for i in range(12)], max_attempts=1,
                         costs=[(int(p), int(f)) for p, f in zip(params, flops)])  # fmt: skip
    for jid, acc, p in zip(ids, accs, params):
        _train(store, jid, float(acc), 2, int(p))
    d = (
        TestClient(create_app(store, Settings(database_url=store.url)))
        .get(f"/api/runs/{run.id}")
        .json()
    )
    assert d["rungs"] is None  # one rung: nothing to draw
    for name, cost in (("params", params), ("flops", flops)):
        expected = sorted(
            (i for i, f in zip(ids, fronts(accs, cost)) if f == 0),
            key=lambda i: cost[ids.index(i)],
        )
        assert d["charts"]["cost"]["front"][name] == expected and len(expected) >= 2, (
            name
        )
    assert (
        d["charts"]["cost"]["front"]["params"] != d["charts"]["cost"]["front"]["flops"]
    )
    empty, _ = store.create_run(name="empty", config={"train": {"epochs": 2}}, seed=0)
    note = (
        TestClient(create_app(store, Settings(database_url=store.url)))
        .get(f"/api/runs/{empty.id}")
        .json()["charts"]["cost"]["note"]
    )
    assert note.startswith("no trained child yet")


def test_the_levels_best_is_pnas_status_s(asha: tuple[Any, int, list[int]], monkeypatch: Any) -> None:
    """The run page's best per level is `pnas status`'s: ids[4]'s 0.92 after the full 4 epochs,
    not ids[5]'s 0.93 after 2; before any child reached them, the best rung, labelled with its
    epochs (ids[3] training on toward 4 keeps its 2-epoch 0.82), as status and the live line say."""
    from pnas.commands.status import collect

    monkeypatch.setenv("PNAS_CHECKPOINT_URL", "")
    store, rid, ids = asha
    c = TestClient(create_app(store, Settings(database_url=store.url)))

    def status_best(name: str) -> tuple:
        (lv,) = collect(store, name)["levels"]
        return lv["best"], lv["best_epochs"]

    (lv,) = c.get(f"/api/runs/{rid}").json()["levels"]
    assert lv["best"] == 0.92 == store.top(rid, k=1, level=1)[0].reward == store.level_progress(rid, 1)["best"]
    assert (lv["best"], lv["best_epochs"], lv["best_words"]) == (*status_best("asha"), "0.9200")
    assert '<td class="n best">0.9200</td>' in c.get(f"/runs/{rid}").text

    run, _ = store.create_run(name="early", config=CONFIG, seed=1)
    a, b, d = store.add_jobs(run.id, level=1, children=[(f"e{i}", _cell(i), None, None) for i in range(3)], max_attempts=1)
    for jid, acc in ((a, 0.6), (b, 0.7), (d, 0.82)):
        _train(store, jid, acc, 1, 100)
    assert store.promote([(d, 0, 1)]) == [d]
    _train(store, d, 0.83, 2, 100)
    assert store.promote([(d, 1, 2)]) == [d]  # d trains on toward 4 epochs, keeping its 0.83 after 2
    (lv,) = c.get(f"/api/runs/{run.id}").json()["levels"]
    assert lv["best"] == 0.83 == store.level_progress(run.id, 1)["best"]
    assert (lv["best"], lv["best_epochs"]) == status_best("early") and lv["best_words"] == "0.8300 at 2/4 epochs"
    assert '<td class="n best">0.8300 at 2/4 epochs</td>' in c.get(f"/runs/{run.id}").text


def test_the_runs_list_labels_a_best_from_fewer_epochs_as_pnas_runs_does(asha: tuple[Any, int, list[int]]) -> None:
    """A run no child of which reached the full epochs shows its best 'at k/N epochs', in the
    words `pnas runs` prints; a run with one there shows the plain number."""
    from pnas.commands.runs import _best, collect

    store, rid, _ = asha
    run, _ = store.create_run(name="early", config=CONFIG, seed=1)
    a, b = store.add_jobs(run.id, level=1, children=[(f"e{i}", _cell(i), None, None) for i in range(2)], max_attempts=1)
    _train(store, a, 0.5984, 1, 100)
    _train(store, b, 0.55, 1, 100)
    c = TestClient(create_app(store, Settings(database_url=store.url)))
    page = c.get("/").text
    assert "0.5984 at 1/4 epochs</td>" in page
    assert '<td class="n best">0.5984 at 1/4 epochs</td>' in page and '<td class="n best">0.9200</td>' in page
    rows = {r["name"]: r for r in c.get("/api/runs").json()["runs"]}
    said = {r["name"]: _best(r) for r in collect(store)}
    assert {n: r["best_words"] for n, r in rows.items()} == said == {"asha": "0.9200", "early": "0.5984 at 1/4 epochs"}


def test_predicted_vs_measured_draws_early_stopped_children_apart(store: Any) -> None:
    """A prediction is of a child's accuracy after the full epochs: a child stopped after 1 of
    4 (0.95, above the predicted 0.6) is marked apart (grey on the chart), not taken for one
    the predictor got wrong."""
    run, _ = store.create_run(name="pred", config={**CONFIG, "strategy": "pnas"}, seed=0)
    store.start_level(run.id, 2, candidates=3)
    ids = store.add_jobs(run.id, level=2, children=[(f"p{i}", _cell(i), p, i + 1) for i, p in enumerate((0.9, 0.8, 0.6))],
                         max_attempts=1)  # fmt: skip
    for jid, acc, epochs in zip(ids, (0.85, 0.7, 0.95), (4, 4, 1)):
        _train(store, jid, acc, epochs, 100)
    c = TestClient(create_app(store, Settings(database_url=store.url)))
    charts = c.get(f"/api/runs/{run.id}").json()["charts"]
    assert sorted(map(tuple, charts["predicted_vs_measured"])) == [(2, 0.6, 0.95, False), (2, 0.8, 0.7, True),
                                                                   (2, 0.9, 0.85, True)]  # fmt: skip
    assert charts["predicted_vs_measured_note"] is None
    assert "Predicted vs measured accuracy, by level (stopped early in grey)" in c.get(f"/runs/{run.id}").text
