"""Fit every member at once: their weights stacked on a leading member axis, one compiled step.

The same models as `keras_models` (the same weight names, the same forward pass, Keras'
initialisers and Adam) and the same objective: the batches are shared, member k's loss is
its mean |error| over its own rows in the batch (its held-out fold has weight 0), and the
members' losses are summed, so no member's gradient sees another's. What is saved is overhead:
one batched LSTM instead of m Keras layers, and a whole epoch (every batch) in one
XLA-compiled loop instead of a Python call per batch.

Shapes: m members, B rows a batch, T tokens a row, V vocabulary, E embedding, H hidden.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

from controller.predictor.batches import Batches, epoch_batches
from controller.predictor.keras_models import FINAL_BIAS
from controller.predictor.tokens import PAD

Weights = dict[str, np.ndarray]
ADAM = (0.9, 0.999, 1e-7)  # Keras' defaults: beta_1, beta_2, epsilon


def _glorot(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_in, fan_out))


def _orthogonal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    a = rng.normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    return q.T if rows < cols else q


def init_member(kind: str, rng: np.random.Generator, vocab_size: int, embed: int, hidden: int) -> Weights:
    """Fresh weights as Keras initialises `keras_models.member_model` (its distributions)."""
    w = {"emb": rng.uniform(-0.05, 0.05, (vocab_size, embed))}
    if kind == "lstm":
        bias = np.zeros(4 * hidden)
        bias[hidden : 2 * hidden] = 1.0  # unit_forget_bias
        w |= {"kernel": _glorot(rng, embed, 4 * hidden), "recurrent": _orthogonal(rng, hidden, 4 * hidden), "bias": bias}
    else:
        w |= {"w1": _glorot(rng, 4 * embed, hidden), "b1": np.zeros(hidden),
              "w2": _glorot(rng, hidden, hidden), "b2": np.zeros(hidden)}  # fmt: skip
    w |= {"w_out": _glorot(rng, hidden, 1), "b_out": np.full(1, FINAL_BIAS)}
    return {k: v.astype(np.float32) for k, v in w.items()}


def _gate_scale(hidden: int) -> np.ndarray:
    scale = np.ones(4 * hidden, np.float32)  # gate order i, f, g, o: halve i, f and o
    scale[: 2 * hidden] = scale[3 * hidden :] = 0.5
    return scale


def _lstm(v: dict[str, tf.Variable], tokens: tf.Tensor, steps: tf.Tensor | int | None = None) -> tf.Tensor:
    """(B, T) right-padded tokens -> (m, B) accuracy; padding carries the state (mask_zero).

    ``steps``: run the first ``steps`` tokens only (every row's real tokens must be among
    them; default T): a batch of short cells skips its padding.

    Keras' cell, with its three sigmoids written as sigmoid(z) = (tanh(z / 2) + 1) / 2 (the
    1/2 folded into the i, f, o columns, as `fast.lstm_tables` does): one tanh over all four
    gates a step, forward and backward, instead of four elementwise passes. The steps are a
    `tf.while_loop`, not T unrolled copies: XLA compiles one step's body, about 4x faster,
    and the compiled epoch runs about 1.9x faster (BENCHMARKS.md section 14).
    """
    hidden = v["recurrent"].shape[1]
    half = tf.constant(_gate_scale(hidden))  # (4H,)
    x_table = (tf.linalg.matmul(v["emb"], v["kernel"]) + v["bias"][:, None, :]) * half  # (m, V, 4H)
    u = v["recurrent"] * half  # (m, H, 4H)
    by_step = tf.transpose(tokens)  # (T, B)
    real = tf.not_equal(by_step, PAD)[:, None, :, None]  # (T, 1, B, 1)

    def step(t, h, c):
        x = tf.gather(x_table, by_step[t], axis=1)  # (m, B, 4H): the token's input projection
        t_i, t_f, t_g, t_o = tf.split(tf.tanh(x + tf.linalg.matmul(h, u)), 4, axis=-1)
        c_new = 0.5 * ((t_f + 1.0) * c + (t_i + 1.0) * t_g)  # sigmoid(f) c + sigmoid(i) tanh(g)
        h_new = 0.5 * (t_o + 1.0) * tf.tanh(c_new)
        return t + 1, tf.where(real[t], h_new, h), tf.where(real[t], c_new, c)

    longest = tokens.shape[1]
    steps = longest if steps is None else steps
    h = c = tf.zeros([x_table.shape[0], tf.shape(tokens)[0], hidden])  # (m, B, H)
    _, h, _ = tf.while_loop(lambda t, h, c: t < steps, step, (tf.constant(0), h, c), maximum_iterations=longest)
    return tf.sigmoid(tf.linalg.matmul(h, v["w_out"])[..., 0] + v["b_out"])


def _mlp(v: dict[str, tf.Variable], tokens: tf.Tensor, steps: tf.Tensor | int | None = None) -> tf.Tensor:
    """(B, 4b) tokens -> (m, B): per-block embeddings concatenated, averaged over real blocks.

    (``steps``, `_lstm`'s, changes nothing here: padding costs the MLP little.)
    """
    e = tf.gather(v["emb"], tokens, axis=1)  # (m, B, T, E)
    blocks = tf.reshape(e, tf.concat([tf.shape(e)[:2], [-1, 4 * e.shape[-1]]], 0))  # (m, B, b, 4E)
    real = tf.cast(tf.not_equal(tokens[:, ::4], PAD), e.dtype)[None, :, :, None]  # (1, B, b, 1)
    x = tf.reduce_sum(blocks * real, axis=2) / tf.maximum(tf.reduce_sum(real, axis=2), 1.0)
    x = tf.nn.relu(tf.linalg.matmul(x, v["w1"]) + v["b1"][:, None, :])
    x = tf.nn.relu(tf.linalg.matmul(x, v["w2"]) + v["b2"][:, None, :])
    return tf.sigmoid(tf.linalg.matmul(x, v["w_out"])[..., 0] + v["b_out"])


FORWARD = {"lstm": _lstm, "mlp": _mlp}


def fit_stacked(
    kind: str,
    tokens: np.ndarray,
    rewards: np.ndarray,
    train_mask: np.ndarray,
    *,
    vocab_size: int,
    embed: int,
    hidden: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
    init: list[Weights] | None = None,
    jit: bool = True,
    batches: Batches = "mixed",
) -> list[Weights]:
    """As `keras_models.fit_members` (same arguments, same contract), members stacked.

    ``batches``: how an epoch's rows make batches (`epoch_batches`); "mixed" is Keras' way.
    Deterministic: member k's fresh weights come from ``seed`` and k, each epoch's batches
    from ``seed`` and the epoch.
    """
    m, n = train_mask.shape
    if init is None:
        init = [init_member(kind, np.random.default_rng([seed, k]), vocab_size, embed, hidden) for k in range(m)]
    if epochs == 0:
        return [{k: a.copy() for k, a in w.items()} for w in init]
    names = list(init[0])
    v = {k: tf.Variable(np.stack([w[k] for w in init]).astype(np.float32)) for k in names}
    moments = {k: (tf.Variable(tf.zeros_like(v[k])), tf.Variable(tf.zeros_like(v[k]))) for k in names}
    step = tf.Variable(0.0)
    forward = FORWARD[kind]
    beta1, beta2, eps = ADAM

    lengths = (tokens != PAD).sum(axis=1).astype(np.int32)
    x_all = tf.constant(tokens.astype(np.int32))
    y_all = tf.constant(rewards.astype(np.float32))
    mask_all = tf.constant(train_mask.astype(np.float32))  # (m, N)

    def train_batch(idx, ok, steps):
        x, y = tf.gather(x_all, idx), tf.gather(y_all, idx)  # (B, T), (B,)
        weight = tf.gather(mask_all, idx, axis=1) * ok  # (m, B): the member's rows in the batch
        with tf.GradientTape() as tape:
            err = tf.abs(y[None, :] - forward(v, x, steps))
            per_member = tf.reduce_sum(weight * err, axis=1) / tf.maximum(tf.reduce_sum(weight, axis=1), 1e-6)
            loss = tf.reduce_sum(per_member)
        grads = tape.gradient(loss, [v[k] for k in names])
        step.assign_add(1.0)
        alpha = learning_rate * tf.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
        for k, g in zip(names, grads, strict=True):
            g = tf.convert_to_tensor(g)
            mean, var = moments[k]
            mean.assign_add((g - mean) * (1.0 - beta1))
            var.assign_add((tf.square(g) - var) * (1.0 - beta2))
            v[k].assign_sub(alpha * mean / (tf.sqrt(var) + eps))
        return loss * tf.reduce_sum(ok)

    @tf.function(jit_compile=jit)
    def train_epoch(order, ok, steps):  # as `epoch_batches` gives them
        total = tf.constant(0.0)
        for b in tf.range(tf.shape(order)[0]):
            total += train_batch(order[b], ok[b], steps[b])
        return total / n

    for epoch in range(epochs):
        loss = train_epoch(*epoch_batches(lengths, batch_size, np.random.default_rng([seed, epoch]), batches))
        if on_epoch is not None:
            on_epoch(epoch + 1, float(loss))
    return [{k: v[k].numpy()[j] for k in names} for j in range(m)]
