"""procexec's settings, read from the environment: their variables, defaults and checks."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: the environment variables of the settings
ENV_DATA_DIR = "PROCEXEC_DATA_DIR"
ENV_STORE_URL = "PROCEXEC_STORE_URL"
ENV_BROKER_URL = "PROCEXEC_BROKER_URL"
ENV_PROCESSES = "PROCEXEC_PROCESSES"
ENV_EXAMPLES = "PROCEXEC_EXAMPLES"
ENV_LOG_FLUSH_INTERVAL = "PROCEXEC_LOG_FLUSH_INTERVAL"
ENV_LOST_RUN_TIMEOUT = "PROCEXEC_LOST_RUN_TIMEOUT"
ENV_REDISPATCH_AFTER = "PROCEXEC_REDISPATCH_AFTER"
ENV_MAX_LOG_LINES = "PROCEXEC_MAX_LOG_LINES"
ENV_READ_TIMEOUT = "PROCEXEC_READ_TIMEOUT_SECONDS"
ENV_RETENTION_DAYS = "PROCEXEC_RETENTION_DAYS"

DEFAULT_DATA_DIR = ".procexec"
#: seconds between two flushes of buffered log lines to the store
DEFAULT_LOG_FLUSH_INTERVAL = 0.25
#: seconds without a heartbeat after which a run's worker is taken for dead
DEFAULT_LOST_RUN_TIMEOUT = 60.0
#: seconds after which a run still `triggered` is sent to the workers again
DEFAULT_REDISPATCH_AFTER = 60.0
#: log lines kept per phase (first half and latest lines, with a marker between)
DEFAULT_MAX_LOG_LINES = 1000
#: seconds an API read (a list call, one execution) may run before it is stopped with a 503
DEFAULT_READ_TIMEOUT = 10.0
#: days a finished run is kept after it ended (0: for ever)
DEFAULT_RETENTION_DAYS = 0.0

_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    store_url: str
    #: None means the embedded transport (kombu's filesystem transport under `data_dir`)
    broker_url: str | None
    process_modules: tuple[str, ...] = ()
    examples: bool = True
    log_flush_interval: float = DEFAULT_LOG_FLUSH_INTERVAL
    lost_run_timeout: float = DEFAULT_LOST_RUN_TIMEOUT
    redispatch_after: float = DEFAULT_REDISPATCH_AFTER
    max_log_lines: int = DEFAULT_MAX_LOG_LINES
    #: seconds an API read may run before it is stopped (a 503); None: no limit
    read_timeout: float | None = DEFAULT_READ_TIMEOUT
    #: days a finished run is kept after it ended; 0: for ever
    retention_days: float = DEFAULT_RETENTION_DAYS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        data_dir = Path(env.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR).absolute()
        store_url = env.get(ENV_STORE_URL) or f"sqlite:///{data_dir / 'procexec.db'}"
        modules = tuple(
            name.strip() for name in env.get(ENV_PROCESSES, "").split(",") if name.strip()
        )
        return cls(
            data_dir=data_dir,
            store_url=store_url,
            broker_url=env.get(ENV_BROKER_URL) or None,
            process_modules=modules,
            examples=env.get(ENV_EXAMPLES, "true").strip().lower() not in _FALSE,
            log_flush_interval=_number(env, ENV_LOG_FLUSH_INTERVAL, DEFAULT_LOG_FLUSH_INTERVAL),
            lost_run_timeout=_number(env, ENV_LOST_RUN_TIMEOUT, DEFAULT_LOST_RUN_TIMEOUT),
            redispatch_after=_number(env, ENV_REDISPATCH_AFTER, DEFAULT_REDISPATCH_AFTER),
            max_log_lines=int(_number(env, ENV_MAX_LOG_LINES, DEFAULT_MAX_LOG_LINES, 10)),
            read_timeout=_limit(env, ENV_READ_TIMEOUT, DEFAULT_READ_TIMEOUT),
            retention_days=_number(env, ENV_RETENTION_DAYS, DEFAULT_RETENTION_DAYS, 0),
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
