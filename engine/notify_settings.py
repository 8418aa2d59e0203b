"""What notifications are set to: the global settings (`NotifyFields`: `PROCEXEC_NOTIFY_URL`,
`PROCEXEC_NOTIFY_SECRET`, `PROCEXEC_NOTIFY_ON`, `PROCEXEC_NOTIFY_FORMAT` and
`PROCEXEC_PUBLIC_URL`, fields of `engine.settings.Settings`) and a process's own (`Notify`, its
definition's `notify=`).

The webhook's URL and secret are the operator's: the URL is trusted (no fetch allow-list holds
it), and neither is ever shown: both are `SecretStr` in the settings (their repr is masked),
and what is shown of a URL is its scheme and host alone (`shown_url`: no credentials, no path,
no query, where a Slack webhook keeps its secret).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator

#: when a process's runs are notified: `failed` runs only, `all` finished runs, or `off`
NotifyOn = Literal["failed", "all", "off"]
NOTIFY_ON = ("failed", "all")
#: how a notification's body is written: procexec's JSON, or Slack's `{"text": …}`
NotifyFormat = Literal["json", "slack"]
NOTIFY_FORMATS = ("json", "slack")


def shown_url(url: str) -> str:
    """What may be shown of a webhook's URL: its scheme and host (and port), `/…` standing
    for the rest (credentials, path and query are left out: they may hold secrets)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(a URL that cannot be read)"
    host = f"[{host}]" if ":" in host else host
    rest = "/…" if (parts.path not in ("", "/") or parts.query or parts.username) else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def check_url(url: str, owner: str) -> str:
    """`url` if it is an http(s) URL with a host; a `ValueError` naming `owner` otherwise."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is no number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{owner}: '{shown_url(url)}' is no http:// or https:// URL")
    return url


def _choice(value: str, choices: tuple[str, ...], owner: str) -> str:
    text = value.strip().lower()
    if text not in choices:
        raise ValueError(f"{owner}: '{value}' is none of {', '.join(choices)}")
    return text


@dataclass(frozen=True, repr=False)
class Notify:
    """A process's own notifications; each field left None takes the global setting's.

    ```python
    NIGHTLY = Process("NIGHTLY", notify=Notify(on="all"))  # its successes too
    NOISY = Process("NOISY", notify=Notify(on="off"))  # never notified
    ```
    """

    #: the webhook (http or https); None: `PROCEXEC_NOTIFY_URL`
    url: str | None = None
    #: the signing secret; None: `PROCEXEC_NOTIFY_SECRET`
    secret: str | None = None
    #: `failed`, `all` or `off`; None: `PROCEXEC_NOTIFY_ON`
    on: NotifyOn | None = None
    #: `json` or `slack`; None: `PROCEXEC_NOTIFY_FORMAT`
    format: NotifyFormat | None = None

    def __post_init__(self) -> None:
        if self.url is not None:
            check_url(self.url, "notify.url")
        if self.on is not None:
            _choice(self.on, (*NOTIFY_ON, "off"), "notify.on")
        if self.format is not None:
            _choice(self.format, NOTIFY_FORMATS, "notify.format")

    def __repr__(self) -> str:
        url = None if self.url is None else shown_url(self.url)
        secret = None if self.secret is None else "***"
        return f"Notify(url={url!r}, secret={secret!r}, on={self.on!r}, format={self.format!r})"


class NotifyFields(BaseModel):
    """The notification settings, fields of `engine.settings.Settings`."""

    notify_url: SecretStr | None = Field(
        None,
        description="the webhook (http or https) that finished, lost and missed runs are "
        "posted to; unset: no notifications but a process's own (masked wherever shown)",
    )
    notify_secret: SecretStr | None = Field(
        None,
        description="the key of the body's HMAC-SHA256 signature (`X-Procexec-Signature`); "
        "unset: not signed (masked wherever shown)",
    )
    notify_on: Literal["failed", "all"] = Field(
        "failed", description="the finished runs notified: `failed`, or `all`"
    )
    notify_format: Literal["json", "slack"] = Field(
        "json", description="the body: procexec's `json`, or `slack` (one `text` field)"
    )
    public_url: str = Field(
        "",
        description="the API's address as its users reach it (`https://host`), to link a "
        "notification to its run; unset: no link",
    )

    @field_validator("notify_url", "notify_secret", mode="before")
    @classmethod
    def _secret(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if info.field_name == "notify_url" and isinstance(value, str):
            check_url(value.strip(), "PROCEXEC_NOTIFY_URL")
        return SecretStr(value.strip()) if isinstance(value, str) else value

    @field_validator("notify_on", "notify_format", mode="before")
    @classmethod
    def _word(cls, value: Any, info: ValidationInfo) -> Any:
        name = str(info.field_name)
        if not isinstance(value, str):
            return value
        if not value.strip():
            return cls.model_fields[name].default
        choices = NOTIFY_ON if name == "notify_on" else NOTIFY_FORMATS
        return _choice(value, choices, f"PROCEXEC_{name.upper()}")

    @field_validator("public_url", mode="before")
    @classmethod
    def _public(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            return "" if isinstance(value, str) else value
        return check_url(value.strip(), "PROCEXEC_PUBLIC_URL").rstrip("/")
