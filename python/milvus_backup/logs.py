"""Logging for a run of the command line: stdlib ``logging`` under the ``milvus_backup`` logger.

Modules log with ``logging.getLogger(__name__)``; phases are logged with their durations by
the Reporter (transfer/progress.py). This module decides where records go, set up once per run:

- the log file, when the config names one (``log.file.path``, the Go tool's key), at
  ``log.level``, rotated at ``log.file.maxSizeMiB`` keeping ``log.file.maxBackups`` files;
- stderr, when asked for on the command line (-v info, -vv debug, --log-level), or when the
  config sets ``log.level`` itself and ``log.console`` is true. Otherwise stderr shows what it
  always did: progress, warnings and errors, without log lines repeating them. ``-q`` keeps
  stderr to warnings and errors: no progress, no phase lines (``quiet()``).

The engine's events (each retry it or object_store makes) are queued in Rust and forwarded
here, under ``milvus_backup.engine``, while a run logs anywhere (``forward_engine_events``).

``--log-format json`` writes one object per line: time, level, message, and phase, backup,
collection and seconds when known. Only mbackup's own loggers are handled (a library's debug
output may hold a password), and every record is scrubbed of the config's secrets.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import datetime as dt
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config.settings import Config

ROOT = "milvus_backup"
FORMATS = ("text", "json")
# The Go tool's level names (config/params.py LOG_LEVELS) onto logging's.
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR,
          "panic": logging.CRITICAL, "fatal": logging.CRITICAL}
# What a record may say about where the run is, set by context() and shown in every format.
FIELDS = ("phase", "backup", "collection")
MASK = "****"

_context: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar("mbackup_log_context",
                                                                                       default=())


@contextlib.contextmanager
def context(**fields: str | None) -> Iterator[None]:
    """Records logged inside the block carry these fields (phase, backup, collection)."""
    token = _context.set(tuple({**dict(_context.get()), **{k: v for k, v in fields.items() if v}}.items()))
    try:
        yield
    finally:
        _context.reset(token)


class _Run:
    """The run's settings: from the command line first, then from the config once loaded."""

    def __init__(self) -> None:
        self.flag_level: int | None = None
        self.quiet = False
        self.format = "text"
        self.secrets: list[str] = []
        self.handlers: list[logging.Handler] = []
        self.ticker: _Ticker | None = None


_RUN = _Run()


def level_of(name: str) -> int:
    try:
        return LEVELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {name!r}: use one of {', '.join(LEVELS)}") from None


def setup(verbose: int = 0, level: str | None = None, fmt: str = "text", quiet: bool = False) -> None:
    """The command line's options, before any config is read: --log-level, else -v (info)
    or -vv (debug), shows log lines on stderr; ``quiet`` (-q) only warnings and errors."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: use text or json")
    _reset()
    _RUN.format = fmt
    _RUN.quiet = quiet
    # Credentials given through the environment (AWS_SECRET_ACCESS_KEY, MILVUS_PASSWORD, ...).
    _keep_secrets([v for k, v in os.environ.items() if _secret_name(k)])
    if level is not None:
        _RUN.flag_level = level_of(level)
    elif verbose:
        _RUN.flag_level = logging.INFO if verbose == 1 else logging.DEBUG
    if _RUN.flag_level is not None:
        _add(_Stderr(), max(_RUN.flag_level, logging.WARNING) if quiet else _RUN.flag_level)


def quiet() -> bool:
    """-q: stderr shows warnings, errors and the command's result, no progress or phases."""
    return _RUN.quiet


def use_config(cfg: Config) -> None:
    """The config's log keys, once it is loaded: the file, and stderr when the config asks."""
    from .config.settings import ALL_PARAMS

    _keep_secrets([cfg.get(p.key) for p in ALL_PARAMS if p.secret]
                  + [v for profile in cfg.mbackup.profiles.values() for k, v in profile.items() if _secret_name(k)])
    level = _RUN.flag_level if _RUN.flag_level is not None else LEVELS[cfg.log.level]
    if _RUN.flag_level is None and cfg.log.console and cfg.origin("log.level").explicit:
        _add(_Stderr(), max(level, logging.WARNING) if _RUN.quiet else level)
    if cfg.origin("log.file.path").explicit and cfg.log.file.path:
        _add(_file_handler(cfg), level)


def _keep_secrets(values: Iterable[object]) -> None:
    found = {str(v) for v in values if v and len(str(v)) >= 4}  # a 1-character "secret" would mask every line
    _RUN.secrets = sorted(found | set(_RUN.secrets), key=len, reverse=True)


def _secret_name(key: str) -> bool:
    from .config.secrets import is_secret_name

    return is_secret_name(key)


