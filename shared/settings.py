"""The one settings object: where the database, broker and caches are, and the timeouts.

Every process (controller, workers, monitors) reads the same environment variables, so the
values that must agree across processes (the visibility timeout above all) agree.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PNAS_", extra="ignore")

    database_url: str = "sqlite:///pnas.db"  # the embedded default: a file in the working dir
    broker_url: str | None = None  # set => the Celery executor is the default
    data_dir: Path = Path.home() / ".cache" / "pnas" / "datasets"  # shared by all workers
    offline: bool = False  # never download a dataset: use the cache or fail with one clear line
    queue: str = "pnas"  # Celery queue the children go to
    # Redis redelivers an unacked message after this; it must exceed the longest child.
    visibility_timeout: int = Field(12 * 3600, ge=60)
    lease_seconds: float = Field(150.0, gt=0)  # no heartbeat for this long => the worker is lost
    heartbeat_seconds: float = Field(30.0, gt=0)  # 30-60 s: shorter ones hurt (Optuna #5470)
    max_attempts: int = Field(3, ge=1)  # lost/retryable children are tried this often in all
    max_consecutive_failures: int = Field(10, ge=1)  # then the search stops: broken code
    # Children in a row whose worker could not load the dataset: then the search stops. Not 1:
    # one worker without the dataset mounted should not stop a run the others can serve.
    max_dataset_failures: int = Field(3, ge=1)
    task_time_limit: int | None = None  # per child, seconds: a soft limit (clean failure), hard kill 60 s on
    # SIGTERM to a Celery worker: let a child this close to done finish, then hand it back.
    soft_shutdown_seconds: float = Field(10.0, ge=0)
    # The controller resends queued children whose message vanished (a Redis restart without
    # persistence) this often; duplicates are harmless (the claim).
    reconcile_seconds: float = Field(30.0, gt=0)
    # The controller keeps polling through a database restart for this long, then stops.
    db_outage_seconds: float = Field(600.0, gt=0)
    # The Celery executor gives up (the run stops, resumable) after the broker is gone this long.
    broker_outage_seconds: float = Field(3600.0, gt=0)
    # A new Celery search asks a worker to load its dataset first; with no answer in this
    # long it says so (and goes on waiting), so a farm with no worker up is never silent.
    dataset_check_seconds: float = Field(30.0, gt=0)
    # `pnas worker --gpu auto` refuses to start without a GPU (also implied by CUDA_VISIBLE_DEVICES).
    require_gpu: bool = False
    # Connecting to the database or the broker (TLS handshake included) gives up after this,
    # so that a wrong scheme (rediss:// on a plain Redis) or a port that never answers is one
    # line in seconds, not a silent hang; where an outage is expected the caller retries.
    db_connect_timeout: int = Field(10, ge=2)  # whole seconds: libpq's connect_timeout
    broker_timeout: float = Field(10.0, gt=0)  # also bounds one Redis reply (all are quick)
    poll_seconds: float = Field(2.0, gt=0)  # longest wait between the controller's DB polls
    db_pool_size: int = Field(2, ge=1)  # per process: workers hold few connections
    log_level: str = "WARNING"  # local worker processes: quiet; progress comes from the controller
    log_tail_bytes: int = 4096  # of a failed child's log kept in the database
    # GPU slots a `pnas worker --gpu auto` leases one of before TensorFlow loads: "auto",
    # a count ("4") or device ids ("0,2,3"); unset = no leasing (compose replicas set it).
    gpu_slots: str | None = None
    gpu_slot_ttl: float = Field(60.0, gt=0)  # a dead replica's slot frees itself after this
    # Workers (children trained at once) per GPU: 1 keeps the old behaviour, one child owning
    # a GPU; a search child uses a small part of a modern GPU, so a farm sets this to the k
    # bench/gpu_suite.py recommends. Each worker then caps its TensorFlow memory at 1/k.
    children_per_gpu: int = Field(1, ge=1)
    # GPU memory (MiB) a process needs outside TensorFlow's allocator (CUDA context, cuDNN and
    # cuBLAS handles, XLA's autotuning scratch): taken off the device before it is split by k.
    gpu_overhead_mb: int = Field(1024, ge=0)
    node: str = "default"  # one value per host when several hosts share one Redis
    # The function that trains one child, as "module:function"; swap in your own trainer
    # (tests use an instant deterministic one).
    trainer: str = "worker.training:train_child"
    # "module:function" the controller calls after each step (step name, level); tests use it
    # to kill the controller at precise moments.
    controller_hook: str | None = None
    # `pnas dashboard`: the token (Bearer, or the password of basic auth) it asks for; unset =
    # it serves only 127.0.0.1 without actions, and refuses to start otherwise.
    dashboard_token: str | None = None
    # `pnas dashboard` reads through this URL when set (the role of `pnas db grant-readonly`);
    # unset = database_url. Actions (--allow-actions) always write through database_url.
    dashboard_database_url: str | None = None
    # Where children's checkpoints go: a directory every worker can reach or s3://bucket/prefix
    # (credentials from the environment, as boto reads them). Unset: a folder beside the
    # dataset cache, which every worker of one host shares already.
    checkpoint_url: str | None = None
    # TensorFlow's deterministic ops (tf.config.experimental.enable_op_determinism): off by
    # default because they are slower; tests turn it on to compare a resumed child's reward.
    deterministic: bool = False

    @property
    def checkpoint_location(self) -> str:
        return self.checkpoint_url or str(self.data_dir.parent / "checkpoints")


def endpoint(url: str) -> str:
    """``scheme://host:port`` of a database or broker URL, without user, password or path."""
    from urllib.parse import urlsplit

    try:
        u = urlsplit(url)
        host, port = u.hostname, u.port
    except ValueError:  # a port that is not a number
        return url.split("://", 1)[0] + "://?"
    if not host:
        return url.split("?", 1)[0] if u.scheme.startswith("sqlite") else f"{u.scheme}://{u.path or '?'}"
    default = 5432 if u.scheme.startswith("postgres") else {"redis": 6379, "rediss": 6379, "amqp": 5672}.get(u.scheme)
    port = port or default
    host = f"[{host}]" if ":" in host else host
    return f"{u.scheme}://{host}" + (f":{port}" if port else "")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
