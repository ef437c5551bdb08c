"""The stack plan without a server: step order, value checks, rendered files, the git token path.

The token test runs the real ``download_application`` work on this machine (local connector)
against a real ``git http-backend`` behind HTTP basic auth.
"""

from __future__ import annotations

import base64
import glob
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import jinja2
import pytest

from aideploy.core.errors import ConfigError
from aideploy.engine.connectors.local import LocalConnector
from aideploy.engine.plan import StepContext
from aideploy.engine.runner import Runner
from aideploy.steps.stack import download_application
from aideploy.steps.stack.common import DEFAULTS, validate
from aideploy.steps.stack.plan import plan
from aideploy.steps.stack.render import TEMPLATES, render
from aideploy.steps.stack.setup_services import render_ctl, render_unit
from aideploy.steps.stack.setup_webserver import is_public, render_site, tls_mode

SAMPLEAPP = Path(__file__).resolve().parent.parent / "examples" / "sampleapp"
RENDERED = Path(__file__).resolve().parent / "support" / "stack_rendered"
GUIDE_ORDER = [
    "validate_server",
    "setup_authentication",
    "install_dependencies",
    "handle_nodejs_conflicts",
    "setup_database",
    "download_application",
    "configure_backend",
    "configure_frontend",
    "setup_webserver",
    "setup_services",
    "final_verification",
]


def _env(**extra: str) -> dict[str, str]:
    return {**DEFAULTS, "APP_REPO": "https://git.example.com/app.git", **extra}


def test_the_guides_eleven_steps_in_order_with_values_only_in_the_environment() -> None:
    built = plan()
    assert [s.name for s in built.steps] == GUIDE_ORDER
    assert built.env["APP_ROOT"] == "/opt/sampleapp"
    for step in built.steps:
        texts = [*step.commands, *(c for c in (step.check, step.verify) if isinstance(c, str))]
        for text in texts:
            assert "/opt/sampleapp" not in text and "sampleapp.wsgi" not in text


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("DB_NAME", "app; DROP TABLE x"),
        ("DB_USER", "Robert'"),
        ("DOMAIN", "example.com; include /etc/passwd"),
        ("APP_ROOT", "relative/path"),
        ("APP_ROOT", "/opt/app name"),
        ("HTTP_PORT", "70000"),
        ("FRONTEND_BUILD_DIR", "../../etc"),
        ("TLS", "maybe"),
        ("APP_REPO", ""),
    ],
)
def test_unsafe_values_are_refused(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key):
        validate(_env(**{key: value}))


def test_nginx_site_serves_the_build_and_proxies_the_api() -> None:
    site = render_site(_env(DOMAIN="app.example.org", HTTP_PORT="8080", HTTPS_PORT="8443"))
    assert "listen 8080;" in site and "listen 8443 ssl;" in site
    assert "server_name app.example.org;" in site
    assert "root /opt/sampleapp/current/frontend/dist;" in site
    assert "include /etc/aideploy/sampleapp/upstream.conf;" in site
    assert "proxy_pass http://aideploy-sampleapp-app;" in site
    assert "ssl_certificate /etc/aideploy/sampleapp/tls/fullchain.pem;" in site
    assert "ssl" not in render_site(_env(TLS="off")).replace("# managed", "")


def test_tls_choice_depends_on_the_domain() -> None:
    assert not is_public("localhost") and not is_public("127.0.0.1")
    assert not is_public("sampleapp.test") and is_public("app.example.org")
    assert tls_mode(_env(DOMAIN="sampleapp.test")) == "self-signed"
    assert tls_mode(_env(DOMAIN="app.example.org")) == "certbot-if-installed"


def test_service_files_carry_checked_values() -> None:
    ctl = render_ctl(_env())
    assert "APP_ROOT=/opt/sampleapp; NAME=sampleapp; RUN_AS=deploy" in ctl
    assert "start-stop-daemon --start" in ctl
    subprocess.run(["sh", "-n"], input=ctl, text=True, check=True)
    unit = render_unit(_env())
    assert "ExecStart=/usr/local/sbin/aideploy-sampleapp serve %i" in unit and "User=deploy" in unit


# -- the rendered files, byte for byte ------------------------------------------------------------