def _file_handler(cfg: Config) -> logging.Handler:
    f = cfg.log.file
    path = Path(f.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_old(path, f.max_days)
    import logging.handlers  # here: with socket, ~0.005 CPU s of each run that logs to no file

    # The Go tool's maxBackups 0 keeps every rotated file; logging's 0 would never rotate.
    return logging.handlers.RotatingFileHandler(path, maxBytes=f.max_size_mib * 1024 * 1024,
                                                backupCount=f.max_backups or 10_000, encoding="utf-8")


def _remove_old(path: Path, max_days: int) -> None:
    """Rotated files (``backup.log.1`` ...) older than ``max_days`` days; 0 keeps them all."""
    if not max_days:
        return
    cutoff = time.time() - max_days * 86400
    for old in path.parent.glob(path.name + ".*"):
        with contextlib.suppress(OSError):
            if old.stat().st_mtime < cutoff:
                old.unlink()


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr as it is when written: in-process runs and the live display swap sys.stderr."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.addFilter(lambda record: not getattr(record, "shown", False))  # already on stderr as it is

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def retry(logger: logging.Logger, what: str, why: object, attempt: int, attempts: int, wait: float) -> None:
    """A retry, said as the engine says its own (rust/src/events.rs): what, why, which
    attempt of how many failed, and the wait before the next."""
    logger.warning("%s: attempt %d of %d failed (%s); retrying in %.1fs", what, attempt, attempts, why, wait)


ENGINE_LOGGER = f"{ROOT}.engine"
_ENGINE_LEVELS = {"info": logging.INFO, "warn": logging.WARNING}
_forwarding = threading.Lock()


def forward_engine_events() -> None:
    """Log what the engine queued since the last call (its retries and object_store's), each
    record timed when the engine made it. Called by the run's ticker and at each step's end."""
    from . import _engine

    logger = logging.getLogger(ENGINE_LOGGER)
    with _forwarding:
        for at, level, message in _engine.take_events():
            record = logger.makeRecord(logger.name, _ENGINE_LEVELS.get(level, logging.INFO), "(engine)", 0,
                                       message, (), None)
            if at:
                record.created = at
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)


class _Ticker(threading.Thread):
    """Forwards the engine's events every half second while the run logs anywhere."""

    def __init__(self) -> None:
        super().__init__(name="mbackup-engine-log", daemon=True)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            forward_engine_events()

    def stop(self) -> None:
        self.stopped.set()
        forward_engine_events()  # what came since the last tick


def _add(handler: logging.Handler, level: int) -> None:
    handler.setLevel(level)
    handler.setFormatter(JsonFormatter() if _RUN.format == "json" else TextFormatter())
    handler.addFilter(_add_context)
    logger = logging.getLogger(ROOT)
    logger.addHandler(handler)
    logger.setLevel(min(level, logger.level or logging.CRITICAL))
    logger.propagate = False  # the run's handlers only: no second copy through the root logger
    _RUN.handlers.append(handler)
    if _RUN.ticker is None:
        _RUN.ticker = _Ticker()
        _RUN.ticker.start()
        atexit.register(_RUN.ticker.stop)  # main() ends with sys.exit: the last events too


def _reset() -> None:
    if _RUN.ticker is not None:
        _RUN.ticker.stop()
        atexit.unregister(_RUN.ticker.stop)
    logger = logging.getLogger(ROOT)
    for handler in _RUN.handlers:
        logger.removeHandler(handler)
        handler.close()
    _RUN.__init__()  # type: ignore[misc]
    logger.setLevel(logging.NOTSET)


def close() -> None:
    """Flush and close the run's handlers (in-process runs set up a new run each time)."""
    _reset()


def _add_context(record: logging.LogRecord) -> bool:
    for key, value in _context.get():
        if not hasattr(record, key):
            setattr(record, key, value)
    return True


def scrub(text: str, secrets: Iterable[str] | None = None) -> str:
    for secret in _RUN.secrets if secrets is None else secrets:
        text = text.replace(secret, MASK)
    return text


def _time(record: logging.LogRecord) -> str:
    return dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _level(record: logging.LogRecord) -> str:
    return {"WARNING": "warn", "CRITICAL": "fatal"}.get(record.levelname, record.levelname.lower())


class TextFormatter(logging.Formatter):
    """``2026-11-30T19:34:51.123Z INFO  connect: done in 0.4 s [backup=nightly phase=connect]``"""

    def format(self, record: logging.LogRecord) -> str:
        where = " ".join(f"{k}={getattr(record, k)}" for k in FIELDS if getattr(record, k, None))
        text = f"{_time(record)} {_level(record).upper():<5} {record.getMessage()}" + (f" [{where}]" if where else "")
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return scrub(text)


class JsonFormatter(logging.Formatter):
    """One object per line: time, level, message, then phase, backup, collection, seconds when known."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"time": _time(record), "level": _level(record), "message": scrub(record.getMessage()),
                               "logger": record.name}
        for key in (*FIELDS, "seconds"):
            if getattr(record, key, None) is not None:
                doc[key] = getattr(record, key)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return scrub(json.dumps(doc))
