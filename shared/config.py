"""A run's configuration: every knob of the search and of child training, with presets.

`SearchConfig` is stored with the run (as JSON) so that a resumed or inspected run always
sees the settings it started with. `TrainConfig` is the part a worker needs to train a child.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.errors import UserError
from shared.space import PAPER_OPS, SearchSpace, parse_ops


# Datasets large enough for the paper's 5,000 held-out images; the others hold out a fraction.
LARGE_DATASETS = ("cifar10", "cifar100", "mnist", "fashion_mnist")
SMALL_VALIDATION_FRACTION = 0.1  # digits has 1,797 images: 5,000 would leave none to train on


def default_validation_size(dataset: str) -> float:
    """5,000 images for CIFAR-size datasets (the paper), else a tenth of the training data."""
    return 5000 if dataset in LARGE_DATASETS else SMALL_VALIDATION_FRACTION


class TrainConfig(BaseModel):
    """How one child network is built and trained (the paper's search recipe by default)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _validation_default(cls, data: Any) -> Any:
        """An unset validation size is the dataset's default, stored as a number with the run."""
        if isinstance(data, dict) and data.get("validation_size") is None:
            data = {**data, "validation_size": default_validation_size(str(data.get("dataset", "cifar10")))}
        return data

    dataset: str = "cifar10"  # the paper searches on CIFAR-10
    epochs: int = Field(20, ge=0)  # paper: 20 epochs per child during the search
    filters: int = Field(24, ge=1)  # F in the paper, during the search
    cells_per_stage: int = Field(2, ge=1)  # N in the paper, during the search
    stem: Literal["cifar", "imagenet"] = "cifar"
    learning_rate: float = Field(0.01, gt=0)  # paper: 0.01 with cosine decay
    momentum: float = Field(0.9, ge=0, lt=1)
    # TF-slim's CIFAR set-up (nasnet_cifar_arg_scope): L2 5e-4 on every conv and the classifier
    weight_decay: float = Field(5e-4, ge=0)
    bn_momentum: float = Field(0.9, gt=0, lt=1)  # slim CIFAR batch_norm_decay: short trainings
    bn_epsilon: float = Field(1e-5, gt=0)  # slim CIFAR batch_norm_epsilon
    init: Literal["slim", "keras"] = "slim"  # slim: variance scaling, fan-out; keras: glorot
    # "standard": mean/std normalisation, 4-px pad + random crop, flip; "auto" = standard for
    # the CIFAR family (as the paper trained), none (pixels in [0, 1]) for the others
    augment: Literal["auto", "standard", "none"] = "auto"
    flip: Literal["auto", "on", "off"] = "auto"  # auto: never for digits/MNIST-like/npz sets
    cutout: int = Field(0, ge=0)  # side in pixels (16 for CIFAR, DeVries 2017); 0: the paper had none
    # Test accuracy after training (datasets with a test split): reported, never the reward
    evaluate_test: bool = False
    aux_head: bool = False  # slim's auxiliary classifier: final trainings (the search has none)
    aux_weight: float = Field(0.4, ge=0)  # slim: the auxiliary loss weighs 0.4
    label_smoothing: float = Field(0.0, ge=0, lt=1)  # slim: 0.1 on ImageNet, none on CIFAR
    clip_norm: float | None = Field(None, gt=0)  # global gradient-norm clip; None = off
    dropout: float = Field(0.0, ge=0, lt=1)  # before the classifier; slim CIFAR: none
    image_size: int | None = Field(None, ge=8)  # folder: datasets are resized to this; None = 32
    recipe: str | None = None  # the named recipe these settings came from (pnas final)
    batch_size: int = Field(128, ge=1)
    # paper: 5,000 CIFAR-10 images; <1 = a fraction; unset = default_validation_size(dataset)
    validation_size: float = Field(5000, gt=0)
    max_train_samples: int | None = Field(None, ge=1)  # cap for quick experiments
    drop_path_keep_prob: float = Field(1.0, gt=0, le=1)  # 1.0 = off, as during the search
    reward: Literal["best", "final"] = "best"  # which epoch's validation accuracy is the reward
    mixed_precision: Literal["auto", "on", "off"] = "auto"  # auto = on for GPUs that gain
    jit_compile: Literal["auto", "on", "off"] = "auto"  # XLA; auto = on GPU only
    data_seed: int = 0  # fixes the validation split: identical on every worker
    deterministic: bool = False  # TensorFlow op determinism: repeatable on a GPU too, but slower
    # Save a checkpoint after every N epochs so a lost child resumes; 0 = never; None = auto:
    # every epoch for final trainings and for search children whose first epoch took over a
    # minute (a tiny child costs more to checkpoint than to train again).
    checkpoint_every: int | None = Field(None, ge=0)


class SearchConfig(BaseModel):
    """Everything a search run needs; stored with the run."""

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["pnas", "random", "evolution"] = "pnas"  # random, evolution: baselines at the same budget
    ops: tuple[str, ...] = PAPER_OPS
    blocks: int = Field(5, ge=1)  # B in the paper
    beam: int = Field(256, ge=1)  # K in the paper
    lookback: int = 2  # previous cells a block may read: 2 = H[c-1] and H[c-2] (paper)
    lookforward: int | None = None  # earlier blocks a block may read; None = all (paper)
    predictor: Literal["lstm", "mlp"] = "lstm"  # the paper's best surrogate is the LSTM
    ensemble: int = Field(5, ge=1)  # paper: 5 predictors, each on a different 4/5
    predictor_epochs: int = Field(200, ge=1)  # fitting passes over the (small) training set
    # At b>1: "refit" fits a new ensemble from scratch on every child so far; "finetune" starts
    # each member from level b-1's weights (the paper's update), a quarter of the epochs.
    # refit: the measured winner flips with the predictor (MLP: refit, LSTM at 40 epochs:
    # finetune), so today's behaviour stays until real rewards decide (BENCHMARKS.md sec. 13)
    predictor_update: Literal["refit", "finetune"] = "refit"
    keep_predictions: int = Field(0, ge=0)  # also store the top N scored candidates per level
    population: int | None = Field(None, ge=2)  # evolution: P, the newest P kept; None = a fifth of the budget, <= 100 (Real et al.)
    tournament: int | None = Field(None, ge=2)  # evolution: S, drawn per parent; None = a quarter of P (Real et al.: 25 of 100)
    # Multi-fidelity: "asha" trains each child to rungs of r, r*eta, r*eta^2, ... epochs (the
    # last rung: train.epochs) and continues only the best 1/eta of each rung (Li et al. 2020).
    # full: the paper, and the default. Real training on digits (BENCHMARKS 17, 3 seeds; 8 ops,
    # B=2, K=16, 4 epochs, r=1, eta=2): at the same K asha spent 55-59 % of full's child-epochs
    # with a lower top-5 in every seed (by 0.0007-0.0091; 0.974 against 0.979 on average); at the
    # same child-epochs (K raised to 54-61) a higher one in every seed (by 0.0028-0.0084). asha wins
    # only when its saving buys a larger beam, so full stays the default: a given K means the paper's.
    fidelity: Literal["full", "asha"] = "full"
    min_epochs: int = Field(1, ge=1)  # r: the first rung (the least a child is trained)
    reduction_factor: int = Field(3, ge=2)  # eta: Li et al.'s default; a third goes on at each rung
    seed: int = 0
    # Deployment budgets (shared.budget): candidates over one are never trained; None = none
    max_params: int | None = Field(None, ge=1)  # count_params() of the network
    max_flops: int | None = Field(None, ge=1)  # multiply-adds of one image's forward pass
    max_latency_ms: float | None = Field(None, gt=0)  # predicted batch-1 latency on latency_table's device
    cost_network: Literal["search", "final"] = "search"  # final: pnas final's default F and N
    latency_table: str | None = None  # a `pnas latency-table` file (shared.latency); None = no latencies
    # accuracy: the top K by predicted accuracy (the paper); pareto: K from the successive
    # non-dominated fronts of (predicted accuracy, cost), spread along the front (shared.pareto)
    objective: Literal["accuracy", "pareto"] = "accuracy"
    cost: Literal["params", "flops", "latency"] = "params"  # the cost the pareto objective weighs
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _fidelity(self) -> "SearchConfig":
        if self.fidelity == "asha":
            if self.strategy == "evolution":
                raise ValueError("fidelity asha works with strategy pnas or random; evolution needs every child's full reward")
            if self.min_epochs >= self.train.epochs:
                raise ValueError(
                    f"fidelity asha needs min_epochs ({self.min_epochs}) below train.epochs ({self.train.epochs}); "
                    "lower --min-epochs or raise --epochs"
                )
        return self

    def rungs(self) -> list[int]:
        """The epochs a search child is trained to, rung by rung; the last is ``train.epochs``.
        One rung (``[train.epochs]``) at full fidelity."""
        epochs = self.train.epochs
        if self.fidelity == "full":
            return [epochs]
        out, r = [], self.min_epochs
        while r < epochs:
            out.append(r)
            r *= self.reduction_factor
        return [*out, epochs]

    @model_validator(mode="after")
    def _budgets_need_a_cost_aware_strategy(self) -> "SearchConfig":
        if self.strategy == "evolution" and (self.max_params, self.max_flops, self.max_latency_ms) != (None, None, None):
            raise ValueError("budgets (max_params, max_flops, max_latency_ms) apply to the pnas and random strategies, not evolution")
        latency = "max_latency_ms" if self.max_latency_ms is not None else "cost latency" if (
            self.objective == "pareto" and self.cost == "latency") else None
        if latency and self.latency_table is None:
            raise ValueError(
                f"{latency} needs a latency table of the target device, and latency_table is not set: make one there with "
                "`pnas latency-table --device NAME --out FILE` (the same settings as the search), then give "
                "--latency-table FILE (config: latency_table)"
            )
        if self.objective == "pareto" and self.strategy != "pnas":
            raise ValueError("objective pareto ranks the predictor's scores: it needs strategy pnas")
        return self

    @field_validator("ops", mode="before")
    @classmethod
    def _ops(cls, v: Any) -> tuple[str, ...]:
        return parse_ops(v)

    def space(self) -> SearchSpace:
        return SearchSpace(
            ops=self.ops, blocks=self.blocks, lookback=self.lookback, lookforward=self.lookforward
        )

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | dict) -> "SearchConfig":
        data = json.loads(text) if isinstance(text, str) else text
        return cls.model_validate(data)


