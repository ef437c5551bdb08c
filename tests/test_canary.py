"""Secrets never reach any artefact: distinct canaries planted through every input (``--set``
secret names, a configuration secret, the environment, a token in the git URL, command output
with Django settings, an OpenSSH key and an RSA key trickled across reads, a password in a URL,
a GitHub token) are found nowhere aideploy writes: the state directory, logs, audit log,
metrics textfile, every table of the knowledge base, an export, the HTML report, the webhook
posts, the console, and the target's process list sampled while the steps run. The deployment
fails at a gate, then ``resume`` completes it and writes the real values into the app's
environment. Real sshd, a real git server, the CLI as a subprocess."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.canary import ProcessList, canary, hits, kb_dump
from tests.support.cli import run_cli
from tests.support.git_http import git_server, make_repo
from tests.support.sshd import SSHServer

ROOT = Path(__file__).resolve().parent.parent


C = {name: canary(i) for i, name in enumerate(
    ["db_password", "django_key", "api_token", "git_token", "env_secret", "webhook",
     "settings_key", "url_password", "openssh", "rsa1", "rsa2", "rsa3"]
)}  # fmt: skip
GITHUB_TOKEN = "ghp_" + os.urandom(15).hex()  # a token format, never registered


def _files(c: dict[str, str]) -> dict[str, str]:
    return {
        "settings.py": (
            "DEBUG = False\n"
            f"SECRET_KEY = '{c['settings_key']}(&=+)'\n"
            f"DATABASES_URL_SEEN = 'postgres://app:{c['url_password']}@db:5432/app'\n"
            f"GITHUB = '{GITHUB_TOKEN}'\n"
        ),
        "openssh.key": (
            "-----BEGIN OPENSSH PRIVATE KEY-----\n"
            f"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ{c['openssh']}AAAAAAAAAB\n"
            "-----END OPENSSH PRIVATE KEY-----\n"
        ),
        "rsa.key": (
            "-----BEGIN RSA PRIVATE KEY-----\n"
            f"MIIEowIBAAKCAQEA{c['rsa1']}q7rs\n"
            f"ZxCvBnM1q2w3e4r5{c['rsa2']}t6y7\n"
            f"Qw3e4r5t6y7u8i9o{c['rsa3']}0pAs\n"
            "-----END RSA PRIVATE KEY-----\n"
        ),
    }


class _Hooks(BaseHTTPRequestHandler):
    bodies: list[str] = []  # noqa: RUF012 - one list per test, set by the fixture

    def log_message(self, *args: object) -> None:
        return None

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.bodies.append(self.rfile.read(length).decode("utf-8", "replace"))  # not the URL
        self.send_response(204)
        self.end_headers()


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[str]]]:
    bodies: list[str] = []
    handler = type("Hooks", (_Hooks,), {"bodies": bodies})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    finally:
        server.shutdown()
        server.server_close()


def test_no_canary_reaches_any_artefact(
    tmp_path: Path, sshd: SSHServer, webhook: tuple[str, list[str]]
) -> None:
    hook_url, hook_bodies = webhook
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_lines())
    config = tmp_path / "ai_deployment_config.json"
    config.write_text(
        json.dumps(
            {
                "ssh": {"known_hosts": str(known), "connect_retries": 1, "timeout": 5},
                "deployment": {"max_retries": 0},
                "notifications": {"slack_webhook_url": f"{hook_url}/{C['webhook']}"},
                "server_profiles": {
                    "loopback": {
                        "hostname": sshd.host,
                        "port": sshd.port,
                        "username": sshd.user,
                        "key_file": str(sshd.client_key),
                    }
                },
            }
        )
    )
    leaks = tmp_path / "leaks"
    leaks.mkdir()
    for name, text in _files(C).items():
        (leaks / name).write_text(text)
    served = tmp_path / "served"
    make_repo(tmp_path / "tree", served, {"manage.py": "print('app')\n"})
    app_env, gate, kb = tmp_path / "app.env", tmp_path / "gate", tmp_path / "kb.sqlite"
    env = {"PYTHONPATH": str(ROOT), "SECRET_FROM_ENV": C["env_secret"]}
    outputs: list[str] = []
    with git_server(served, C["git_token"], "") as git, ProcessList() as processes:
        repo = git.url.replace("http://", f"http://{C['git_token']}@")
        deploy = run_cli(
            tmp_path,
            "-vv",
            "deploy",
            "--profile",
            "loopback",
            "--plan",
            "tests.support.canary_plan:plan",
            "--kb",
            str(kb),
            "--secret-env",
            "SECRET_FROM_ENV",
            "--set",
            f"APP_REPO={repo}",
            "--set",
            f"APP_ROOT={tmp_path / 'app'}",
            "--set",
            f"DB_PASSWORD={C['db_password']}",
            "--set",
            f"DJANGO_SECRET_KEY={C['django_key']}",
            "--set",
            f"API_TOKEN={C['api_token']}",
            "--set",
            f"LEAK_DIR={leaks}",
            "--set",
            f"GATE={gate}",
            "--set",
            f"APP_ENV={app_env}",
            env=env,
        )
        outputs += [deploy.stdout, deploy.stderr]
        assert deploy.returncode != 0, deploy.stdout + deploy.stderr
        assert "gate closed" in deploy.stdout + deploy.stderr
        (deployment_id,) = (p.stem for p in (tmp_path / "home/deployments").glob("*.json"))
        gate.touch()
        resumed = run_cli(tmp_path, "--debug", "resume", deployment_id, env=env)
        outputs += [resumed.stdout, resumed.stderr]
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert processes.samples > 10
    assert any(auth and auth.startswith("Basic ") for auth in git.seen)
    # the app got the real values, not ***
    assert app_env.read_text() == (
        f"DJANGO_SECRET_KEY={C['django_key']}\nDB_PASSWORD={C['db_password']}\n"
        f"API_TOKEN={C['api_token']}\nSECRET_FROM_ENV={C['env_secret']}\n"
    )
    export = tmp_path / "export.jsonl"
    report = tmp_path / "report.html"
    for args in (
        ("learn", "export", "--kb", str(kb), str(export)),
        ("learn", "report-html", "--kb", str(kb), str(report)),
        ("logs", deployment_id),
        ("status", deployment_id),
        ("audit", "show"),
    ):
        done = run_cli(tmp_path, *args, env=env)
        assert done.returncode == 0, (args, done.stderr)
        outputs += [done.stdout, done.stderr]

    canaries = [*C.values(), GITHUB_TOKEN]
    found: list[str] = []
    written = [p for p in (tmp_path / "home").rglob("*") if p.is_file()] + [export, report]
    assert any(p.suffix == ".prom" for p in written) and any(
        p.name == "audit.jsonl" for p in written
    )
    for path in written:
        found += hits(path.read_bytes().decode("utf-8", "replace"), str(path), canaries)
    found += hits(kb_dump(kb), "knowledge base", canaries)
    found += hits("\n".join(outputs), "console", canaries)
    found += hits("\n".join(hook_bodies), "webhooks", canaries)
    found += hits("\n".join(processes.seen), "process list", canaries)
    assert hook_bodies, "no notification was sent"
    assert "b3BlbnNzaC1r" not in kb_dump(kb)  # the key body, not just the canary in it
    assert found == [], "\n".join(found)