# tests/support/stack_rendered/<case>.* pin what the templates write. They were first written by
# the str.format/f-string renderers the templates replaced; the nginx sites were regenerated on
# purpose for the hardening (security headers, server_tokens off, HTTP->HTTPS redirect, HSTS,
# CLIENT_MAX_BODY_SIZE; docs/security.md). A change here must be a deliberate one.
CASES = {
    "default": {},
    "custom": {
        "APP_NAME": "shop",
        "APP_ROOT": "/srv/shop-app",
        "DOMAIN": "app.example.org",
        "HTTP_PORT": "8080",
        "HTTPS_PORT": "8443",
        "FRONTEND_DIR": "web",
        "FRONTEND_BUILD_DIR": "build/out",
        "BACKEND_DIR": "api",
        "WSGI_APP": "shop.wsgi:app",
        "GUNICORN_WORKERS": "4",
        "DEPLOY_USER": "www_shop",
        "TLS": "certbot",
        "CLIENT_MAX_BODY_SIZE": "50m",
    },
    "tls-off": {"TLS": "off", "DOMAIN": "sampleapp.test"},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_files_are_byte_identical_to_the_pinned_ones(case: str) -> None:
    env = _env(**CASES[case])
    for suffix, rendered in (
        ("nginx-site", render_site(env)),
        ("ctl", render_ctl(env)),
        ("service", render_unit(env)),
    ):
        assert rendered.encode() == (RENDERED / f"{case}.{suffix}").read_bytes(), suffix


def test_db_env_is_one_line() -> None:
    assert render("db.env.j2", password="0f" * 24) == f"DB_PASSWORD={'0f' * 24}\n"


def test_a_value_a_template_needs_and_did_not_get_is_an_error() -> None:
    given = {
        "app": "a",
        "app_root": "/a",
        "frontend_dir": "f",
        "frontend_build_dir": "d",
        "http_port": "80",
        "https_port": "443",
        "tls": True,
        "tls_dir": "/etc/aideploy/a/tls",
        "upstream_file": "/etc/aideploy/a/upstream.conf",
        "client_max_body_size": "10m",
    }
    assert "server_name x;" in render("nginx-site.conf.j2", domain="x", **given)
    with pytest.raises(jinja2.UndefinedError, match="'domain' is undefined"):
        render("nginx-site.conf.j2", **given)


def test_the_control_script_quotes_every_value_for_the_shell() -> None:
    template = (TEMPLATES / "aideploy-ctl.sh.j2").read_text()
    values = jinja2.Environment().parse(template).find_all(jinja2.nodes.Output)
    expressions = [
        node
        for output in values
        for node in output.nodes
        if not isinstance(node, jinja2.nodes.TemplateData)
    ]
    assert expressions and all(
        isinstance(node, jinja2.nodes.Filter) and node.name == "q" for node in expressions
    )
    ctl = render(
        "aideploy-ctl.sh.j2",
        app="a b",
        app_root="/opt/x",
        user="deploy",
        backend="backend",
        wsgi="m:app",
        workers="2",
    )
    assert "NAME='a b';" in ctl  # what validate would refuse is still quoted here
    subprocess.run(["sh", "-n"], input=ctl, text=True, check=True)


# -- the token path, against a real git http-backend ----------------------------------------

TOKEN = "tok_" + "s3cr3t" * 6


class _GitHTTP(BaseHTTPRequestHandler):
    root = ""
    seen: ClassVar[list[str | None]] = []

    def log_message(self, *args: object) -> None:
        return None

    def _serve(self) -> None:
        auth = self.headers.get("Authorization")
        self.seen.append(auth)
        expected = "Basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
        if auth != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": self.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(length),
            "REMOTE_USER": "x-access-token",
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        out = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
        ).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _serve
    do_POST = _serve


