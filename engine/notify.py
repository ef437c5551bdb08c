"""Slack and Discord notifications: start, success, failure, rollback, manual intervention.

Each configured webhook gets its own background worker that posts in order with a short timeout
and a few retries (5xx, 429, network errors) with exponential backoff. Sending never blocks the
deployment; :meth:`Notifier.close` waits a bounded time (``wait_at_end``, 2 s by default) for what
is still in flight and then leaves it: a dead or slow endpoint costs a deployment at most that.
Failures are logged as warnings. The webhook URLs are secrets: they are registered for redaction
and never logged; message text is redacted before it is sent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

from aideploy.core.redact import redact, register_secret
from aideploy.core.schema import checked
from aideploy.engine.state import DeploymentState, DeploymentStatus

log = logging.getLogger("aideploy.notify")

START = "start"
SUCCESS = "success"
FAILURE = "failure"
ROLLBACK = "rollback"
MANUAL = "manual_intervention"
EVENTS = (START, SUCCESS, FAILURE, ROLLBACK, MANUAL)

_TITLES = {
    START: "Deployment started",
    SUCCESS: "Deployment succeeded",
    FAILURE: "Deployment failed",
    ROLLBACK: "Deployment rolled back",
    MANUAL: "Deployment needs a person",
}
_EMOJI = {
    START: ":rocket:",
    SUCCESS: ":white_check_mark:",
    FAILURE: ":x:",
    ROLLBACK: ":leftwards_arrow_with_hook:",
    MANUAL: ":raising_hand:",
}
_COLOURS = {
    START: 0x3B82F6,
    SUCCESS: 0x22C55E,
    FAILURE: 0xEF4444,
    ROLLBACK: 0xF59E0B,
    MANUAL: 0xA855F7,
}


def check_webhook_url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "expected an http(s) webhook URL"
    return None


def check_events(value: list[str]) -> str | None:
    unknown = [e for e in value if e not in EVENTS]
    if unknown:
        return f"unknown events {unknown} (known: {', '.join(EVENTS)})"
    return None


class NotificationSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    slack_webhook_url: Annotated[
        str | None,
        checked(check_webhook_url, "Slack incoming webhook URL (a secret: never logged)."),
    ] = None
    discord_webhook_url: Annotated[
        str | None, checked(check_webhook_url, "Discord webhook URL (a secret: never logged).")
    ] = None
    events: Annotated[
        list[str],
        checked(
            check_events,
            "Events that are sent: start, success, failure, rollback, manual_intervention.",
        ),
    ] = msgspec.field(default_factory=lambda: list(EVENTS))
    timeout: Annotated[
        float, Meta(ge=0.1, le=60, description="Seconds one webhook request may take.")
    ] = 3.0
    retries: Annotated[
        int,
        Meta(
            ge=0,
            le=10,
            description="Extra attempts after a failed post (server error, rate limit, network).",
        ),
    ] = 2
    wait_at_end: Annotated[
        float,
        Meta(
            ge=0,
            le=30,
            description="Most seconds a deployment waits at its end for notifications still "
            "being sent.",
        ),
    ] = 2.0


# -- what is said --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    event: str
    deployment_id: str
    target: str
    summary: str
    action: str | None = None  # what the operator should do next
    details: Mapping[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return _TITLES.get(self.event, self.event)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_payload(notice: Notice) -> dict[str, Any]:
    """Slack incoming-webhook body: ``text`` (fallback and notifications) plus Block Kit blocks."""
    head = f"{_EMOJI.get(notice.event, '')} *{notice.title}*: `{notice.deployment_id}` -> {notice.target}"
    text = redact(f"{notice.title}: {notice.deployment_id} -> {notice.target}. {notice.summary}")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": redact(_cut(head, 3000))}},
        {"type": "section", "text": {"type": "mrkdwn", "text": redact(_cut(notice.summary, 3000))}},
    ]
    if notice.details:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": redact(_cut(f"*{k}*\n{v}", 2000))}
                    for k, v in list(notice.details.items())[:10]
                ],
            }
        )
    if notice.action:
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": redact(_cut(f"*What to do:* {notice.action}", 3000)),
                },
            }
        )
    return {"text": _cut(text, 3000), "blocks": blocks}


def discord_payload(notice: Notice) -> dict[str, Any]:
    """Discord webhook body: ``content`` plus one embed; mentions are never parsed."""
    fields = [
        {"name": _cut(k, 256), "value": redact(_cut(v, 1024)), "inline": True}
        for k, v in list(notice.details.items())[:20]
    ]
    if notice.action:
        fields.append({"name": "What to do", "value": redact(_cut(notice.action, 1024))})
    return {
        "content": redact(_cut(f"{notice.title}: {notice.deployment_id} -> {notice.target}", 2000)),
        "embeds": [
            {
                "title": _cut(notice.title, 256),
                "description": redact(_cut(notice.summary, 4096)),
                "color": _COLOURS.get(notice.event, 0x6B7280),
                "fields": fields,
            }
        ],
        "allowed_mentions": {"parse": []},
    }


def notice_for(state: DeploymentState, event: str, target: str | None = None) -> Notice:
    """The notice for ``event`` about ``state`` (what to do included where there is something)."""
    target = target or str(state.server_info.get("hostname") or "?")
    details = {"plan": state.plan, "steps": f"{state.current_step}/{state.total_steps}"}
    if state.profile:
        details["profile"] = state.profile
    if state.error_count:
        details["errors recovered" if event == SUCCESS else "errors"] = str(state.error_count)
    if state.options.get("run_id"):  # one host of a fleet run
        details["run"] = str(state.options["run_id"])
        details["host"] = str(state.options.get("host_name") or target)
    resume = f"aideploy resume {state.deployment_id}"
    action = None
    if event == START:
        summary = f"Plan {state.plan}, {state.total_steps} steps."
    elif event == SUCCESS:
        summary = f"All {state.total_steps} steps done."
    elif event == MANUAL:
        summary = state.reason or "A step needs a person."
        action = f"Do what the step asks on {target}, then run `{resume}`."
    elif event == FAILURE:
        summary = state.reason or "A step failed and was not recovered."
        action = (
            f"Fix the cause, then run `{resume}` (logs: `aideploy logs {state.deployment_id}`)."
        )
    else:
        summary = state.reason or "The previous release was restored."
    return Notice(event, state.deployment_id, target, summary, action, details)


# -- delivery ------------------------------------------------------------------------------------


class _Channel:
    """One webhook: an ordered queue and a daemon worker posting with retries."""

    def __init__(
        self, name: str, url: str, build: Callable[[Notice], dict[str, Any]], owner: Notifier
    ) -> None:
        problem = check_webhook_url(url)
        if problem:
            raise ValueError(f"{name} webhook: {problem}")
        self.name = name
        self.url = url
        self.build = build
        self.owner = owner
        self.queue: queue.Queue[Notice | None] = queue.Queue()
        self.thread = threading.Thread(target=self._work, name=f"notify-{name}", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while True:
            notice = self.queue.get()
            if notice is None:
                return
            try:
                self._deliver(notice)
            except Exception as exc:  # never let a worker die silently
                log.warning(
                    "%s notification (%s) failed: %s", self.name, notice.event, redact(str(exc))
                )

    def _deliver(self, notice: Notice) -> None:
        owner = self.owner
        settings = owner.settings
        body = json.dumps(self.build(notice)).encode()
        problem = ""
        for attempt in range(settings.retries + 1):
            budget = owner.remaining()
            if budget <= 0:
                problem = problem or "no time left"
                break
            delay, problem = self._post(body, min(settings.timeout, budget))
            if delay is None:
                owner.delivered += 1
                return
            if attempt == settings.retries:
                break
            wait = max(delay, owner.backoff_base * 2**attempt)
            if wait >= owner.remaining() or owner.stopping.wait(wait):
                break
        owner.failed += 1
        log.warning(
            "%s notification (%s) not delivered: %s", self.name, notice.event, redact(problem)
        )

    def _post(self, body: bytes, timeout: float) -> tuple[float | None, str]:
        """(None, "") when delivered; else (seconds to wait at least, why), or raise nothing."""
        request = urllib.request.Request(  # noqa: S310 - http(s) only, checked on creation
            self.url,
            data=body,
            headers={"Content-Type": "application/json", "User-Agent": "aideploy"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) checked
                response.read()
            return None, ""
        except urllib.error.HTTPError as exc:
            why = f"HTTP {exc.code}"
            if exc.code == 429:
                after = exc.headers.get("Retry-After", "1") if exc.headers else "1"
                with contextlib.suppress(ValueError):
                    return min(float(after), 10.0), why
                return 1.0, why
            if exc.code >= 500:
                return 0.0, why
            return float("inf"), why  # a 4xx will not get better: give up
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return 0.0, f"{type(reason).__name__}: {reason}"


class Notifier:
    """Send notices to the configured webhooks without ever slowing a deployment much."""

    def __init__(
        self,
        settings: NotificationSettings,
        *,
        backoff_base: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.backoff_base = backoff_base
        self.clock = clock
        self.stopping = threading.Event()
        self.deadline: float | None = None
        self.delivered = 0
        self.failed = 0
        self._channels: list[_Channel] = []
        self._lock = threading.Lock()
        for url in (settings.slack_webhook_url, settings.discord_webhook_url):
            register_secret(url)

    @property
    def enabled(self) -> bool:
        return bool(self.settings.slack_webhook_url or self.settings.discord_webhook_url)

    def remaining(self) -> float:
        if self.deadline is None:
            return float("inf")
        return self.deadline - self.clock()

    def _open_channels(self) -> list[_Channel]:
        with self._lock:
            if not self._channels:
                wanted = (
                    ("slack", self.settings.slack_webhook_url, slack_payload),
                    ("discord", self.settings.discord_webhook_url, discord_payload),
                )
                for name, url, build in wanted:
                    if not url:
                        continue
                    try:
                        self._channels.append(_Channel(name, url, build, self))
                    except ValueError as exc:
                        log.warning("%s", exc)
            return self._channels

    def send(self, notice: Notice) -> None:
        """Queue ``notice`` for every webhook (returns at once)."""
        if notice.event not in self.settings.events or self.deadline is not None:
            return
        for channel in self._open_channels():
            channel.queue.put(notice)

    # -- the deployment's moments ----------------------------------------------------------------

    def started(self, state: DeploymentState, target: str | None = None) -> None:
        self.send(notice_for(state, START, target))

    def finished(self, state: DeploymentState, target: str | None = None) -> None:
        event = {
            DeploymentStatus.COMPLETED: SUCCESS,
            DeploymentStatus.PAUSED: MANUAL,
        }.get(state.status, FAILURE)
        self.send(notice_for(state, event, target))

    def rolled_back(self, state: DeploymentState, target: str | None = None) -> None:
        self.send(notice_for(state, ROLLBACK, target))

    def close(self, wait: float | None = None) -> bool:
        """Wait at most ``wait`` (default ``wait_at_end``) seconds; True if nothing was lost."""
        limit = self.settings.wait_at_end if wait is None else wait
        self.deadline = self.clock() + limit
        with self._lock:
            channels = list(self._channels)
        for channel in channels:
            channel.queue.put(None)
        for channel in channels:
            channel.thread.join(max(0.0, self.remaining()))
        self.stopping.set()  # anything still sleeping between retries gives up now
        pending = any(c.thread.is_alive() for c in channels)
        return not pending and self.failed == 0

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
