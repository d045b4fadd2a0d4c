"""Typed, grouped settings mirroring Knative's config maps; every default lives here.

`config.yaml` has one section per Knative config map (without the `config-` prefix) with keys spelled
exactly as Knative spells them. Durations are written `6s`, `1m`, `1h` (or plain seconds) and are
exposed as float seconds.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m(?!s))?\s*(?:(\d+(?:\.\d+)?)s)?\s*"
                       r"(?:(\d+(?:\.\d+)?)ms)?\s*$")


class ConfigError(Exception):
    """The config file is unreadable or has a value outside its documented range."""


def parse_duration(value: Any) -> float:
    """Parse `1h2m3s`, `500ms`, `6s` or a bare number of seconds into float seconds."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    m = _DURATION.match(text)
    if not text or not m or not any(m.groups()):
        raise ValueError(f"invalid duration {value!r} (use e.g. 6s, 1m, 1h)")
    h, mi, s, ms = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


def format_duration(seconds: float) -> str:
    """Render seconds the way config.yaml spells them."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{int(seconds * 1000)}ms"


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Section(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class NetworkConfig(_Section):
    """config-network + config-domain."""

    domain: str = "localhost"
    domain_template: str = Field("{{.Name}}.{{.Namespace}}.{{.Domain}}", alias="domain-template")
    tag_template: str = Field("{{.Tag}}-{{.Name}}", alias="tag-template")
    rollout_duration: Duration = Field(0.0, alias="rollout-duration")
    default_external_scheme: str = Field("http", alias="default-external-scheme")


class AutoscalerConfig(_Section):
    """config-autoscaler (spec §1.7)."""

    container_concurrency_target_percentage: float = Field(
        70.0, alias="container-concurrency-target-percentage", ge=1, le=100)
    container_concurrency_target_default: float = Field(
        100.0, alias="container-concurrency-target-default", ge=0.01)
    requests_per_second_target_default: float = Field(
        200.0, alias="requests-per-second-target-default", ge=0.01)
    target_burst_capacity: float = Field(211.0, alias="target-burst-capacity", ge=-1)
    stable_window: Duration = Field(60.0, alias="stable-window", ge=6, le=3600)
    panic_window_percentage: float = Field(10.0, alias="panic-window-percentage", ge=1, le=100)
    panic_threshold_percentage: float = Field(200.0, alias="panic-threshold-percentage", ge=110, le=1000)
    max_scale_up_rate: float = Field(1000.0, alias="max-scale-up-rate", gt=1)
    max_scale_down_rate: float = Field(2.0, alias="max-scale-down-rate", gt=1)
    enable_scale_to_zero: bool = Field(True, alias="enable-scale-to-zero")
    scale_to_zero_grace_period: Duration = Field(30.0, alias="scale-to-zero-grace-period", gt=0)
    scale_to_zero_pod_retention_period: Duration = Field(
        0.0, alias="scale-to-zero-pod-retention-period", ge=0, le=3600)
    scale_down_delay: Duration = Field(0.0, alias="scale-down-delay", ge=0, le=3600)
    pod_autoscaler_class: str = Field("kpa.autoscaling.knative.dev", alias="pod-autoscaler-class")
    activator_capacity: float = Field(100.0, alias="activator-capacity", ge=1)
    initial_scale: int = Field(1, alias="initial-scale", ge=0)
    allow_zero_initial_scale: bool = Field(False, alias="allow-zero-initial-scale")
    min_scale: int = Field(0, alias="min-scale", ge=0)
    max_scale: int = Field(0, alias="max-scale", ge=0)
    max_scale_limit: int = Field(0, alias="max-scale-limit", ge=0)
    tick_interval: Duration = Field(2.0, alias="tick-interval", gt=0)


class DeploymentConfig(_Section):
    """config-deployment."""

    progress_deadline: Duration = Field(600.0, alias="progress-deadline", gt=0)
    # How long a stopping instance may take after SIGTERM before SIGKILL.
    termination_grace_period: Duration = Field(30.0, alias="termination-grace-period", ge=0)


class DefaultsConfig(_Section):
    """config-defaults."""

    revision_timeout_seconds: int = Field(300, alias="revision-timeout-seconds", ge=1)
    max_revision_timeout_seconds: int = Field(600, alias="max-revision-timeout-seconds", ge=1)
    revision_response_start_timeout_seconds: int = Field(
        0, alias="revision-response-start-timeout-seconds", ge=0)
    revision_idle_timeout_seconds: int = Field(0, alias="revision-idle-timeout-seconds", ge=0)
    container_concurrency: int = Field(0, alias="container-concurrency", ge=0)
    container_concurrency_max_limit: int = Field(1000, alias="container-concurrency-max-limit", ge=1)
    allow_container_concurrency_zero: bool = Field(True, alias="allow-container-concurrency-zero")
    container_name_template: str = Field("user-container", alias="container-name-template")


class GCConfig(_Section):
    """config-gc; a limit of -1 stands for Knative's "disabled"."""

    retain_since_create_time: Duration = Field(48 * 3600.0, alias="retain-since-create-time")
    retain_since_last_active_time: Duration = Field(15 * 3600.0, alias="retain-since-last-active-time")
    min_non_active_revisions: int = Field(20, alias="min-non-active-revisions", ge=0)
    max_non_active_revisions: int = Field(1000, alias="max-non-active-revisions", ge=-1)


