"""Regularized evolution: one mutation per child, the tournament's best as the parent, aging,
the PNAS budget, and a whole run with the instant trainer that never trains a network twice."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from controller import evolution
from controller.search import Controller
from shared.config import SearchConfig, build_config
from shared.settings import Settings
from shared.space import SearchSpace
from shared.space.network import network_id
from shared.store import Store
from tests.cli import run_cli
from tests.fakes import InlineExecutor

SPACE = SearchSpace(blocks=3)  # the paper's 8 operators


def pairs(cell) -> list[Counter]:
    """Each block as the multiset of its (input, operator) pairs: the order a canonical cell
    puts them in does not matter."""
    return [Counter([(b.in1, b.op1), (b.in2, b.op2)]) for b in cell.blocks]


def changes(a, b) -> int:
    """How many inputs or operators differ between two cells of the same block count."""
    n = 0
    for pa, pb in zip(pairs(a), pairs(b)):
        only_a, only_b = list((pa - pb).elements()), list((pb - pa).elements())
        n += sum(x != y for (xa, ya), (xb, yb) in zip(only_a, only_b) for x, y in ((xa, xb), (ya, yb)))
    return n


def test_a_mutation_changes_one_input_or_one_operator_of_one_block():
    rng = np.random.default_rng(0)
    for _ in range(300):
        parent = evolution.random_cell(SPACE, rng)
        child = evolution.mutate(parent, SPACE, rng)
        assert child is not None and SPACE.validate(child) == child
        assert changes(parent, child) == 1, (parent.readable(), child.readable())


def test_the_budget_is_the_pnas_budget():
    # 136 distinct one-block networks of 8 operators, then K per level
    assert evolution.budget(SearchSpace(blocks=5), 256) == 136 + 4 * 256 == 1160
    sizes = evolution.generation_sizes(SearchSpace(blocks=5), beam=256, population=100)
    assert sizes[0] == 100 and sum(sizes) == 1160 and set(sizes[1:-1]) == {256}
    assert evolution.generation_sizes(SearchSpace(blocks=2), beam=8, population=500) == [136 + 8]


def test_the_default_population_and_tournament_scale_with_the_budget():
    quick, _ = build_config(preset="quick", overrides={"strategy": "evolution"})
    paper, _ = build_config(preset="paper", overrides={"strategy": "evolution"})
    assert evolution.sizes_of(quick, quick.space()) == (7, 2)  # 37 children
    assert evolution.sizes_of(paper, paper.space()) == (100, 25)  # 1,160 children: Real et al.'s P and S
    assert evolution.sizes_of(quick.model_copy(update={"population": 12, "tournament": 40}), quick.space()) == (12, 12)


def test_the_parent_is_the_tournament_best_of_the_newest_population():
    rng = np.random.default_rng(1)
    cells = [evolution.random_cell(SPACE, rng) for _ in range(12)]
    trained = [(c, 0.5) for c in cells]
    trained[0] = (cells[0], 0.99)  # the best, but the oldest
    trained[7] = (cells[7], 0.9)  # the best of the newest 8
    cfg = SearchConfig(ops=SPACE.ops, blocks=3, beam=6, population=8, tournament=8)
    kids = evolution.generation(2, cfg, SPACE, seed=0, trained=trained, exclude={network_id(c) for c in cells})
    assert len(kids) == 6
    assert all(changes(cells[7], k) == 1 for k in kids), "every child a mutant of the newest population's best"
    assert len({network_id(k) for k in kids}) == 6 and not {network_id(k) for k in kids} & {network_id(c) for c in cells}
    again = evolution.generation(2, cfg, SPACE, seed=0, trained=trained, exclude={network_id(c) for c in cells})
    assert [k.arch_id for k in again] == [k.arch_id for k in kids], "the same seed chooses the same children"


def test_an_evolution_run_trains_the_budget_and_each_network_once(sqlite_url, capsys, monkeypatch):
    store = Store(sqlite_url)
    store.ensure_schema(auto_upgrade=True)
    settings = Settings(database_url=sqlite_url, poll_seconds=0.05)
    cfg, _ = build_config(preset="quick", overrides=dict(strategy="evolution", population=12, tournament=4, train={"epochs": 1}))
    ctl = Controller(store=store, executor=InlineExecutor(store, settings), settings=settings)
    run = ctl.run(ctl.open_run(name="evo", config=cfg))
    assert run.state == "finished"
    jobs = store.jobs(run.id)
    sizes = evolution.generation_sizes(cfg.space(), beam=cfg.beam, population=12)
    assert sizes == [12, 8, 8, 8, 1] and len(jobs) == 37 == evolution.budget(cfg.space(), cfg.beam)
    assert [lv.b for lv in store.levels(run.id)] == [1, 2, 3, 4, 5]
    assert Counter(j.level for j in jobs) == dict(enumerate(sizes, start=1))
    assert all(j.state == "succeeded" and len(j.cell) == cfg.blocks for j in jobs)
    assert len({j.network_id for j in jobs}) == len(jobs), "no network trained twice"
    first = [j.reward for j in jobs if j.level == 1]
    later = [j.reward for j in jobs if j.level > 1]
    assert np.mean(later) > np.mean(first), "mutating tournament winners beats random cells on this reward"
    store.dispose()
    # status and runs count its generations and its budget, not B levels of K
    monkeypatch.setenv("PNAS_DATABASE_URL", sqlite_url)
    code, out, _ = run_cli(capsys, "status", "evo", "--json")
    st = json.loads(out)
    assert code == 0 and (st["level"], st["level_count"], st["children_trained"], st["children_expected"]) == (5, 5, 37, 37)
    code, out, _ = run_cli(capsys, "runs")
    assert code == 0 and "5/5" in out and "37/37" in out

