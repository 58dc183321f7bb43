"""The surrogate's Keras models: one ensemble member, and the trainer that fits all members.

Imported only when fitting (or when a check wants Keras' own forward pass): scoring runs on
the NumPy weights (see `fast`), so loading a fitted ensemble never starts TensorFlow.

Member weights travel as a dict of arrays with fixed names:
    lstm: emb (V, E), kernel (E, 4H), recurrent (H, 4H), bias (4H,), w_out (H, 1), b_out (1,)
    mlp:  emb (V, E), w1 (4E, H), b1 (H,), w2 (H, H), b2 (H,), w_out (H, 1), b_out (1,)
Keras' LSTM gate order is i, f, c, o.
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np
from keras import layers, ops

from controller.predictor.tokens import PAD

FINAL_BIAS = 1.8  # sigmoid(1.8) ~ 0.86, the mean one-block accuracy in the paper

_LAYER_WEIGHTS = {
    "lstm": {
        "embedding": ("emb",),
        "lstm": ("kernel", "recurrent", "bias"),
        "out": ("w_out", "b_out"),
    },
    "mlp": {
        "embedding": ("emb",),
        "dense1": ("w1", "b1"),
        "dense2": ("w2", "b2"),
        "out": ("w_out", "b_out"),
    },
}


class BlockMean(layers.Layer):
    """(N, T, E) token embeddings -> (N, 4E): concatenate per block, average the real blocks."""

    def call(self, embedded, tokens):
        n, width = ops.shape(embedded)[0], 4 * embedded.shape[-1]
        blocks = ops.reshape(embedded, (n, -1, width))  # (N, b, 4E)
        real = ops.cast(ops.not_equal(tokens[:, ::4], PAD), blocks.dtype)[:, :, None]  # (N, b, 1)
        return ops.sum(blocks * real, axis=1) / ops.maximum(ops.sum(real, axis=1), 1.0)


def member_model(
    kind: str, vocab_size: int, *, embed: int, hidden: int, name: str = "member"
) -> keras.Model:
    """One predictor: (N, T) model tokens, right-padded with PAD -> (N, 1) accuracy in (0, 1)."""
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    if kind == "lstm":
        # mask_zero: the LSTM carries its state over padding, so a padded cell reads as unpadded
        x = layers.Embedding(vocab_size, embed, mask_zero=True, name="embedding")(tokens)
        x = layers.LSTM(hidden, name="lstm")(x)
    elif kind == "mlp":
        x = layers.Embedding(vocab_size, embed, name="embedding")(tokens)
        x = BlockMean(name="block_mean")(x, tokens)
        x = layers.Dense(hidden, activation="relu", name="dense1")(x)
        x = layers.Dense(hidden, activation="relu", name="dense2")(x)
    else:
        raise ValueError(f"unknown predictor kind {kind!r}")
    out = layers.Dense(
        1, activation="sigmoid", bias_initializer=keras.initializers.Constant(FINAL_BIAS), name="out"
    )(x)
    return keras.Model(tokens, out, name=name)


def get_member_weights(model: keras.Model, kind: str) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for layer, names in _LAYER_WEIGHTS[kind].items():
        for key, w in zip(names, model.get_layer(layer).get_weights(), strict=True):
            out[key] = np.asarray(w, np.float32)
    return out


def load_member(kind: str, weights: dict[str, np.ndarray]) -> keras.Model:
    """Rebuild a member from its weights (for checks against Keras' own forward pass)."""
    vocab, embed = weights["emb"].shape
    hidden = weights["w_out"].shape[0]
    model = member_model(kind, vocab, embed=embed, hidden=hidden)
    for layer, names in _LAYER_WEIGHTS[kind].items():
        model.get_layer(layer).set_weights([weights[k] for k in names])
    return model


def masked_l1(y_true, y_pred):
    """L1 per member over the rows that member trains on.

    ``y_true`` (N, 2m): targets, then 0/1 weights (0 = the member's held-out fold);
    ``y_pred`` (N, m). Keras averages the returned (N,) over the batch, which gives
    sum over members of each member's mean |error| on its own rows in the batch.
    """
    m = y_pred.shape[-1]
    target, weight = y_true[:, :m], y_true[:, m:]
    share = ops.maximum(ops.mean(weight, axis=0), 1e-6)  # (m,) fraction of the batch per member
    return ops.sum(weight * ops.abs(target - y_pred) / share, axis=-1)


def fit_members(
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
    init: list[dict[str, np.ndarray]] | None = None,
) -> list[dict[str, np.ndarray]]:
    """Train all members at once on padded model tokens; return each member's weights.

    ``tokens`` (N, T) int32, ``rewards`` (N,), ``train_mask`` (m, N) bool. The members share
    nothing but the batches: each has its own weights, and the loss of a member only sees
    its own rows, so this equals training them one by one (and is m times fewer steps).
    ``init``: member k starts from ``init[k]`` (a fine-tune) instead of fresh weights; with
    ``epochs`` 0 the members come back unchanged.
    ``on_epoch(epoch, loss)`` is called after each epoch (1-based), for progress.
    """
    keras.utils.set_random_seed(seed)
    m = len(train_mask)
    members = [
        member_model(kind, vocab_size, embed=embed, hidden=hidden, name=f"member{k}") for k in range(m)
    ]
    for member, start in zip(members, init, strict=True) if init is not None else ():
        for layer, names in _LAYER_WEIGHTS[kind].items():
            member.get_layer(layer).set_weights([start[n] for n in names])
    if epochs == 0:
        return [get_member_weights(member, kind) for member in members]
    inputs = keras.Input((None,), dtype="int32")
    outs = [member(inputs) for member in members]
    trainer = keras.Model(inputs, layers.Concatenate()(outs) if m > 1 else outs[0])
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=masked_l1)
    y = np.concatenate([np.repeat(rewards[:, None], m, 1), train_mask.T], axis=1).astype(np.float32)
    callbacks = []
    if on_epoch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: on_epoch(epoch + 1, float((logs or {}).get("loss", float("nan"))))))  # fmt: skip
    trainer.fit(tokens, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=callbacks)
    return [get_member_weights(member, kind) for member in members]
