"""Turn a cell into a Keras network: the child model the search trains.

The network follows the paper's figure 2 and TF-slim's ``pnasnet.py``:

    cifar:    3x3 conv (stem_multiplier*F) -> N cells -> reduction + N-1 cells
              -> reduction + N-1 cells -> ReLU -> global average pool -> dropout -> softmax
    imagenet: 3x3 stride-2 conv (32*stem_multiplier, 'valid') -> two stride-2 stem cells
              (F/4 and F/2 filters) -> the same three stages

As in slim (``num_cells = 3N``, reductions at cells N and 2N), the reduction cell is the
first of the N cells of stages 2 and 3, not an extra one: that is the layout whose parameter
counts match the published ones (CIFAR N=3 F=48: 3.18M; mobile: 5.06M; large: 86.05M
trainable). With two extra reduction cells the counts come out about 25% higher.

One cell type serves everywhere; a reduction cell is the same cell with stride 2 on the ops
that read ``H[c-1]``/``H[c-2]`` and twice the filters. Every cell starts with slim's
``_cell_base``: ``H[c-1]`` goes through ReLU -> 1x1 conv -> BN to F channels, ``H[c-2]``
through a factorized reduction when its size differs from ``H[c-1]``'s (else ReLU -> 1x1 ->
BN if its channel count differs). The cell emits the concatenation of all B block outputs,
so B*F channels.
"""

from __future__ import annotations

from typing import Literal, Sequence

import keras
from keras import layers

from shared.errors import ChildFailed
from shared.space import KNOWN_OPS, PREV2, Cell
from worker.ops import BN_EPSILON, BN_MOMENTUM, OPS, Ctx, DropPath, channels, factorized_reduction, spatial

STEM_MULTIPLIER = {"cifar": 3.0, "imagenet": 1.0}  # slim: NASNet CIFAR 3.0, PNASNet mobile 1.0


def stage_plan(cells_per_stage: int) -> list[bool]:
    """Which of the 3N main cells reduce: cells N and 2N (slim's ``calc_reduction_layers``)."""
    n = cells_per_stage
    return [i in (n, 2 * n) for i in range(3 * n)]


def build_network(
    cell: Cell,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    stem: Literal["cifar", "imagenet"] = "cifar",
    cells_per_stage: int = 2,
    filters: int = 24,
    stem_multiplier: float | None = None,
    drop_path_keep_prob: float = 1.0,
    total_training_steps: int | None = None,
    dropout: float = 0.0,
    weight_decay: float = 0.0,
    bn_momentum: float = BN_MOMENTUM,
    bn_epsilon: float = BN_EPSILON,
    init: str = "slim",
    aux_head: bool = False,
    seed: int | None = None,
    name: str = "pnas_child",
) -> keras.Model:
    """The child network for ``cell``; raises `ChildFailed` when it cannot be built.

    ``cells_per_stage`` is N, ``filters`` is F (the first stage's per-block width).
    ``drop_path_keep_prob < 1`` adds drop path after every non-identity op, its drop rate
    scaled by cell depth and (with ``total_training_steps``) by training progress.
    ``aux_head`` adds slim's auxiliary classifier before the second reduction: the model then
    has two outputs, ``logits`` and ``aux_logits`` (both softmax probabilities).
    """
    _check(cell, input_shape=input_shape, num_classes=num_classes, stem=stem,
           cells_per_stage=cells_per_stage, filters=filters)
    mult = STEM_MULTIPLIER[stem] if stem_multiplier is None else stem_multiplier
    try:
        return _build(cell, tuple(int(d) for d in input_shape), int(num_classes), stem,
                      cells_per_stage, filters, mult, drop_path_keep_prob,
                      total_training_steps, dropout, weight_decay, seed, name,
                      Ctx(weight_decay, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, init=init,
                          seed=seed), aux_head)
    except ChildFailed:
        raise
    except (ValueError, TypeError) as exc:  # Keras refusing a shape, most likely
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ChildFailed(f"cannot build the network for cell {cell.readable()}: {first}") from exc


