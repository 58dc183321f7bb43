"""`pnas worker`: check the device, the database and the broker, then become a Celery worker.

The checks run before the worker starts so that a misconfigured GPU node fails in seconds
with one line instead of failing every child. TensorFlow is probed in a subprocess: this
process must not initialise CUDA, it becomes the prefork parent of the training children.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import typer

from shared.errors import UserError
from shared.settings import get_settings

PROBE = """
import json, tensorflow as tf
out = []
for g in tf.config.list_physical_devices("GPU"):
    try:
        out.append(tf.config.experimental.get_device_details(g).get("device_name") or g.name)
    except Exception:
        out.append(g.name)
print(json.dumps(out))
"""


def probe_gpus(env: dict, *, timeout: float = 300.0) -> list[str]:
    """Names of the GPUs TensorFlow sees under ``env``, asked in a child process."""
    try:
        res = subprocess.run(
            [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise UserError(f"TensorFlow did not list the devices within {timeout:.0f} s") from None
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["?"])[-1]
        raise UserError(f"TensorFlow could not list the devices: {last}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def device_plan(gpu: str, env: dict) -> tuple[bool, str]:
    """(probe TensorFlow?, description) for --gpu; edits ``env`` (CUDA_VISIBLE_DEVICES)."""
    if gpu == "none":
        env["CUDA_VISIBLE_DEVICES"] = ""  # hide every GPU from TensorFlow
        return False, "cpu (--gpu none)"
    if gpu != "auto":
        if not all(part.strip().isdigit() for part in gpu.split(",")):
            raise UserError(f"--gpu takes auto, none or a GPU index such as 0 (got {gpu!r})")
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return True, ""


def gpu_label(device: str, slot: int, k: int, node: str, names: str) -> str:
    """The workers table's device for a worker on a leased slot; `pnas status` groups by it."""
    return f"GPU {device} slot {slot + 1}/{k} node {node}: {names}"


# Celery warns at every start when the worker runs as root, as it does in a container.
ROOT_WARNING = "ignore:You're running the worker with superuser privileges"


def quiet_worker_logs(env: dict) -> None:
    """Without --verbose: drop TensorFlow's start-up lines (CUDA probing, cuInit, CPU
    instructions) that each pool child prints when it imports TensorFlow, and Celery's
    superuser warning. The worker's own lines and real errors pass."""
    env["PYTHONWARNINGS"] = ",".join(w for w in (env.get("PYTHONWARNINGS"), ROOT_WARNING) if w)
    # fd 2 through the filter program, for this process and the Celery it becomes (an exec
    # keeps the descriptor). The filter has its own session, so a Ctrl-C or a signal to the
    # worker's group does not end it before the last lines are out; it exits at end of input.
    sys.stderr.flush()
    filt = subprocess.Popen([sys.executable, "-m", "shared.tf_noise"], stdin=subprocess.PIPE, start_new_session=True)
    assert filt.stdin is not None
    os.dup2(filt.stdin.fileno(), 2)  # inheritable, unlike the pipe's own end (closed at exec)


