"""Everything a GPU must show, in one run of at most 8 minutes: one JSON file, one line per part.

    .venv/bin/python bench/gpu_suite.py --out $OUT/gpu_suite.json     # on the GPU machine
    .venv/bin/python bench/gpu_suite.py --smoke --out /tmp/smoke.json # same code paths, CPU, tiny

``--smoke`` turns XLA off (XLA's CPU compile of these networks takes minutes); everything
else runs as on the GPU, with tiny sizes, and its groups of parts run side by side (on the GPU
one after another, each part with the device to itself). Parts (each in its own process with its own timeout; the JSON is rewritten after each, so one
failure or timeout loses nothing else):
1. child   a real child through a real `pnas worker` (PostgreSQL + Redis started here if
           pg_ctl/initdb and redis-server exist, else SQLite + the local executor), mixed
           precision and XLA on: succeeded, reward recorded;
2. train   search child (F=24, N=2, batch 128, synthetic CIFAR-shaped data) images/s at fp32,
           mixed precision, mixed precision + XLA; ratio against fp32 (goal >= 2x);
3. share   1, 2, 4, 8 children at once on one GPU as separate processes, each capped at 1/k of
           the memory as the workers are (worker/gpu_share.py): aggregate images/s, ratio
           against one (goal >= 3x at the best k), peak memory per child, the k to recommend;
4. score   all 301,056 b=5 candidates with the 5-member ensemble: Keras on the GPU (goal < 1 s)
           and the controller's prefix-sharing TensorFlow scorer (`engine="tensorflow"`)
           against the NumPy scorer (controller/predictor/fast.py) on this machine's CPU;
5. final   the final model (N=3, F=48) trained with the named `paper-cifar` recipe (aux head,
           drop path, clipping, augmentation) by the worker's trainer: images/s, mixed precision + XLA;
           the host slices uint8 batches and the compiled step augments them (issue 26).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# part -> (seconds allowed on the GPU, in smoke mode); the GPU budgets add up to 7.5 minutes.
PARTS = {"child": (90, 200), "train": (100, 120), "share": (150, 300), "score": (50, 90), "final": (60, 120)}
SMOKE_GROUPS = [["child"], ["share"], ["train", "score", "final"]]  # one TensorFlow start per group


# --- shared by the parts -------------------------------------------------------------------
def synthetic(n: int, seed: int = 0):
    """CIFAR-shaped images (32x32x3, 10 classes) whose class sets a patch's colour."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n).astype(np.int32)
    x = rng.random((n, 32, 32, 3), dtype=np.float32) * 0.5
    x[:, 8:24, 8:24, :] += (y[:, None, None, None] / 20.0).astype(np.float32)
    return x, y


SMOKE_CELL = [[-2, "max3x3", -1, "identity"]]  # one block: tracing pnasnet5 takes minutes on a busy CPU


