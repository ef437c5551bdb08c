"""The registry (names, token formats, URL user parts, key blocks) and the streaming redactor:
for any split of a text into chunks, streaming gives what one-shot redaction gives."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aideploy.core.redact import (
    MASK,
    StreamRedactor,
    forget_secrets,
    is_secret_key,
    redact,
    register_secret,
)

RSA = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAq7rsaKEYbodyLINEoneQ1w2e3r4t5y6u7i8o9p0aSdFgHjKl\n"
    "ZxCvBnM1q2w3e4r5t6y7u8i9o0pQwErTyUiOpAsDfGhJkLzXcVbNm0987654321ab\n"
    "-----END RSA PRIVATE KEY-----"
)
OPENSSH = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "-----END OPENSSH PRIVATE KEY-----"
)
REGISTERED = "canary-registered-7f3a9c"

#: (text, what must not survive)
SECRET_TEXTS = [
    ("SECRET_KEY = 'django-insecure-x(7)&=q+z#w'", "django-insecure-x(7)&=q+z#w"),
    ("DJANGO_SECRET_KEY=k3y-v4lue-0042", "k3y-v4lue-0042"),
    ("secret_key = b'bytes-k3y-0043'", "bytes-k3y-0043"),
    ('SECRET_KEY = "has\'quote-0044"', "quote-0044"),
    ('{"db_password": "pw with spaces"}', "pw with spaces"),
    ("clone https://ghp_abcdefghijklmnopqrstuvwxyz0123@git.example.com/r.git", "ghp_abcdefghij"),
    ("https://anytokenvalue42@example.com/x.git", "anytokenvalue42"),
    ("https://deployer:s3cr3t-pw@example.com/x.git", "s3cr3t-pw"),
    ("git+ssh://tok9988aa@example.com/x", "tok9988aa"),
    ("glpat-abcdefghijklmnopqrst12", "glpat-abcdefghij"),
    ("xoxb-1234567890-abcdefghij", "xoxb-1234567890"),
    ("key id AKIAABCDEFGHIJKLMNOP used", "AKIAABCDEFGHIJKLMNOP"),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
    ("found wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY in a file", "wJalrXUtnFEMI"),
    (
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "dozjgNryP4J3",
    ),
    ("DATABASE_URL=postgres://app:dbpw-77@db/app", "dbpw-77"),
    ("mysql --password=hunter2222 -u x", "hunter2222"),
    ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
    (RSA, "MIIEowIBAAKC"),
    (OPENSSH, "b3BlbnNzaC1r"),
]


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


@pytest.mark.parametrize(("text", "secret"), SECRET_TEXTS)
def test_secret_shapes_are_masked(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert MASK in out


@pytest.mark.parametrize(
    "text",
    [
        "commit 0123456789abcdef0123456789abcdef01234567",
        "PUBLIC_KEY=ssh-ed25519 AAAA",
        "APP_NAME=shop",
        "ssh -p 22 deploy@example.com",
        "git@github.com:org/repo.git",
        "password: ***",
        "max_tokens=100 token_count: 7",
        "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ],
)
def test_ordinary_text_is_kept(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("DJANGO_SECRET_KEY", True),
        ("SECRET_KEY", True),
        ("DB_PASSWORD", True),
        ("GITHUB_TOKEN", True),
        ("STRIPE_API_KEY", True),
        ("DATABASE_URL", True),
        ("SENTRY_DSN", True),
        ("db-pass", True),
        ("STRIPE_PUBLISHABLE_KEY", False),
        ("SSH_PUBLIC_KEY", False),
        ("APP_NAME", False),
        ("DB_PORT", False),
        ("key", False),
        ("token_count", False),
        ("SESSION_COOKIE_SECURE", False),
        ("SECRET_KEY_BASE", True),
        ("CLIENT_SECRET", True),
        ("AWS_SECRET_ACCESS_KEY", True),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_key(name) is secret


def _stream(text: str, cuts: list[int], **limits: int) -> str:
    redactor = StreamRedactor(**limits)
    out, last = [], 0
    for cut in sorted(set(cuts)):
        out.append(redactor.feed(text[last:cut]))
        last = cut
    out.append(redactor.feed(text[last:]))
    out.append(redactor.flush())
    return "".join(out)


_pieces = st.sampled_from(
    [text for text, _ in SECRET_TEXTS] + [REGISTERED, "plain output line", "x = 1", "", "\r"]
)
_texts = st.lists(
    st.tuples(_pieces, st.sampled_from(["\n", " ", "\n\n", " \r\n"])), min_size=1, max_size=8
).map(lambda parts: "".join(p + sep for p, sep in parts))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_texts, data=st.data())
def test_streaming_equals_one_shot_for_any_split(text: str, data: st.DataObject) -> None:
    register_secret(REGISTERED)
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=12))
    streamed = _stream(text, cuts)
    assert streamed == redact(text)
    for _, secret in SECRET_TEXTS:
        assert secret not in streamed
    assert REGISTERED not in streamed


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(0, len(RSA) + 40), max_size=30))
def test_a_key_block_split_across_reads_one_line_each(cuts: list[int]) -> None:
    text = "before\n" + RSA + "\nafter\n"
    streamed = _stream(text, cuts)
    assert "MIIEowIBAAKC" not in streamed and "ZxCvBnM1q2w3" not in streamed
    assert streamed.startswith("before\n") and streamed.endswith("after\n")


def test_hold_back_is_bounded_and_a_long_block_is_masked_whole() -> None:
    body = "\n".join("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo" + str(i) for i in range(200))
    text = "start\n-----BEGIN PRIVATE KEY-----\n" + body + "\n-----END PRIVATE KEY-----\nafter\n"
    redactor = StreamRedactor(line_limit=256, block_limit=1024)
    out = []
    for i in range(0, len(text), 50):
        out.append(redactor.feed(text[i : i + 50]))
        assert redactor.held <= 1024 + 256
    out.append(redactor.flush())
    streamed = "".join(out)
    assert "QUJDREVG" not in streamed
    assert streamed.startswith("start\n") and streamed.endswith("after\n")


def test_an_unterminated_block_is_masked_at_the_end() -> None:
    redactor = StreamRedactor()
    out = redactor.feed("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXkt\n")
    out += redactor.flush()
    assert "b3BlbnNz" not in out and MASK in out


def test_a_registered_value_over_several_lines_is_masked_when_streamed() -> None:
    value = "first-line-of-secret\nsecond-line-of-secret"
    register_secret(value)
    text = f"before\n{value}\nafter\n"
    streamed = _stream(text, [10, 30])
    assert "line-of-secret" not in streamed
    assert redact(text) == f"before\n{MASK}\nafter\n"


def test_an_unterminated_quoted_value_is_masked_to_the_line_end() -> None:
    assert redact("SECRET_KEY = 'unterminated-0045\nnext") == f"SECRET_KEY = '{MASK}\nnext"
