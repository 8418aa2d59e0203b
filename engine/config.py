"""Settings read from the environment, and the process registry they describe."""

from __future__ import annotations

import importlib
import importlib.metadata
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from procexec.engine import constants as c
from procexec.engine.process import ProcessRegistry

#: the entry-point group through which installed packages offer processes: each entry names a
#: module whose top level defines them
PLUGIN_GROUP = "procexec.processes"
#: the plugin that `PROCEXEC_EXAMPLES` turns on and off (procexec's own wheel offers it)
EXAMPLES_PLUGIN = "examples"

_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    store_url: str
    #: None means the embedded transport (kombu's filesystem transport under `data_dir`)
    broker_url: str | None
    process_modules: tuple[str, ...] = ()
    examples: bool = True
    log_flush_interval: float = c.DEFAULT_LOG_FLUSH_INTERVAL
    lost_run_timeout: float = c.DEFAULT_LOST_RUN_TIMEOUT
    redispatch_after: float = c.DEFAULT_REDISPATCH_AFTER
    max_log_lines: int = c.DEFAULT_MAX_LOG_LINES
    #: seconds an API read may run before it is stopped (a 503); None: no limit
    read_timeout: float | None = c.DEFAULT_READ_TIMEOUT

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        data_dir = Path(env.get(c.ENV_DATA_DIR) or c.DEFAULT_DATA_DIR).absolute()
        store_url = env.get(c.ENV_STORE_URL) or f"sqlite:///{data_dir / 'procexec.db'}"
        modules = tuple(
            name.strip() for name in env.get(c.ENV_PROCESSES, "").split(",") if name.strip()
        )
        return cls(
            data_dir=data_dir,
            store_url=store_url,
            broker_url=env.get(c.ENV_BROKER_URL) or None,
            process_modules=modules,
            examples=env.get(c.ENV_EXAMPLES, "true").strip().lower() not in _FALSE,
            log_flush_interval=_number(env, c.ENV_LOG_FLUSH_INTERVAL, c.DEFAULT_LOG_FLUSH_INTERVAL),
            lost_run_timeout=_number(env, c.ENV_LOST_RUN_TIMEOUT, c.DEFAULT_LOST_RUN_TIMEOUT),
            redispatch_after=_number(env, c.ENV_REDISPATCH_AFTER, c.DEFAULT_REDISPATCH_AFTER),
            max_log_lines=int(_number(env, c.ENV_MAX_LOG_LINES, c.DEFAULT_MAX_LOG_LINES, 10)),
            read_timeout=_limit(env, c.ENV_READ_TIMEOUT, c.DEFAULT_READ_TIMEOUT),
        )

    @property
    def heartbeat_interval(self) -> float:
        """How often a running run tells the store its worker is alive."""
        return max(0.2, min(5.0, self.lost_run_timeout / 6))

    @property
    def broker_kind(self) -> str:
        if self.broker_url is None:
            return "embedded"
        return self.broker_url.split("://", 1)[0]

    @property
    def store_kind(self) -> str:
        return "sqlite" if self.store_url.startswith("sqlite") else "mongodb"


def _number(env: Mapping[str, str], name: str, default: float, minimum: float = 0.01) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}: '{raw}' is not a number") from None
    if value < minimum:
        raise ValueError(f"{name}: must be at least {minimum:g}")
    return value


def _limit(env: Mapping[str, str], name: str, default: float) -> float | None:
    """A time limit in seconds: unset or blank is `default`, zero or less (or `inf`) none."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if math.isnan(value):
        raise ValueError(f"{name}: '{raw}' is not a number of seconds (0 or less: no limit)")
    return value if 0 < value < math.inf else None


def load_registry(settings: Settings) -> ProcessRegistry:
    """The processes of the installed plugins (the examples unless turned off), then those of
    the configured modules."""
    registry = ProcessRegistry()
    plugins = sorted(importlib.metadata.entry_points(group=PLUGIN_GROUP), key=lambda e: e.name)
    for entry in plugins:
        if entry.name == EXAMPLES_PLUGIN and not settings.examples:
            continue
        try:
            module = entry.load()
        except ImportError as exc:
            raise RuntimeError(
                f"processes plugin {entry.name!r} ({entry.value}) cannot be imported: {exc}"
            ) from exc
        if registry.add_module(module) == 0:
            raise RuntimeError(f"processes plugin {entry.name!r} ({entry.value}) defines none")
    for name in settings.process_modules:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise RuntimeError(f"{c.ENV_PROCESSES}: cannot import module {name!r}: {exc}") from exc
        if registry.add_module(module) == 0:
            raise RuntimeError(f"{c.ENV_PROCESSES}: module {name!r} defines no Process")
    return registry
