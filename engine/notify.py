"""Webhook notifications: a run's end (`finished`), a run found lost and what became of it
(`lost`), and a scheduled fire time missed (`missed`), posted to the operator's URL.

The body is compact JSON (`encode`: the exact bytes posted and signed) holding the event, the
run's id, name, environment, status, message, failed phase, a link to it (under
`PROCEXEC_PUBLIC_URL`) and when it happened; with a secret, `X-Procexec-Signature:
sha256=<hex>` is the HMAC-SHA256 of those bytes. The `slack` format posts `{"text": …}`.

`Notifier.of` is None where nothing is configured, globally or in any process: the runner,
the housekeeper and the scheduler then do nothing at all for notifications. Otherwise
notifying reads nothing from the store (the caller has the run in hand) and only queues
(`engine.notify_sender`): it never blocks or fails the run.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from procexec.engine.domain import Status
from procexec.engine.notify_sender import SENDER, Delivery, Sender
from procexec.engine.notify_settings import NotifyFields
from procexec.engine.process import ProcessRegistry
from procexec.engine.timeutil import iso_ms

logger = logging.getLogger(__name__)

#: the header that carries the body's signature
SIGNATURE_HEADER = "X-Procexec-Signature"
#: where a run is read, under `PROCEXEC_PUBLIC_URL`; and a process
RUN_PATH = "/service/process-exec/v1/"
PROCESS_PATH = "/service/process/v1/"
#: the phase a run's message names as the one that failed
_FAILED_IN = re.compile(r"^(?:Failed|Timed out) in ([A-Za-z0-9_.-]+)")


@dataclass(frozen=True)
class Target:
    """Where and how one process's notifications go (global settings and its own merged)."""

    url: str
    secret: str | None
    on: str
    format: str


@dataclass(frozen=True)
class Event:
    #: `finished`, `lost` or `missed`
    kind: str
    #: the run's id (None for a missed fire time)
    id: str | None
    name: str
    environment: str | None
    status: str
    message: str
    failed_phase: str | None
    link: str | None
    at: str

    def body(self) -> dict[str, Any]:
        return {
            "event": self.kind,
            "id": self.id,
            "name": self.name,
            "environment": self.environment,
            "status": self.status,
            "message": self.message,
            "failedPhase": self.failed_phase,
            "link": self.link,
            "at": self.at,
        }


def encode(body: Mapping[str, Any]) -> bytes:
    """The body's bytes as posted and signed: compact JSON, UTF-8."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def signature(body: bytes, secret: str) -> str:
    """The `X-Procexec-Signature` of `body`: `sha256=` and its hex HMAC-SHA256 by `secret`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def slack_body(event: Event) -> dict[str, str]:
    """The Slack preset: one line of text (Slack's incoming webhooks take `{"text": …}`)."""
    mark = {"success": ":white_check_mark:", "warning": ":warning:"}.get(event.status, ":x:")
    what = {"finished": event.status, "lost": f"lost, {event.status}", "missed": "missed"}
    head = f"{mark} {event.name} ({event.environment}) {what.get(event.kind, event.kind)}"
    where = f" in {event.failed_phase}" if event.failed_phase else ""
    link = f" <{event.link}|{event.id or 'open'}>" if event.link else ""
    return {"text": f"{head}{where}: {event.message}{link}"}


def delivery(event: Event, target: Target) -> Delivery:
    """The post of `event` to `target`: its body in the target's format, signed."""
    body = encode(slack_body(event) if target.format == "slack" else event.body())
    headers = {"Content-Type": "application/json", "User-Agent": "procexec-notify"}
    if target.secret:
        headers[SIGNATURE_HEADER] = signature(body, target.secret)
    label = f"{event.kind} {event.name} {event.id or event.at}"
    return Delivery(target.url, body, headers, f"{label} ({event.status})")


def failed_phase(message: str, phases: Sequence[Mapping[str, Any]] = ()) -> str | None:
    """The phase a run failed in: the one its message names (`Failed in LOAD: …`), or the
    last of `phases` still running or failed."""
    found = _FAILED_IN.match(message)
    if found:
        return found[1]
    for phase in reversed(phases):
        if phase.get("status") in ("running", "failed"):
            return str(phase.get("name"))
    return None


class Notifier:
    def __init__(
        self,
        settings: NotifyFields,
        registry: ProcessRegistry,
        *,
        sender: Sender | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.sender = sender or SENDER

    @classmethod
    def of(
        cls, settings: NotifyFields, registry: ProcessRegistry, *, sender: Sender | None = None
    ) -> Notifier | None:
        """A notifier, or None where no URL is set, globally or by any process."""
        if settings.notify_url is None and not any(
            process.notify is not None and process.notify.url for process in registry
        ):
            return None
        return cls(settings, registry, sender=sender)

    def target(self, name: str) -> Target | None:
        """Where `name`'s notifications go; None: nowhere (no URL, or `on="off"`)."""
        process = self.registry.get(name)
        own = process.notify if process is not None else None
        glob = self.settings
        url = own.url if own and own.url else None
        if url is None and glob.notify_url is not None:
            url = glob.notify_url.get_secret_value()
        on = own.on if own and own.on else glob.notify_on
        if not url or on == "off":
            return None
        secret = own.secret if own and own.secret is not None else None
        if secret is None and glob.notify_secret is not None:
            secret = glob.notify_secret.get_secret_value()
        form = own.format if own and own.format else glob.notify_format
        return Target(url, secret, on, form)

    def _link(self, path: str) -> str | None:
        return self.settings.public_url + path if self.settings.public_url else None

    def _send(self, kind: str, doc: Mapping[str, Any], status: str, message: str) -> None:
        target = self.target(str(doc.get("name")))
        if target is None or (kind == "finished" and status != "failed" and target.on != "all"):
            return
        execution_id = str(doc["_id"])
        event = Event(
            kind=kind,
            id=execution_id,
            name=str(doc.get("name")),
            environment=doc.get("environment"),
            status=status,
            message=message,
            failed_phase=failed_phase(message, doc.get("phases") or ())
            if status == Status.FAILED.value
            else None,
            link=self._link(RUN_PATH + execution_id),
            at=iso_ms(),
        )
        self.sender.submit(delivery(event, target))

    def finished(self, doc: Mapping[str, Any], status: str, message: str) -> None:
        """A run ended with `status` (failed ones always, others when `on` is `all`)."""
        self._guarded(self._send, "finished", doc, status, message)

    def lost(self, doc: Mapping[str, Any], status: str, message: str) -> None:
        """A run found lost: resumed (`triggered` again) or failed, as `message` says."""
        self._guarded(self._send, "lost", doc, status, message)

    def missed(self, name: str, environment: str, message: str) -> None:
        """Fire times of `name` missed (skipped while the scheduler was away)."""
        self._guarded(self._missed, name, environment, message)

    def _missed(self, name: str, environment: str, message: str) -> None:
        target = self.target(name)
        if target is None:
            return
        link = self._link(PROCESS_PATH + name)
        event = Event("missed", None, name, environment, "missed", message, None, link, iso_ms())
        self.sender.submit(delivery(event, target))

    def _guarded(self, call: Any, *args: Any) -> None:
        """A notification never fails what it tells of."""
        try:
            call(*args)
        except Exception:
            logger.exception("a notification was not queued")
