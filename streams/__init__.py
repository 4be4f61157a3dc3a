"""The stream registry: ``streams.get(name)``, ``streams.names()``.

The two built-in streams register on import.  Other streams are plugins: a distribution
that declares an entry point in the group ``sensor_ssl.streams`` whose value is the
stream's :class:`~streams.base.StreamTask` object, e.g. in its ``pyproject.toml``::

    [project.entry-points."sensor_ssl.streams"]
    toy = "my_package.toy_stream:TASK"

The registry loads every such entry point the first time it is asked for a stream, so
every CLI, the dashboard and the config loader then know the plugin by name (see
``tests/test_toy_stream.py`` for a whole stream in one file).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from core.config import StreamConfig, apply_overrides, read_yaml, validate_config
from core.errors import ConfigError
from core.paths import display_path, resolve_path
from streams.base import StreamTask

ENTRY_POINT_GROUP = "sensor_ssl.streams"
_REGISTRY: dict[str, StreamTask] = {}
_plugins_loaded = False


def register(task: StreamTask) -> StreamTask:
    """Add a stream; a second stream under the same name is a programming error."""
    known = _REGISTRY.get(task.name)
    if known is not None and known is not task:
        raise ValueError(f"stream {task.name!r} is already registered")
    _REGISTRY[task.name] = task
    return task


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        task = entry.load()
        if getattr(task, "name", None) != entry.name:
            raise ValueError(f"entry point {entry.name} = {entry.value}: expected a stream "
                             f"task named {entry.name!r}")
        register(task)


def names() -> tuple[str, ...]:
    """Registered stream names: built-ins first, then plugins in registration order."""
    _load_plugins()
    return tuple(_REGISTRY)


def tasks() -> tuple[StreamTask, ...]:
    _load_plugins()
    return tuple(_REGISTRY.values())


def get(name: str) -> StreamTask:
    _load_plugins()
    task = _REGISTRY.get(name)
    if task is None:
        raise ConfigError(f"stream: must be one of {', '.join(_REGISTRY)}, got {name!r}")
    return task


# --------------------------------------------------------------------------- configs
def config_from_dict(
    raw: dict[str, Any], stream: str | None = None, source: str = "<config>"
) -> StreamConfig:
    """Validate a raw mapping into its stream's config class (``stream:`` picks it)."""
    if not isinstance(raw, dict):
        kind = type(raw).__name__
        raise ConfigError(f"{source}: expected a mapping at the top level, got {kind}")
    declared = raw.get("stream", stream)
    if stream is not None and declared != stream:
        raise ConfigError(f"{source}: stream: expected {stream!r}, got {declared!r}")
    try:
        task = get(declared)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return validate_config(task.config_class, raw, source)


def load_config(
    path: str | Path, overrides: Iterable[str] = (), stream: str | None = None
) -> StreamConfig:
    """Load, override and validate a config file (path relative to the repository root)."""
    raw = apply_overrides(read_yaml(path), overrides)
    return config_from_dict(raw, stream=stream, source=display_path(resolve_path(path)))


def load_stream_configs(paths: dict[str, str], root: Path | None = None) -> dict[str, StreamConfig]:
    """Stream name -> validated config, each path relative to ``root`` (the repository)."""
    return {name: load_config(resolve_path(path, root), stream=name)
            for name, path in paths.items()}


def config_from_args(args: argparse.Namespace, stream: str | None = None) -> StreamConfig:
    return load_config(args.config, args.overrides, stream=stream)


def stream_of(path: str | Path) -> str:
    """The ``stream:`` a config file declares (ConfigError when it names none)."""
    raw = read_yaml(path)
    name = raw.get("stream") if isinstance(raw, dict) else None
    if not isinstance(name, str):
        raise ConfigError(f"{display_path(resolve_path(path))}: stream: missing")
    get(name)
    return name


def build_model(cfg: StreamConfig, model_meta: dict[str, Any] | None = None) -> Any:
    """A fresh model for ``cfg`` (its stream's model args); training and benchmarks."""
    task = get(cfg.stream)
    return task.build_model(task.model_args(cfg), model_meta or {})


# --------------------------------------------------------------------------- pipelines' CLI
def add_stream_config_args(parser: argparse.ArgumentParser) -> None:
    """``--<flag>-config`` per registered stream, plus ``--stream-config`` for any stream."""
    for task in tasks():
        parser.add_argument(f"--{task.cli_flag}-config", dest=f"config_{task.name}",
                            default=task.local_config,
                            help=f"{task.title} config (default: {task.local_config})")
    parser.add_argument("--stream-config", action="append", default=[], metavar="CONFIG",
                        help="only the streams of these configs (any registered stream; its "
                        "'stream:' key names it); repeatable")


def stream_config_paths(args: argparse.Namespace, root: Path | None = None) -> dict[str, str]:
    """Stream name -> config path from :func:`add_stream_config_args` options: the
    ``--stream-config`` files when any is given, else one config per registered stream."""
    if args.stream_config:
        return {stream_of(resolve_path(path, root)): path for path in args.stream_config}
    return {task.name: getattr(args, f"config_{task.name}") for task in tasks()}


def local_config_paths() -> dict[str, str]:
    """The configs ``make run`` trains with, per stream (pipelines' defaults)."""
    return {task.name: task.local_config for task in tasks()}


from streams import patchtst as _patchtst  # noqa: E402  (built-ins register on import)
from streams import swinmae as _swinmae  # noqa: E402

register(_patchtst.TASK)
register(_swinmae.TASK)

__all__ = [
    "ENTRY_POINT_GROUP", "add_stream_config_args", "build_model", "config_from_args",
    "config_from_dict", "get", "load_config", "load_stream_configs", "local_config_paths",
    "names", "register", "stream_config_paths", "stream_of", "tasks",
]
del _patchtst, _swinmae
