"""The generated run name survives new settings: `pnas search --preset quick` run again after an
upgrade that added a setting (with its default) must find and resume the same run."""

from __future__ import annotations

from pnas.commands.search import default_run_name
from shared.config import SearchConfig, build_config


class NextVersionConfig(SearchConfig):
    """SearchConfig as a later version might have it: one more setting, at its default."""

    future_knob: int = 0


def test_a_new_setting_at_its_default_leaves_the_generated_name_alone() -> None:
    cfg, _ = build_config(preset="quick")
    newer = NextVersionConfig.model_validate(cfg.model_dump(mode="json"))
    assert default_run_name(newer, "quick") == default_run_name(cfg, "quick")
    assert default_run_name(cfg, "quick").startswith("quick-pnas-")


def test_a_changed_setting_changes_the_name() -> None:
    cfg, _ = build_config(preset="quick")
    other, _ = build_config(preset="quick", overrides={"seed": 1})
    assert default_run_name(cfg, "quick") != default_run_name(other, "quick")
