"""Fit the surrogate ensemble, score cells with it, and store it as bytes."""

from __future__ import annotations

import importlib.util
import io
import json
from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import spearmanr

from controller.predictor.batches import Batches
from controller.predictor.fast import SCORERS, PrefixTree
from controller.predictor.tokens import Cells, Vocab, pad, token_groups
from shared.errors import UserError
from shared.tf_noise import quiet_stderr
from shared.space import CellBatch, SearchSpace

FORMAT = "pnas-predictor/1"
Kind = Literal["lstm", "mlp"]
Engine = Literal["auto", "numpy", "tensorflow"]
Trainer = Literal["stacked", "keras"]
# Below this many cells NumPy scores in well under a second and TensorFlow's start-up and
# compiles would cost more than they save (the in-sample scores of a fit, small levels).
TF_MIN_ROWS = 20_000
EMBED = 100  # paper: embedding size 100
HIDDEN = 100  # paper: LSTM hidden size 100 / MLP layers of 100 units
LR_FIRST_LEVEL = 0.01  # paper: when fitting on b = 1 cells only
LR_LATER = 0.002  # paper: afterwards
BATCH_SIZE = 32  # small data (136..1160 cells): small batches, many steps per epoch
# How the stacked trainer makes an epoch's batches, by predictor: the LSTM's batches hold cells
# of one block count, so it runs each batch's own tokens, not the longest cell's (1.5x less
# arithmetic at level 5; the same search-level Spearman within noise, BENCHMARKS.md section 14);
# the MLP costs the same either way and keeps Keras' mixed batches.
BATCHES: dict[str, Batches] = {"lstm": "by_length", "mlp": "mixed"}
# A fine-tune starts from a fitted predictor and most of its rows were fitted already:
# a quarter of the epochs (our judgement; the paper gives no count, only the lower lr).
FINETUNE_EPOCH_SHARE = 0.25


def finetune_epochs(epochs: int) -> int:
    """The epochs of a fine-tune when a fit from scratch takes ``epochs`` (at least 1)."""
    return max(1, round(epochs * FINETUNE_EPOCH_SHARE))


