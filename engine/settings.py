"""procexec's settings, in one place: each a field of `Settings`, read from its `PROCEXEC_*`
environment variable, with its default, its description and its checks.

`Settings.from_env()` reads them from the environment (or, given one, from a mapping alone);
a value procexec cannot use is a `SettingsError` whose one line names the variable and the
value, and so is a `PROCEXEC_*` variable that no one reads (`Settings.known`: the fields'
variables, which every new field joins, and `OTHER_VARIABLES`), named with the closest known
one: a misspelt setting is not left to fall back silently on its default. docs/operations.md's
settings table documents every field (tests/test_settings_documented.py holds it so).
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, TypeAdapter, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from procexec.engine.answers import DEFAULT_MAX_ANSWER_BYTES
from procexec.engine.log_format import LogFields
from procexec.engine.metrics_settings import MetricsFields
from procexec.engine.notify_settings import NotifyFields
from procexec.engine.redact import masked_url
from procexec.engine.settings_errors import validation_message

#: what every setting's variable starts with
ENV_PREFIX = "PROCEXEC_"

#: the `PROCEXEC_*` names that are no setting of the service yet no mistake either: the
#: client's variables (the docs' examples and the SDK read them), the image's build argument,
#: and (ending in `*`) the prefixes of the test suite's own variables
OTHER_VARIABLES = (
    "PROCEXEC_URL",
    "PROCEXEC_TOKEN",
    "PROCEXEC_UID",
    "PROCEXEC_TEST_*",
    "PROCEXEC_REQUIRE_*",
)
#: what a store URL starts with (`engine.store.open_store` opens these)
STORE_SCHEMES = ("sqlite://", "mongodb://", "mongodb+srv://")
#: pydantic's reading of a yes/no value (true/false, yes/no, on/off, 1/0, any case)
_BOOLEAN = TypeAdapter(bool)
#: a host name entry of `fetch_allow`: `*`, `*.example.com` or `example.com` (not all digits
#: and dots, which is an address)
_HOST_ENTRY = re.compile(
    r"^(\*|(\*\.)?(?![0-9.]+$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*)$"
)


class SettingsError(ValueError):
    """A setting's variable holds a value procexec cannot use; the message, one line, names
    the variable and the value."""


class Settings(NotifyFields, MetricsFields, LogFields, BaseSettings):
    """procexec's settings. Immutable and hashable (a cache key); `from_env()` reads them."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        # a field read from a variable of its own name (`validation_alias`) is still built by
        # its field name in code: `Settings(read_timeout=None)`
        populate_by_name=True,
    )

    data_dir: Path = Field(
        Path(".procexec"),
        description="the embedded store's file and the embedded broker's folders",
        validate_default=True,
    )
    store_url: str = Field(
        "",
        description="`sqlite:///path` or `mongodb://host/db`; unset: SQLite in the data folder",
        validate_default=True,
    )
    broker_url: str | None = Field(
        None,
        description="the Celery broker; unset (None): the embedded one, kombu's filesystem "
        "transport under the data folder",
    )
    process_modules: tuple[str, ...] = Field(
        (),
        validation_alias="PROCEXEC_PROCESSES",
        description="modules that define processes, comma separated",
    )
    examples: bool = Field(True, description="whether the bundled example processes are loaded")
    fetch_allow: tuple[str, ...] = Field(
        ("www.ecb.europa.eu",),
        validation_alias="PROCEXEC_FETCH_ALLOW",
        description="the hosts the bundled ECB_FX may fetch over http(s), comma separated: "
        "host names (`*.example.com`: its subdomains, `*`: any name), IP addresses and CIDR "
        "networks; loopback, private, link-local, multicast and reserved addresses are refused "
        "unless an address or network entry holds them",
    )
    log_flush_interval: float = Field(
        0.05, description="seconds between two flushes of buffered log lines to the store"
    )
    lost_run_timeout: float = Field(
        60.0, description="seconds without a heartbeat after which a run's worker is taken for dead"
    )
    redispatch_after: float = Field(
        60.0, description="seconds after which a run still `triggered` is sent to the workers again"
    )
    max_log_lines: int = Field(
        1000,
        description="log lines kept per phase (first half and latest lines, with a marker "
        "between); at least 10",
    )
    read_timeout: float | None = Field(
        10.0,
        validation_alias="PROCEXEC_READ_TIMEOUT_SECONDS",
        description="seconds an API read (a list call, one execution) may run before it is "
        "stopped with a 503; None (0 or less, or inf, in the variable): no limit",
    )
    header_timeout: float = Field(
        10.0,
        validation_alias="PROCEXEC_HEADER_TIMEOUT_SECONDS",
        description="seconds a client has to send a request's line and headers, from its "
        "connection or the end of its previous answer; then the connection is closed",
    )
    max_connections_per_client: int = Field(
        64,
        description="open connections to one API process from one client address; past it a "
        "new one is answered 503 and closed; 0: no limit",
    )
    max_connections: int = Field(
        1000,
        description="open connections to one API process in all (held under the open-files "
        "limit); past it the connection that has waited longest for its request's head is "
        "closed, or, none waiting, the new one is answered 503; 0: only the open-files limit",
    )
    max_answer_bytes: int = Field(
        DEFAULT_MAX_ANSWER_BYTES,
        description="bytes one API answer may hold (any format; `_distinct`, `_fieldinfo`, "
        "`_aggregate`, one execution), counted as it is read; past it a 400; at least 1024",
    )
    loader_queue: str = Field(
        "loader",
        description="the Celery queue SEND hands a batch to, where LOAD runs; empty: no hand-off",
    )
    retention_days: float = Field(
        0.0,
        description="finished runs older than this many days are deleted; 0: kept for ever",
    )
    max_running: int = Field(
        0,
        description="runs running at once over every process and environment, across every "
        "worker and host; past it a run waits `triggered` for a slot; 0: no limit",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what the caller gives: `from_env` hands over the variables of its mapping (the
        environment's, or a test's), so that a mapping given is read alone, through the same
        checks as the environment; `Settings(...)` built in code is the defaults and its
        arguments, whatever the environment holds."""
        return (init_settings,)

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable of a field: its own name (`validation_alias`) or the
        prefix and the field's name in capitals."""
        alias = cls.model_fields[field].validation_alias
        return alias if isinstance(alias, str) else ENV_PREFIX + field.upper()

    @classmethod
    def variables(cls) -> tuple[str, ...]:
        """Every field's variable."""
        return tuple(cls.env_name(field) for field in cls.model_fields)

    @classmethod
    def known(cls, variable: str) -> bool:
        """Whether `variable` is a field's or one of `OTHER_VARIABLES` (by name or prefix)."""
        if variable in cls.variables():
            return True
        return any(
            variable.startswith(other[:-1]) if other.endswith("*") else variable == other
            for other in OTHER_VARIABLES
        )

    @classmethod
    def unknown(cls, env: Mapping[str, str]) -> list[str]:
        """A line for each `PROCEXEC_*` variable of `env` that is not `known`, naming the
        closest known one."""
        names = [*cls.variables(), *(o for o in OTHER_VARIABLES if not o.endswith("*"))]
        # compared without the prefix, which every name shares
        suffixes = {name.removeprefix(ENV_PREFIX): name for name in names}
        lines = []
        for variable in sorted(env):
            if not variable.startswith(ENV_PREFIX) or cls.known(variable):
                continue
            suffix = variable.removeprefix(ENV_PREFIX)
            closest = difflib.get_close_matches(suffix, suffixes, n=1, cutoff=0.6)
            hint = f" (did you mean {suffixes[closest[0]]}?)" if closest else ""
            lines.append(f"unknown setting {variable}{hint}")
        return lines

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings of `env`'s variables (the environment's by default; a mapping given is
        read alone). A value that cannot be used, or a `PROCEXEC_*` variable that is not
        `known`, is a `SettingsError`."""
        env = os.environ if env is None else env
        if unknown := cls.unknown(env):
            raise SettingsError("; ".join(unknown))
        given: dict[str, Any] = {}
        for name in cls.model_fields:
            variable = cls.env_name(name)
            if variable in env:
                given[name] = env[variable]
        try:
            return cls(**given)
        except ValidationError as exc:
            raise SettingsError(validation_message(cls.model_fields, cls.env_name, exc)) from None

    # -- the checks, each given the variable's text or a value built in code ------------------

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            value = cls.model_fields["data_dir"].default
        return Path(value).absolute() if isinstance(value, str | Path) else value

    @field_validator("store_url", mode="before")
    @classmethod
    def _store_url(cls, value: Any, info: ValidationInfo) -> Any:
        blank = isinstance(value, str) and not value.strip()
        if blank and isinstance(data_dir := info.data.get("data_dir"), Path):
            return f"sqlite:///{data_dir / 'procexec.db'}"
        if isinstance(value, str) and not value.startswith(STORE_SCHEMES):
            raise ValueError(
                f"{cls.env_name(_field(info))}: '{masked_url(value)}' is no store URL procexec "
                "takes: use sqlite:///… or mongodb://…"
            )
        return value

    @field_validator("broker_url", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("process_modules", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @field_validator("fetch_allow", mode="before")
    @classmethod
    def _hosts(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            value = [entry for entry in value.split(",") if entry.strip()]
        if not isinstance(value, list | tuple):
            return value
        entries = []
        for entry in value:
            text = str(entry).strip().lower()
            if not _HOST_ENTRY.match(text):
                try:
                    text = str(ipaddress.ip_network(text.strip("[]"), strict=False))
                except ValueError:
                    raise ValueError(
                        f"{cls.env_name(_field(info))}: '{entry}' is neither a host name "
                        "(`*.example.com`, `*`) nor an IP address or network"
                    ) from None
            entries.append(text)
        return tuple(entries)

    @field_validator("examples", mode="before")
    @classmethod
    def _yes_or_no(cls, value: Any, info: ValidationInfo) -> Any:
        """pydantic's spellings of yes and no, in any case; blank is the default."""
        if not isinstance(value, str):
            return value
        name = _field(info)
        if not value.strip():
            return cls.model_fields[name].default
        try:
            return _BOOLEAN.validate_python(value.strip())
        except ValidationError:
            raise ValueError(
                f"{cls.env_name(name)}: '{value}' is neither true nor false "
                "(true/false, yes/no, on/off, 1/0)"
            ) from None

    @field_validator(
        "log_flush_interval",
        "lost_run_timeout",
        "redispatch_after",
        "header_timeout",
        mode="before",
    )
    @classmethod
    def _seconds(cls, value: Any, info: ValidationInfo) -> Any:
        return _number(cls, info, value, minimum=0.01)

    @field_validator("max_log_lines", mode="before")
    @classmethod
    def _lines(cls, value: Any, info: ValidationInfo) -> Any:
        return int(_number(cls, info, value, minimum=10))

    @field_validator(
        "max_connections_per_client",
        "max_connections",
        "max_answer_bytes",
        "max_running",
        mode="before",
    )
    @classmethod
    def _count(cls, value: Any, info: ValidationInfo) -> Any:
        number = _number(cls, info, value, minimum=1024 * (_field(info) == "max_answer_bytes"))
        if number != int(number):
            raise ValueError(f"{cls.env_name(_field(info))}: '{value}' is not a whole number")
        return int(number)

    @field_validator("retention_days", mode="before")
    @classmethod
    def _days(cls, value: Any, info: ValidationInfo) -> Any:
        return _number(cls, info, value, minimum=0)

    @field_validator("read_timeout", mode="before")
    @classmethod
    def _limit(cls, value: Any, info: ValidationInfo) -> Any:
        """A time limit in seconds: blank is the default; zero or less, or `inf`, no limit."""
        if value is None:
            return None
        name = _field(info)
        if isinstance(value, str) and not value.strip():
            return cls.model_fields[name].default
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = math.nan
        if math.isnan(seconds):
            raise ValueError(
                f"{cls.env_name(name)}: '{value}' is not a number of seconds (0 or less: no limit)"
            )
        return seconds if 0 < seconds < math.inf else None

    @field_validator("loader_queue", mode="before")
    @classmethod
    def _stripped(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    # -- what the settings imply ----------------------------------------------------------------

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


def _field(info: ValidationInfo) -> str:
    assert info.field_name is not None  # a field validator's
    return info.field_name


def _number(cls: type[Settings], info: ValidationInfo, value: Any, minimum: float) -> float:
    """A number of at least `minimum`; blank text is the field's default."""
    name = _field(info)
    if isinstance(value, str) and not value.strip():
        return float(cls.model_fields[name].default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if math.isnan(number):
        raise ValueError(f"{cls.env_name(name)}: '{value}' is not a number")
    if number < minimum:
        raise ValueError(f"{cls.env_name(name)}: '{value}' must be at least {minimum:g}")
    return number