PRESETS: dict[str, dict] = {
    # A few minutes on a laptop CPU: 3 operators, B=3, K=8 -> 21 + 8 + 8 = 37 children.
    "quick": {
        "ops": ["sep3x3", "max3x3", "identity"],
        "blocks": 3,
        "beam": 8,
        "ensemble": 5,
        "predictor_epochs": 150,
        "train": {
            "dataset": "digits",
            "epochs": 3,
            "filters": 8,
            "cells_per_stage": 1,
            "batch_size": 64,
            "learning_rate": 0.05,
            "validation_size": 0.2,
        },
    },
    # The paper's setting (Liu et al. 2018, section 5.1).
    "paper": {
        "ops": list(PAPER_OPS),
        "blocks": 5,
        "beam": 256,
        "train": {"dataset": "cifar10", "epochs": 20, "filters": 24, "cells_per_stage": 2},
    },
}


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_config_file(path: str | Path) -> dict:
    """A TOML or YAML file as a dict; one clear error if it cannot be read."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file {p} does not exist")
    text = p.read_text()
    try:
        if p.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif p.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            raise UserError(f"config file {p} must end in .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"config file {p} is not valid: {first}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {p} must hold a table of settings")
    return data


# The original Keras implementation's names, accepted in config files so that its users'
# settings carry over: StateSpace(B, operators, input_lookback_depth, input_lookforward_depth).
ORIGINAL_LOOKBACK = {-1: 1, -2: 2}  # its negative convention: -1 = H[c-1] only, -2 = both


def original_input_limits(data: dict) -> dict:
    """``input_lookback_depth`` / ``input_lookforward_depth`` -> ``lookback`` / ``lookforward``.

    Raises `UserError` when a file sets both names of one limit or an original value that has
    no counterpart here (``input_lookback_depth = 0``, flat cells reading no previous cell).
    """
    out = dict(data)
    if "input_lookback_depth" in out:
        if "lookback" in out:
            raise UserError("the config sets both lookback and input_lookback_depth; keep one")
        v = out.pop("input_lookback_depth")
        if isinstance(v, bool) or v not in ORIGINAL_LOOKBACK:
            raise UserError(
                f"input_lookback_depth must be -1 (H[c-1] only) or -2 (H[c-1] and H[c-2]), got {v!r} "
                "(or write lookback = 1 or 2)"
            )
        out["lookback"] = ORIGINAL_LOOKBACK[v]
    if "input_lookforward_depth" in out:
        if "lookforward" in out:
            raise UserError("the config sets both lookforward and input_lookforward_depth; keep one")
        out["lookforward"] = out.pop("input_lookforward_depth")
    return out


def build_config(
    *, preset: str | None = None, file_data: dict | None = None, overrides: dict | None = None
) -> tuple[SearchConfig, dict]:
    """Preset, then file, then flags (later wins). Returns the config and any run-level keys
    the file held outside the search config (``name``, ``executor``, ``workers``)."""
    data: dict = {}
    file_data = original_input_limits(file_data or {})
    preset = preset or file_data.pop("preset", None)
    if preset:
        if preset not in PRESETS:
            raise UserError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
        data = _deep_merge(data, PRESETS[preset])
    extras = {k: file_data.pop(k) for k in ("name", "executor", "workers") if k in file_data}
    data = _deep_merge(data, file_data)
    data = _deep_merge(data, {k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        cfg = SearchConfig.model_validate(data)
        cfg.space()  # operator names, limits
    except ValidationError as exc:
        raise UserError(describe_errors(exc)) from None
    return cfg, extras


def describe_errors(exc: ValidationError) -> str:
    """Every problem of a config in one line; a field written in the wrong section says where
    it belongs (``learning_rate`` at the top level belongs under ``[train]``)."""
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        where = ".".join(loc) or "config"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            name = loc[-1]
            if len(loc) == 1 and name in TrainConfig.model_fields:
                msg = f"not a top-level setting: it belongs under [train] (train.{name})"
            elif loc[:1] == ["train"] and len(loc) == 2 and name in SearchConfig.model_fields:
                msg = "not a [train] setting: it belongs at the top level"
            else:
                fields = SearchConfig.model_fields if len(loc) == 1 else TrainConfig.model_fields
                close = difflib.get_close_matches(name, list(fields), n=1)
                msg = "unknown setting" + (f" (did you mean {close[0]}?)" if close else "")
        parts.append(f"{where}: {msg.removeprefix('Value error, ')}")
    if len(parts) == 1:
        return f"invalid setting {parts[0]}"
    return f"{len(parts)} invalid settings: " + "; ".join(parts)
