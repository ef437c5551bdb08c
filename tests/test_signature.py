from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aideploy.knowledge.signature import (
    MAX_LINE_CHARS,
    MAX_LINES,
    error_lines,
    mask,
    signature_of,
)

GOLDEN: list[tuple[str, str]] = [
    (
        "Reading package lists... Done\nBuilding dependency tree\n"
        "E: Unable to locate package nodejs-foo",
        "E: Unable to locate package <pkg>",
    ),
    (
        "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 12345 (apt)",
        "E: Could not get lock <path>/lock-frontend. It is held by process <pid> (apt)",
    ),
    (
        "2024/01/02 10:11:12 [emerg] 1234#1234: bind() to 0.0.0.0:80 failed "
        "(98: Address already in use)",
        "[emerg] <pid>#<pid>: bind() to <ip>:<port> failed (98: Address already in use)",
    ),
    (
        "Job for gunicorn.service failed because the control process exited with error code.\n"
        'See "systemctl status gunicorn.service" and "journalctl -xeu gunicorn.service" '
        "for details.",
        "Job for gunicorn.service failed because the control process exited with error code.",
    ),
    (
        "Job for myapp-web.service failed because the control process exited with error code.",
        "Job for <service>.service failed because the control process exited with error code.",
    ),
    (
        "fatal: Authentication failed for 'https://github.com/alice/repo.git/'",
        "fatal: Authentication failed for 'https://<url>'",
    ),
    (
        "curl: (7) Failed to connect to localhost port 8000 after 0 ms: Connection refused",
        "curl: (7) Failed to connect to localhost port <port> after <num> ms: Connection refused",
    ),
    (
        "ssh: Could not resolve hostname web1.example.com: Temporary failure in name resolution",
        "ssh: Could not resolve hostname <host>: Temporary failure in name resolution",
    ),
    (
        "npm ERR! code E404\nnpm ERR! 404 Not Found - GET https://registry.npmjs.org/left-pad-xyz"
        " - Not found\nnpm ERR! 404 'left-pad-xyz@1.2.3' is not in this registry.",
        "npm ERR! code E404\nnpm ERR! 404 Not Found - GET https://<url> - Not found\n"
        "npm ERR! 404 '<pkg>' is not in this registry.",
    ),
    (
        'psql: error: FATAL:  password authentication failed for user "myapp"',
        'psql: error: FATAL: password authentication failed for user "<name>"',
    ),
    (
        "Traceback (most recent call last):\n"
        '  File "/home/alice/app/manage.py", line 22, in <module>\n'
        "    main()\n"
        "django.db.utils.OperationalError: could not connect to server: Connection refused\n",
        "django.db.utils.OperationalError: could not connect to server: Connection refused",
    ),
    (
        "\x1b[31mbash: gunicorn: command not found\x1b[0m",
        "bash: gunicorn: command not found",
    ),
    (
        "dpkg: error processing archive /var/cache/apt/archives/nodejs_18.19.0-1nodesource1_"
        "amd64.deb (--unpack):\n trying to overwrite '/usr/include/node/common.gypi', which is "
        "also in package libnode-dev 12.22.9~dfsg-1ubuntu3\n"
        "E: Sub-process /usr/bin/dpkg returned an error code (1)",
        "dpkg: error processing archive <path>/nodejs_<ver>_amd64.deb (--unpack):\n"
        "trying to overwrite '<path>/common.gypi', which is also in package libnode-dev <ver>\n"
        "E: Sub-process <path>/dpkg returned an error code (1)",
    ),
]


@pytest.mark.parametrize(("raw", "expected"), GOLDEN)
def test_golden(raw: str, expected: str) -> None:
    assert signature_of(raw) == expected


def test_same_error_two_machines_same_signature() -> None:
    a = (
        "Oct  3 10:01:02 web1 nginx[4711]: nginx: [emerg] open() "
        '"/etc/nginx/sites-enabled/shop" failed (2: No such file or directory)'
    )
    b = (
        "Nov 21 23:59:59 db-7 nginx[99]: nginx: [emerg] open() "
        '"/etc/nginx/sites-enabled/blog" failed (2: No such file or directory)'
    )
    assert signature_of(a).replace("shop", "x") == signature_of(b).replace("blog", "x")
    c = "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 881 (apt-get)"
    d = "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)"
    assert signature_of(c) == signature_of(d)
    e = "ssh: connect to host 10.0.0.5 port 22: Connection refused"
    f = "ssh: connect to host 192.168.1.20 port 2222: Connection refused"
    assert signature_of(e) == signature_of(f)


def test_release_and_deployment_ids_do_not_split_an_error() -> None:
    """Each deploy makes a new release directory; the same error in two of them is one error."""
    first = "mkdir: cannot create directory '/srv/app/releases/20261127-032300-abc123': Permission denied"
    again = "mkdir: cannot create directory '/srv/app/releases/20261128-101500-0f9e8d': Permission denied"
    assert signature_of(first) == signature_of(again)
    assert signature_of(first).endswith("'<path>/<id>': Permission denied")
    other = "error: release 20240101123456 of deployment 20261127-032300-abc123 failed"
    assert signature_of(other) == "error: release <id> of deployment <id> failed"


