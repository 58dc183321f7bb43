"""The end of a search says how far to trust its predictor and what to type next, with the
run's own name (issue 23)."""

from __future__ import annotations

from typing import Any

import pytest

from pnas.commands._closing import closing_lines
from pnas.predictor_quality import spearman_critical, spearman_words
from shared.jobs import RunState, TrainResult


@pytest.mark.parametrize("n, table", [(5, 0.900), (6, 0.829), (7, 0.714), (8, 0.643), (9, 0.600)])
def test_the_critical_spearman_matches_the_published_one_sided_table(n: int, table: float) -> None:
    assert spearman_critical(n) == pytest.approx(table, abs=0.001)


def test_the_critical_spearman_falls_with_more_children() -> None:
    values = [spearman_critical(n) for n in (4, 8, 10, 32, 256)]
    assert values == sorted(values, reverse=True) and 0.53 < values[2] < 0.58 and values[-1] < 0.11
    assert spearman_critical(2) is None


def test_spearman_in_words() -> None:
    assert spearman_words(-0.48, 8) == ("Spearman -0.48 on 8 children: not distinguishable from chance "
                                        "(with 8 children a guess reaches 0.64 one time in 20)")  # fmt: skip
    assert "better than chance" in spearman_words(0.7, 8) and "not distinguishable" in spearman_words(0.6, 8)


def test_a_finished_run_ends_with_its_predictor_in_words_and_the_next_commands(store: Any) -> None:
    run, _ = store.create_run(name="quick-pnas-3b31c8", config={"strategy": "pnas", "beam": 8}, seed=0)
    store.start_level(run.id, 2, candidates=10)
    cells = [[[-1, "sep3x3", -2, "max3x3"], [-1, op, 0, "sep3x3"]] for op in ("sep3x3", "max3x3", "identity")]
    ids = store.add_jobs(run.id, level=2, children=[(f"a{i}", c, p, i) for i, (c, p) in enumerate(zip(cells, (0.9, 0.8, 0.7)))],
                         max_attempts=1)  # fmt: skip
    for jid, acc in zip(ids, (0.5, 0.6, 0.7)):  # the predictor ranked them backwards
        a = store.claim(jid, worker="w", lease_seconds=60)
        store.finish(jid, attempt=a, result=TrainResult(reward=acc, reward_epoch=1, history=[], params=1,
                                                        wall_seconds=1.0, device="cpu"))  # fmt: skip
    store.finish_level(run.id, 2, predictor=None, spearman_extrapolation=-1.0, spearman_insample=None)
    store.set_run_state(run.id, RunState.finished)
    text = "\n".join(closing_lines(store, store.require_run(run.id), broker=False))
    assert "level 2: Spearman -1.00 on 3 children: too few children to tell it from chance" in text
    assert "at level 2 the predictor did no better than a guess could by luck with K=8" in text
    for cmd in ("top quick-pnas-3b31c8", "dashboard", "export quick-pnas-3b31c8 --rank 1 --out best/",
                "final quick-pnas-3b31c8 --rank 1 --run-now"):  # fmt: skip
        assert f"pnas {cmd} " in text, cmd
    assert "--run-now" not in "\n".join(closing_lines(store, store.require_run(run.id), broker=True))


def test_search_on_a_finished_run_prints_the_next_commands(cli, finished) -> None:
    code, out, err = cli("search", "--config", str(finished.dir / "search.toml"), "--name", "t")
    assert code == 0 and "already finished" in err
    assert "pnas top t " in out and "pnas final t --rank 1 --run-now " in out and "level 2: Spearman" in out
