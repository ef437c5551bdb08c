"""Deployment logs: a human log and JSON lines, both redacted, plus the console.

``logs/deployment_YYYYMMDD_HHMMSS.log`` is for people; ``logs/<deployment id>.jsonl`` has one
object per event (time, deployment id, step, level, message, host). Every record passes through
:func:`aideploy.core.redact.redact` before any handler sees it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from aideploy.core import paths
from aideploy.core.private import create_private
from aideploy.core.redact import redact

current_step: contextvars.ContextVar[str | None] = contextvars.ContextVar("step", default=None)
#: the deployment the running thread works for (several run at once in a fleet run): a
#: deployment's log files take no record another deployment's thread wrote
current_deployment: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "deployment", default=None
)

ROOT = "aideploy"


class _ContextFilter(logging.Filter):
    """Adds deployment id, host and step to every record and redacts its message."""

    def __init__(self, deployment_id: str | None = None, host: str | None = None) -> None:
        super().__init__()
        self.deployment_id = deployment_id
        self.host = host

    def filter(self, record: logging.LogRecord) -> bool:
        active = current_deployment.get()
        if self.deployment_id and active is not None and active != self.deployment_id:
            return False
        record.msg = redact(record.getMessage())
        record.args = ()
        if not hasattr(record, "deployment_id"):
            record.deployment_id = self.deployment_id
        if not hasattr(record, "host"):
            record.host = self.host
        if not hasattr(record, "step"):
            record.step = current_step.get()
        return True


class JsonLinesFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "deployment_id": getattr(record, "deployment_id", None),
            "step": getattr(record, "step", None),
            "level": record.levelname,
            "message": record.getMessage(),
            "host": getattr(record, "host", None),
            "logger": record.name,
        }
        for key in ("event", "error_class", "strategy", "outcome", "stream"):
            value = getattr(record, key, None)
            if value is not None:
                event[key] = value
        if record.exc_info:
            event["traceback"] = redact(self.formatException(record.exc_info))
        return json.dumps(event, ensure_ascii=False)


class HumanFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s [%(step)s] %(message)s", "%Y-%m-%d %H:%M:%S")

    def formatException(self, ei: object) -> str:
        return redact(super().formatException(ei))  # type: ignore[arg-type]


@dataclass
class LogFiles:
    human: Path
    jsonl: Path


def level_from_env(default: int = logging.INFO) -> int:
    name = os.environ.get("LOG_LEVEL", "").upper()
    return logging.getLevelNamesMapping().get(name, default)


#: events the console's progress display shows itself; they are logged for the files only
PROGRESS_EVENTS = frozenset({"step_start", "step_done", "command"})


def _not_progress(record: logging.LogRecord) -> bool:
    return getattr(record, "event", None) not in PROGRESS_EVENTS


def configure_console(verbosity: int = 0, stream: TextIO | None = None) -> None:
    """Console logging for the CLI: warnings by default, info with -v, debug with -vv/LOG_LEVEL."""
    logger = logging.getLogger(ROOT)
    logger.setLevel(logging.DEBUG)
    for handler in list(logger.handlers):
        if getattr(handler, "_aideploy_console", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    env_level = level_from_env(logging.WARNING)
    if verbosity < 0:
        wanted = logging.ERROR
    else:
        wanted = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    level = min(env_level, wanted)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(_ContextFilter())
    handler.addFilter(_not_progress)
    handler._aideploy_console = True  # type: ignore[attr-defined]
    logger.addHandler(handler)


class DeploymentLog:
    """Attach the per-deployment file handlers for the duration of a run."""

    def __init__(self, deployment_id: str, host: str, *, resume: bool = False) -> None:
        folder = paths.private_home("logs")
        stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
        self.files = LogFiles(
            human=folder / f"deployment_{stamp}_{deployment_id}.log",
            jsonl=folder / f"{deployment_id}.jsonl",
        )
        self._filter = _ContextFilter(deployment_id, host)
        self._deployment_id = deployment_id
        self._token: contextvars.Token[str | None] | None = None
        self._handlers: list[logging.Handler] = []
        level = level_from_env(logging.INFO)
        for path, formatter in (
            (self.files.human, HumanFormatter()),
            (self.files.jsonl, JsonLinesFormatter()),
        ):
            create_private(path)  # 0600 before logging opens it by name
            handler = logging.FileHandler(path, encoding="utf-8")
            handler.setLevel(level)
            handler.setFormatter(formatter)
            handler.addFilter(self._filter)
            self._handlers.append(handler)

    def __enter__(self) -> DeploymentLog:
        logger = logging.getLogger(ROOT)
        logger.setLevel(logging.DEBUG)
        for handler in self._handlers:
            logger.addHandler(handler)
        self._token = current_deployment.set(self._deployment_id)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger(ROOT)
        if self._token is not None:
            current_deployment.reset(self._token)
            self._token = None
        for handler in self._handlers:
            logger.removeHandler(handler)
            handler.close()
