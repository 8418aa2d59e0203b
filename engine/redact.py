"""Secrets kept out of what procexec shows: the passwords of URLs and API tokens, masked in
banners, logs, error texts and answers by one helper (`mask_secrets`), and in every log record
by `RedactingFilter` (`redact_logging` puts it on every handler there is)."""

from __future__ import annotations

import logging
import re
from typing import Any

#: a URL's `user:password@` (the password up to the last `@` before a blank or a `/`, since a
#: password may hold an unescaped `@`)
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):[^\s/]*@")
#: an API token (`engine.tokens.PREFIX` and its random part)
_TOKEN = re.compile(r"\bpe_[A-Za-z0-9_-]{16,}")
#: what a password or token is shown as
MASK = "***"


def masked_url(url: str) -> str:
    """`url` with the password of its `user:password@` hidden (`user:***@`), to be shown."""
    scheme, separator, rest = url.partition("://")
    if not separator or "@" not in rest:
        return url
    userinfo, _, hosts = rest.rpartition("@")  # a password may hold an unescaped `@`
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{colon and ':' + MASK}@{hosts}"


def mask_secrets(text: str) -> str:
    """`text` with the password of every URL in it (`scheme://user:password@`) and every API
    token (`pe_…`) masked."""
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda found: f"{found['head']}:{MASK}@", text)
    if "pe_" in text:
        text = _TOKEN.sub("pe_" + MASK, text)
    return text


def _masked(value: Any) -> Any:
    """A log record's argument, masked: a string, or what another object reads as (an
    exception's text, say) when that holds a secret."""
    if isinstance(value, str):
        return mask_secrets(value)
    if value is None or isinstance(value, int | float):
        return value
    text = str(value)
    masked = mask_secrets(text)
    return value if masked == text else masked


class RedactingFilter(logging.Filter):
    """Masks secrets (`mask_secrets`) in a log record: its message, its arguments (kept as
    arguments: uvicorn's access log unpacks them) and its exception's text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask_secrets(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_masked(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _masked(value) for key, value in record.args.items()}
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        return True


def redact_logging() -> None:
    """Put a `RedactingFilter` on every handler of every logger there is now (once each): the
    root's, uvicorn's, Celery's. Call it again once a library has set up its own handlers."""
    loggers = [logging.getLogger()]
    loggers += [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
