"""The child network builder: every op in normal and reduction cells, shapes, sizes, failures."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from shared.errors import ChildFailed
from shared.space import PAPER_OPS, PNASNET5, Block, Cell
from worker.network import build_cell, build_network, stage_plan
from worker.ops import Ctx, DropPath


def trainable(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.mark.parametrize("stem,shape", [("cifar", (8, 8, 1)), ("imagenet", (16, 16, 3))])
@pytest.mark.parametrize("op", PAPER_OPS)
def test_every_op_builds_and_runs_in_normal_and_reduction_cells(op, stem, shape):
    # block 1 reads both cell inputs (strided in reduction cells), block 2 an earlier block
    cell = Cell.of([[-2, op, -1, op], [0, op, -1, "identity"]])
    model = build_network(cell, input_shape=shape, num_classes=5, stem=stem,
                          cells_per_stage=1, filters=4)
    out = model(np.random.default_rng(0).random((2, *shape), dtype=np.float32), training=True)
    assert out.shape == (2, 5)
    np.testing.assert_allclose(np.asarray(out).sum(axis=1), 1.0, rtol=1e-5)


def test_stage_plan_puts_reductions_at_cells_n_and_2n_like_slim():
    assert stage_plan(3) == [False, False, False, True, False, False, True, False, False]
    assert stage_plan(1) == [False, True, True]


@pytest.mark.parametrize("stride", [1, 2])
def test_cell_emits_b_times_f_channels_and_reduces_by_its_stride(stride):
    f = 6
    h1 = keras.Input((8, 8, 10))
    h2 = keras.Input((16, 16, 7))  # twice the size: goes through the factorized reduction
    out = build_cell(Ctx(), PNASNET5, h1, h2, filters=f, stride=stride, prefix="c")
    assert out.shape[1:] == (8 // stride, 8 // stride, PNASNET5.num_blocks * f)


def test_factorized_reduction_handles_odd_filter_counts_and_sizes():
    out = build_cell(Ctx(), PNASNET5, keras.Input((4, 4, 8)), keras.Input((7, 7, 8)),
                     filters=13, stride=2, prefix="c")  # 13 = slim's first mobile stem cell
    assert out.shape[1:] == (2, 2, 5 * 13)


@pytest.mark.parametrize(
    "label,kwargs,published",
    [
        ("cifar N=3 F=48", dict(input_shape=(32, 32, 3), num_classes=10, stem="cifar",
                                cells_per_stage=3, filters=48), 3.2e6),
        ("mobile N=3 F=54", dict(input_shape=(224, 224, 3), num_classes=1000, stem="imagenet",
                                 cells_per_stage=3, filters=54), 5.1e6),
        ("large N=4 F=216", dict(input_shape=(331, 331, 3), num_classes=1000, stem="imagenet",
                                 cells_per_stage=4, filters=216, stem_multiplier=3.0), 86.1e6),
    ],
)
def test_pnasnet5_parameter_counts_match_the_paper(label, kwargs, published):
    # measured: 3,189,082 / 5,064,487 / ... trainable (no auxiliary head; the first cell reads the raw stem)
    n = trainable(build_network(PNASNET5, **kwargs))
    assert abs(n - published) / published < 0.02, f"{label}: {n:,} vs {published:,.0f}"


def test_drop_path_is_off_by_default_and_scaled_when_on():
    kw = dict(input_shape=(8, 8, 1), num_classes=3, cells_per_stage=1, filters=4)
    assert not [l for l in build_network(PNASNET5, **kw).layers if isinstance(l, DropPath)]
    m = build_network(PNASNET5, drop_path_keep_prob=0.5, total_training_steps=10, seed=1, **kw)
    by_cell = {l.name.split(".")[0]: l.keep_prob for l in m.layers if isinstance(l, DropPath)}
    # keep = 1 - (depth + 1) / cells * (1 - 0.5): deeper cells drop more
    assert by_cell == pytest.approx({"cell0": 1 - 1 / 6, "cell1": 1 - 2 / 6, "cell2": 0.5})
    x = np.ones((4, 8, 8, 1), np.float32)
    np.testing.assert_allclose(m(x, training=False), m(x, training=False))
    assert m(x, training=True).shape == (4, 3)


def test_drop_path_trains_under_mixed_precision():
    # its step counter read as float16 under mixed_float16 met the float32 keep probability
    # (a TypeError in the first training step of every recipe with drop path on a GPU)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        m = build_network(PNASNET5, input_shape=(8, 8, 1), num_classes=3, cells_per_stage=1, filters=4,
                          drop_path_keep_prob=0.5, total_training_steps=10, seed=1)  # fmt: skip
        m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        m.fit(np.ones((4, 8, 8, 1), np.float32), np.zeros(4, np.int32), epochs=1, verbose=0)
    finally:
        keras.config.set_dtype_policy("float32")
    steps = [float(l.step.numpy()) for l in m.layers if isinstance(l, DropPath)]
    assert steps and all(s == 1.0 for s in steps), "one step counted, in float32"


@pytest.mark.parametrize(
    "cell,kwargs,message",
    [
        (Cell((Block(-2, "conv9x9", -1, "identity"),)), {}, "unknown operator 'conv9x9'"),
        (Cell((Block(-2, "sep3x3", 0, "identity"),)), {}, "block 1 reads input 0"),
        (PNASNET5, {"stem": "imagenet", "input_shape": (2, 2, 1)}, "at least 3x3"),
        (PNASNET5, {"stem": "resnet"}, "unknown stem"),
        (PNASNET5, {"num_classes": 1}, "at least 2 classes"),
    ],
)
def test_an_invalid_child_raises_child_failed(cell, kwargs, message):
    args = dict(input_shape=(8, 8, 1), num_classes=10, cells_per_stage=1, filters=4) | kwargs
    with pytest.raises(ChildFailed, match=message):
        build_network(cell, **args)
