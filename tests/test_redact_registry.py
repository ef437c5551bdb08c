"""Registered secret values: masked whole, longest first, and gone after forget_secrets()."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from aideploy.core.redact import MASK, forget_secrets, redact, register_secret


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


def test_a_secret_inside_a_longer_one_is_masked_with_it() -> None:
    register_secret("s3cr3t")  # registered first, and part of the next one
    register_secret("s3cr3t-and-more")
    assert redact("seen: s3cr3t-and-more / s3cr3t") == f"seen: {MASK} / {MASK}"


def test_registering_again_changes_nothing_and_forget_clears() -> None:
    register_secret("hunter22")
    register_secret("hunter22")
    register_secret("abc")  # too short to register: common words would be masked everywhere
    assert redact("pw hunter22 abc") == f"pw {MASK} abc"
    forget_secrets()
    assert redact("pw hunter22") == "pw hunter22"


def test_a_value_registered_after_a_text_was_redacted_is_masked_in_it_next_time() -> None:
    text = "connecting with Tr0ub4dor-x9 now"
    assert redact(text) == text  # nothing secret yet (and the result is remembered)
    register_secret("Tr0ub4dor-x9")
    assert redact(text) == f"connecting with {MASK} now"
    forget_secrets()
    assert redact(text) == text


def test_registering_while_other_threads_redact_never_leaves_a_value_unmasked() -> None:
    texts = [f"line {n} carries Zq7-secret-{n % 7}" for n in range(2000)]
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            for text in texts:
                redact(text)

    workers = [threading.Thread(target=churn) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        for n in range(7):
            register_secret(f"Zq7-secret-{n}")
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert all("Zq7-secret" not in redact(text) for text in texts)