class FeaturesConfig(_Section):
    """config-features."""

    tag_header_based_routing: Literal["enabled", "disabled"] = Field(
        "disabled", alias="tag-header-based-routing")


class RuntimeConfig(_Section):
    """Which runtime backend runs instances."""

    default: Literal["process", "container", "function"] = "process"


class EventingConfig(_Section):
    """Event log backend and broker defaults."""

    backend: Literal["sqlite", "memory", "nats", "rabbitmq", "redis"] = "sqlite"


class APIConfig(_Section):
    """Limits of the API server."""

    max_body_bytes: int = Field(3 * 1024 * 1024, alias="max-body-bytes", ge=1024)


_NULLABLE_DISABLED = {"retain-since-create-time", "retain-since-last-active-time",
                      "min-non-active-revisions", "max-non-active-revisions"}


class Config(_Section):
    """All settings, grouped as Knative groups them."""

    network: NetworkConfig = NetworkConfig()
    autoscaler: AutoscalerConfig = AutoscalerConfig()
    deployment: DeploymentConfig = DeploymentConfig()
    defaults: DefaultsConfig = DefaultsConfig()
    gc: GCConfig = GCConfig()
    features: FeaturesConfig = FeaturesConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    eventing: EventingConfig = EventingConfig()
    api: APIConfig = APIConfig()

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None) -> Config:
        """Build from a parsed config.yaml; `"disabled"` GC limits become -1."""
        data = dict(data or {})
        gc = dict(data.get("gc") or {})
        for key in _NULLABLE_DISABLED:
            if str(gc.get(key, "")).lower() == "disabled":
                gc[key] = -1
        if gc:
            data["gc"] = gc
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"config: {where}: {first['msg']}") from None

    @classmethod
    def load(cls, path: Path | None) -> Config:
        """Read config.yaml if it exists; a missing file means all defaults."""
        if path is None or not path.exists():
            return cls()
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"config: cannot read {path}: {' '.join(str(exc).split())}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config: {path} must be a mapping of sections")
        return cls.from_mapping(raw)

    def with_overrides(self, **sections: dict[str, Any]) -> Config:
        """A copy with some keys of some sections replaced (keys spelled as in config.yaml)."""
        data = self.model_dump(by_alias=True)
        for name, values in sections.items():
            data.setdefault(name, {}).update(values)
        return Config.from_mapping(data)
