"""The stack plan's nginx site, served by the real nginx on loopback ports: security headers on
every location, no version in ``Server``, HTTP redirected to HTTPS with TLS on, TLS 1.1 refused.

The site is rendered by the same template the plan installs (``render_site`` fills it from the
plan's variables; here the paths point into the test's directory), included from a minimal
``nginx.conf`` with a temporary prefix, checked with ``nginx -t`` and started in the foreground.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aideploy.steps.stack.render import render

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is not installed")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}
HSTS = "Strict-Transport-Security"
DOMAIN = "site.test"
# "/" and "/app.js" are files, "/static/" an alias, "/api/" the gunicorn socket (not running
# here: 502, and the headers must be on an error too)
PATHS = ("/", "/app.js", "/static/style.css", "/api/health/")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Nginx:
    root: Path
    http: int
    https: int
    legacy: int  # a control server that allows TLS 1.1 (is this OpenSSL able to speak it?)
    tls: bool


def _site(root: Path, tls: bool, http: int, https: int) -> str:
    return render(
        "nginx-site.conf.j2",
        app="sampleapp",
        app_root=str(root / "app"),
        domain=DOMAIN,
        frontend_dir="frontend",
        frontend_build_dir="dist",
        http_port=str(http),
        https_port=str(https),
        tls=tls,
        tls_dir=str(root / "tls"),
        upstream_file=str(root / "upstream.conf"),
        client_max_body_size="10m",
    )


def _conf(root: Path, site: Path, legacy: int) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the 0700 tmp dirs
    temps = "\n".join(
        f"    {name}_temp_path {root}/{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}worker_processes 1;
error_log {root}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
{temps}
    include {site};
    server {{
        listen 127.0.0.1:{legacy} ssl;
        ssl_certificate {root}/tls/fullchain.pem;
        ssl_certificate_key {root}/tls/privkey.pem;
        ssl_protocols TLSv1 TLSv1.1 TLSv1.2;
        ssl_ciphers DEFAULT:@SECLEVEL=0;
        return 204;
    }}
}}
"""


@pytest.fixture(params=[True, False], ids=["tls", "tls-off"])
def nginx(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Nginx]:
    tls: bool = request.param
    root = tmp_path
    dist = root / "app" / "current" / "frontend" / "dist"
    dist.mkdir(parents=True)
    (dist / "index.html").write_text("<title>sampleapp</title>")
    (dist / "app.js").write_text("console.log(1)")
    (root / "app" / "current" / "static").mkdir()
    (root / "app" / "current" / "static" / "style.css").write_text("body{}")
    (root / "tls").mkdir()
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-newkey", "rsa:2048", "-days", "2"),
            *("-subj", f"/CN={DOMAIN}", "-addext", f"subjectAltName=DNS:{DOMAIN}"),
            *("-keyout", str(root / "tls/privkey.pem"), "-out", str(root / "tls/fullchain.pem")),
        ],
        check=True,
        capture_output=True,
    )
    server = Nginx(root, _free_port(), _free_port(), _free_port(), tls)
    site = root / "site.conf"
    (root / "upstream.conf").write_text(
        f"upstream aideploy-sampleapp-app {{ server unix:{root}/none.sock; }}\n"
    )
    # the site listens on every address (as on a server); the test reaches it on 127.0.0.1
    site.write_text(_site(root, tls, server.http, server.https))
    conf = root / "nginx.conf"
    conf.write_text(_conf(root, site, server.legacy))
    # no system OpenSSL configuration: TLS 1.1 is refused by the site, not by a distro default
    openssl_conf = root / "openssl.cnf"
    openssl_conf.write_text("")
    env = {**os.environ, "OPENSSL_CONF": str(openssl_conf)}
    pid = root / "nginx.pid"
    args = [NGINX, "-p", str(root), "-e", str(root / "error.log"), "-c", str(conf)]
    tested = subprocess.run([*args, "-t"], capture_output=True, text=True, env=env)
    assert tested.returncode == 0, tested.stderr
    process = subprocess.Popen(
        [*args, "-g", f"daemon off; pid {pid};"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # the master writes its pid file once its sockets listen
        deadline = time.monotonic() + 30
        while not pid.exists():
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.02)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


def _insecure() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's own self-signed certificate
    return context


def _get(port: int, path: str, *, tls: bool) -> http.client.HTTPResponse:
    if tls:
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=10, context=_insecure()
        )
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers={"Host": DOMAIN})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def _assert_hardened(response: http.client.HTTPResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.getheader(name) == value, (name, response.status)
    assert response.getheader("Server") == "nginx"  # server_tokens off: no version


def test_headers_redirect_and_hsts(nginx: Nginx) -> None:
    tls = nginx.tls
    for path in PATHS:
        plain = _get(nginx.http, path, tls=False)
        _assert_hardened(plain)
        if tls:
            assert plain.status == 301, path
            assert plain.getheader("Location") == f"https://{DOMAIN}:{nginx.https}{path}"
            assert plain.getheader(HSTS) is None  # HSTS is only meaningful over HTTPS
            secure = _get(nginx.https, path, tls=True)
            _assert_hardened(secure)
            assert secure.getheader(HSTS) == "max-age=31536000", path
            assert secure.status == (502 if path.startswith("/api/") else 200), path
        else:
            assert plain.status == (502 if path.startswith("/api/") else 200), path
            assert plain.getheader(HSTS) is None
    if not tls:
        with pytest.raises(OSError):
            _get(nginx.https, "/", tls=True)  # nothing listens for TLS


def test_request_body_limit(nginx: Nginx) -> None:
    tls = nginx.tls
    port = nginx.https if tls else nginx.http
    conn: http.client.HTTPConnection = (
        http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=_insecure())
        if tls
        else http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    )
    conn.request(
        "POST", "/api/upload", body=b"x" * (10 * 1024 * 1024 + 1), headers={"Host": DOMAIN}
    )
    response = conn.getresponse()
    conn.close()
    assert response.status == 413


def _handshake(port: int, version: ssl.TLSVersion) -> None:
    context = _insecure()
    context.minimum_version = context.maximum_version = version
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        context.wrap_socket(sock),
    ):
        pass


@pytest.mark.parametrize("nginx", [True], indirect=True, ids=["tls"])
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_1_is_refused(nginx: Nginx) -> None:
    try:
        _handshake(nginx.legacy, ssl.TLSVersion.TLSv1_1)  # the control server allows it
    except (ssl.SSLError, ValueError) as exc:
        pytest.skip(f"this Python/OpenSSL cannot offer TLS 1.1 as a client: {exc}")
    _handshake(nginx.https, ssl.TLSVersion.TLSv1_2)
    _handshake(nginx.https, ssl.TLSVersion.TLSv1_3)
    with pytest.raises(ssl.SSLError) as refused:
        _handshake(nginx.https, ssl.TLSVersion.TLSv1_1)
    assert "PROTOCOL_VERSION" in str(refused.value) or "UNSUPPORTED_PROTOCOL" in str(
        refused.value
    ), refused.value