def throughput(*, n: int, filters: int, batch: int, mixed: bool, xla: bool, steps: int, warmup: int,
               drop_path: float = 1.0, weight_decay: float = 0.0, go=None, cell=None) -> dict:
    """Training images/s of the pnasnet5 cell network: ``warmup`` steps (trace, compile), then
    ``steps`` timed ones. ``go`` (a callable) is called between the two: a start barrier."""
    import keras
    import tensorflow as tf

    from shared.space import BUILTIN_CELLS, Cell
    from worker.network import build_network

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy("mixed_float16" if mixed else "float32")
    try:
        x, y = synthetic(batch * 8)
        ds = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(batch, drop_remainder=True)
        ds = ds.prefetch(tf.data.AUTOTUNE)
        total = warmup + steps
        arch = Cell.from_json(cell) if cell is not None else BUILTIN_CELLS["pnasnet5"]
        model = build_network(arch, input_shape=(32, 32, 3), num_classes=10, cells_per_stage=n,
                              filters=filters, drop_path_keep_prob=drop_path, total_training_steps=total,
                              weight_decay=weight_decay, seed=0)  # fmt: skip
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], jit_compile=xla)  # fmt: skip
        model.fit(ds, steps_per_epoch=warmup, epochs=1, verbose=0)
        if go is not None:
            go()
        t0 = time.perf_counter()
        model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
        secs = time.perf_counter() - t0
        out = {"images_per_second": steps * batch / secs, "seconds": secs, "steps": steps, "batch": batch,
               "params": int(model.count_params()), "mixed_precision": mixed, "xla": xla}  # fmt: skip
        if tf.config.list_physical_devices("GPU"):
            out["peak_memory_mb"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
        return out
    finally:
        keras.config.set_dtype_policy("float32")


def device_info() -> dict:
    info = {"host": socket.gethostname(), "cpus": os.cpu_count()}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        res = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
        if res.returncode == 0:
            info["gpus"] = [line.strip() for line in res.stdout.splitlines() if line.strip()]
    return info


# --- part 1: a real child through a real `pnas worker` ---------------------------------------
@contextlib.contextmanager
def services(tmp: Path):
    """(database URL, broker URL or None): a private PostgreSQL + Redis if this machine has
    them (binaries on PATH or in PostgreSQL's usual place), else SQLite + no broker."""
    procs: list[subprocess.Popen] = []
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    pg_bin = str(found[-1]) if found else shutil.which("pg_ctl")
    redis_bin = shutil.which("redis-server")
    if not (pg_bin and redis_bin) or os.geteuid() == 0 and not shutil.which("runuser"):
        yield f"sqlite:///{tmp / 'suite.db'}", None, "sqlite + local executor (no pg_ctl/redis-server here)"
        return
    bindir = Path(pg_bin).parent
    data = tmp / "pg"
    pg_port, redis_port = _free_port(), _free_port()
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def sh(*cmd: str) -> None:
        res = subprocess.run([*as_user, *cmd], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if res.returncode:
            raise RuntimeError(f"{Path(cmd[0]).name} failed: {(res.stderr or res.stdout).strip()[-500:]}")

    started = False
    try:
        if as_user:
            shutil.chown(tmp, "postgres")
        sh(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        sh(str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(tmp / "pg.log"), "-o",
           f"-p {pg_port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        started = True
        procs.append(subprocess.Popen([redis_bin, "--port", str(redis_port), "--save", "", "--appendonly", "no"],
                                      stdout=subprocess.DEVNULL, start_new_session=True))  # fmt: skip
        sh(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres", "suite")
        failed = None
    except (OSError, RuntimeError) as exc:
        failed = str(exc)
    try:
        if failed:  # the machine has the binaries but they would not start: still run the child
            yield f"sqlite:///{tmp / 'suite.db'}", None, f"sqlite + local executor (private PostgreSQL/Redis: {failed})"
        else:
            yield (f"postgresql://postgres@127.0.0.1:{pg_port}/suite", f"redis://127.0.0.1:{redis_port}/0",
                   "private PostgreSQL + Redis, Celery worker")
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        if started:
            subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def part_child(smoke: bool) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="gpu-suite-"))
    epochs, samples = (1, 256) if smoke else (2, 5000)
    (tmp / "child.toml").write_text(
        'strategy = "random"\nops = ["sep3x3"]\nblocks = 1\nbeam = 1\nlookback = 1  # one cell: one child\n\n[train]\n'
        f'dataset = "npz:{tmp / "data.npz"}"\nepochs = {epochs}\nfilters = {8 if smoke else 24}\n'
        f'cells_per_stage = {1 if smoke else 2}\nmax_train_samples = {samples}\nvalidation_size = 128\n'
        f'mixed_precision = "on"\njit_compile = "{"off" if smoke else "on"}"\n'
    )
    import numpy as np

    x, y = synthetic(samples + 128)
    np.savez(tmp / "data.npz", x_train=x, y_train=y)
    with services(tmp) as (db_url, broker_url, how):
        env = dict(os.environ, PYTHONPATH=str(ROOT), PNAS_DATABASE_URL=db_url, PNAS_OFFLINE="1",
                   PNAS_DATA_DIR=str(tmp / "cache"))  # fmt: skip
        env.pop("PNAS_BROKER_URL", None)
        worker = None
        up = subprocess.run([sys.executable, "-m", "pnas.cli", "db", "upgrade"], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
        if up.returncode:
            raise RuntimeError(f"pnas db upgrade failed: {up.stderr.strip()[-800:]}")
        cmd = [sys.executable, "-m", "pnas.cli", "search", "--config", str(tmp / "child.toml"), "--name", "suite"]
        if broker_url:
            env["PNAS_BROKER_URL"] = broker_url
            log = open(tmp / "worker.log", "w")
            worker = subprocess.Popen([sys.executable, "-m", "pnas.cli", "worker", "--gpu", "auto", "--loglevel", "INFO"],
                                      env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            cmd += ["--executor", "celery"]
        else:
            cmd += ["--executor", "local", "--workers", "1"]
        try:
            t0 = time.perf_counter()
            res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=PARTS["child"][smoke] - 15)
            wall = time.perf_counter() - t0
            if res.returncode:
                raise RuntimeError(f"pnas search failed (rc {res.returncode}): {res.stderr.strip()[-1500:]}")
            from shared.store import Store

            store = Store(db_url)
            jobs = store.jobs(store.require_run("suite").id)
            store.dispose()
        finally:
            if worker is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.pid, signal.SIGKILL)
    done = [j for j in jobs if j.state == "succeeded" and j.reward is not None]
    out = {"services": how, "rc": res.returncode, "wall_seconds": wall, "children": len(jobs),
           "succeeded": len(done), "rewards": [j.reward for j in done], "device": [j.device for j in done],
           "stderr_tail": res.stderr[-1500:]}  # fmt: skip
    ok = res.returncode == 0 and jobs and len(done) == len(jobs)
    out["ok"] = bool(ok)
    out["summary"] = (f"{len(done)}/{len(jobs)} children succeeded through `pnas worker` ({how}), reward "
                      f"{', '.join(f'{r:.3f}' for r in out['rewards']) or '-'}, {wall:.0f} s")  # fmt: skip
    return out


# --- part 2: mixed precision and XLA ---------------------------------------------------------
def part_train(smoke: bool) -> dict:
    kw = dict(n=1, filters=8, batch=32, steps=3, warmup=1, cell=SMOKE_CELL) if smoke else dict(n=2, filters=24, batch=128, steps=150, warmup=20)
    rows = {}
    for name, mixed, xla in (("fp32", False, False), ("mixed", True, False), ("mixed+xla", True, True)):
        rows[name] = throughput(mixed=mixed, xla=xla and not smoke, **kw)
    base = rows["fp32"]["images_per_second"]
    ratios = {k: v["images_per_second"] / base for k, v in rows.items()}
    kw.pop("cell", None)
    return {"setting": kw, "rows": rows, "ratio_vs_fp32": ratios, "summary": (
        "search child images/s: " + ", ".join(f"{k} {v['images_per_second']:.0f}" for k, v in rows.items())
        + f"; mixed+xla / fp32 = {ratios['mixed+xla']:.2f}x (goal >= 2x)")}


# --- part 3: k children on one GPU -------------------------------------------------------------
def share_child(k: int, go_file: str, smoke: bool) -> None:
    """One of k processes: cap memory at 1/k as a worker would, warm up, wait, train, report."""
    from worker.gpu_share import Share, gpu_memory_mb, limit_tensorflow_memory

    total = gpu_memory_mb("0")
    share = Share(scope="suite", device="0", slot=0, k=k, total_mb=total, overhead_mb=1024)
    cap = limit_tensorflow_memory(share.limit_mb(1))

    parent = os.getppid()

    def go() -> None:
        print("READY", flush=True)
        while not os.path.exists(go_file):
            if os.getppid() != parent:
                sys.exit(1)  # the part was stopped
            time.sleep(0.05)

    kw = dict(n=1, filters=8, batch=32, steps=4, warmup=1, cell=SMOKE_CELL) if smoke else dict(n=2, filters=24, batch=128, steps=120, warmup=20)
    row = throughput(mixed=True, xla=not smoke, go=go, **kw)
    row["memory_cap"] = cap
    print("RESULT " + json.dumps(row), flush=True)


def part_share(smoke: bool, deadline: float) -> dict:
    ks = [1, 2] if smoke else [1, 2, 4, 8]
    rows = {}
    for k in ks:
        if time.monotonic() > deadline - (20 if smoke else 40):
            rows[k] = {"error": "skipped: the part's time ran out"}
            continue
        go_file = tempfile.mktemp(prefix="gpu-suite-go-")
        # In this process group (a part's timeout kills them too); stderr not to the driver's pipe.
        procs = [subprocess.Popen([sys.executable, __file__, "--share-child", str(k), "--go", go_file]
                                  + (["--smoke"] if smoke else []), stdout=subprocess.PIPE, text=True,
                                  stderr=subprocess.DEVNULL, cwd=ROOT) for _ in range(k)]  # fmt: skip
        try:
            ready = 0
            for p in procs:  # each prints READY after its warm-up
                for line in p.stdout:
                    if line.startswith("READY"):
                        ready += 1
                        break
            Path(go_file).touch()
            results = []
            for p in procs:
                out = p.communicate(timeout=max(1, deadline - time.monotonic()))[0]
                results += [json.loads(line[7:]) for line in out.splitlines() if line.startswith("RESULT ")]
            if len(results) != k:
                rows[k] = {"error": f"{len(results)} of {k} children reported (ready {ready})"}
                continue
            agg = sum(r["images_per_second"] for r in results)
            rows[k] = {"aggregate_images_per_second": agg, "per_child": results,
                       "peak_memory_mb_per_child": [r.get("peak_memory_mb") for r in results]}  # fmt: skip
        finally:
            for p in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.unlink(go_file)
    good = {k: v for k, v in rows.items() if "aggregate_images_per_second" in v}
    if 1 not in good:
        return {"rows": rows, "ok": False, "summary": "no figure for one child: see rows"}
    one = good[1]["aggregate_images_per_second"]
    ratios = {k: v["aggregate_images_per_second"] / one for k, v in good.items()}
    best = max(ratios, key=ratios.get)
    # Recommend the smallest k within 10% of the best aggregate: more workers cost memory and CPU.
    rec = min(k for k, r in ratios.items() if r >= 0.9 * ratios[best])
    return {"rows": rows, "ratio_vs_one": ratios, "recommended_k": rec, "summary": (
        "aggregate images/s: " + ", ".join(f"k={k} {v['aggregate_images_per_second']:.0f} ({ratios[k]:.2f}x)"
                                           for k, v in good.items())
        + f"; best k={best} (goal >= 3x); recommend PNAS_CHILDREN_PER_GPU={rec}")}


# --- part 4: the predictor on all b=5 candidates ---------------------------------------------
def part_score(smoke: bool) -> dict:
    import numpy as np

    from bench.scoring import random_beam
    from controller.predictor import fit_ensemble
    from shared.space import SearchSpace

    rng = np.random.default_rng(0)
    space = SearchSpace()
    beam = random_beam(space, space.blocks - 1, 16 if smoke else 256, rng)
    cands = space.expand(beam)
    train = [random_beam(space, b, 20 if smoke else 100, rng) for b in range(1, space.blocks + 1)]
    rewards = rng.uniform(0.5, 0.9, sum(len(c) for c in train))
    ens = fit_ensemble(space, train, rewards, kind="lstm", members=2 if smoke else 5, epochs=1, seed=0)
    ens.predict(cands.take(np.arange(100)))
    t = time.perf_counter()
    fast = ens.predict(cands, engine="numpy")
    t_fast = time.perf_counter() - t

    import tensorflow as tf

    x = tf.constant(ens.keras_tokens(cands))
    models = ens.keras_members()
    batch = 65536

    @tf.function(jit_compile=not smoke)
    def score(chunk):
        return tf.add_n([m(chunk, training=False)[:, 0] for m in models]) / len(models)

    def run() -> np.ndarray:
        return np.concatenate([score(x[i : i + batch]).numpy() for i in range(0, len(cands), batch)])

    run()  # trace and compile (the last chunk is shorter: both shapes)
    t = time.perf_counter()
    gpu = run()
    t_tf = time.perf_counter() - t
    dev = "GPU" if tf.config.list_physical_devices("GPU") else "CPU (no GPU)"
    diff = float(np.abs(gpu - fast).max())
    # the controller's own TensorFlow scorer (controller/predictor/tf_scoring.py), on the same device
    ens.predict(cands, engine="tensorflow")  # compiles
    t = time.perf_counter()
    prefix = ens.predict(cands, engine="tensorflow")
    t_prefix = time.perf_counter() - t
    diff = max(diff, float(np.abs(prefix - fast).max()))
    return {"candidates": len(cands), "members": ens.members, "numpy_cpu_seconds": t_fast, "tf_seconds": t_tf,
            "prefix_tf_seconds": t_prefix, "tf_device": dev, "max_abs_diff": diff, "summary": (
                f"{len(cands):,} candidates x {ens.members} members: TensorFlow on {dev} {t_tf:.2f} s (goal < 1 s), "
                f"its prefix-sharing scorer {t_prefix:.2f} s, vs NumPy on {os.cpu_count()} CPUs {t_fast:.2f} s; "
                f"max |diff| {diff:.1e}")}  # fmt: skip


# --- part 5: the final model -------------------------------------------------------------------
def part_final(smoke: bool) -> dict:
    """The named `paper-cifar` recipe (aux head, drop path, clipping, cosine, augmentation)
    trained by the worker's own trainer on CIFAR-sized synthetic data, mixed precision + XLA."""
    import numpy as np

    from shared.config import TrainConfig
    from shared.recipes import RECIPES
    from shared.space import BUILTIN_CELLS, Cell
    from worker.datasets import Dataset
    from worker.training import train_child

    n_train, n_val = (64, 32) if smoke else (12_800, 1_280)
    x, y = synthetic(n_train + n_val)
    pixels = np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)  # 8-bit, as CIFAR: the host slices uint8
    x = pixels.astype(np.float32) / np.float32(255)
    data = Dataset(x_train=x[:n_train], y_train=y[:n_train], x_val=x[n_train:], y_val=y[n_train:], x_test=None,
                   y_test=None, input_shape=(32, 32, 3), num_classes=10, name="synthetic-cifar",
                   train_pixels=pixels[:n_train])  # fmt: skip
    size = {"cells_per_stage": 1, "filters": 8, "batch_size": 32} if smoke else {"batch_size": 128}
    train = TrainConfig.model_validate({**RECIPES["paper-cifar"], **size, "dataset": "cifar10", "epochs": 2,
                                        "mixed_precision": "on", "jit_compile": "off" if smoke else "on"})  # fmt: skip
    cell = Cell.from_json(SMOKE_CELL) if smoke else BUILTIN_CELLS["pnasnet5"]
    result = train_child(cell, train, dataset=data, seed=0)
    last = result.history[-1]  # epoch 2: traced and compiled in epoch 1 (its seconds include validation)
    ips = n_train / last.seconds if last.seconds else 0.0
    setting = {"n": train.cells_per_stage, "filters": train.filters, "batch": train.batch_size, "epochs": train.epochs,
               "train_images": n_train}  # fmt: skip
    return {"setting": setting, "recipe": "paper-cifar (aux head 0.4, drop path 0.6, clip 5, cosine, standard augment)",
            "images_per_second": ips, "params": result.params, "reward": result.reward, "device": result.device,
            "mixed_precision": True, "xla": not smoke, "augment_on": result.extra.get("augment_on"),
            "summary": f"final model N={train.cells_per_stage} F={train.filters}, paper-cifar recipe: {ips:.0f} images/s "
                       f"in epoch 2 (params {result.params:,}, aux head included, augmentation on the "
                       f"{result.extra.get('augment_on') or 'host'})"}  # fmt: skip


# --- the driver --------------------------------------------------------------------------------
def run_parts(names: list[str], smoke: bool, out: Path) -> None:
    """In this process (``--part``): run the named parts, one JSON object per part to ``out``."""
    results = {}
    for name in names:
        deadline = time.monotonic() + PARTS[name][smoke]
        t0 = time.perf_counter()
        try:
            fn = {"child": part_child, "train": part_train, "score": part_score, "final": part_final}.get(name)
            row = part_share(smoke, deadline) if name == "share" else fn(smoke)
            row.setdefault("ok", True)
        except Exception as exc:
            row = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:],
                   "summary": f"FAILED: {type(exc).__name__}: {exc}"}  # fmt: skip
        row["part_seconds"] = time.perf_counter() - t0
        results[name] = row
        out.write_text(json.dumps(results, indent=1, default=str))


