"""Prompt responders: a regex seen in a command's output is answered on its standard input."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class Responder:
    """Answer ``answer`` whenever ``pattern`` appears in the not-yet-answered output.

    ``secret`` answers (passwords) are never logged; ``max_answers`` bounds how often it fires
    (a wrong sudo password must not loop forever).
    """

    name: str
    pattern: re.Pattern[str]
    answer: str
    secret: bool = False
    max_answers: int = 20
    answered: int = field(default=0, init=False)

    def match(self, text: str) -> re.Match[str] | None:
        if self.answered >= self.max_answers:
            return None
        return self.pattern.search(text)


def responder(name: str, pattern: str, answer: str, **kwargs: object) -> Responder:
    return Responder(name, re.compile(pattern, re.M), answer, **kwargs)  # type: ignore[arg-type]


def apt_yes() -> Responder:
    """apt/dpkg "Do you want to continue? [Y/n]"."""
    return responder("apt-continue", r"Do you want to continue\? \[Y/n\]\s*$", "Y\n")


def dpkg_conffile(keep_current: bool = True) -> Responder:
    """dpkg's modified-conffile question; keep the admin's file unless told otherwise."""
    return responder(
        "dpkg-conffile",
        r"\*\*\* .+ \(Y/I/N/O/D/Z\) \[default=N\] \?\s*$",
        "N\n" if keep_current else "Y\n",
    )


def sudo_password(password: str) -> Responder:
    """``sudo -S`` password prompt; the answer is secret and tried at most twice."""
    return responder(
        "sudo-password",
        r"\[sudo\] password for [^:\n]+:\s*$|^Password:\s*$",
        password + "\n",
        secret=True,
        max_answers=2,
    )


def ssh_host_key(accept: bool) -> Responder:
    """OpenSSH's unknown-host question inside a command (git over ssh, scp): refuse by default."""
    return responder(
        "ssh-continue-connecting",
        r"continue connecting \(yes/no(?:/\[fingerprint\])?\)\?\s*$",
        "yes\n" if accept else "no\n",
    )


def default_responders(
    *, sudo_pass: str | None = None, accept_new_host_keys: bool = False
) -> list[Responder]:
    found = [apt_yes(), dpkg_conffile(), ssh_host_key(accept_new_host_keys)]
    if sudo_pass:
        found.append(sudo_password(sudo_pass))
    return found


#: a partial line that looks like it waits for input (used in interactive mode)
PROMPT_LIKE = re.compile(r"(?:[?:>\]]|\(y/n\)|\[y/N\])\s*$", re.I)
