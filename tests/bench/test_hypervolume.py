"""The benchmark's 2-D hypervolume (accuracy up, params down) on hand-computed examples, and its
arms' parsing."""

import pytest

from bench._arms import parse_arms
from bench.hypervolume import hypervolume_2d


def test_hypervolume_of_a_front_by_hand():
    # Front (cost, accuracy): (2, 0.5), (5, 0.8); reference cost 10, accuracy 0.
    # Dominated area: cost 2..5 at 0.5 and cost 5..10 at 0.8 = 1.5 + 4.0.
    assert hypervolume_2d([0.5, 0.8], [2, 5], ref_cost=10) == pytest.approx(5.5)


def test_dominated_and_outside_points_add_nothing():
    # (6, 0.6) is dominated by (5, 0.8); (12, 0.99) lies beyond the reference cost; order is free.
    assert hypervolume_2d([0.6, 0.8, 0.99, 0.5], [6, 5, 12, 2], ref_cost=10) == pytest.approx(5.5)
    # A point equal in cost to another counts once, at the better accuracy: 0.9 * (10 - 4).
    assert hypervolume_2d([0.7, 0.9], [4, 4], ref_cost=10) == pytest.approx(5.4)


def test_reference_accuracy_and_empty_sets():
    # Above an accuracy reference of 0.4: (0.5 - 0.4) * 3 + (0.8 - 0.4) * 5 = 0.3 + 2.0.
    assert hypervolume_2d([0.5, 0.8], [2, 5], ref_cost=10, ref_accuracy=0.4) == pytest.approx(2.3)
    assert hypervolume_2d([], [], ref_cost=10) == 0.0
    assert hypervolume_2d([0.9], [10], ref_cost=10) == 0.0


def test_arms_run_after_the_runs_they_are_derived_from():
    arms = parse_arms("pnas-maxparams,pnas-asha-sameepochs,random")
    assert [a.name for a in arms] == ["pnas-full", "pnas-maxparams", "pnas-asha", "pnas-asha-sameepochs", "random"]
    same = arms[3]
    assert (same.strategy, same.fidelity, same.same_epochs) == ("pnas", "asha", True)
    assert arms[-1].fidelity == "full" and not arms[-1].needs
    for bad in ("pnas-fast", "evolution-asha", "pnas-full-asha", "bohb"):
        with pytest.raises(ValueError):
            parse_arms(bad)