@dataclass(frozen=True)
class Ensemble:
    """A fitted surrogate: ``members`` predictors whose mean is the prediction.

    ``weights[k]`` holds member k's arrays (names in `keras_models`); ``holdout[k]`` the rows
    of the training data member k did not see (empty when there is one member).
    """

    kind: Kind
    ops: tuple[str, ...]
    blocks: int
    vocab: Vocab
    weights: list[dict[str, np.ndarray]]
    holdout: list[np.ndarray] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # how it was fitted: seed, epochs, rows, ...

    @property
    def members(self) -> int:
        return len(self.weights)

    def predict(self, cells: Cells, *, return_members: bool = False, engine: Engine = "auto") -> np.ndarray:
        """Predicted accuracy (N,) float32, the members' mean; or (members, N) per member.

        ``cells``: a `CellBatch`, an (N, 4b) token array, or a sequence of these or of single
        cells' (4b,) token rows (lengths may differ). Rows keep the input order.
        ``engine``: "numpy" (`fast`), "tensorflow" (`tf_scoring`: LSTM only, all members in
        one compiled pass, on a GPU if TensorFlow sees one) or "auto": TensorFlow for an LSTM
        on at least `TF_MIN_ROWS` cells when it is installed, else NumPy. Both agree with
        Keras' forward pass to float32 round-off.
        """
        if isinstance(cells, CellBatch) and isinstance(cells.space, SearchSpace):
            self._check_space(cells.space)
        parts = []
        for group in token_groups(cells):
            if len(group) == 0:
                parts.append(np.zeros((self.members, 0), np.float32))
                continue
            tree = PrefixTree.build(self.vocab.encode(group), self.vocab.size)
            parts.append(self._score(tree, engine))
        per_member = np.concatenate(parts, axis=1) if parts else np.zeros((self.members, 0), np.float32)
        return per_member if return_members else per_member.mean(axis=0)

    def _score(self, tree: PrefixTree, engine: Engine) -> np.ndarray:
        if engine == "auto":
            big = self.kind == "lstm" and len(tree.leaf) >= TF_MIN_ROWS
            engine = "tensorflow" if big and importlib.util.find_spec("tensorflow") else "numpy"
        if engine == "numpy":
            return np.stack([SCORERS[self.kind](tree, w) for w in self.weights])
        if engine != "tensorflow" or self.kind != "lstm":
            raise ValueError(f"no scoring engine {engine!r} for a {self.kind} predictor")
        with quiet_stderr():  # TensorFlow's C++ start-up lines
            from controller.predictor.tf_scoring import lstm_scores_tf

            return lstm_scores_tf(tree, self.weights)

    def keras_members(self) -> list:
        """The members as Keras models (slow; for checks). Inputs: `keras_tokens`."""
        from controller.predictor.keras_models import load_member

        return [load_member(self.kind, w) for w in self.weights]

    def keras_tokens(self, cells: Cells) -> np.ndarray:
        """Cells as right-padded (N, T) model tokens, the input of `keras_members`."""
        return pad([self.vocab.encode(g) for g in token_groups(cells)])

    def _check_space(self, space: SearchSpace) -> None:
        if tuple(space.ops) != self.ops or space.num_input_tokens != self.vocab.num_input_tokens:
            raise UserError(
                f"the predictor was fitted on operators {', '.join(self.ops)} with B={self.blocks}; "
                f"these cells use {', '.join(space.ops)} with B={space.blocks}"
            )

    # --- bytes ---------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """An .npz: a JSON header (kind, ops, blocks, vocabulary, info) and every array."""
        header = {
            "format": FORMAT,
            "kind": self.kind,
            "ops": list(self.ops),
            "blocks": self.blocks,
            "num_input_tokens": self.vocab.num_input_tokens,
            "num_ops": self.vocab.num_ops,
            "members": self.members,
            "info": self.info,
        }
        arrays = {"header": np.frombuffer(json.dumps(header).encode(), np.uint8)}
        for k, w in enumerate(self.weights):
            arrays.update({f"m{k}/{name}": a for name, a in w.items()})
        for k, rows in enumerate(self.holdout):
            arrays[f"holdout{k}"] = rows
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]  # no key is "allow_pickle"
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Ensemble":
        """Load what `to_bytes` wrote; no retraining, no TensorFlow."""
        try:
            npz = np.load(io.BytesIO(data), allow_pickle=False)
            header = json.loads(npz["header"].tobytes().decode())
        except (ValueError, KeyError, OSError) as exc:
            raise UserError(f"stored predictor cannot be read: {exc}") from None
        if header.get("format") != FORMAT:
            raise UserError(f"stored predictor has format {header.get('format')!r}, expected {FORMAT!r}")
        weights = []
        for k in range(header["members"]):
            prefix = f"m{k}/"
            weights.append({n[len(prefix) :]: npz[n] for n in npz.files if n.startswith(prefix)})
        holdout = [npz[f"holdout{k}"] for k in range(header["members"]) if f"holdout{k}" in npz.files]
        return cls(
            kind=header["kind"],
            ops=tuple(header["ops"]),
            blocks=header["blocks"],
            vocab=Vocab(header["num_input_tokens"], header["num_ops"]),
            weights=weights,
            holdout=holdout,
            info=header["info"],
        )


def kfold_holdout(n: int, members: int, seed: int) -> list[np.ndarray]:
    """Member k's held-out rows: fold k of a seeded split into ``members`` folds (sorted).

    With one member nothing is held out. With more folds than rows some folds are empty.
    """
    if members == 1:
        return [np.zeros(0, np.int64)]
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(f) for f in np.array_split(order, members)]


def extend_holdout(previous: list[np.ndarray], n_previous: int, n: int, seed: int) -> list[np.ndarray]:
    """Folds for ``n`` rows whose first ``n_previous`` keep their ``previous`` folds; the new
    rows are split as `kfold_holdout` splits (seeded), so member k never trains on its fold."""
    new = kfold_holdout(n - n_previous, len(previous), seed)
    return [np.sort(np.concatenate([old, n_previous + rows])).astype(np.int64) for old, rows in zip(previous, new, strict=True)]


