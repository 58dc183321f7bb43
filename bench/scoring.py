"""How fast the surrogate scores a full level of the paper's search (b=5, K=256).

Builds the paper space (8 operators, B=5), a random 256-cell beam at b=4, expands it to
every b=5 candidate, fits a 5-member ensemble on a few hundred random cells with random
rewards (training quality is not the point), then times the scorers on all candidates side
by side, alternating: the NumPy one (`fast`) and, for the LSTM, the TensorFlow one
(`tf_scoring`, compiled; its first call, which compiles, is reported apart), also as it was
before issue 26's second round ("tensorflow-before": every step padded to one power of two
or multiple of `CHUNK`, up to 14 % padding rows at b=5's big steps); and Keras
``model.predict(batch_size=32)`` on a subsample, extrapolated to the full count.

    .venv/bin/python bench/scoring.py [--mlp] [--keras-sample 5000] [--epochs 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from controller.predictor import fit_ensemble  # noqa: E402
from shared.space import SearchSpace  # noqa: E402


def random_beam(space: SearchSpace, blocks: int, width: int, rng: np.random.Generator):
    """A random beam of ``width`` cells with ``blocks`` blocks, grown one level at a time."""
    beam = space.one_block_cells()
    for _ in range(blocks - 1):
        beam = beam.take(rng.choice(len(beam), min(width, len(beam)), replace=False))
        beam = space.expand(beam)
    return beam.take(rng.choice(len(beam), width, replace=False))


def pieces_before(n: int) -> list[int]:
    """`tf_scoring._sizes` as it was: one padded size a step, a power of two up to CHUNK, then
    a multiple of CHUNK (43,008 rows ran as 49,152)."""
    from controller.predictor import tf_scoring

    size = -(-n // tf_scoring.CHUNK) * tf_scoring.CHUNK if n >= tf_scoring.CHUNK else max(tf_scoring.MIN_ROWS, 1 << (n - 1).bit_length())
    step = min(size, tf_scoring.CHUNK)
    return [step] * (size // step)


def predict(ens, cands, engine: str) -> np.ndarray:
    """``ens.predict`` with ``engine``, "tensorflow-before" being the TF scorer's earlier pieces."""
    if engine != "tensorflow-before":
        return ens.predict(cands, engine=engine)
    from controller.predictor import tf_scoring

    now = tf_scoring._sizes
    tf_scoring._sizes = pieces_before
    try:
        return ens.predict(cands, engine="tensorflow")
    finally:
        tf_scoring._sizes = now


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mlp", action="store_true", help="score with the MLP predictor instead of the LSTM")
    p.add_argument("--beam", type=int, default=256, help="K (paper: 256)")
    p.add_argument("--members", type=int, default=5, help="ensemble size (paper: 5)")
    p.add_argument("--keras-sample", type=int, default=5000, help="cells timed through Keras predict")
    p.add_argument("--epochs", type=int, default=2, help="fitting epochs (speed is not measured)")
    p.add_argument("--rounds", type=int, default=3, help="timed calls per scorer, alternating")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    kind = "mlp" if args.mlp else "lstm"
    rng = np.random.default_rng(args.seed)
    space = SearchSpace()

    beam = random_beam(space, space.blocks - 1, args.beam, rng)
    t = time.perf_counter()
    cands = space.expand(beam)
    t_expand = time.perf_counter() - t
    n = len(cands)
    print(
        f"beam: {len(beam)} cells at b={beam.num_blocks}; "
        f"expanded to {n} b={cands.num_blocks} candidates in {t_expand:.2f} s"
    )

    train = [random_beam(space, b, 100, rng) for b in range(1, space.blocks + 1)]
    rewards = rng.uniform(0.5, 0.9, sum(len(c) for c in train))
    t = time.perf_counter()
    ens = fit_ensemble(
        space, train, rewards, kind=kind, members=args.members, epochs=args.epochs, seed=args.seed
    )
    print(
        f"fitted {args.members}-member {kind.upper()} on {len(rewards)} random cells, "
        f"{args.epochs} epochs, in {time.perf_counter() - t:.1f} s"
    )

    ens.predict(cands.take(np.arange(1000)), engine="numpy")  # warm-up (thread pool, page faults)
    engines = ["numpy"] + (["tensorflow-before", "tensorflow"] if kind == "lstm" else [])
    t, c = time.perf_counter(), time.process_time()
    first = {e: predict(ens, cands, e) for e in engines[1:]}  # compiles: once per process and shape
    if first:
        print(f"tensorflow first call (traces and compiles): {time.perf_counter() - t:.2f} s wall, {time.process_time() - c:.2f} s CPU")
    wall: dict[str, list[float]] = {e: [] for e in engines}
    cpu: dict[str, list[float]] = {e: [] for e in engines}
    loads = []
    scores = {}
    for _ in range(args.rounds):  # alternating, so that both sides see the same load
        for e in engines:
            loads.append(os.getloadavg()[0])  # this machine is shared: a busy one slows the wall clock
            t, c = time.perf_counter(), time.process_time()
            scores[e] = predict(ens, cands, e)
            wall[e].append(time.perf_counter() - t)
            cpu[e].append(time.process_time() - c)
    for e in engines:
        w, cp = float(np.median(wall[e])), float(np.median(cpu[e]))
        print(
            f"{e:>17} scorer: {n} candidates x {args.members} members in {w:.2f} s wall, {cp:.2f} s CPU "
            f"(median of {args.rounds}; {n / w:,.0f} candidates/s)"
        )
    print(f"load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores")
    t_fast = float(np.median(wall[engines[-1]]))
    if first:
        t_np, c_np = float(np.median(wall["numpy"])), float(np.median(cpu["numpy"]))
        c_tf = float(np.median(cpu["tensorflow"]))
        diff_tf = float(np.abs(scores["tensorflow"] - scores["numpy"]).max())
        print(
            f"tensorflow against numpy: {t_np / t_fast:.1f}x by wall, {c_np / c_tf:.1f}x by CPU time; "
            f"max |difference| {diff_tf:.1e}; first call equal: {np.array_equal(first['tensorflow'], scores['tensorflow'])}"
        )
        t_b, c_b = float(np.median(wall["tensorflow-before"])), float(np.median(cpu["tensorflow-before"]))
        diff_b = float(np.abs(scores["tensorflow"] - scores["tensorflow-before"]).max())
        print(
            f"tensorflow against tensorflow-before: {t_b / t_fast:.2f}x by wall, {c_b / c_tf:.2f}x by CPU time; "
            f"max |difference| {diff_b:.1e}"
        )

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # predict retraces once per member
    sample = cands.take(np.sort(rng.choice(n, min(args.keras_sample, n), replace=False)))
    x = ens.keras_tokens(sample)
    models = ens.keras_members()
    for m in models:
        m.predict(x[:64], batch_size=32, verbose=0)  # build the predict function before timing
    t = time.perf_counter()
    keras_scores = np.mean([m.predict(x, batch_size=32, verbose=0)[:, 0] for m in models], axis=0)
    t_sample = time.perf_counter() - t
    t_keras = t_sample * n / len(sample)
    diff = float(np.abs(keras_scores - ens.predict(sample, engine=engines[-1])).max())
    print(
        f"keras predict(batch_size=32): {len(sample)} cells x {args.members} members in {t_sample:.1f} s "
        f"({len(sample) / t_sample:,.0f} candidates/s); extrapolated to {n}: {t_keras:.0f} s"
    )
    print(f"max |keras - {engines[-1]}| on the sample: {diff:.1e}")
    print(
        f"scoring: {n} candidates, {args.members}-member {kind.upper()}, "
        f"{engines[-1]} {t_fast:.2f} s ({n / t_fast / 1000:.0f}k/s), numpy {np.median(wall['numpy']):.2f} s, keras predict(batch_size=32) "
        f"~{t_keras:.0f} s extrapolated from {len(sample)}, ratio {t_keras / t_fast:.0f}x"
    )


if __name__ == "__main__":
    main()
