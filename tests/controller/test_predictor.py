"""The surrogate predictor: it learns, its members differ, it is deterministic, it stores,
and the fast NumPy scorer is Keras' forward pass."""

from __future__ import annotations

import numpy as np
import pytest

from controller.predictor import Ensemble, fit_ensemble, kfold_holdout, spearman
from shared.errors import UserError
from shared.space import SearchSpace

SPACE = SearchSpace()  # the paper's: 8 operators, B = 5
OP_VALUE = np.linspace(0.0, 1.0, len(SPACE.ops))  # the known function: mean value of the ops


def random_cells(blocks: int, n: int, rng: np.random.Generator):
    """n random distinct cells with `blocks` blocks, grown level by level through `expand`."""
    batch = SPACE.one_block_cells()
    for _ in range(blocks - 1):
        batch = SPACE.expand(batch.take(rng.choice(len(batch), min(n, len(batch)), replace=False)))
    return batch.take(rng.choice(len(batch), n, replace=False))


def known_reward(tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ops = tokens.reshape(len(tokens), -1, 4)[:, :, 2:]
    return 0.6 + 0.3 * OP_VALUE[ops].mean(axis=(1, 2)) + rng.normal(0, 0.005, len(tokens))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    cells = [random_cells(1, 80, rng), random_cells(2, 100, rng), random_cells(3, 100, rng)]
    rewards = np.concatenate([known_reward(c.tokens, rng) for c in cells])
    return cells, rewards


@pytest.fixture(scope="module", params=["lstm", "mlp"])
def fitted(request, data):
    cells, rewards = data
    return fit_ensemble(SPACE, cells, rewards, kind=request.param, members=5, epochs=25, seed=1, first_level=True)


def mixed_cells(n_per_length: int, seed: int):
    rng = np.random.default_rng(seed)
    return [random_cells(b, n_per_length, rng) for b in range(1, SPACE.blocks + 1)]


def test_learns_a_known_function_of_the_cell(fitted, data):
    cells, rewards = data
    assert spearman(fitted.predict(cells), rewards) > 0.9
    assert fitted.info["learning_rate"] == 0.01  # first_level=True


def test_members_train_on_different_folds_and_disagree(fitted, data):
    n = len(data[1])
    held = fitted.holdout
    assert len(held) == 5
    assert sorted(np.concatenate(held).tolist()) == list(range(n))  # disjoint, cover every row
    assert all(abs(len(h) - n / 5) <= 1 for h in held)
    per_member = fitted.predict(data[0], return_members=True)
    assert per_member.shape == (5, n)
    for i in range(5):
        for j in range(i + 1, 5):
            assert np.abs(per_member[i] - per_member[j]).max() > 1e-3
    np.testing.assert_allclose(per_member.mean(axis=0), fitted.predict(data[0]), rtol=0, atol=1e-7)


def test_kfold_split_is_seeded():
    assert [h.tolist() for h in kfold_holdout(23, 5, 7)] == [h.tolist() for h in kfold_holdout(23, 5, 7)]
    assert [h.tolist() for h in kfold_holdout(23, 5, 7)] != [h.tolist() for h in kfold_holdout(23, 5, 8)]
    assert kfold_holdout(10, 1, 0)[0].size == 0  # a single member sees everything
    assert sum(len(h) for h in kfold_holdout(3, 5, 0)) == 3  # more folds than rows: some empty


def test_same_seed_same_predictions_other_seed_not():
    rng = np.random.default_rng(3)
    cells = [random_cells(1, 40, rng), random_cells(2, 40, rng)]
    rewards = rng.uniform(0.5, 0.9, 80)
    probe = mixed_cells(20, 4)
    a = fit_ensemble(SPACE, cells, rewards, members=3, epochs=3, seed=5).predict(probe)
    b = fit_ensemble(SPACE, cells, rewards, members=3, epochs=3, seed=5).predict(probe)
    c = fit_ensemble(SPACE, cells, rewards, members=3, epochs=3, seed=6).predict(probe)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4


def test_bytes_round_trip_predicts_identically(fitted):
    probe = mixed_cells(30, 5)
    loaded = Ensemble.from_bytes(fitted.to_bytes())
    assert (loaded.kind, loaded.ops, loaded.blocks, loaded.members) == (
        fitted.kind,
        fitted.ops,
        fitted.blocks,
        fitted.members,
    )
    assert loaded.info == fitted.info
    assert [h.tolist() for h in loaded.holdout] == [h.tolist() for h in fitted.holdout]
    np.testing.assert_array_equal(
        loaded.predict(probe, return_members=True), fitted.predict(probe, return_members=True)
    )


def test_from_bytes_rejects_garbage():
    with pytest.raises(UserError):
        Ensemble.from_bytes(b"not a predictor")


@pytest.mark.parametrize("engine", ["numpy", "tensorflow"])
def test_fast_scorer_equals_keras_predict_on_mixed_lengths(fitted, engine):
    if engine == "tensorflow" and fitted.kind != "lstm":
        with pytest.raises(ValueError, match="no scoring engine"):
            fitted.predict(mixed_cells(2, 6), engine=engine)
        return
    probe = mixed_cells(60, 6)  # 300 cells, b = 1..5, padded to 20 tokens for Keras
    x = fitted.keras_tokens(probe)
    keras_scores = np.stack([m.predict(x, batch_size=64, verbose=0)[:, 0] for m in fitted.keras_members()])
    got = fitted.predict(probe, return_members=True, engine=engine)
    np.testing.assert_allclose(got, keras_scores, rtol=0, atol=1e-5)


@pytest.mark.parametrize("fitted", ["lstm"], indirect=True)  # the TensorFlow scorer is the LSTM's
def test_tensorflow_scorer_equals_keras_predict_over_many_chunks(fitted, monkeypatch):
    """A beam expansion larger than a chunk: padded chunks, shared prefixes, shuffled rows."""
    assert fitted.kind == "lstm"
    from controller.predictor import tf_scoring

    monkeypatch.setattr(tf_scoring, "CHUNK", 512)  # 8 chunks at the last step, 3 at the one before
    rng = np.random.default_rng(11)
    cands = SPACE.expand(random_cells(4, 4, rng))  # b = 5 cells, 4 parents
    cands = cands.take(rng.permutation(len(cands)))
    assert len(cands) > 8 * 512 - 512
    got = fitted.predict(cands, return_members=True, engine="tensorflow")
    sample = np.arange(0, len(cands), 5)
    x = fitted.keras_tokens(cands.take(sample))
    keras_scores = np.stack([m.predict(x, batch_size=256, verbose=0)[:, 0] for m in fitted.keras_members()])
    np.testing.assert_allclose(got[:, sample], keras_scores, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got, fitted.predict(cands, return_members=True, engine="numpy"), rtol=0, atol=1e-6)


def test_padding_does_not_change_keras_prediction(fitted):
    probe = random_cells(2, 50, np.random.default_rng(7))
    member = fitted.keras_members()[0]
    x = fitted.keras_tokens(probe)  # (50, 8): no padding
    padded = np.zeros((50, 20), np.int32)
    padded[:, :8] = x
    np.testing.assert_allclose(
        member.predict(padded, verbose=0), member.predict(x, verbose=0), rtol=0, atol=1e-6
    )


def test_predict_keeps_row_order_whatever_the_grouping(fitted):
    # atol 1e-6: BLAS blocks a matrix product differently for differently shaped batches
    groups = mixed_cells(30, 8)
    whole = fitted.predict(groups)
    # one (4b,) token row per cell, interleaving lengths: same scores in the same order
    rows = [g.tokens[i] for i in range(30) for g in groups]
    order = np.array([k * 30 + i for i in range(30) for k in range(len(groups))])
    np.testing.assert_allclose(fitted.predict(rows), whole[order], rtol=0, atol=1e-6)
    # shuffled rows of one group: prefix sharing makes no assumption about order
    batch = groups[-1]
    perm = np.random.default_rng(9).permutation(len(batch))
    np.testing.assert_allclose(fitted.predict(batch.take(perm)), fitted.predict(batch)[perm], rtol=0, atol=1e-6)
    # a cell alone scores as it does among its siblings
    np.testing.assert_allclose(fitted.predict(batch.take([3])), fitted.predict(batch)[[3]], rtol=0, atol=1e-6)


def test_scores_beam_expansion_with_shared_prefixes(fitted):
    beam = random_cells(3, 4, np.random.default_rng(10))
    cands = SPACE.expand(beam)
    x = fitted.keras_tokens(cands.take(np.arange(0, len(cands), 7)))
    keras_scores = np.mean([m.predict(x, batch_size=256, verbose=0)[:, 0] for m in fitted.keras_members()], axis=0)
    np.testing.assert_allclose(fitted.predict(cands)[::7], keras_scores, rtol=0, atol=1e-5)


def test_rejects_cells_of_another_space(fitted):
    other = SearchSpace(ops=("sep3x3", "max3x3"), blocks=5)
    with pytest.raises(UserError, match="operators"):
        fitted.predict(other.one_block_cells())
    with pytest.raises(UserError, match="operator indices"):
        fitted.predict(np.array([[0, 1, 0, 8]]))


def test_fit_checks_its_inputs():
    cells = SPACE.one_block_cells()
    with pytest.raises(UserError, match="rewards"):
        fit_ensemble(SPACE, cells, np.zeros(3), epochs=1)
    with pytest.raises(UserError, match="finite"):
        fit_ensemble(SPACE, cells, np.full(len(cells), np.nan), epochs=1)


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def _next_level(data, seed: int):
    """The fixture's data plus a new level of 4-block cells, as a search's next refit sees it."""
    cells, rewards = data
    rng = np.random.default_rng(seed)
    extra = random_cells(4, 60, rng)
    return [*cells, extra], np.concatenate([rewards, known_reward(extra.tokens, rng)])


def test_finetune_starts_from_the_previous_predictor(fitted, data):
    cells, rewards = _next_level(data, 8)
    probe = mixed_cells(20, 9)
    same = fit_ensemble(SPACE, cells, rewards, kind=fitted.kind, members=5, epochs=0, seed=2, init=fitted)
    np.testing.assert_allclose(
        same.predict(probe, return_members=True), fitted.predict(probe, return_members=True), rtol=0, atol=1e-6
    )
    tuned = fit_ensemble(SPACE, cells, rewards, kind=fitted.kind, members=5, epochs=2, seed=2, init=fitted)
    assert np.abs(tuned.predict(probe) - fitted.predict(probe)).max() > 1e-4  # it did train
    assert tuned.info["learning_rate"] == 0.002 and tuned.info["finetuned_from_rows"] == len(data[1])
    assert spearman(tuned.predict(cells), rewards) > 0.9


def test_finetuned_members_keep_their_held_out_fold(fitted, data):
    cells, rewards = _next_level(data, 10)
    n_old, n = len(data[1]), len(rewards)
    tuned = fit_ensemble(SPACE, cells, rewards, kind=fitted.kind, members=5, epochs=0, seed=3, init=fitted)
    assert sorted(np.concatenate(tuned.holdout).tolist()) == list(range(n))  # still disjoint folds
    for old, new in zip(fitted.holdout, tuned.holdout, strict=True):
        assert new[new < n_old].tolist() == old.tolist()  # the earlier rows stay in their fold
        assert abs(np.sum(new >= n_old) - (n - n_old) / 5) <= 1  # the new rows are split evenly


def test_finetune_refuses_a_predictor_of_another_shape(fitted, data):
    cells, rewards = _next_level(data, 11)
    other = "mlp" if fitted.kind == "lstm" else "lstm"
    with pytest.raises(UserError, match="cannot fine-tune"):
        fit_ensemble(SPACE, cells, rewards, kind=other, members=5, epochs=1, init=fitted)
    with pytest.raises(UserError, match="cannot fine-tune"):
        fit_ensemble(SPACE, cells, rewards, kind=fitted.kind, members=3, epochs=1, init=fitted)
    with pytest.raises(UserError, match="cannot fine-tune"):  # fewer rows than it was fitted on
        fit_ensemble(SPACE, cells[:1], rewards[: len(cells[0])], kind=fitted.kind, members=5, epochs=1, init=fitted)
    with pytest.raises(UserError, match=">= 1"):  # 0 epochs only for a fine-tune
        fit_ensemble(SPACE, cells, rewards, kind=fitted.kind, members=5, epochs=0)


@pytest.mark.parametrize("kind", ["lstm", "mlp"])
def test_stacked_members_start_like_keras_members(kind):
    """Same weight names and shapes as the Keras member, each member its own seeded start."""
    from controller.predictor.keras_models import get_member_weights, member_model
    from controller.predictor.stacked import init_member

    keras_w = get_member_weights(member_model(kind, 20, embed=8, hidden=6), kind)
    a, b = (init_member(kind, np.random.default_rng([0, k]), 20, 8, 6) for k in (0, 1))
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in keras_w.items()}
    assert all(v.dtype == np.float32 for v in a.values())
    assert np.abs(a["emb"] - b["emb"]).max() > 0  # members differ
    np.testing.assert_array_equal(a["b_out"], keras_w["b_out"])  # the final bias, as Keras sets it