def fit_ensemble(
    space: SearchSpace,
    cells: Cells,
    rewards: np.ndarray,
    *,
    kind: Kind = "lstm",
    members: int = 5,
    epochs: int = 200,
    seed: int = 0,
    first_level: bool = False,
    batch_size: int = BATCH_SIZE,
    on_epoch: Callable[[int, float], None] | None = None,
    init: Ensemble | None = None,
    trainer: Trainer = "stacked",
    batches: Batches | None = None,
) -> Ensemble:
    """Fit ``members`` predictors from scratch, member k on all rows but fold k; deterministic.

    ``init``: fine-tune instead: member k starts from ``init``'s member k. The first
    ``init.info["rows"]`` rows must be the rows ``init`` was fitted on, in the same order:
    they keep their folds (`extend_holdout`). ``epochs`` may then be 0 (``init`` unchanged).

    ``cells`` as for `Ensemble.predict` (mixed block counts are fine: shorter cells are padded
    and the models ignore padding); ``rewards`` (N,) validation accuracies in [0, 1], in the
    same order. ``first_level`` picks the paper's learning rate: 0.01 on b = 1 data, else 0.002.
    Same inputs and seed give identical weights (on the same machine and TensorFlow build).
    ``on_epoch(epoch, loss)`` after each of the ``epochs`` (all members train together).
    ``trainer``: "stacked" (`stacked`: the members' weights stacked, an epoch per compiled
    call) or "keras" (`keras_models`: one Keras model per member, the earlier way; kept to
    compare). Both fit the same models to the same objective; their weights differ.
    ``batches``: "by_length" (each batch holds cells of one block count, so the LSTM skips
    the padding: stacked trainer only), "mixed" (any cells in a batch, Keras' way) or None:
    `BATCHES` for the stacked trainer, mixed for Keras'.
    """
    if batches is None:
        batches = BATCHES[kind] if trainer == "stacked" else "mixed"
    if trainer == "keras" and batches != "mixed":
        raise ValueError("the keras trainer makes mixed batches only")
    vocab = Vocab(space.num_input_tokens, len(space.ops))
    groups = [vocab.encode(g) for g in token_groups(cells)]
    rewards = np.asarray(rewards, np.float32).reshape(-1)
    n = sum(len(g) for g in groups)
    if n == 0:
        raise UserError("the predictor needs at least one trained cell")
    if len(rewards) != n:
        raise UserError(f"{n} cells but {len(rewards)} rewards")
    if not np.all(np.isfinite(rewards)):
        raise UserError("rewards must be finite numbers")
    if members < 1 or epochs < (0 if init is not None else 1):
        raise UserError("members and epochs must be >= 1")
    if init is None:
        holdout = kfold_holdout(n, members, seed)
    else:
        n_init = int(init.info.get("rows", -1))
        if (init.kind, init.vocab, init.members, len(init.holdout)) != (kind, vocab, members, members) or not 0 <= n_init <= n:
            raise UserError(
                f"cannot fine-tune a {init.kind} predictor of {init.members} members fitted on {n_init} rows "
                f"into a {kind} one of {members} on {n} rows of this space"
            )
        holdout = extend_holdout(init.holdout, n_init, n, seed)
    train_mask = np.ones((members, n), bool)
    for k, rows in enumerate(holdout):
        train_mask[k, rows] = False
    lr = LR_FIRST_LEVEL if first_level else LR_LATER
    with quiet_stderr():  # TensorFlow's C++ start-up lines, printed on import and first use
        if trainer == "keras":
            from controller.predictor.keras_models import fit_members as fit  # TensorFlow only when fitting
        else:
            from controller.predictor.stacked import fit_stacked as fit

        weights = fit(
            kind,
            pad(groups),
            rewards,
            train_mask,
            vocab_size=vocab.size,
            embed=EMBED,
            hidden=HIDDEN,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=lr,
            seed=seed,
            on_epoch=on_epoch,
            init=None if init is None else init.weights,
            **({} if trainer == "keras" else {"batches": batches}),
        )
    info = {"seed": seed, "epochs": epochs, "rows": n, "learning_rate": lr, "batch_size": batch_size, "trainer": trainer,
            "batches": batches}
    if init is not None:
        info["finetuned_from_rows"] = n_init
    return Ensemble(kind, tuple(space.ops), space.blocks, vocab, weights, holdout, info)


def spearman(a: ArrayLike, b: ArrayLike) -> float:
    """Spearman rank correlation of two equal-length vectors (nan if either is constant)."""
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if len(a) != len(b):
        raise ValueError(f"lengths differ: {len(a)} vs {len(b)}")
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)
