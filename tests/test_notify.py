"""Notifications against real local HTTP servers: payload shapes, retries, dead endpoints."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from aideploy.core.errors import ConfigError
from aideploy.core.redact import register_secret
from aideploy.core.schema import convert
from aideploy.engine import notify
from aideploy.engine.state import DeploymentState, DeploymentStatus


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, statuses: list[int] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.received: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.statuses = list(statuses or [])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook/T000/B000/secretpart"


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        assert self.headers["Content-Type"] == "application/json"
        self.server.received.append(body)
        self.server.paths.append(self.path)
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def server() -> Iterator[Recorder]:
    srv = Recorder()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _state(status: DeploymentStatus = DeploymentStatus.RUNNING, reason: str | None = None) -> Any:
    state = DeploymentState(
        "20250101-000000-abcdef",
        "django",
        status,
        3,
        7,
        {"hostname": "app.example.com"},
        profile="production",
        reason=reason,
    )
    return state


def _settings(**kw: Any) -> notify.NotificationSettings:
    kw.setdefault("timeout", 2.0)
    return notify.NotificationSettings(**kw)


def test_slack_payload_shape(server: Recorder) -> None:
    notifier = notify.Notifier(_settings(slack_webhook_url=server.url))
    notifier.started(_state(), "deploy@app.example.com:22")
    notifier.finished(_state(DeploymentStatus.COMPLETED))
    assert notifier.close()
    start, done = server.received
    assert set(start) == {"text", "blocks"}
    assert "Deployment started" in start["text"] and "20250101-000000-abcdef" in start["text"]
    assert all(b["type"] == "section" for b in start["blocks"])
    assert start["blocks"][0]["text"]["type"] == "mrkdwn"
    assert "Deployment succeeded" in done["text"]
    fields = [f["text"] for b in done["blocks"] for f in b.get("fields", [])]
    assert any("production" in f for f in fields)


def test_discord_payload_shape_and_manual_intervention_says_what_to_do(server: Recorder) -> None:
    notifier = notify.Notifier(_settings(discord_webhook_url=server.url))
    notifier.finished(
        _state(DeploymentStatus.PAUSED, "step dns: point app.example.com at the host")
    )
    assert notifier.close()
    (body,) = server.received
    assert set(body) == {"content", "embeds", "allowed_mentions"}
    assert body["allowed_mentions"] == {"parse": []}
    embed = body["embeds"][0]
    assert embed["title"] == "Deployment needs a person"
    assert "point app.example.com" in embed["description"]
    todo = next(f for f in embed["fields"] if f["name"] == "What to do")
    assert "aideploy resume 20250101-000000-abcdef" in todo["value"]
    assert isinstance(embed["color"], int)


def test_failure_and_rollback_go_to_both_services(server: Recorder) -> None:
    notifier = notify.Notifier(
        _settings(slack_webhook_url=server.url, discord_webhook_url=server.url)
    )
    notifier.finished(_state(DeploymentStatus.FAILED, "step migrate failed"))
    notifier.rolled_back(_state(DeploymentStatus.FAILED))
    assert notifier.close()
    assert len(server.received) == 4
    slack = [b for b in server.received if "text" in b]
    discord = [b for b in server.received if "content" in b]
    assert ["failed" in slack[0]["text"], "rolled back" in slack[1]["text"]] == [True, True]
    assert discord[0]["embeds"][0]["title"] == "Deployment failed"


def test_only_selected_events_are_sent(server: Recorder) -> None:
    notifier = notify.Notifier(_settings(slack_webhook_url=server.url, events=["failure"]))
    notifier.started(_state())
    notifier.finished(_state(DeploymentStatus.COMPLETED))
    notifier.finished(_state(DeploymentStatus.FAILED, "boom"))
    assert notifier.close()
    assert len(server.received) == 1 and "failed" in server.received[0]["text"]


def test_secrets_are_redacted_in_the_payload(server: Recorder) -> None:
    register_secret("s3cr3t-db-pass")
    notifier = notify.Notifier(_settings(slack_webhook_url=server.url))
    notifier.finished(
        _state(DeploymentStatus.FAILED, "psql: PGPASSWORD=s3cr3t-db-pass failed for user app")
    )
    assert notifier.close()
    assert "s3cr3t-db-pass" not in json.dumps(server.received)


def test_retries_after_a_server_error(server: Recorder) -> None:
    server.statuses = [500, 503]
    notifier = notify.Notifier(
        _settings(slack_webhook_url=server.url, retries=2), backoff_base=0.05
    )
    notifier.started(_state())
    assert notifier.close()
    assert len(server.received) == 3
    assert server.received[0] == server.received[2]
    assert notifier.delivered == 1 and notifier.failed == 0


def test_client_error_is_not_retried_and_url_is_never_logged(
    server: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    server.statuses = [404]
    notifier = notify.Notifier(
        _settings(discord_webhook_url=server.url, retries=3), backoff_base=0.05
    )
    with caplog.at_level(logging.DEBUG, logger="aideploy"):
        notifier.started(_state())
        assert not notifier.close()
    assert len(server.received) == 1
    assert "HTTP 404" in caplog.text
    assert "secretpart" not in caplog.text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_does_not_slow_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{_free_port()}/hook"
    notifier = notify.Notifier(
        _settings(slack_webhook_url=url, discord_webhook_url=url, retries=5, wait_at_end=1.0)
    )
    started = time.monotonic()
    notifier.started(_state())
    notifier.finished(_state(DeploymentStatus.COMPLETED))
    sent = time.monotonic()
    assert sent - started < 0.1  # sending never waits
    with caplog.at_level(logging.WARNING, logger="aideploy"):
        assert not notifier.close()
    assert time.monotonic() - started < 1.5
    assert "not delivered" in caplog.text


def test_a_server_that_never_answers_costs_at_most_the_bound() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        notifier = notify.Notifier(
            _settings(slack_webhook_url=url, timeout=30.0, retries=3, wait_at_end=0.8)
        )
        started = time.monotonic()
        notifier.started(_state())
        notifier.finished(_state(DeploymentStatus.FAILED, "x"))
        assert not notifier.close()
        took = time.monotonic() - started
    assert took < 1.3


def test_a_bad_url_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    notifier = notify.Notifier(notify.NotificationSettings(slack_webhook_url="file:///etc/passwd"))
    with caplog.at_level(logging.WARNING, logger="aideploy"):
        notifier.started(_state())
    assert notifier.close()
    assert "slack webhook" in caplog.text


def test_no_webhook_configured_sends_nothing() -> None:
    notifier = notify.Notifier(notify.NotificationSettings())
    assert not notifier.enabled
    notifier.started(_state())
    assert notifier.close()


def test_settings_validate_like_config_sections() -> None:
    parsed = convert(
        {"slack_webhook_url": "https://hooks.slack.com/services/T/B/x", "events": ["failure"]},
        notify.NotificationSettings,
        "notifications",
    )
    assert parsed.events == ["failure"] and parsed.wait_at_end == 2.0
    with pytest.raises(ConfigError, match="webhook URL"):
        convert({"discord_webhook_url": "ftp://x"}, notify.NotificationSettings, "notifications")
    with pytest.raises(ConfigError, match="unknown events"):
        convert({"events": ["deploy"]}, notify.NotificationSettings, "notifications")


def test_the_rollback_command_notifies(server: Recorder) -> None:
    from aideploy.services.config import parse_config
    from aideploy.services.rollback import notify_rollback as _notify_rollback

    config = parse_config({"notifications": {"slack_webhook_url": server.url, "timeout": 2.0}})
    _notify_rollback(config, "root@app.example.com:22", True, "20250101-000000-abcdef", "")
    _notify_rollback(config, "root@app.example.com:22", False, None, "no database backup")
    ok, failed = server.received
    assert "rolled back to 20250101-000000-abcdef" in json.dumps(ok)
    assert "rollback failed: no database backup" in json.dumps(failed)