def _start_group(group: list[str], smoke: bool) -> tuple[subprocess.Popen, Path, float]:
    """One process for ``group``'s parts: (the process, its result file, its deadline)."""
    limit = sum(PARTS[p][smoke] for p in group) + 30  # + the process's TensorFlow start
    part_out = Path(tempfile.mktemp(prefix="gpu-suite-part-", suffix=".json"))
    cmd = [sys.executable, __file__, "--part", ",".join(group), "--part-out", str(part_out)] + (["--smoke"] if smoke else [])
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    return proc, part_out, time.monotonic() + limit


def _finish_group(proc: subprocess.Popen, part_out: Path, deadline: float) -> tuple[dict, str]:
    """Wait for a group's process until its deadline (then kill it): (its results, its output)."""
    try:
        tail = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        tail = (proc.communicate()[0] or "") + "\n(killed at its time limit)"
    got = json.loads(part_out.read_text()) if part_out.exists() else {}
    with contextlib.suppress(OSError):
        part_out.unlink()
    return got, tail


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny settings on the CPU: the same code paths, ~1-3 min")
    ap.add_argument("--out", default="gpu_suite.json", help="the JSON file (rewritten after each part)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {', '.join(PARTS)}")
    ap.add_argument("--part", help=argparse.SUPPRESS)  # internal: run these parts in this process
    ap.add_argument("--part-out", help=argparse.SUPPRESS)
    ap.add_argument("--share-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--go", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.share_child:
        share_child(args.share_child, args.go, args.smoke)
        return 0
    if args.part:
        run_parts(args.part.split(","), args.smoke, Path(args.part_out))
        return 0
    wanted = [p.strip() for p in args.parts.split(",") if p.strip()]
    if bad := [p for p in wanted if p not in PARTS]:
        print(f"unknown part(s) {', '.join(bad)}: choose from {', '.join(PARTS)}", file=sys.stderr)
        return 2
    groups = [[p for p in g if p in wanted] for g in SMOKE_GROUPS] if args.smoke else [[p] for p in wanted]
    groups = [g for g in groups if g]
    out = Path(args.out)
    doc = {"smoke": args.smoke, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": device_info(),
           "parts": {}}  # fmt: skip
    out.write_text(json.dumps(doc, indent=1))
    t_all = time.perf_counter()
    # On the GPU the groups run one after another (each part has the device to itself); in smoke
    # mode, which only proves the code paths on the CPU, side by side.
    batches = [groups] if args.smoke else [[g] for g in groups]
    for batch in batches:
        started = [_start_group(group, args.smoke) for group in batch]
        for group, (proc, part_out, deadline) in zip(batch, started, strict=True):
            got, tail = _finish_group(proc, part_out, deadline)
            for p in group:
                doc["parts"][p] = got.get(p) or {"ok": False, "summary": f"FAILED: no result (rc {proc.returncode})",
                                                 "output_tail": tail[-3000:]}  # fmt: skip
                print(f"SUMMARY {p}: {doc['parts'][p]['summary']}", flush=True)
            doc["seconds"] = time.perf_counter() - t_all
            out.write_text(json.dumps(doc, indent=1, default=str))
    ok = all(doc["parts"][p].get("ok") for p in wanted)
    print(f"SUMMARY suite: {sum(bool(doc['parts'][p].get('ok')) for p in wanted)}/{len(wanted)} parts ok in "
          f"{doc['seconds']:.0f} s; {out}", flush=True)  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
