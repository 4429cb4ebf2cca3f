"""Logging for a node: structlog to one stream, as JSON lines for a log collector or as a console view for a
person, with the standard library's records (asyncio's warnings, say) rendered the same way to the same stream.

Levels are filtered by ``make_filtering_bound_logger``, whose disabled methods return at once: a ``log.debug``
on a hot path costs one call when debug is off, and its arguments are never formatted.
"""

import logging
import sys
from typing import TextIO

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
FORMATS = ("auto", "json", "console")


def configure_logging(level: str = "info", format: str = "auto", stream: TextIO = sys.stderr) -> None:
    """Send every log record at ``level`` or above to ``stream``: JSON lines (``timestamp``, ``level``,
    ``event``, then the record's own keys) or the console renderer; ``auto`` picks the console on a terminal and
    JSON otherwise (a pipe, a file, journald)."""
    number = LEVELS.get(level.lower()) if isinstance(level, str) else None
    if number is None:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    if format not in FORMATS:
        raise ValueError(f"log format {format!r} is not one of {', '.join(FORMATS)}")
    tty = _isatty(stream)
    if format == "auto":
        format = "console" if tty else "json"
    if format == "json":
        # Tracebacks become a string field, so one record stays one line.
        render = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        render = [structlog.dev.ConsoleRenderer(colors=tty)]
    stamp = [structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True)]
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *stamp, *render],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        # Each module's logger is built once, on its first call; configure before logging, as the CLI does.
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*stamp, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *render],
        )
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(number)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or a closed stream
        return False
