"""The built-in rules on wordings of other distributions, versions and tools.

Each line is copied from the public thread named beside it (the same threads the corpus cites);
the rules alone, without the classifier, must give the class.
"""

from __future__ import annotations

import pytest

from aideploy.knowledge.rules import RuleSet

WORDINGS = [
    # https://github.com/fastfetch-cli/fastfetch/issues/1057
    (
        "package_not_found",
        "No match for argument: fastfetch\nError: Unable to find a match: fastfetch",
    ),
    # https://github.com/CentOS/CentOS-Dockerfiles/pull/12
    ("package_not_found", "No package mongodb-server available.\nError: Nothing to do"),
    # https://github.com/alpinelinux/alpine-make-rootfs/issues/21
    ("package_not_found", "ERROR: unable to select packages:\n  apt (no such package):"),
    # https://github.com/pavinjosdev/zypperoni/issues/23
    ("package_not_found", "No provider of 'zypperoni' found."),
    # https://github.com/charmbracelet/glow/issues/318
    ("package_not_found", "error: target not found: glow"),
    # https://github.com/sormy/gentoo-ami-builder/issues/9
    ("apt_lock", "Another app is currently holding the yum lock; waiting for it to exit..."),
    # https://github.com/geckolinux/geckolinux-project/issues/180
    ("apt_lock", "System management is locked by the application with pid 739 (/usr/bin/zypper)."),
    # https://github.com/aurutils/aurutils/issues/188
    ("apt_lock", "error: failed to init transaction (unable to lock database)"),
    # https://github.com/servo/ci-runners/issues/57
    ("apt_lock", "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 2448"),
    # https://github.com/deployphp/action/issues/30
    ("ssh_auth", "[preprod] < Permission denied, please try again."),
    # https://github.com/SamKirkland/web-deploy/issues/4
    (
        "ssh_auth",
        "user@domain.com: Permission denied (publickey,gssapi-keyex,gssapi-with-mic,password).",
    ),
    # https://github.com/FredHutch/proxmox-tools/issues/3
    ("ssh_auth", "paramiko.ssh_exception.AuthenticationException: Authentication failed."),
    # https://github.com/LuisEnMarroquin/setup-ssh-action/issues/1
    ("ssh_auth", 'Load key "/home/runner/.ssh/access": invalid format'),
    # https://github.com/concourse/semver-resource/pull/3
    ("ssh_auth", "Host key verification failed.\nfatal: Could not read from remote repository."),
    # https://github.com/B83C/max2140_bin/issues/3
    ("dns_failure", "wget: unable to resolve host address 'github.com'"),
    # https://github.com/Dreamacro/clash/issues/1507
    ("dns_failure", "dial DIRECT to github.com error: lookup github.com: no such host"),
    # https://github.com/npm/npm/issues/17834
    ("dns_failure", "npm ERR! getaddrinfo EAI_AGAIN registry.npmjs.org:443"),
    # https://github.com/mikemccllstr/dominionstats/issues/36
    ("out_of_memory", "Killed process 25456 (python) total-vm:1088968kB, anon-rss:865208kB"),
    # https://github.com/misskey-dev/misskey/issues/2087
    (
        "out_of_memory",
        "Build completed in 52.122s\n\nKilled\nnpm ERR! code ELIFECYCLE\nnpm ERR! errno 137",
    ),
    # https://github.com/jlab-sensing/ENTS-backend/issues/82
    ("out_of_memory", "[WARNING] Worker with pid 55 was terminated due to signal 9"),
    # https://github.com/pterodactyl/documentation/pull/177
    (
        "nodejs_conflict",
        " nodejs : Conflicts: npm\n npm : Depends: node-gyp (>= 3.6.2~) but it is not going to be installed",
    ),
]


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return RuleSet()


@pytest.mark.parametrize(("error_class", "text"), WORDINGS)
def test_rules_alone_classify_other_wordings(rules: RuleSet, error_class: str, text: str) -> None:
    scores = rules.class_scores(rules.match(text))
    assert scores, f"no rule matched {text!r}"
    assert max(scores, key=lambda c: scores[c]) == error_class


def test_a_killed_line_in_the_middle_of_the_output_is_out_of_memory(rules: RuleSet) -> None:
    # "Killed" alone on a line, then more output (npm's summary) after it
    hits = rules.match("webpack building...\nKilled\nnpm ERR! Exit status 1")
    assert {h.error_class for h in hits} == {"out_of_memory"}
    assert not rules.match("Killed the old worker gracefully")