def network_for(cell: Cell, train, *, input_shape, num_classes: int, total_steps: int | None = None,
                seed: int | None = None, name: str = "pnas_child") -> keras.Model:
    """The network a `TrainConfig` describes (training, export and benchmarks build the same)."""
    return build_network(
        cell, input_shape=input_shape, num_classes=num_classes, stem=train.stem,
        cells_per_stage=train.cells_per_stage, filters=train.filters,
        drop_path_keep_prob=train.drop_path_keep_prob, total_training_steps=total_steps,
        dropout=train.dropout, weight_decay=train.weight_decay, bn_momentum=train.bn_momentum,
        bn_epsilon=train.bn_epsilon, init=train.init, aux_head=train.aux_head, seed=seed, name=name,
    )


def _check(cell: Cell, *, input_shape, num_classes, stem, cells_per_stage, filters) -> None:
    if not isinstance(cell, Cell) or not cell.blocks:
        raise ChildFailed("the cell has no blocks")
    unknown = sorted(cell.ops - KNOWN_OPS)
    if unknown:
        raise ChildFailed(f"unknown operator {unknown[0]!r}; known: {', '.join(sorted(KNOWN_OPS))}")
    for k, b in enumerate(cell.blocks):
        for inp in (b.in1, b.in2):
            if not PREV2 <= inp < k:
                raise ChildFailed(f"block {k + 1} reads input {inp}; allowed are -2, -1 and 0..{k - 1}")
    if stem not in STEM_MULTIPLIER:
        raise ChildFailed(f"unknown stem {stem!r}; use 'cifar' or 'imagenet'")
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ChildFailed(f"input shape must be (height, width, channels), got {tuple(input_shape)}")
    if stem == "imagenet" and min(input_shape[:2]) < 3:
        raise ChildFailed("the imagenet stem needs inputs of at least 3x3 pixels")
    if num_classes < 2:
        raise ChildFailed(f"need at least 2 classes, got {num_classes}")
    if cells_per_stage < 1 or filters < 1:
        raise ChildFailed("cells per stage (N) and filters (F) must be >= 1")
    if stem == "imagenet" and filters < 4:
        raise ChildFailed("the imagenet stem needs filters (F) >= 4: its first stem cell has F/4")


def _build(cell, input_shape, num_classes, stem, n, filters, mult, keep_prob,
           total_steps, dropout, weight_decay, seed, name, ctx, aux_head) -> keras.Model:
    plan = stage_plan(n)
    stem_cells = 2 if stem == "imagenet" else 0
    total_cells = len(plan) + stem_cells  # for the depth scaling of drop path
    drop = _DropPathFactory(keep_prob, total_cells, total_steps, seed)

    inputs = keras.Input(shape=input_shape, name="image")
    if stem == "cifar":
        x = ctx.conv(inputs, int(filters * mult), 3, "stem")
        x = ctx.bn(x, "stem")
    else:
        x = layers.Conv2D(int(32 * mult), 3, strides=2, padding="valid", use_bias=False,
                          kernel_initializer=ctx.initializer(), kernel_regularizer=ctx.reg, name=ctx.name("stem/conv"))(inputs)
        x = ctx.bn(x, "stem")
    prev, cur = None, x  # H[c-2], H[c-1]

    depth = 0
    scaling = 1.0 / 4 if stem_cells else 1.0
    for s in range(stem_cells):
        out = build_cell(ctx, cell, cur, prev, filters=int(filters * scaling), stride=2,
                         prefix=f"stem_cell{s}", drop=drop.at(depth))
        prev, cur = cur, out
        scaling *= 2
        depth += 1
    scaling = 1.0
    aux = None
    aux_at = [i for i, r in enumerate(plan) if r][1] - 1 if sum(plan) >= 2 else None
    for i, reduction in enumerate(plan):
        if reduction:
            scaling *= 2
        out = build_cell(ctx, cell, cur, prev, filters=int(filters * scaling),
                         stride=2 if reduction else 1, prefix=f"cell{i}", drop=drop.at(depth))
        prev, cur = cur, out
        depth += 1
        if aux_head and i == aux_at:  # slim: the cell before the second reduction
            aux = _aux_head(ctx, cur, num_classes)

    x = layers.ReLU(name="head.relu")(cur)
    x = layers.GlobalAveragePooling2D(name="head.pool")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, seed=seed, name="head.dropout")(x)
    # float32 even under mixed precision: softmax and loss stay accurate
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32",
                           kernel_initializer=ctx.initializer(), kernel_regularizer=ctx.reg,
                           name="logits")(x)
    if aux_head:
        if aux is None:
            raise ChildFailed("the auxiliary head needs two reduction cells (N >= 1, the cifar layout)")
        return keras.Model(inputs, {"logits": outputs, "aux_logits": aux}, name=name)
    return keras.Model(inputs, outputs, name=name)


