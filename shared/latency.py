"""A cell's network latency predicted from a per-device table of its pieces (FBNet's lookup table).

A table (`pnas latency-table`, measured by `worker.latency` on the target device) holds, for
one network's settings, the median time of one batch-1 forward pass through every piece of
the network on that device: each operator at every input shape and stride the network gives
it, the cells' input projections, the stem, the head and each cell's joining of its blocks
(the additions and the concatenation), each less the time of an empty call (``overhead_ms``).
A network's predicted latency is

    overhead + stem + head + sum over the live cells (`shared.space.cost.live_cells`) of
    (its projections + its joining + the entries of its 2b operators)

gathered over a whole expansion like the costs (`shared.space.cost.network_costs`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from shared.errors import UserError
from shared.space.cost import READS, CellSlot, NetworkSpec, Piece, live_cells, network_plan, reads_case

FORMAT = 1  # the table file's layout version
MAKE_ONE = "make one on the target device with `pnas latency-table --device NAME --out FILE` (the same settings as the search)"


@dataclass(frozen=True)
class LatencyTable:
    """Milliseconds per piece of one network's settings, measured on one device."""

    device: str  # the name the user gave the device
    machine: str  # what the measuring machine said it is (CPU, GPU)
    tensorflow: str  # TensorFlow's version
    network: dict  # the settings the table covers (`network_settings`)
    overhead_ms: float  # one call of an empty model: counted once per network
    entries: dict[str, float]  # `Piece.key` -> ms of that piece beyond the overhead
    batch_size: int = 1
    statistic: str = "median"  # how each entry was taken from its timed calls
    created: str = ""
    path: str = field(default="", compare=False)  # where it was read from

    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items() if k != "path"}
        return json.dumps({"format": FORMAT, **data}, indent=1, sort_keys=True)

    @property
    def digest(self) -> str:
        return hashlib.sha1(self.to_json().encode()).hexdigest()

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    def describe(self) -> str:
        """``device 'cpu-laptop' (x86_64, 2 CPUs), TF 2.16, 123 entries, digits F=8 N=1``."""
        n = self.network
        return (f"device {self.device!r} ({self.machine}), TensorFlow {self.tensorflow}, {len(self.entries)} entries, "
                f"batch size {self.batch_size}, network {describe_network(n)}")  # fmt: skip


def describe_network(n: dict) -> str:
    return (f"{'x'.join(map(str, n.get('input_shape', [])))} input, {n.get('num_classes')} classes, "
            f"F={n.get('filters')} N={n.get('cells_per_stage')} {n.get('stem')} stem, B<={n.get('blocks')}, "
            f"ops {','.join(n.get('ops', []))}")  # fmt: skip


def network_settings(spec: NetworkSpec, ops: Sequence[str], blocks: int) -> dict:
    """The settings a table covers: the network (`NetworkSpec`), its operators and up to which b."""
    return {**asdict(spec), "input_shape": list(spec.input_shape), "ops": list(ops), "blocks": int(blocks)}


_LOADED: dict[tuple[str, float], LatencyTable] = {}


def load_table(path: str | Path) -> LatencyTable:
    """The table in ``path``; one UserError line when it is missing or not a table."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"latency table {p} does not exist; {MAKE_ONE}")
    key = (str(p.resolve()), p.stat().st_mtime)
    if key not in _LOADED:
        try:
            data = json.loads(p.read_text())
            if data.pop("format", None) != FORMAT:
                raise ValueError(f"not a format-{FORMAT} latency table")
            data["entries"] = {str(k): float(v) for k, v in data["entries"].items()}
            _LOADED[key] = LatencyTable(**data, path=str(p))
        except (ValueError, TypeError, KeyError) as exc:
            raise UserError(f"{p} is not a latency table ({exc}); {MAKE_ONE}") from None
    return _LOADED[key]


@dataclass(frozen=True)
class LatencyPlan:
    """The pieces of the network of a b-block cell, as the table keys them."""

    stem: Piece
    head: Piece  # ReLU, global average pool and the classifier, at the last cell's output
    slots: list[CellSlot]
    joins: list[Piece]  # per cell: its b additions and the concatenation of its blocks


def latency_plan(spec: NetworkSpec, b: int, ops: Sequence[str]) -> LatencyPlan:
    outer, slots = network_plan(spec, b, ops)
    joins = []
    for s in slots:
        out = s.ops[(ops[0], 1)]  # every operator reading H[c-1] gives the cell's output size
        joins.append(Piece("join", *out.out_hw(), out.cout, b * out.cout))
    last = joins[-1]
    return LatencyPlan(outer[0], Piece("head", last.h, last.w, last.cout, spec.num_classes), slots, joins)


def table_pieces(spec: NetworkSpec, ops: Sequence[str], blocks: int) -> list[Piece]:
    """Every distinct piece the networks of 1..``blocks``-block cells have: what a table measures."""
    seen: dict[str, Piece] = {}
    for b in range(1, blocks + 1):
        plan = latency_plan(spec, b, ops)
        pieces = [plan.stem, plan.head, *plan.joins]
        for s in plan.slots:
            pieces += [*s.prev1, *s.prev2, *s.ops.values()]
        for p in pieces:
            seen.setdefault(p.key, p)
    return list(seen.values())


_TABLES: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def latency_tables(table: LatencyTable, spec: NetworkSpec, b: int, ops: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(fixed (3,), per_op (3, len(ops), 3 kinds)) in ms, by `READS` case, as `cost_tables`."""
    key = (table.digest, spec, b, ops)
    if key in _TABLES:
        return _TABLES[key]
    plan = latency_plan(spec, b, ops)

    def ms(pieces: Sequence[Piece]) -> float:
        missing = [p.key for p in pieces if p.key not in table.entries]
        if missing:
            raise UserError(
                f"the latency table {table.path or ''} has no entry for {missing[0]!r}: it covers "
                f"{describe_network(table.network)}, not this network ({describe_network(network_settings(spec, ops, b)).replace(f'B<={b}', f'b={b}')}); "
                + MAKE_ONE
            )
        return float(sum(table.entries[p.key] for p in pieces))

    fixed = np.zeros(3)
    per_op = np.zeros((3, len(ops), 3))
    for case, (r1, r2) in enumerate(READS):
        live = live_cells(len(plan.slots), r1, r2)
        parts = [plan.stem, plan.head]
        for j in live:
            s = plan.slots[j]
            parts += [plan.joins[j], *(s.prev1 if r1 else []), *(s.prev2 if r2 else [])]
        fixed[case] = table.overhead_ms + ms(parts)
        for i, op in enumerate(ops):
            for k in range(3):
                per_op[case, i, k] = ms([plan.slots[j].ops[(op, k)] for j in live])
    _TABLES[key] = (fixed, per_op)
    return fixed, per_op


def predict_latency(tokens: np.ndarray, ops: Sequence[str], spec: NetworkSpec, table: LatencyTable) -> np.ndarray:
    """(N,) float64 ms: the predicted batch-1 latency of the networks of N cells given as
    tokens (as in `CellBatch`: per block ``I1, I2, O1, O2``)."""
    t = np.asarray(tokens)
    if len(t) == 0:
        return np.empty(0)
    b = t.shape[1] // 4
    fixed, per_op = latency_tables(table, spec, b, tuple(ops))
    t = t.reshape(len(t), b, 4)
    codes = t[:, :, 0:2].astype(np.intp)
    case = reads_case(codes)
    out = per_op[case[:, None, None], t[:, :, 2:4].astype(np.intp), np.minimum(codes, 2)].sum(axis=(1, 2))
    return out + fixed[case]