@pytest.fixture
def private_repo(tmp_path: Path) -> Iterator[tuple[str, list[str | None]]]:
    tree = tmp_path / "tree"
    shutil.copytree(SAMPLEAPP, tree, ignore=shutil.ignore_patterns("node_modules", "dist"))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=tree, check=True)
    subprocess.run([*git, "add", "-A"], cwd=tree, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "app"], cwd=tree, check=True)
    served = tmp_path / "served"
    served.mkdir()
    subprocess.run(["git", "clone", "-q", "--bare", str(tree), str(served / "app.git")], check=True)
    seen: ClassVar[list[str | None]] = []
    handler = type("Handler", (_GitHTTP,), {"root": str(served), "seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/app.git", seen
    finally:
        server.shutdown()
        server.server_close()


def _context(tmp_path: Path, repo: str, lines: list[str], **extra: str) -> StepContext:
    values = {
        "APP_ROOT": str(tmp_path / "app"),
        "APP_REPO": repo,
        "DEPLOYMENT_ID": "20260101-000000-aaaaaa",
        "GIT_TOKEN_ENV": "AIDEPLOY_TEST_REPO_TOKEN",
        **extra,
    }
    env = _env(**values)
    runner = Runner(LocalConnector(), on_line=lambda stream, line: lines.append(line))
    return StepContext(runner=runner, connector=runner.connector, env=env, deployment_id="x")


def test_private_repo_token_goes_through_the_credential_helper_only(
    tmp_path: Path,
    private_repo: tuple[str, list[str | None]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo, seen = private_repo
    monkeypatch.setenv("AIDEPLOY_TEST_REPO_TOKEN", TOKEN)
    before = set(glob.glob("/tmp/aideploy-git.*"))
    lines: list[str] = []
    ctx = _context(tmp_path, repo, lines)
    assert not download_application.check(ctx)
    result = download_application.work(ctx)
    assert result.ok, result.output
    release = tmp_path / "app" / "releases" / "20260101-000000-aaaaaa"
    assert (release / "backend" / "manage.py").is_file()
    assert (release / ".aideploy" / "fetched").is_file()
    assert download_application.check(ctx)
    assert seen[0] is None and any(s and s.startswith("Basic ") for s in seen)
    cache = tmp_path / "app" / "shared" / "repo.git"
    for path in cache.rglob("*"):
        if path.is_file() and path.stat().st_size < 1_000_000:
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in "\n".join(lines) + result.output + result.command
    assert set(glob.glob("/tmp/aideploy-git.*")) == before  # the token file is gone


def test_private_repo_without_token_fails_without_prompting(
    tmp_path: Path, private_repo: tuple[str, list[str | None]]
) -> None:
    repo, _ = private_repo
    lines: list[str] = []
    ctx = _context(tmp_path, repo, lines, GIT_TOKEN_ENV="")
    result = download_application.work(ctx)
    assert not result.ok
    assert "Authentication failed" in result.output or "could not read Username" in result.output


@pytest.mark.parametrize("size", ["10m", "512k", "1g", "0", "2048"])
def test_client_max_body_size_takes_an_nginx_size(size: str) -> None:
    assert f"client_max_body_size {size};" in render_site(_env(CLIENT_MAX_BODY_SIZE=size))


@pytest.mark.parametrize("size", ["", "10 m", "10m;", "10mb", "1m; return 200"])
def test_client_max_body_size_refuses_anything_else(size: str) -> None:
    with pytest.raises(ConfigError, match="CLIENT_MAX_BODY_SIZE"):
        render_site(_env(CLIENT_MAX_BODY_SIZE=size))


def _ctl(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "ctl"
    script.write_text(render_ctl(_env(APP_NAME="aideploy-test-none", APP_ROOT=str(tmp_path))))
    return subprocess.run(["sh", str(script), *args], capture_output=True, text=True, check=False)


@pytest.mark.parametrize("release", ["", "../x", "a/b", ".hidden"])
def test_the_control_script_switches_only_to_a_release_name(tmp_path: Path, release: str) -> None:
    refused = _ctl(tmp_path, "switch", release)
    assert refused.returncode in (1, 2) and refused.stderr.count("\n") == 1, refused.stderr
    assert not (tmp_path / "current").exists()


def test_the_control_script_names_its_commands_and_reports_nothing_live(tmp_path: Path) -> None:
    usage = _ctl(tmp_path, "candidate", str(tmp_path))
    assert usage.returncode == 2
    assert "switch RELEASE_ID|start|stop|restart|status|live" in usage.stderr
    assert _ctl(tmp_path, "status").returncode != 0
    missing = _ctl(tmp_path, "switch", "20260101-000000-aaaaaa")
    assert missing.returncode == 1 and "no release 20260101-000000-aaaaaa" in missing.stderr
