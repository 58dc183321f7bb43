"""Every operator command on a small finished run, on SQLite and on PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import struct
import zipfile
from pathlib import Path

import pytest

from shared.store import Store
from tests.tools.conftest import PLANTED_FAILURE

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_info(path: Path) -> tuple[int, int, dict[str, str]]:
    """(width, height, text chunks) of a PNG, read from its bytes."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    texts, pos = {}, 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"tEXt":
            key, _, value = data[pos + 8 : pos + 8 + length].partition(b"\0")
            texts[key.decode("latin-1")] = value.decode("latin-1")
        pos += 12 + length
    return width, height, texts


@pytest.fixture
def store(finished):
    s = Store(finished.url)
    yield s
    s.dispose()


def test_runs_lists_both_runs(cli, store):
    code, out, _ = cli("runs", "--json")
    assert code == 0
    runs = {r["name"]: r for r in json.loads(out)}
    assert set(runs) == {"t", "r"}
    t = runs["t"]
    assert (t["state"], t["strategy"], t["dataset"], t["level"], t["blocks"]) == ("finished", "pnas", "digits", 3, 3)
    assert t["children_done"] == t["children_total"] == t["children_expected"] == 21 + 4 + 4
    assert (t["children_trained"], t["children_failed"]) == (28, 1)  # as `pnas status` counts them
    assert t["jobs"]["failed"] == 1
    assert t["best"] == store.top(store.require_run("t").id, k=1)[0].reward
    code, out, _ = cli("runs")
    assert code == 0 and "finished" in out and "random" in out


def test_status_json_keeps_its_shape_and_adds_progress(cli, store):
    code, out, _ = cli("status", "t", "--json")
    assert code == 0
    st = json.loads(out)
    # the keys the Celery issue's tests and scripts rely on
    assert {"run", "id", "state", "level", "jobs", "levels", "best", "workers"} <= set(st)
    assert st["jobs"] == {"queued": 0, "running": 0, "succeeded": 28, "failed": 1, "lost": 0, "cancelled": 0}
    assert [lv["b"] for lv in st["levels"]] == [1, 2, 3]
    assert st["levels"][0]["jobs"]["succeeded"] == 20 and st["levels"][0]["candidates"] == 21
    # and what this issue adds
    assert (st["children_trained"], st["children_failed"], st["children_expected"]) == (28, 1, 29)
    assert st["candidates_scored"] == sum(lv["candidates"] for lv in st["levels"]) > 29
    assert st["eta_seconds"] == 0.0 and st["elapsed_seconds"] > 0
    run = store.require_run("t")
    levels = {lv.b: lv for lv in store.levels(run.id)}
    for lv in st["levels"]:
        assert lv["elapsed_seconds"] is not None and lv["eta_seconds"] is None  # done levels
        assert lv["spearman_extrapolation"] == levels[lv["b"]].spearman_extrapolation
    assert st["levels"][1]["spearman_extrapolation"] is not None
    code, out, _ = cli("status", "t")
    assert code == 0 and "succeeded" in out and "spearman" in out and "ETA" in out


def test_status_watch_stops_when_the_run_is_not_running(cli):
    code, out, _ = cli("status", "t", "--watch", "--json", "--interval", "0.1")
    assert code == 0 and len(out.strip().splitlines()) == 1
    assert json.loads(out)["state"] == "finished"
    code, out, _ = cli("status", "t", "--watch", "--interval", "0.1")
    assert code == 0 and "level" in out
    assert cli("status", "nope")[0] == 2


