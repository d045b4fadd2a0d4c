"""config.yaml: Knative's key names, durations, ranges, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from wisp.config import Config, ConfigError, format_duration, parse_duration


@pytest.mark.parametrize(("text", "seconds"), [("6s", 6), ("1m", 60), ("1h", 3600), ("1h30m", 5400),
                                                ("500ms", 0.5), ("2.5s", 2.5), ("90", 90), (15, 15)])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "soon", "5 minutes", "-3s", True])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_format_duration_round_trips() -> None:
    for seconds in (6.0, 60.0, 0.25):
        assert parse_duration(format_duration(seconds)) == seconds


def test_defaults_match_knative() -> None:
    cfg = Config()
    assert cfg.autoscaler.target_burst_capacity == 211
    assert cfg.autoscaler.stable_window == 60
    assert cfg.autoscaler.scale_to_zero_grace_period == 30
    assert cfg.deployment.progress_deadline == 600
    assert cfg.defaults.revision_timeout_seconds == 300
    assert cfg.defaults.max_revision_timeout_seconds == 600
    assert cfg.gc.min_non_active_revisions == 20
    assert cfg.network.domain == "localhost"


def test_load_file_with_knative_spelling(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("autoscaler: {stable-window: 6s, scale-to-zero-grace-period: 2s}\n"
                    "deployment: {progress-deadline: 3s}\n"
                    "gc: {retain-since-create-time: disabled, max-non-active-revisions: disabled}\n"
                    "features: {tag-header-based-routing: enabled}\nunknown-section: {x: 1}\n")
    cfg = Config.load(path)
    assert cfg.autoscaler.stable_window == 6 and cfg.autoscaler.scale_to_zero_grace_period == 2
    assert cfg.deployment.progress_deadline == 3
    assert cfg.gc.retain_since_create_time == -1 and cfg.gc.max_non_active_revisions == -1
    assert cfg.features.tag_header_based_routing == "enabled"


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    assert Config.load(tmp_path / "absent.yaml") == Config()


@pytest.mark.parametrize(("text", "needle"), [
    ("autoscaler: {stable-window: 2s}", "autoscaler.stable-window"),
    ("autoscaler: {panic-threshold-percentage: 50}", "panic-threshold-percentage"),
    ("deployment: {progress-deadline: never}", "progress-deadline"),
    ("runtime: {default: vm}", "runtime.default"),
    ("- just\n- a list", "mapping of sections"),
    ("a: [unclosed", "cannot read"),
])
def test_bad_config_is_one_clear_error(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        Config.load(path)


def test_overrides_keep_other_values() -> None:
    cfg = Config().with_overrides(network={"domain": "example.com"})
    assert cfg.network.domain == "example.com"
    assert cfg.network.tag_template == "{{.Tag}}-{{.Name}}"
