"""The held-out split and the label check of the corpus (real rapidfuzz, the bundled corpus)."""

from __future__ import annotations

from aideploy.knowledge.corpus import Example, load_bundled
from aideploy.knowledge.heldout import conflicting_labels, heldout_split


def _ex(i: int, cls: str, text: str, split: str = "train") -> Example:
    return Example(id=f"{cls}-{i:03d}", error_class=cls, text=text, split=split)


def test_near_copies_of_training_texts_leave_the_test_side() -> None:
    lock = "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 2448 (apt-get)"
    pool = [
        _ex(1, "apt_lock", lock),
        _ex(
            2, "apt_lock", lock.replace("2448", "17").replace("apt-get", "unattended-upgr"), "test"
        ),
        _ex(
            3,
            "dns_failure",
            "ssh: Could not resolve hostname web1: Name or service not known",
            "test",
        ),
    ]
    split = heldout_split(pool)
    assert [e.id for e in split.removed] == ["apt_lock-002"]
    assert [e.id for e in split.test] == ["dns_failure-003"]
    assert [e.id for e in split.train] == ["apt_lock-001"]


def test_bundled_split_keeps_most_test_texts_and_never_trains_on_them() -> None:
    split = heldout_split()
    real_test = [e for e in load_bundled() if e.split == "test" and not e.synthetic]
    assert len(split.test) + len(split.removed) == len(real_test)
    assert len(split.test) > len(real_test) // 2
    train_texts = {e.text for e in split.train}
    assert not any(e.text in train_texts for e in split.test)


def test_conflicting_labels_are_found() -> None:
    pool = [
        _ex(1, "apt_lock", "E: Could not get lock /var/lib/dpkg/lock-frontend"),
        _ex(2, "permission_denied", "E: Could not get lock /var/lib/dpkg/lock-frontend."),
        _ex(3, "disk_full", "No space left on device"),
    ]
    pairs = conflicting_labels(pool)
    assert [(a.id, b.id) for a, b in pairs] == [("apt_lock-001", "permission_denied-002")]


def test_no_text_in_the_corpus_carries_two_labels() -> None:
    pairs = conflicting_labels(load_bundled())
    assert not pairs, [(a.id, b.id) for a, b in pairs]