def test_top_json_csv_and_table(cli, store):
    run = store.require_run("t")
    code, out, _ = cli("top", "t", "-k", "5", "--json")
    assert code == 0
    rows = json.loads(out)
    expected = store.top(run.id, k=5)
    assert [r["id"] for r in rows] == [j.id for j in expected]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    accs = [r["accuracy"] for r in rows]
    assert accs == sorted(accs, reverse=True)
    first = rows[0]
    assert {"id", "level", "accuracy", "cell", "arch_id", "params", "cell_json"} <= set(first)
    assert first["cell"].startswith("b1=") and first["cell"].count("b") >= first["level"]
    assert first["cell_json"] == expected[0].cell

    code, out, _ = cli("top", "t", "-k", "3", "--level", "1", "--csv")
    assert code == 0
    table = list(csv.DictReader(io.StringIO(out)))
    assert len(table) == 3 and {r["level"] for r in table} == {"1"}
    assert json.loads(table[0]["cell_json"]) == store.top(run.id, k=1, level=1)[0].cell

    code, out, _ = cli("top", "t")
    assert code == 0 and rows[0]["cell"] in out

    assert cli("top", "t", "--json", "--csv")[0] == 2
    assert cli("top", "nope")[0] == 2
    code, _, err = cli("top", "t", "--level", "9")
    assert code == 1 and "no succeeded child" in err


def test_show_a_child_and_a_failed_one(cli, store):
    run = store.require_run("t")
    best = store.top(run.id, k=1)[0]
    code, out, _ = cli("show", str(best.id), "--json")
    assert code == 0
    d = json.loads(out)
    assert (d["id"], d["run"], d["state"], d["attempts"], d["accuracy"]) == (best.id, "t", "succeeded", 1, best.reward)
    assert len(d["blocks"]) == best.level
    assert [(e["attempt"], e["epoch"]) for e in d["epochs"]] == [(1, 1), (1, 2)]

    failed = store.jobs(run.id, states=["failed"])
    assert [j.arch_id for j in failed] == [PLANTED_FAILURE]
    code, out, _ = cli("show", str(failed[0].id))
    assert code == 0
    assert "failed" in out and "RuntimeError" in out and f"planted failure for {PLANTED_FAILURE}" in out
    assert "log tail" in out and "Traceback" in out

    code, _, err = cli("show", "987654")
    assert code == 2 and "no child job" in err


