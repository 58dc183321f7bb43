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


def test_a_run_an_earlier_version_named_with_the_same_settings_is_found(sqlite_url) -> None:
    from pnas.commands.search import same_settings_run
    from shared.store import Store

    store = Store(sqlite_url)
    store.ensure_schema(auto_upgrade=True)
    cfg, _ = build_config(preset="quick")
    other, _ = build_config(preset="quick", overrides={"seed": 3})
    generated = default_run_name(cfg, "quick")
    assert same_settings_run(store, cfg, generated=generated) == generated  # nothing stored yet
    store.create_run(name="quick-pnas-0ld0ne", config=cfg.model_dump(mode="json"), seed=0)
    store.create_run(name="quick-pnas-0ther1", config=other.model_dump(mode="json"), seed=3)
    assert same_settings_run(store, cfg, generated=generated) == "quick-pnas-0ld0ne"
    assert same_settings_run(store, other, generated=default_run_name(other, "quick")) == "quick-pnas-0ther1"
    store.dispose()
