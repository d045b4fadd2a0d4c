"""`func.yaml`: what a function is (name, entrypoint, signature) and how it is deployed (env, scale)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

CONFIG_FILE = "func.yaml"
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
ENTRYPOINT_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class FunctionError(Exception):
    """A user-facing problem with a function project or its build (one readable message)."""


class ScaleOptions(BaseModel):
    """Autoscaling bounds, written to the revision template as Knative annotations."""

    model_config = ConfigDict(extra="forbid")

    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)
    concurrency: int | None = Field(default=None, ge=0, description="containerConcurrency (0: unlimited)")

    def annotations(self) -> dict[str, str]:
        out = {}
        if self.min is not None:
            out["autoscaling.knative.dev/min-scale"] = str(self.min)
        if self.max is not None:
            out["autoscaling.knative.dev/max-scale"] = str(self.max)
        return out


class FuncConfig(BaseModel):
    """The contents of `func.yaml`."""

    model_config = ConfigDict(extra="forbid")

    name: str
    runtime: Literal["python"] = "python"
    invoke: Literal["http", "cloudevent"] = "http"
    entrypoint: str = "main:handle"
    namespace: str = "default"
    env: dict[str, str] = Field(default_factory=dict)
    scale: ScaleOptions = Field(default_factory=ScaleOptions)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError("must be a DNS label: lower-case letters, digits and '-', starting with a letter")
        return value

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint(cls, value: str) -> str:
        if not ENTRYPOINT_RE.match(value):
            raise ValueError("must look like module:function (e.g. main:handle or app:app)")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not key or "=" in key:
                raise ValueError(f"invalid environment variable name {key!r}")
        return {k: str(v) for k, v in value.items()}

    @property
    def module(self) -> str:
        return self.entrypoint.split(":", 1)[0]


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "func.yaml"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def parse_config(data: Any) -> FuncConfig:
    if not isinstance(data, dict):
        raise FunctionError(f"{CONFIG_FILE} must be a mapping")
    try:
        return FuncConfig.model_validate(data)
    except ValidationError as exc:
        raise FunctionError(f"invalid {CONFIG_FILE}: {_describe(exc)}") from None


def load_config(project: Path) -> FuncConfig:
    """Read `<project>/func.yaml`; every problem is one FunctionError saying what to fix."""
    path = project / CONFIG_FILE
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FunctionError(f"{project} is not a function project (no {CONFIG_FILE}); "
                            "create one with `wisp func create NAME`") from None
    except yaml.YAMLError as exc:
        raise FunctionError(f"cannot parse {path}: {exc}") from None
    return parse_config(data)


def dump_config(config: FuncConfig) -> str:
    data = config.model_dump(exclude_none=True)
    if not data.get("scale"):
        data.pop("scale", None)
    return yaml.safe_dump(data, sort_keys=False)


def save_config(project: Path, config: FuncConfig) -> None:
    (project / CONFIG_FILE).write_text(dump_config(config))