def _aux_head(ctx: Ctx, x, num_classes: int):
    """slim's ``_build_aux_head``: ReLU, 5x5/3 average pool, 1x1 conv 128, BN, ReLU, a conv
    over the whole remaining map to 768, BN, ReLU, classifier. Only in training's loss."""
    x = ctx.relu(x, "aux")
    if min(spatial(x)) >= 5:
        x = layers.AveragePooling2D(5, strides=3, padding="valid", name=ctx.name("aux/pool"))(x)
    x = ctx.relu(ctx.bn(ctx.conv(x, 128, 1, "aux/proj"), "aux/proj"), "aux/proj")
    x = layers.Conv2D(768, spatial(x), padding="valid", use_bias=False,
                      kernel_initializer=ctx.initializer(), kernel_regularizer=ctx.reg,
                      name=ctx.name("aux/full/conv"))(x)
    x = ctx.relu(ctx.bn(x, "aux/full"), "aux/full")
    x = layers.Flatten(name=ctx.name("aux/flatten"))(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32",
                        kernel_initializer=ctx.initializer(), kernel_regularizer=ctx.reg,
                        name="aux_logits")(x)


class _DropPathFactory:
    def __init__(self, keep_prob: float, total_cells: int, total_steps, seed) -> None:
        self.keep_prob, self.total_cells = keep_prob, total_cells
        self.total_steps, self.seed, self.count = total_steps, seed, 0

    def at(self, cell_depth: int):
        """A function adding drop path for the cell at this depth (None when off)."""
        if self.keep_prob >= 1.0:
            return None
        ratio = (cell_depth + 1) / self.total_cells  # deeper cells drop more
        keep = 1.0 - ratio * (1.0 - self.keep_prob)

        def add(ctx: Ctx, x, p: str):
            self.count += 1
            s = None if self.seed is None else self.seed + self.count
            return DropPath(keep, self.total_steps, seed=s, name=ctx.name(f"{p}/droppath"))(x)

        return add


def build_cell(ctx: Ctx, cell: Cell, h1, h2, *, filters: int, stride: int, prefix: str, drop=None):
    """One cell: ``h1`` is H[c-1], ``h2`` is H[c-2] (None in the first cell).

    Returns B*F channels at H[c-1]'s resolution divided by ``stride``. The first cell reads
    the raw stem output as H[c-2], unprojected, as slim's ``_reduce_prev_layer`` does.
    """
    first = h2 is None
    h2 = h1 if first else h2
    # A cell that never reads H[c-2] (any cell of a lookback-1 space) gets no layers for it.
    if not first and any(PREV2 in (b.in1, b.in2) for b in cell.blocks):
        if spatial(h2) != spatial(h1):
            h2 = factorized_reduction(ctx, ctx.relu(h2, f"{prefix}/prev"), filters, f"{prefix}/prev")
        elif channels(h2) != filters:
            h2 = ctx.relu_conv_bn(h2, filters, f"{prefix}/prev")
    h1 = ctx.relu_conv_bn(h1, filters, f"{prefix}/base")
    states = [h2, h1]  # index = input + 2: H[c-2], H[c-1], block 1, ...
    for k, b in enumerate(cell.blocks):
        p = f"{prefix}/b{k + 1}"
        left = _apply(ctx, b.op1, states[b.in1 + 2], b.in1, filters, stride, f"{p}/left", drop)
        right = _apply(ctx, b.op2, states[b.in2 + 2], b.in2, filters, stride, f"{p}/right", drop)
        states.append(layers.Add(name=ctx.name(f"{p}/add"))([left, right]))
    blocks = states[2:]
    if len(blocks) == 1:
        return blocks[0]
    return layers.Concatenate(name=ctx.name(f"{prefix}/concat"))(blocks)


def _apply(ctx: Ctx, op: str, x, source: int, filters: int, stride: int, p: str, drop):
    stride = stride if source < 0 else 1  # only ops on the cell inputs reduce
    y = OPS[op](ctx, x, filters, stride, f"{p}/{op}")
    if drop is not None and op != "identity":
        y = drop(ctx, y, p)
    return y
