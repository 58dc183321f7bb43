"""`pnas model` and `pnas train`: JSON output, and one `error:` line with exit 2 for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pnas.commands._cells import parse_cell_arg
from tests.cli import run_cli
from shared.config import SMALL_VALIDATION_FRACTION
from shared.errors import UserError
from shared.space import PNASNET5

ROOT = Path(__file__).resolve().parents[2]


def run(capsys, *argv) -> tuple[int, str, str]:
    return run_cli(capsys, *argv)


def test_parse_cell_arg_accepts_a_name_a_file_and_a_json_string(tmp_path):
    assert parse_cell_arg("pnasnet5") == PNASNET5
    f = tmp_path / "cell.json"
    f.write_text(PNASNET5.to_json())
    assert parse_cell_arg(str(f)) == PNASNET5
    assert parse_cell_arg(json.dumps({"blocks": PNASNET5.to_list()})) == PNASNET5


@pytest.mark.parametrize(
    "text,message",
    [
        ("pnasnet9", "neither a built-in cell"),
        ('[[-2, "sep3x3", -1', "not valid JSON"),
        ('[[-2, "conv9x9", -1, "identity"]]', "unknown operator 'conv9x9'"),
        ('[[0, "sep3x3", -1, "identity"]]', "out of range"),
        ("", "empty"),
    ],
)
def test_parse_cell_arg_errors(text, message):
    with pytest.raises(UserError, match=message):
        parse_cell_arg(text)


def test_pnas_model_json_through_the_real_entry_point():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    p = subprocess.run([sys.executable, "-m", "pnas.cli", "model", "--cell", "pnasnet5", "--json"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["params"] > 100_000 and out["arch_id"] == PNASNET5.arch_id
    assert out["input_shape"] == [32, 32, 3] and out["classes"] == 10 and out["stem"] == "cifar"


def test_pnas_model_published_cifar_size(capsys):
    code, out, _ = run(capsys, "model", "--cell", "pnasnet5", "--n", "3", "--filters", "48", "--json")
    assert code == 0 and abs(json.loads(out)["trainable_params"] - 3.2e6) < 0.02 * 3.2e6


def test_pnas_model_summary_with_a_dataset_shape(capsys):
    code, out, _ = run(capsys, "model", "--cell", "pnasnet5", "--dataset", "digits", "--n", "1", "--filters", "4")
    assert code == 0 and "parameters" in out and "(8, 8, 1), 10 classes" in out


def _bad_npz(tmp_path) -> str:
    p = tmp_path / "bad.npz"
    np.savez(p, x_train=np.zeros((4, 8, 8)))
    return f"npz:{p}"


@pytest.mark.parametrize(
    "argv,message",
    [
        (["model", "--cell", '[[-2, "conv9x9", -1, "identity"]]'], "unknown operator"),
        (["model", "--cell", "[[-2, "], "not valid JSON"),
        (["model", "--cell", "pnasnet5", "--input-shape", "32,32", "--classes", "10"], "H,W,C"),
        (["model", "--cell", "pnasnet5", "--dataset", "imagenet"], "unknown dataset"),
        (["model", "--cell", "pnasnet5", "--stem", "imagenet", "--input-shape", "2,2,1", "--classes", "3"], "at least 3x3"),
        (["train", "--cell", "pnasnet5", "--dataset", "nope"], "unknown dataset"),
        (["train", "--cell", "pnasnet5", "--dataset", "NPZ"], "lacks y_train"),
        (["train", "--cell", "pnasnet5", "--dataset", "digits", "--epochs", "-1"], "invalid epochs"),
    ],
)
def test_bad_input_is_one_error_line_with_exit_code_2(capsys, tmp_path, argv, message):
    argv = [_bad_npz(tmp_path) if a == "NPZ" else a for a in argv]
    code, _, err = run(capsys, *argv)
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_pnas_train_on_digits_prints_the_epochs_and_the_reward(capsys):
    code, out, _ = run(capsys, "train", "--cell", "pnasnet5", "--dataset", "digits", "--epochs", "1",
                       "--n", "1", "--filters", "8", "--lr", "0.05", "--batch-size", "64",
                       "--validation-size", "0.2")
    assert code == 0 and "reward " in out and "val accuracy" in out
    assert "test accuracy " in out and "(not the reward)" in out and "augmentation none" in out


def test_pnas_train_json_as_the_issue_asks_it(capsys):
    # the exact command of issue 14, with no --validation-size: digits holds out its default tenth
    code, out, _ = run(capsys, "train", "--cell", "pnasnet5", "--dataset", "digits", "--epochs", "1",
                       "--n", "1", "--filters", "8", "--json")
    r = json.loads(out)
    assert code == 0 and out.count("\n") == 1
    for key in ("reward", "val_accuracy", "test_accuracy", "params", "images_per_second", "augment"):
        assert r[key] is not None, key
    assert r["augment"] == "none" and r["val_accuracy"] == r["reward"] and 0 <= r["test_accuracy"] <= 1
    assert r["extra"]["test_samples"] == 360 and r["extra"]["val_samples"] == round(SMALL_VALIDATION_FRACTION * 1437)


def test_pnas_train_json_and_a_failing_child(capsys):
    code, out, _ = run(capsys, "train", "--cell", '[[-1, "sep3x3", -2, "identity"]]', "--dataset", "digits",
                       "--epochs", "0", "--n", "1", "--filters", "4", "--validation-size", "0.2", "--json")
    r = json.loads(out)
    assert code == 0 and r["reward_epoch"] == 0 and r["history"] == [] and r["config"]["epochs"] == 0
    code, _, err = run(capsys, "train", "--cell", '[[-1, "sep3x3", -2, "identity"]]', "--dataset", "digits",
                       "--epochs", "1", "--n", "1", "--filters", "4", "--lr", "1e12", "--validation-size", "0.2")
    assert code == 1 and "loss became NaN" in err and "Traceback" not in err
