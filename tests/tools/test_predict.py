"""`pnas predict`: scores cells with a finished run's stored predictor, one `error:` line
for cells that do not fit the run's space and for runs without a predictor.

The run is a real search (local worker processes, instant trainer) in a space limited to
H[c-1], set with the original implementation's config name, so the input limits are
checked end to end: file -> stored config -> trained cells -> predictor -> `pnas predict`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from shared.config import SearchConfig
from shared.settings import get_settings
from shared.space import Cell
from shared.store import Store
from tests.conftest import ROOT
from tests.cli import run_cli
from tests.fakes import fake_search_env

CONFIG = """
ops = ["sep3x3", "max3x3", "identity"]
blocks = 2
beam = 4
ensemble = 2
predictor_epochs = 5
seed = 3
input_lookback_depth = -1  # the original's name: H[c-1] only
[train]
dataset = "digits"
validation_size = 0.2
epochs = 1
"""
OPS = ("sep3x3", "max3x3", "identity")
TWO_BLOCKS = '[[-1, "sep3x3", -1, "max3x3"], [0, "sep3x3", -1, "identity"]]'


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> str:
    """The database URL of a finished two-level search named 't' (about 20 s)."""
    tmp = tmp_path_factory.mktemp("predict")
    url = f"sqlite:///{tmp / 'pnas.db'}"
    (tmp / "search.toml").write_text(CONFIG)
    env = fake_search_env(url)
    p = subprocess.run(
        [sys.executable, "-m", "pnas.cli", "search", "--config", str(tmp / "search.toml"), "--name", "t", "--workers", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return url


@pytest.fixture
def db(finished_run, monkeypatch):
    monkeypatch.setenv("PNAS_DATABASE_URL", finished_run)
    get_settings.cache_clear()
    yield finished_run
    get_settings.cache_clear()


def predict(capsys, *argv) -> tuple[int, str, str]:
    return run_cli(capsys, "predict", *argv)


def one_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_the_limits_travel_from_the_config_file_to_the_trained_cells(db):
    store = Store(db)
    run = store.require_run("t")
    assert run.state == "finished"
    assert (run.config["lookback"], run.config["lookforward"]) == (1, None)
    cells = [Cell.from_json(j.cell) for j in store.jobs(run.id)]
    assert len(cells) == 6 + 4  # 6 one-block cells with H[c-1] only and 3 ops, then K=4
    assert all(-2 not in (b.in1, b.in2) for c in cells for b in c.blocks)
    store.dispose()


def test_scores_match_the_stored_ensemble(db, capsys, tmp_path):
    from controller.predictor import Ensemble

    lines = tmp_path / "cells.jsonl"
    lines.write_text(
        '# two cells, one a line\n[[-1, "sep3x3", -1, "sep3x3"]]\n\n'
        + json.dumps({"blocks": [[-1, "identity", -1, "max3x3"], [-1, "sep3x3", 0, "sep3x3"]]}) + "\n"
    )
    pretty = tmp_path / "one.json"
    pretty.write_text(json.dumps(json.loads(TWO_BLOCKS), indent=2))  # one cell over several lines
    code, out, err = predict(capsys, "t", "--cell", TWO_BLOCKS, "--cell", str(lines), "--cell", str(pretty), "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["source"] for r in rows] == [TWO_BLOCKS, f"{lines}:2", f"{lines}:4", str(pretty)]
    assert rows[0]["arch_id"] == rows[3]["arch_id"] == Cell.from_json(TWO_BLOCKS).arch_id

    store = Store(db)
    run = store.require_run("t")
    level, blob = store.latest_predictor(run.id)
    store.dispose()
    ens = Ensemble.from_bytes(blob)
    space = SearchConfig.from_json(run.config).space()
    expected = ens.predict([space.tokens(Cell.from_json(json.dumps(r["blocks"]))) for r in rows], return_members=True)
    for r, members in zip(rows, expected.T):
        assert r["level"] == level == 2
        assert r["members"] == pytest.approx(members.tolist(), abs=1e-6) and len(r["members"]) == 2
        assert r["predicted"] == pytest.approx(float(np.mean(members)), abs=1e-6)
        assert r["std"] == pytest.approx(float(np.std(members)), abs=1e-6)
        assert (r["min"], r["max"]) == pytest.approx((min(members), max(members)), abs=1e-6)
        assert r["cell"] == Cell.from_json(json.dumps(r["blocks"]), OPS).readable()


def test_text_output(db, capsys):
    code, out, _ = predict(capsys, "t", "--cell", TWO_BLOCKS)
    assert code == 0
    head, columns, row, *trained = out.strip().splitlines()
    assert len(trained) <= 1
    assert head.startswith("run 't' (id 1): lstm predictor of level 2, 2 members, fitted on 10 children")
    assert columns.split() == ["arch_id", "predicted", "std", "min", "max", "cell"]
    assert row.split()[0] == Cell.from_json(TWO_BLOCKS).arch_id and "b2=identity(c-1)+sep3x3(b1)" in row  # the run's canonical order


def test_a_network_the_run_trained_is_named_with_its_result(db, capsys):
    from shared.space.network import equivalent_cells, network_id

    store = Store(db)
    run = store.require_run("t")
    best = store.top(run.id, k=1, level=2)[0]
    store.dispose()
    other_order = [c for c in equivalent_cells(Cell.from_json(best.cell)) if c.arch_id != best.arch_id]
    cells = [Cell.from_json(best.cell)] + other_order[:1]
    code, out, err = predict(capsys, "t", *[a for c in cells for a in ("--cell", c.to_json())], "--json")
    assert code == 0, err
    for r in json.loads(out):
        assert r["network_id"] == best.network_id == network_id(cells[0])
        assert r["trained"] == {"job": best.id, "state": "succeeded", "accuracy": best.reward}
    code, out, _ = predict(capsys, "t", "--cell", cells[0].to_json())
    assert f"network {best.network_id}: the run trained it as job {best.id} (succeeded, accuracy {best.reward:.4f})" in out


@pytest.mark.parametrize(
    "cell,message",
    [
        ("pnasnet5", "cell pnasnet5 does not fit the search space of run 't' (sep3x3, max3x3, identity; B=2): "
                     "the cell has 5 blocks but this search space allows at most 2"),
        ('[[-1, "sep5x5", -1, "max3x3"]]', "operator 'sep5x5' is not in this search space"),
        ('[[-2, "sep3x3", -1, "max3x3"]]', "block 1 reads input -2 (H[c-2]), but blocks in this search space "
                                          "read only H[c-1] and every earlier block"),
        ('[[-1, "sep3x3", -1, "conv9x9"]]', "unknown operator 'conv9x9'"),
        ("no-such-cell", "cell 'no-such-cell' is neither a built-in cell"),
        ('[[-1, "sep3x3"', "not valid JSON"),
    ],
)
def test_cells_that_do_not_fit_are_named(db, capsys, cell, message):
    code, _, err = predict(capsys, "t", "--cell", TWO_BLOCKS, "--cell", cell)
    assert code == 2
    line = one_error(err)
    assert message in line
    assert cell[:20] in line  # the message names the offending cell


def test_a_bad_line_in_a_file_is_named_by_its_line(db, capsys, tmp_path):
    f = tmp_path / "cells.jsonl"
    f.write_text('[[-1, "sep3x3", -1, "sep3x3"]]\n[[-1, "sep3x3", -1, "sep3x3"], [-2, "identity", 0, "sep3x3"]]\n')
    code, _, err = predict(capsys, "t", "--cell", str(f))
    assert code == 2 and f"cell {f}:2 does not fit" in one_error(err)


def test_runs_without_a_predictor(db, capsys):
    store = Store(db)
    for name, strategy in (("fresh", "pnas"), ("random-run", "random")):
        cfg = SearchConfig(strategy=strategy, ops=OPS, blocks=2, lookback=1)
        store.create_run(name=name, config=json.loads(cfg.to_json()), seed=0)
    store.dispose()
    code, _, err = predict(capsys, "fresh", "--cell", TWO_BLOCKS)
    assert code == 2 and "run 'fresh' has no stored predictor yet" in one_error(err)
    code, _, err = predict(capsys, "random-run", "--cell", TWO_BLOCKS)
    assert code == 2 and "uses the random strategy, which fits no predictor" in one_error(err)
    code, _, err = predict(capsys, "nope", "--cell", TWO_BLOCKS)
    assert code == 2 and "no run named 'nope'" in one_error(err)


def test_real_entry_point_prints_one_line_and_no_traceback(finished_run):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PNAS_")}
    env.update(PNAS_DATABASE_URL=finished_run, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "pnas.cli", "predict", "t", "--cell", "pnasnet5"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    assert "does not fit the search space of run 't'" in one_error(p.stderr) and "Traceback" not in p.stderr