def register(app: typer.Typer) -> None:
    @app.command()
    def worker(
        gpu: str = typer.Option("auto", help="auto, none (CPU only) or a GPU index (sets CUDA_VISIBLE_DEVICES)."),
        queue: str = typer.Option(None, help="Queue to consume (default PNAS_QUEUE, 'pnas')."),
        concurrency: int = typer.Option(1, help="Children trained at once; keep 1 (more per GPU: PNAS_CHILDREN_PER_GPU)."),
        name: str = typer.Option(None, help="Celery node name (default pnas-<device>-<pid>@<host>)."),
        loglevel: str = typer.Option("INFO", help="Celery log level."),
    ) -> None:
        """Run a Celery worker that trains children (one per fresh process)."""
        settings = get_settings()
        if not settings.broker_url:
            raise UserError("`pnas worker` needs PNAS_BROKER_URL (e.g. redis://127.0.0.1:6379/0)")
        if concurrency < 1:
            raise UserError("--concurrency must be at least 1")
        # --- GPU slot leasing (worker/gpu_slot.py) ------------------------------------------
        # Compose replicas all see every GPU (`count: all`); with PNAS_GPU_SLOTS set, `--gpu auto`
        # leases one free slot in Redis before TensorFlow loads and uses only that GPU.
        slot = None
        if gpu == "auto" and settings.gpu_slots:
            import atexit

            from worker.gpu_slot import hold_slot

            slot = hold_slot(settings)  # waits for a free slot; renewed from now on
            atexit.register(slot.close)  # a failed check below gives the slot back
            os.environ["CUDA_VISIBLE_DEVICES"] = slot.device  # => a GPU is required
        # --- end GPU slot leasing -------------------------------------------------------------
        env = dict(os.environ)
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"  # take GPU memory as needed, not all at once
        env.setdefault("REMAP_SIGTERM", "SIGQUIT")  # SIGTERM: soft then cold shutdown, child handed back
        require = gpu not in ("auto", "none") or (
            gpu == "auto" and (settings.require_gpu or bool(os.environ.get("CUDA_VISIBLE_DEVICES")))
        )
        probe, device = device_plan(gpu, env)
        if probe:
            try:
                gpus = probe_gpus(env)
            except UserError as exc:
                if require:
                    raise
                gpus, device = [], f"cpu ({exc})"
            if gpus:
                device = f"GPU {env.get('CUDA_VISIBLE_DEVICES', 'all')}: " + ", ".join(gpus)
                if slot is not None:  # k workers per GPU: each caps its memory at its share
                    from worker.gpu_share import ENV, Share, gpu_memory_mb

                    lease = slot.lease
                    env[ENV] = Share(
                        scope=lease.scope, device=lease.device, slot=lease.slot, k=lease.per_device,
                        total_mb=gpu_memory_mb(lease.device), overhead_mb=settings.gpu_overhead_mb,
                    ).to_env()  # fmt: skip
                    device = gpu_label(lease.device, lease.slot, lease.per_device, lease.scope, ", ".join(gpus))
            elif require:
                raise UserError(
                    f"a GPU was asked for (--gpu {gpu}, CUDA_VISIBLE_DEVICES="
                    f"{env.get('CUDA_VISIBLE_DEVICES', '')!r}) but TensorFlow sees none; check the driver "
                    "and the container's GPU reservation, or use --gpu none"
                )
            else:
                device = device or "cpu (no GPU visible)"

        from kombu import Connection

        from shared.queue import celery_config
        from shared.settings import endpoint
        from shared.store import Store

        store = Store.from_settings(settings)
        store.ensure_schema(auto_upgrade=False)
        role, missing = store.missing_worker_privileges()  # as `search`: refuse now, not per child
        store.dispose()
        if missing:
            raise UserError(
                f"the database role {role!r} cannot write what a worker records ({', '.join(missing)}); as the "
                f"tables' owner, run `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}` "
                f"and `GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}`, or give the worker a role that can"
            )
        bounded = celery_config(settings)  # the connect and handshake timeouts the worker will use
        try:
            with Connection(settings.broker_url, connect_timeout=settings.broker_timeout,
                            transport_options=bounded["broker_transport_options"]) as conn:  # fmt: skip
                conn.ensure_connection(max_retries=1, interval_start=0.2, timeout=settings.broker_timeout)
        except Exception as exc:
            raise UserError(
                f"cannot reach the broker at {endpoint(settings.broker_url)} ({type(exc).__name__}: {exc}); "
                "check PNAS_BROKER_URL (redis:// or rediss:// as the server speaks) and that it runs"
            ) from None

        queue = queue or settings.queue
        tag = "cpu" if gpu == "none" else f"gpu{gpu}" if gpu != "auto" else "auto"
        node = name or f"pnas-{tag}-{os.getpid()}@{socket.gethostname()}"
        env["PNAS_WORKER_DEVICE"] = device
        env["PNAS_QUEUE"] = queue
        print(f"worker {node}: device {device}; queue {queue!r}; database {store.safe_url}", file=sys.stderr, flush=True)
        if not os.environ.get("PNAS_VERBOSE"):
            quiet_worker_logs(env)
        argv = [
            sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
            "--pool", "prefork", "--concurrency", str(concurrency), "--max-tasks-per-child", "1",
            "--queues", queue, "--hostname", node, "--loglevel", loglevel, "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        if slot is None:
            os.execve(sys.executable, argv, env)
        sys.exit(slot.run(argv, env))  # GPU slot leasing: the lease lives as long as the worker