def test_both_trainers_learn_the_known_function(data):
    cells, rewards = data
    for trainer in ("keras", "stacked"):
        ens = fit_ensemble(SPACE, cells, rewards, members=2, epochs=15, seed=1, first_level=True, trainer=trainer)
        assert ens.info["trainer"] == trainer
        assert spearman(ens.predict(cells), rewards) > 0.9, trainer


@pytest.mark.parametrize("rows", [1, 255, 256, 257, 5376, 43008, 301056])
def test_tensorflow_scorer_pieces_pad_less_than_a_minimum_piece(rows):
    """Whole chunks, then powers of two: every size is one of a few compiled shapes."""
    pytest.importorskip("tensorflow")
    from controller.predictor.tf_scoring import CHUNK, MIN_ROWS, _pieces, _sizes

    sizes = _sizes(rows)
    assert rows <= sum(sizes) < rows + MIN_ROWS
    assert all(MIN_ROWS <= s <= CHUNK and s & (s - 1) == 0 for s in sizes)
    index = np.arange(1, rows + 1)
    pieces = _pieces(index)
    assert [len(p) for p in pieces] == sizes
    np.testing.assert_array_equal(np.concatenate(pieces)[:rows], index)
    assert not np.concatenate(pieces)[rows:].any()  # padding points at prefix 0