def test_show_lists_the_cells_a_child_stands_for(cli, store):
    from shared.config import SearchConfig
    from shared.space import Cell
    from shared.space.network import equivalent_cells, network_id

    run = store.require_run("t")
    space = SearchConfig.from_json(run.config).space()
    # the child with the most ways of being written (a cell whose blocks read no other block)
    child = max(store.jobs(run.id, states=["succeeded"]), key=lambda j: len(equivalent_cells(Cell.from_json(j.cell))))
    cell = Cell.from_json(child.cell, space.ops)
    code, out, _ = cli("show", str(child.id), "--equivalent", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["network_id"] == child.network_id == network_id(cell)
    eq = d["equivalent"]
    assert cell.arch_id in [e["arch_id"] for e in eq] and len(eq) > 1
    assert {network_id(Cell.from_json(e["cell_json"])) for e in eq} == {child.network_id}
    code, out, _ = cli("show", str(child.id), "--equivalent")
    assert f"network {child.network_id}" in out and f"stands for {len(eq)} equivalent cells" in out
    code, out, _ = cli("top", "t", "-k", "3", "--json")
    assert all(r["network_id"] for r in json.loads(out))


def test_history_is_the_original_train_history_format(cli, store, finished):
    path = finished.dir / "train_history.csv"
    code, _, _ = cli("history", "t", "--out", str(path))
    assert code == 0
    lines = path.read_text().splitlines()
    run = store.require_run("t")
    trained = store.trained_children(run.id)
    assert len(lines) == len(trained) == 28
    for line, job in zip(lines, trained):
        # parsed exactly as the original rank_architectures.py does
        temp = line.split(",")
        score = float(temp[0])
        for i in range(1, len(temp), 2):
            temp[i] = int(temp[i])
        assert score == pytest.approx(job.reward, abs=1e-6)
        assert [temp[i : i + 4] for i in range(1, len(temp), 4)] == job.cell
    assert not lines[0].startswith("reward")  # no header, as the original


def test_plot_writes_pngs_with_the_expected_panels(cli, finished):
    out = finished.dir / "plots-t"
    code, text, _ = cli("plot", "t", "--out", str(out), "--json")
    assert code == 0
    doc = json.loads(text)
    files = {f["name"]: f for f in doc["files"]}
    # predicted vs measured: one panel per level the predictor chose (2 and 3)
    expected = {"accuracy_per_level": 1, "predicted_vs_measured": 2, "best_so_far": 1, "comparison": 2}
    assert {k: f["panels"] for k, f in files.items()} == expected
    for f in files.values():
        w, h, texts = png_info(Path(f["path"]))
        assert (w, h) == (f["width"], f["height"]) and w >= 400 and h >= 300
        assert f"panels={f['panels']}" in texts["Description"]
    # the random run has no predictions: that figure is skipped, the comparison is not
    code, text, _ = cli("plot", "r", "--out", str(finished.dir / "plots-r"), "--json")
    doc = json.loads(text)
    assert code == 0 and {f["name"] for f in doc["files"]} == {"accuracy_per_level", "best_so_far", "comparison"}
    (cmp,) = [f for f in doc["files"] if f["name"] == "comparison"]
    assert png_info(Path(cmp["path"]))[2]["Title"] == "random search vs PNAS on digits"
    assert any("predicted_vs_measured" in s for s in doc["skipped"])


def test_plot_figures_have_their_panels():
    from pnas.plots import comparison, predicted_vs_measured

    fig = predicted_vs_measured({2: ([0.5, 0.6, 0.7], [0.4, 0.6, 0.65], 1.0), 3: ([0.1, 0.2], [0.3, 0.2], None)}, title="x")
    assert len(fig.axes) == 2 and "Spearman 1.000" in fig.axes[0].get_title() and "n/a" in fig.axes[1].get_title()
    lv = "level b (blocks per cell)"
    fig = comparison({"a": ([0.1, 0.3, 0.2], {1: [0.1, 0.3], 2: [0.2]}, lv), "b": ([0.2, 0.1], {1: [0.2, 0.1]}, lv)}, title="y")
    assert len(fig.axes) == 2 and len(fig.axes[0].get_legend().get_texts()) == 2
    from pnas.plots import validation_vs_test

    fig = validation_vs_test({"search children": [(0.8, 0.78), (0.7, 0.71)], "final trainings": [(0.9, 0.88)]}, title="z")
    assert len(fig.axes) == 1 and [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "search children (2)", "final trainings (1)"]


def test_comparison_with_evolution_keeps_generations_apart_and_bars_within_0_and_1():
    """Block levels and generations are different axes; mean ± std never drawn past 1.0."""
    from pnas.plots import comparison

    runs = {"p (pnas)": ([0.9, 0.99, 1.0], {1: [0.9], 2: [0.8, 1.0, 1.0]}, "level b (blocks per cell)"),
            "e (evolution)": ([0.5, 0.98, 1.0], {1: [0.5, 1.0, 1.0], 2: [0.98, 1.0], 3: [1.0]}, "generation")}  # fmt: skip
    fig = comparison(runs, title="PNAS vs regularized evolution on digits")
    assert len(fig.axes) == 3
    assert [ax.get_xlabel() for ax in fig.axes[1:]] == ["level b (blocks per cell)", "generation"]
    for ax in fig.axes[1:]:
        (bars,) = ax.containers
        tops = [y for seg in bars.lines[2][0].get_segments() for _, y in seg]
        assert max(tops) <= 1.0 and min(tops) >= 0.0 and max(tops) == pytest.approx(1.0)


def test_plot_names_both_strategies(sqlite_url, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from pnas.plots import write_plots
    from shared.jobs import TrainResult

    # a database of its own: runs without levels in the shared finished one would become its
    # "latest run" for the README's queries (tests/tools/test_views.py)
    store = Store(sqlite_url)
    store.ensure_schema(auto_upgrade=True)

    for name, strategy in (("p", "pnas"), ("e", "evolution")):
        run, _ = store.create_run(name=name, config={"strategy": strategy, "train": {"dataset": "digits"}}, seed=0)
        for level, acc in ((1, 0.8), (2, 0.9)):
            (jid,) = store.add_jobs(run.id, level=level, children=[(f"{name}{level}", [[-1, "sep3x3", -1, "max3x3"]] * level, None, None)],
                                    max_attempts=1)  # fmt: skip
            a = store.claim(jid, worker="w", lease_seconds=60)
            store.finish(jid, attempt=a, result=TrainResult(reward=acc, reward_epoch=1, history=[], params=1, wall_seconds=1.0, device="cpu"))
    files, _ = write_plots(store, store.require_run("p"), tmp_path)
    (cmp,) = [f for f in files if f.name == "comparison"]
    assert png_info(cmp.path)[2]["Title"] == "PNAS vs regularized evolution on digits" and cmp.panels == 3
    files, _ = write_plots(store, store.require_run("e"), tmp_path / "e")
    (acc,) = [f for f in files if f.name == "accuracy_per_level"]
    assert png_info(acc.path)[2]["Title"].startswith("accuracy per generation: e (evolution")
    store.dispose()


def test_plot_never_takes_an_early_stopped_child_for_the_best(sqlite_url, tmp_path, monkeypatch):
    """An asha run's child stopped after 1 of 4 epochs (0.95) is more accurate than the one
    trained to 4 (0.8): the best so far and the level's best are 0.8's, the other drawn apart;
    so are the children stopped early against their predictions (of an accuracy at 4 epochs)."""
    import matplotlib

    matplotlib.use("Agg")
    import pnas.plots
    from shared.jobs import EpochMetrics, TrainResult

    store = Store(sqlite_url)
    store.ensure_schema(auto_upgrade=True)
    run, _ = store.create_run(name="a", config={"strategy": "random", "fidelity": "asha", "train": {"dataset": "digits", "epochs": 4}},
                              seed=0)  # fmt: skip
    for i, (acc, epochs, predicted) in enumerate(((0.95, 1, 0.5), (0.8, 4, 0.7), (0.6, 2, 0.9))):
        (jid,) = store.add_jobs(run.id, level=1, children=[(f"a{i}", [[-1, "sep3x3", -i - 1, "max3x3"]], predicted, None)],
                                max_attempts=1)  # fmt: skip
        a = store.claim(jid, worker="w", lease_seconds=60)
        history = [EpochMetrics(epoch=e, loss=1.0, accuracy=acc, val_loss=1.0, val_accuracy=acc, seconds=0.1) for e in range(1, epochs + 1)]
        store.finish(jid, attempt=a, result=TrainResult(reward=acc, reward_epoch=epochs, history=history, params=1,
                                                        wall_seconds=1.0, device="cpu"))  # fmt: skip
    figures = {}
    original = pnas.plots.save

    def keep(fig, path, *, name, title):
        figures[name] = fig
        return original(fig, path, name=name, title=title)

    monkeypatch.setattr(pnas.plots, "save", keep)
    pnas.plots.write_plots(store, store.require_run("a"), tmp_path)
    store.dispose()
    (line,) = figures["best_so_far"].axes[0].lines
    assert list(line.get_ydata())[1:] == [0.8, 0.8]  # nothing before the first child trained to 4 epochs
    (ax,) = figures["accuracy_per_level"].axes
    (star,) = [c for c in ax.collections if c.get_sizes()[0] == 120]
    assert star.get_offsets()[:, 1].tolist() == [0.8]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["stopped early (fewer epochs)"]
    (ax,) = figures["predicted_vs_measured"].axes
    assert ax.get_title() == "level 1: Spearman n/a (n=1, 2 stopped early)"
    full, early = ax.collections
    assert full.get_offsets().tolist() == [[0.7, 0.8]]
    assert sorted(early.get_offsets().tolist()) == [[0.5, 0.95], [0.9, 0.6]]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["stopped early (fewer epochs)"]


def test_export_writes_cell_model_and_diagram(cli, store, finished):
    out = finished.dir / "export"
    code, text, _ = cli("export", "t", "--rank", "2", "--out", str(out), "--json")
    assert code == 0
    summary = json.loads(text)
    second = store.top(store.require_run("t").id, k=2)[1]
    cell = json.loads((out / "cell.json").read_text())
    assert (cell["id"], cell["rank"], cell["blocks"], cell["arch_id"]) == (second.id, 2, second.cell, second.arch_id)
    assert cell["train"]["dataset"] == "digits" and cell["cell"].startswith("b1=")
    assert zipfile.is_zipfile(out / "model.keras")
    assert "config.json" in zipfile.ZipFile(out / "model.keras").namelist()
    w, h, _ = png_info(out / "cell.png")
    assert w >= 400 and h >= 200
    assert summary["input_shape"] == [8, 8, 1] and summary["classes"] == 10 and summary["params"] > 0

    import keras

    from worker.ops import DropPath

    net = keras.saving.load_model(out / "model.keras", custom_objects={"DropPath": DropPath}, compile=False)
    assert net.count_params() == summary["params"] and tuple(net.input_shape[1:]) == (8, 8, 1)

    from pnas.commands._cells import parse_cell_arg

    assert parse_cell_arg(str(out / "cell.json")).arch_id == second.arch_id  # `pnas model --cell cell.json`
    assert cli("export", "t", "--rank", "999", "--out", str(out))[0] == 2


def test_final_enqueues_then_runs_now_and_lands_in_the_same_table(cli, store, finished):
    run = store.require_run("t")
    best = store.top(run.id, k=1)[0]
    args = ("final", "t", "--epochs", "2", "--n", "1", "--filters", "8", "--json")
    # no broker: nothing would take a queued job, so it is refused in one line, nothing stored
    code, out, err = cli(*args)
    assert code == 2 and "no broker (PNAS_BROKER_URL" in err and "--run-now" in err and len(err.strip().splitlines()) == 1
    assert store.jobs(run.id, kind="final") == []
    # a job queued while a broker was configured: --run-now takes that one, it adds none
    train = {"epochs": 2, "cells_per_stage": 1, "filters": 8, "evaluate_test": True}
    (waiting,) = store.add_jobs(run.id, level=0, children=[(best.arch_id, best.cell, None, None)], max_attempts=2,
                                kind="final", train=train)  # fmt: skip
    queued = {"id": waiting}

    code, out, _ = cli(*args, "--run-now")
    assert code == 0
    done = json.loads(out)
    assert (done["id"], done["state"], done["action"]) == (queued["id"], "succeeded", "ran: succeeded")
    assert done["accuracy"] == pytest.approx(best.reward)  # the fake trainer is deterministic
    assert done["test_accuracy"] == pytest.approx(best.reward - 0.01)  # reported beside the accuracy
    code, out, _ = cli("top", "t", "--final", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [queued["id"]]
    assert json.loads(out)[0]["test_accuracy"] == pytest.approx(best.reward - 0.01)
    code, out, _ = cli("top", "t", "--final")
    assert code == 0 and "test accuracy" in out
    assert "test accuracy" in cli("show", str(queued["id"]))[1]
    # the search's numbers do not change
    st = json.loads(cli("status", "t", "--json")[1])
    assert st["children_trained"] == 28 and st["best"]["job"] == best.id
    (fin,) = st["finals"]
    assert (fin["job"], fin["state"], fin["epoch"], fin["epochs"]) == (queued["id"], "succeeded", 2, 2)
    assert "epoch 2 of 2" in cli("status", "t")[1]
    assert json.loads(cli(*args)[1])["id"] == queued["id"], "the same request finds the same job, broker or not"

    # a named recipe, stored with the job; flags override its fields
    from pnas.commands.final import final_overrides

    rec = {"train": final_overrides(run.config, recipe_name="paper-cifar", epochs=1, cells_per_stage=1, filters=8,
                                    batch_size=64)}  # fmt: skip
    assert rec["train"]["recipe"] == "paper-cifar"
    assert (rec["train"]["epochs"], rec["train"]["aux_head"], rec["train"]["drop_path_keep_prob"]) == (1, True, 0.6)
    assert cli("final", "t", "--recipe", "paper-cifar", "--epochs", "1")[0] == 2  # no broker, no --run-now
    assert cli("final", "t", "--recipe", "paper-imagenet")[0] == 2
    # the final training's test accuracy gets its figure
    code, text, _ = cli("plot", "t", "--out", str(finished.dir / "plots-final"), "--json")
    files = {f["name"]: f for f in json.loads(text)["files"]}
    assert code == 0 and files["validation_vs_test"]["panels"] == 1

    assert cli("final", "t", "--epochs", "-1")[0] == 2
    assert cli("final", "t", "--rank", "0")[0] == 2