def test_different_errors_differ() -> None:
    texts = [
        "E: Unable to locate package foo",
        "E: Could not get lock /var/lib/dpkg/lock-frontend.",
        "bind() to 0.0.0.0:80 failed (98: Address already in use)",
        "No space left on device",
        "Temporary failure in name resolution",
        "Permission denied (publickey).",
        "bash: npm: command not found",
        "bash: node: command not found",
    ]
    assert len({signature_of(t) for t in texts}) == len(texts)


def test_falls_back_to_last_lines() -> None:
    assert error_lines("one\ntwo\nthree\nfour\n") == ["two", "three", "four"]
    assert signature_of("") == ""
    assert signature_of("\n\n  \n") == ""


def test_time_stamps_and_warnings_do_not_split_an_error() -> None:
    plain = "E: Could not get lock /var/lib/dpkg/lock-frontend"
    for printed in (
        f"2026-03-04T05:06:07Z {plain}",
        f"2026-03-04 05:06:07,123 {plain}",
        f"Mar  4 05:06:07 web-3 {plain}",
        f"npm WARN deprecated core-js@2.6.12: core-js@<3 is no longer maintained\n{plain}",
        f"[2026-03-04 05:06:07] {plain}",
        f"[Wed Mar 04 05:06:07 2026] {plain}",
        f"Wed Mar  4 05:06:07 2026 {plain}",
        f"[05:06:07] {plain}",
    ):
        assert signature_of(printed) == signature_of(plain), printed
    # a warning that names the cause (a lock, an engine) still counts
    assert "EBADENGINE" in signature_of("npm WARN EBADENGINE Unsupported engine {\nnpm ERR! x")


def test_noise_lines_dropped() -> None:
    raw = (
        "npm ERR! code EACCES\nnpm ERR! syscall mkdir\n"
        "npm ERR! A complete log of this run can be found in:\n"
        "npm ERR!     /root/.npm/_logs/2023-01-01T10_00_00_000Z-debug-0.log"
    )
    sig = signature_of(raw)
    assert "complete log" not in sig
    assert "_logs" not in sig


def test_bounded_output() -> None:
    raw = "\n".join(f"error {i}: " + "x" * 500 + f" {i}" for i in range(1000))
    sig = signature_of(raw)
    lines = sig.splitlines()
    assert len(lines) <= MAX_LINES
    assert all(len(line) <= MAX_LINE_CHARS for line in lines)


def test_big_input_fast() -> None:
    raw = ("Setting up thing 1.2.3 at /usr/lib/x ... error 42\n" * 200_000)[: 10 * 1024 * 1024]
    start = time.perf_counter()
    signature_of(raw)
    assert time.perf_counter() - start < 1.0


def test_binary_garbage() -> None:
    garbage = bytes(range(256)) * 4000
    text = garbage.decode("utf-8", errors="replace")
    sig = signature_of(text)
    assert signature_of(sig) == sig


def test_mask_keeps_codes() -> None:
    assert mask("exit code 137") == "exit code 137"
    assert mask("status=203/EXEC") == "status=203/EXEC"
    assert mask("errno -13") == "errno -13"
    assert mask("took 1234 ms") == "took <num> ms"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_idempotent_any_text(text: str) -> None:
    sig = signature_of(text)
    assert signature_of(sig) == sig


_PIECES = st.sampled_from(
    [
        "error",
        "E: ",
        "npm ERR! ",
        "fatal: ",
        "/var/lib/dpkg/lock",
        "/home/bob/x.py",
        "~/.npm/",
        "1.2.3",
        "v18.1.0",
        "12.22.9~dfsg-1ubuntu3",
        "10.0.0.1:80",
        "[::1]:8000",
        "fe80::1",
        "bob@host.example.com",
        "https://x.org/a?b=1",
        "'pkg@1.0.0'",
        "Unable to locate package foo",
        "No module named 'x'",
        "port 5432",
        "pid 12",
        "nginx[12]:",
        "12#12:",
        "2024-01-02T03:04:05Z",
        "Jan  1 00:00",
        "deadbeef1234",
        "0xff",
        "x.service",
        'user "u"',
        "Traceback (most recent call last):",
        "KeyError: 'a'",
        "  ",
        "\n",
        "\r",
        "\x1b[31m",
        ":",
        "<",
        ">",
        "'",
        '"',
        "/",
        ".",
        "-",
        "7",
        "a",
        "(98: ",
        "status=1",
    ]
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(_PIECES, max_size=30).map("".join))
# a home path after a traceback header is not a frame's caret/tilde marker line
@example("Traceback (most recent call last):\n~/.npm/error")
def test_idempotent_structured(text: str) -> None:
    sig = signature_of(text)
    assert signature_of(sig) == sig
    assert mask(sig) == sig
