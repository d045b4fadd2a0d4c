"""Functions: project templates, `func.yaml`, the two-layer image builder and the local runner.

The CLI (`wisp func …`) is a thin shell over this package; the function *runtime* (zygotes and the
in-instance server) lives in `wisp.runtime.function`, `wisp.runtime.zygote`, `wisp.runtime.funcserver`.
"""

from wisp.functions.builder import BuildResult, DepsLayer, build_function, check_sources, ensure_deps
from wisp.functions.project import (
    CONFIG_FILE,
    FuncConfig,
    FunctionError,
    ScaleOptions,
    load_config,
    save_config,
)
from wisp.functions.templates import TEMPLATES, create_project, render_template

__all__ = [
    "CONFIG_FILE",
    "TEMPLATES",
    "BuildResult",
    "DepsLayer",
    "FuncConfig",
    "FunctionError",
    "ScaleOptions",
    "build_function",
    "check_sources",
    "create_project",
    "ensure_deps",
    "load_config",
    "render_template",
    "save_config",
]