@pytest.mark.parametrize("kind", ["lstm", "mlp"])
def test_stacked_forward_is_the_keras_members_forward(kind):
    """The stacked trainer's forward pass (the LSTM's gates through one tanh) is Keras' model."""
    import tensorflow as tf

    from controller.predictor.keras_models import load_member
    from controller.predictor.stacked import FORWARD, init_member
    from controller.predictor.tokens import Vocab, pad

    vocab = Vocab(SPACE.num_input_tokens, len(SPACE.ops))
    members = [init_member(kind, np.random.default_rng([5, k]), vocab.size, 16, 12) for k in range(2)]
    for w in members:  # away from the initialisation: every gate and bias matters
        for name, a in w.items():
            a += np.random.default_rng(len(name)).normal(0, 0.3, a.shape).astype(np.float32)
    tokens = pad([vocab.encode(c.tokens) for c in mixed_cells(8, 3)])  # b = 1..5, right-padded
    stacked = {name: tf.constant(np.stack([w[name] for w in members])) for name in members[0]}
    got = FORWARD[kind](stacked, tf.constant(tokens)).numpy()  # (members, N)
    want = np.stack([load_member(kind, w).predict(tokens, verbose=0)[:, 0] for w in members])
    assert np.ptp(want) > 0.05  # the check sees different predictions, not a constant
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("batches", ["mixed", "by_length"])
def test_epoch_batches_hold_every_row_once(batches):
    """Every row in exactly one batch, padding marked; by_length: one cell length a batch."""
    from controller.predictor.batches import epoch_batches

    lengths = np.repeat([4, 8, 12], [37, 64, 33]).astype(np.int32)
    rng = np.random.default_rng(0)
    lengths = lengths[rng.permutation(len(lengths))]
    rows, real, steps = epoch_batches(lengths, 16, np.random.default_rng([3, 1]), batches)
    assert rows.shape[1] == 16 and real.shape == rows.shape and steps.shape == (len(rows),)
    assert sorted(rows[real == 1].tolist()) == list(range(len(lengths)))
    for r, ok, s in zip(rows, real, steps, strict=True):
        assert s == lengths[r[ok == 1]].max()
        if batches == "by_length":
            assert set(lengths[r[ok == 1]].tolist()) == {s}
    if batches == "by_length":  # each length's last batch is padded, not filled with another length
        assert len(rows) == sum(-(-c // 16) for c in (37, 64, 33))
        assert len(set(steps[:4].tolist())) > 1  # the batches' order is shuffled, not by length
    else:
        assert len(rows) == -(-len(lengths) // 16)
    again = epoch_batches(lengths, 16, np.random.default_rng([3, 1]), batches)
    other = epoch_batches(lengths, 16, np.random.default_rng([3, 2]), batches)
    assert all(np.array_equal(a, b) for a, b in zip((rows, real, steps), again, strict=True))
    assert not np.array_equal(rows, other[0])


def test_lstm_steps_past_the_real_tokens_change_nothing():
    """Running only a batch's longest row's tokens gives what running every padded step gives."""
    import tensorflow as tf

    from controller.predictor.stacked import FORWARD, init_member
    from controller.predictor.tokens import Vocab, pad

    vocab = Vocab(SPACE.num_input_tokens, len(SPACE.ops))
    members = [init_member("lstm", np.random.default_rng([7, k]), vocab.size, 16, 12) for k in range(2)]
    stacked = {name: tf.constant(np.stack([w[name] for w in members])) for name in members[0]}
    cells = mixed_cells(6, 4)
    tokens = pad([vocab.encode(c.tokens) for c in cells])  # padded to 20 tokens (b = 5)
    whole = FORWARD["lstm"](stacked, tf.constant(tokens)).numpy()
    short = tokens[: len(cells[0]) + len(cells[1])]  # the b = 1 and b = 2 rows: 8 real tokens at most
    cut = FORWARD["lstm"](stacked, tf.constant(short), tf.constant(8)).numpy()
    np.testing.assert_allclose(cut, whole[:, : len(short)], rtol=0, atol=1e-6)
    too_few = FORWARD["lstm"](stacked, tf.constant(short), tf.constant(4)).numpy()
    assert np.abs(too_few - cut).max() > 1e-3  # the steps are really cut: the b = 2 rows change


@pytest.mark.parametrize("batches", ["mixed", "by_length"])
def test_stacked_trainer_learns_with_either_batches(data, batches):
    cells, rewards = data
    ens = fit_ensemble(SPACE, cells, rewards, members=2, epochs=15, seed=1, first_level=True, batches=batches)
    assert ens.info["batches"] == batches
    assert spearman(ens.predict(cells), rewards) > 0.9, batches
    again = fit_ensemble(SPACE, cells, rewards, members=2, epochs=15, seed=1, first_level=True, batches=batches)
    np.testing.assert_array_equal(ens.predict(cells), again.predict(cells))
    with pytest.raises(ValueError, match="mixed batches only"):
        fit_ensemble(SPACE, cells, rewards, members=2, epochs=1, trainer="keras", batches="by_length")
