"""Registered secret values: masked whole, longest first, and gone after forget_secrets()."""

from __future__ import annotations

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
