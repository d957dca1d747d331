"""Logs: one JSON object per line (structlog rendering every stdlib record, uvicorn's included), each
carrying the request id of the request it was written under.

- `configure_logging()` (the `sharecart` command runs it first): SHARECART_LOG_FORMAT json|text,
  SHARECART_LOG_LEVEL. Records keep their logger name, level, ISO-8601 UTC timestamp, the message as
  `event`, any `extra={...}` keys, and a traceback as one `exception` string (still one line).
- The request id: `X-Request-Id` from the caller when it is a sane token (1–128 of A-Z a-z 0-9 . _ : -),
  else a fresh uuid4 hex; bound in a context variable for everything logged while the request runs, and
  echoed in the response's `X-Request-Id` (api.ops.Operations does both).
"""

from __future__ import annotations

import logging
import re
import sys
import uuid

import structlog

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _drop_color(_logger, _name, event: dict) -> dict:
    event.pop("color_message", None)  # uvicorn's ANSI copy of the message
    return event


_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def request_id_from(value: bytes | None) -> str:
    if value:
        try:
            text = value.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        if REQUEST_ID.match(text):
            return text
    return uuid.uuid4().hex


def formatter(fmt: str = "json") -> logging.Formatter:
    renderer = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.processors.KeyValueRenderer(
            key_order=["timestamp", "level", "logger", "event", "request_id"], drop_missing=True
        )
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED, structlog.stdlib.ExtraAdder(), _drop_color],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )


def configure_logging(stream=None) -> None:
    """Route every logger (ours, uvicorn's, SQLAlchemy's) through one handler in the configured format."""
    from service.settings import settings

    conf = settings()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(conf.log_format))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(conf.log_level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers, logger.propagate = [], True
    # api.ops writes the one access line of a request (with its request id and duration); uvicorn's own would
    # be a second line per request, and it is written whenever this logger has a handler, root's included
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers, uvicorn_access.propagate = [], False
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # a line per plugin at every start
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
