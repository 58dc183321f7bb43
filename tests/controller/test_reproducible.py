"""The same search twice, in two fresh databases, with the real trainer on the CPU: the same
children with the same rewards, epoch by epoch. A child's seed comes from the run's seed and
its network id, not from its job id (the second database numbers its jobs differently)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.jobs import child_seed
from shared.store import Store
from tests.conftest import ROOT
from tests.fakes import fake_search_env

CONFIG = """
ops = ["identity"]
blocks = 2
beam = 1
ensemble = 1
predictor_epochs = 5
seed = 11
[train]
dataset = "digits"
validation_size = 0.2
max_train_samples = 300
epochs = 2
filters = 4
cells_per_stage = 1
batch_size = 64
"""


def _search(tmp: Path, url: str) -> subprocess.Popen:
    cfg = tmp / "search.toml"
    cfg.write_text(CONFIG)
    env = fake_search_env(url, PNAS_TRAINER="worker.training:train_child")
    with open(tmp / "stderr.txt", "w") as err:  # a file, not a pipe: nobody reads it while both run
        return subprocess.Popen(
            [sys.executable, "-m", "pnas.cli", "search", "--config", str(cfg), "--name", "r", "--workers", "1"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip


def _finished(p: subprocess.Popen, tmp: Path) -> None:
    assert p.wait(timeout=900) == 0, (tmp / "stderr.txt").read_text()[-3000:]


def _children(url: str) -> dict[str, tuple]:
    s = Store(url)
    run = s.require_run("r")
    out = {}
    for j in s.jobs(run.id):
        epochs = [(e["epoch"], e["loss"], e["val_accuracy"]) for e in s.epochs(j.id)]
        out[j.network_id] = (j.level, j.arch_id, j.reward, epochs, j.id)
    s.dispose()
    return out


def test_child_seeds_depend_on_the_run_seed_and_the_network_only():
    assert child_seed(11, "fb34122ed6ef469b") == child_seed(11, "fb34122ed6ef469b")
    assert child_seed(11, "fb34122ed6ef469b") != child_seed(12, "fb34122ed6ef469b")
    assert child_seed(11, "fb34122ed6ef469b") != child_seed(11, "fb34122ed6ef469c")
    assert 0 <= child_seed(-3, "ffffffffffffffff") < 2**31


@pytest.mark.slow
def test_the_same_search_twice_gives_the_same_children_and_rewards(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    url_a, url_b = f"sqlite:///{a / 'pnas.db'}", f"sqlite:///{b / 'pnas.db'}"
    # database b numbers its jobs differently: another run took the first ids
    s = Store(url_b)
    s.ensure_schema(auto_upgrade=True)
    other, _ = s.create_run(name="other", config={}, seed=0)
    s.add_jobs(other.id, level=1, children=[("x", [[-1, "identity", -2, "identity"]], None, None)], max_attempts=1)
    s.dispose()
    searches = [(_search(a, url_a), a), (_search(b, url_b), b)]  # side by side: each its own database and processes
    for p, tmp in searches:
        _finished(p, tmp)
    first, second = _children(url_a), _children(url_b)
    assert len(first) == 3 + 1  # 3 one-block cells, then K=1 chosen by the predictor
    assert {k: v[4] for k, v in first.items()} != {k: v[4] for k, v in second.items()}  # other job ids
    for net, (level, arch, reward, epochs, _) in first.items():
        level2, arch2, reward2, epochs2, _ = second[net]
        assert (level2, arch2) == (level, arch)
        assert len(epochs) == 2 and reward is not None
        assert reward2 == reward and epochs2 == epochs  # bit for bit, epoch by epoch
