"""Input limits (lookback, lookforward): counts against brute force, config and CLI, and the
child network and the predictor staying consistent with a limited space."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from tests.cli import run_cli
from shared.config import SearchConfig, build_config, read_config_file
from shared.errors import UserError
from shared.space import Cell, SearchSpace

OPS = ("sep3x3", "max3x3")
# B=3: lookforward 2 or more is the same as None (checked below), so 5 stands for all of them
LIMITS = [(1, None), (1, 0), (1, 1), (1, 5), (2, None), (2, 0), (2, 1)]


def allowed_inputs(k: int, lookback: int, lookforward: int | None) -> list[int]:
    """What block k (0-based) may read, from the definition rather than from `input_codes`."""
    prev = [-1] if lookback == 1 else [-2, -1]
    same = k if lookforward is None else min(k, lookforward)
    return prev + list(range(same))


def brute_force(b: int, lookback: int, lookforward: int | None, ops=OPS) -> set[str]:
    """Ids of every distinct b-block cell: all ordered (in, op, in, op) tuples, canonicalised."""
    per_block = [
        list(itertools.product(allowed_inputs(k, lookback, lookforward), ops, allowed_inputs(k, lookback, lookforward), ops))
        for k in range(b)
    ]
    distinct = {}
    for blocks in itertools.product(*per_block):
        cell = Cell.of(blocks, ops)
        distinct[tuple(map(tuple, cell.to_list()))] = cell  # the canonical form; ids hashed once each
    return {cell.arch_id for cell in distinct.values()}


def full_expansion(space: SearchSpace, b: int):
    batch = space.one_block_cells()
    for _ in range(b - 1):
        batch = space.expand(batch)
    return batch


@pytest.mark.parametrize("lookback,lookforward", LIMITS)
def test_counts_match_brute_force(lookback, lookforward):
    space = SearchSpace(ops=OPS, blocks=3, lookback=lookback, lookforward=lookforward)
    rows = space.level_counts(beam=10**9)  # a beam that keeps everything: candidates = all cells
    for b in (1, 2, 3):
        ids = brute_force(b, lookback, lookforward)
        assert rows[b - 1]["candidates"] == len(ids)
        expanded = full_expansion(space, b)  # the vectorised path the controller uses
        assert len(expanded) == len(ids) and set(expanded.ids()) == ids
        # distinct blocks at this position: unordered pairs of (input, op)
        inputs = allowed_inputs(b - 1, lookback, lookforward)
        blocks = {tuple(sorted([(i1, o1), (i2, o2)])) for i1, o1, i2, o2 in itertools.product(inputs, OPS, inputs, OPS)}
        assert rows[b - 1]["new_blocks"] == space.count_new_blocks(b - 1) == len(space.new_blocks(b - 1)) == len(blocks)


def test_lookforward_beyond_the_cell_is_the_same_as_unset():
    a = SearchSpace(ops=OPS, blocks=3, lookforward=2).level_counts(8)
    b = SearchSpace(ops=OPS, blocks=3, lookforward=9).level_counts(8)
    assert a == b == SearchSpace(ops=OPS, blocks=3).level_counts(8)


def test_validate_accepts_exactly_the_cells_of_the_limited_space():
    wide = full_expansion(SearchSpace(ops=OPS, blocks=3), 3)
    space = SearchSpace(ops=OPS, blocks=3, lookback=1, lookforward=1)
    inside = brute_force(3, 1, 1)
    for row in range(0, len(wide), 37):  # a spread sample of the unlimited 3-block cells
        cell = wide.cell(row)
        if cell.arch_id in inside:
            assert space.validate(cell) == cell
        else:
            with pytest.raises(UserError, match="blocks in this search space read only H"):
                space.validate(cell)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"lookback": 0}, "lookback must be 1 .* or 2"),
        ({"lookback": 3}, "lookback must be 1 .* or 2"),
        ({"lookback": True}, "lookback must be"),
        ({"lookforward": -1}, "lookforward must be unset .* or a whole number N >= 0"),
        ({"lookforward": 1.5}, "lookforward must be"),
    ],
)
def test_impossible_limits_are_one_clear_error(kwargs, message):
    with pytest.raises(UserError, match=message):
        SearchSpace(ops=OPS, blocks=3, **kwargs)


def test_flat_cells_reading_only_the_previous_cell_are_legal():
    space = SearchSpace(ops=OPS, blocks=3, lookback=1, lookforward=0)
    assert [space.input_codes(k).tolist() for k in range(3)] == [[1], [1], [1]]
    assert space.describe_inputs() == "H[c-1] only"
    assert [r["new_blocks"] for r in space.level_counts(8)] == [3, 3, 3]


# --- config file and flags -----------------------------------------------------------------
def test_config_file_keys_and_the_original_names(tmp_path):
    toml = tmp_path / "a.toml"
    toml.write_text('blocks = 3\nlookback = 1\nlookforward = 0\n')
    cfg, _ = build_config(file_data=read_config_file(toml))
    assert (cfg.lookback, cfg.lookforward) == (1, 0)

    yaml = tmp_path / "b.yaml"
    yaml.write_text("blocks: 3\ninput_lookback_depth: -1\ninput_lookforward_depth: 1\n")
    cfg, _ = build_config(file_data=read_config_file(yaml))
    assert (cfg.lookback, cfg.lookforward) == (1, 1)
    # stored with the run as JSON and read back the same
    again = SearchConfig.from_json(cfg.to_json())
    assert (again.lookback, again.lookforward) == (1, 1) and again.space() == cfg.space()

    cfg, _ = build_config(file_data={"input_lookback_depth": -2, "input_lookforward_depth": None})
    assert (cfg.lookback, cfg.lookforward) == (2, None)
    # flags win over the file, whichever name the file used
    cfg, _ = build_config(file_data={"input_lookback_depth": -2}, overrides={"lookback": 1})
    assert cfg.lookback == 1


@pytest.mark.parametrize(
    "file_data,message",
    [
        ({"input_lookback_depth": 0}, "input_lookback_depth must be -1 .* or -2"),
        ({"input_lookback_depth": 2}, "input_lookback_depth must be -1"),
        ({"lookback": 1, "input_lookback_depth": -1}, "both lookback and input_lookback_depth"),
        ({"lookforward": 1, "input_lookforward_depth": 1}, "both lookforward and input_lookforward_depth"),
        ({"lookback": 5}, "lookback must be 1"),
        ({"input_lookforward_depth": -3}, "lookforward must be unset"),
        ({"lookback": "two"}, "invalid setting lookback"),
    ],
)
def test_bad_limits_in_a_config_file(file_data, message):
    with pytest.raises(UserError, match=message):
        build_config(file_data=file_data)


def cli(capsys, *argv) -> tuple[int, str, str]:
    return run_cli(capsys, *argv)


def test_pnas_space_with_flat_cells(capsys):
    code, out, _ = cli(capsys, "space", "--blocks", "3", "--beam", "8", "--ops", "sep3x3,max3x3",
                       "--lookback", "1", "--lookforward", "0")
    assert code == 0
    assert "blocks read H[c-1] only" in out
    assert "3 one-block cells; 19 children trained in all" in out
    code, out, _ = cli(capsys, "space", "--blocks", "3", "--ops", "sep3x3,max3x3", "--lookback", "1",
                       "--lookforward", "0", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["space"]["lookback"] == 1 and data["space"]["lookforward"] == 0
    assert [r["candidates"] for r in data["levels"]] == [3, 9, 27]
    # flat cells: every block order is the same network, so a cell is a multiset of blocks
    assert [r["distinct"] for r in data["levels"]][:2] == [3, 6]


@pytest.mark.parametrize("command", [["space"], ["search", "--preset", "quick", "--name", "never-started"]])
@pytest.mark.parametrize("flags,message", [(["--lookback", "3"], "lookback must be 1"),
                                           (["--lookforward", "-1"], "lookforward must be unset")])
def test_impossible_limits_on_the_command_line(capsys, command, flags, message):
    code, out, err = cli(capsys, *command, *flags)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err


# --- the child network and the predictor in a limited space --------------------------------
def test_network_for_a_cell_of_a_limited_space():
    from worker.network import build_network

    space = SearchSpace(ops=OPS, blocks=3, lookback=1, lookforward=1)
    # block 3 is read by nothing and block 2 reads block 1: unused outputs are concatenated
    cell = space.validate(Cell.of([[-1, "sep3x3", -1, "max3x3"], [0, "sep3x3", -1, "max3x3"],
                                   [0, "max3x3", -1, "sep3x3"]], OPS))
    model = build_network(cell, input_shape=(8, 8, 1), num_classes=3, cells_per_stage=1, filters=4)
    out = np.asarray(model(np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32)))
    assert out.shape == (2, 3) and np.allclose(out.sum(axis=1), 1.0, atol=1e-5)
    # nothing reads H[c-2]: no layers prepare it
    assert not [layer.name for layer in model.layers if ".prev" in layer.name]
    two = Cell.of([[-2, "sep3x3", -1, "max3x3"]])
    wide = build_network(two, input_shape=(8, 8, 1), num_classes=3, cells_per_stage=1, filters=4)
    assert [layer.name for layer in wide.layers if ".prev" in layer.name]


def test_predictor_fits_and_scores_in_a_limited_space():
    from controller.predictor import Ensemble, fit_ensemble
    from controller.predictor.tokens import Vocab

    space = SearchSpace(ops=OPS, blocks=3, lookback=1, lookforward=1)
    one = space.one_block_cells()
    two = space.expand(one)
    three = space.expand(two.take(np.arange(0, len(two), 3)))
    # the tokens of a limited space never use a code the limits forbid
    assert set(np.unique(three.tokens.reshape(-1, 4)[:, :2]).tolist()) <= {1, 2}
    rng = np.random.default_rng(0)
    cells = [one, two]
    rewards = rng.uniform(0.5, 0.9, len(one) + len(two))
    ens = fit_ensemble(space, cells, rewards, kind="mlp", members=2, epochs=2, seed=0, first_level=True)
    assert ens.vocab == Vocab(space.num_input_tokens, len(OPS))
    loaded = Ensemble.from_bytes(ens.to_bytes())
    scores = loaded.predict(three, return_members=True)
    assert scores.shape == (2, len(three)) and np.isfinite(scores).all()
    np.testing.assert_array_equal(scores, ens.predict(three, return_members=True))
    # single cells of the limited space score as their batch does
    rows = [space.tokens(three.cell(i)) for i in range(5)]
    np.testing.assert_allclose(loaded.predict(rows), loaded.predict(three.take(np.arange(5))), atol=1e-6)
