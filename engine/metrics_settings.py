"""What the metrics are set to (`MetricsFields`: `PROCEXEC_METRICS_TOKEN`,
`PROCEXEC_METRICS_PORT` and `PROCEXEC_BEAT_METRICS_PORT`, fields of
`engine.settings.Settings`): whether the API's `/metrics` asks for a token, and the ports a
worker and the beat serve their own figures on (docs/operations.md, "Metrics")."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, SecretStr, field_validator


class MetricsFields(BaseModel):
    """The metrics settings, fields of `engine.settings.Settings`."""

    metrics_token: SecretStr | None = Field(
        None,
        description="the bearer token `/metrics` asks for; unset: it answers without one "
        "(masked wherever shown)",
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="the port a worker serves its own metrics on (phase durations, runs "
        "ended, webhook deliveries); unset: none",
    )
    beat_metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="the port the beat serves its own metrics on (fires, lost runs, triggers "
        "sent again); unset: none",
    )

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _token(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return SecretStr(value.strip()) if isinstance(value, str) else value

    @field_validator("metrics_port", "beat_metrics_port", mode="before")
    @classmethod
    def _port(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value
