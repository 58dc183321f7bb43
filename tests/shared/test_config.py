"""Run configuration: presets, files (TOML and YAML), flags, and one clear line per mistake."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shared.config import PRESETS, SearchConfig, build_config, read_config_file
from shared.errors import UserError
from shared.space import PAPER_OPS
from tests.conftest import ROOT


def test_paper_preset_is_the_papers_setting():
    cfg, _ = build_config(preset="paper")
    assert cfg.ops == PAPER_OPS and cfg.blocks == 5 and cfg.beam == 256
    assert (cfg.train.dataset, cfg.train.epochs, cfg.train.filters, cfg.train.cells_per_stage) == ("cifar10", 20, 24, 2)
    assert cfg.train.learning_rate == 0.01 and cfg.ensemble == 5 and cfg.predictor == "lstm"


def test_quick_preset_is_small_and_offline():
    cfg, _ = build_config(preset="quick")
    assert cfg.train.dataset == "digits"
    assert sum(r["trained"] for r in cfg.space().level_counts(cfg.beam)) <= 40


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_file_then_flags_override_the_preset(tmp_path, suffix):
    f = tmp_path / f"c{suffix}"
    if suffix == ".toml":
        f.write_text('preset = "quick"\nname = "mine"\nbeam = 5\n[train]\nepochs = 7\n')
    else:
        f.write_text("preset: quick\nname: mine\nbeam: 5\ntrain:\n  epochs: 7\n")
    cfg, extras = build_config(file_data=read_config_file(f), overrides={"beam": 6, "seed": None})
    assert extras == {"name": "mine"}
    assert cfg.beam == 6  # the flag wins over the file
    assert cfg.train.epochs == 7  # the file wins over the preset
    assert cfg.train.dataset == PRESETS["quick"]["train"]["dataset"]  # the preset fills the rest


def test_config_round_trips_through_json():
    cfg, _ = build_config(preset="quick", overrides={"seed": 3})
    assert SearchConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    "data, message",
    [
        ({"beam": 0}, "invalid setting beam"),
        ({"train": {"epochs": "many"}}, "invalid setting train.epochs"),
        ({"bogus": 1}, "invalid setting bogus"),
        ({"ops": "sep3x3,conv9x9"}, "unknown operator 'conv9x9'"),
        ({"strategy": "bayesian"}, "invalid setting strategy"),
        ({"predictor_update": "warm"}, "invalid setting predictor_update: Input should be 'refit' or 'finetune'$"),
    ],
)
def test_bad_values_name_the_field(data, message):
    with pytest.raises(UserError, match=message):
        build_config(file_data=data)


def test_bad_files_are_one_clear_line(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_config_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("beam = [")
    with pytest.raises(UserError, match="is not valid"):
        read_config_file(bad)
    txt = tmp_path / "c.txt"
    txt.write_text("x")
    with pytest.raises(UserError, match="must end in .toml, .yaml or .yml"):
        read_config_file(txt)
    with pytest.raises(UserError, match="unknown preset"):
        build_config(preset="huge")


def test_search_cli_reports_a_bad_value_without_a_traceback(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  epochs: -1\n")
    p = subprocess.run([sys.executable, "-m", "pnas.cli", "search", "--config", str(f)], cwd=ROOT,
                       capture_output=True, text=True, env={"PNAS_DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1].startswith("error: invalid setting train.epochs")
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "x.db").exists()  # rejected before anything is stored


def test_every_problem_is_reported_and_misplaced_fields_say_where_they_belong():
    with pytest.raises(UserError) as e:
        build_config(file_data={"learning_rate": 0.1, "beam": 0, "train": {"beam": 3, "epocs": 2}})
    msg = str(e.value)
    assert msg.startswith("4 invalid settings: ") and "\n" not in msg
    assert "learning_rate: not a top-level setting: it belongs under [train]" in msg
    assert "train.beam: not a [train] setting: it belongs at the top level" in msg
    assert "train.epocs: unknown setting (did you mean epochs?)" in msg
    assert "beam: Input should be greater than or equal to 1" in msg


@pytest.mark.parametrize("dataset, size", [("cifar10", 5000), ("cifar100", 5000), ("mnist", 5000), ("digits", 0.1), ("npz:/x.npz", 0.1)])
def test_the_validation_size_defaults_per_dataset(dataset, size):
    cfg, _ = build_config(preset="paper", overrides={"train": {"dataset": dataset}})
    assert cfg.train.validation_size == size
    cfg, _ = build_config(preset="paper", overrides={"train": {"dataset": dataset, "validation_size": 0.3}})
    assert cfg.train.validation_size == 0.3  # a given size wins


def test_predictor_update_from_file_and_flag_and_stored_runs_without_it():
    assert build_config(preset="quick")[0].predictor_update == "refit"
    cfg, _ = build_config(file_data={"predictor_update": "finetune"})
    assert cfg.predictor_update == "finetune"
    assert SearchConfig.from_json(cfg.to_json()).predictor_update == "finetune"  # stored with the run
    assert build_config(file_data={"predictor_update": "finetune"}, overrides={"predictor_update": "refit"})[0].predictor_update == "refit"
    old = cfg.model_dump(mode="json")
    del old["predictor_update"]  # a run stored before the setting existed refitted
    assert SearchConfig.from_json(old).predictor_update == "refit"


def test_search_cli_reports_a_bad_predictor_update_in_one_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "pnas.cli", "search", "--predictor-update", "warm"], cwd=ROOT,
                       capture_output=True, text=True, env={"PNAS_DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1] == "error: invalid setting predictor_update: Input should be 'refit' or 'finetune'"
    assert "Traceback" not in p.stderr


def test_an_endpoint_names_scheme_host_and_port_and_never_a_password():
    from shared.settings import endpoint

    assert endpoint("rediss://:secret@10.0.0.5:6380/2") == "rediss://10.0.0.5:6380"
    assert endpoint("redis://redis/0") == "redis://redis:6379"
    assert endpoint("postgresql://pnas:secret@db/pnas") == "postgresql://db:5432"
    assert endpoint("sqlite:///pnas.db") == "sqlite:///pnas.db"
