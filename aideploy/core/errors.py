"""The one error tree. The CLI turns any AideployError into one line and an exit code."""

from __future__ import annotations


class AideployError(Exception):
    """Base of every error aideploy raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigError(AideployError):
    """A configuration file or option is invalid."""

    exit_code = 2


class UsageError(AideployError):
    """The command line asks for something that cannot be done."""

    exit_code = 2


class ConnectError(AideployError):
    """Could not connect to a host."""

    exit_code = 3


class SessionStartError(ConnectError):
    """The persistent session shell could not be started on a connected host, retries
    included."""


class ConnectionLost(ConnectError):
    """The connection to the host dropped while a command ran (it may still be running there)."""


class DNSError(ConnectError):
    """The host name does not resolve."""


class ConnectionRefusedError_(ConnectError):
    """The host answered but nothing listens on the port."""


class ConnectTimeoutError(ConnectError):
    """The host did not answer in time."""


class AuthenticationError(ConnectError):
    """The server refused every credential offered."""


class HostKeyError(ConnectError):
    """The server's host key is unknown or changed."""


class UnknownHostKeyError(HostKeyError):
    """The server's host key is not in known_hosts."""


class ChangedHostKeyError(HostKeyError):
    """The server's host key differs from the one recorded in known_hosts."""


class CommandError(AideployError):
    """A command could not be run at all (not: it ran and failed)."""


class CommandTimedOut(CommandError):
    """A command ran past its timeout and was stopped."""


class StepFailed(AideployError):
    """A deployment step failed and was not recovered."""

    exit_code = 4


class RecoveryExhausted(StepFailed):
    """Every recovery candidate for a failure was tried and none worked."""


class ManualInterventionRequired(StepFailed):
    """A step needs a person; the deployment is paused and resumable."""

    exit_code = 5


class StateError(AideployError):
    """Deployment state is missing or unreadable."""


class LockError(AideployError):
    """A deploy lock (or a deployment) is held by someone else."""

    exit_code = 6


class LockHeld(LockError):
    """The deploy lock on the target is held by another deployment; ``holder`` is what the lock
    records (deployment id, user, host, pid, since)."""

    def __init__(
        self, message: str, *, holder: dict[str, str] | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.holder = dict(holder or {})


class FleetFailed(AideployError):
    """A fleet run tried every host it selected and some failed (or failed their health
    check); ``resume RUN`` continues them."""

    exit_code = 7


class RolloutStopped(FleetFailed):
    """A fleet run stopped before every host was tried: more hosts failed than ``--max-fail``
    allows (the health gate between batches); ``resume RUN`` continues the rest."""

    exit_code = 8


class KnowledgeBaseError(AideployError):
    """The knowledge base cannot be opened, read or written."""


class NoKnowledgeBase(KnowledgeBaseError):
    """A command that only reads a knowledge base was given a file that does not exist."""

    exit_code = 2


class ImportRejected(KnowledgeBaseError):
    """An import file was rejected; nothing was imported."""

    exit_code = 2


#: The exit-code contract: code -> (meaning, the commands that end with it). Codes 0, 70 and 130
#: come from the command line itself; every other code is some error class's ``exit_code``.
#: docs/exit-codes.md is this table (tests/test_docs.py checks both ways).
EXIT_CODES: dict[int, tuple[str, str]] = {
    0: ("success", "every command"),
    1: (
        "error: no such deployment, an unreadable state or knowledge base, a command that could "
        "not be run, a failed rollback, a broken audit chain",
        "every command",
    ),
    2: (
        "bad configuration, command line or import file; a request that cannot be done "
        "(resuming an abandoned deployment, abandoning a completed one)",
        "every command",
    ),
    3: (
        "could not connect (DNS, refused, timeout, authentication, host key), the session shell "
        "would not start, or the connection was lost during a step",
        "deploy, resume, rollback, test-connection, unlock, abandon, demo",
    ),
    4: ("a step failed and was not recovered", "deploy, resume, demo"),
    5: ("paused for manual intervention (resumable)", "deploy, resume, demo"),
    6: (
        "deploy lock held by someone else (or a deployment still run by a live process)",
        "deploy, resume, unlock, abandon",
    ),
    7: (
        "fleet run: every selected host was tried and some failed or failed their health check "
        "(resumable with resume RUN)",
        "deploy --inventory, resume RUN",
    ),
    8: (
        "fleet run: the rollout stopped after a batch (more hosts failed than --max-fail "
        "allows); hosts not started are left pending (resumable with resume RUN)",
        "deploy --inventory, resume RUN",
    ),
    70: ("internal error (traceback in `$AIDEPLOY_HOME/logs/debug.log`)", "every command"),
    130: ("interrupted (Ctrl-C)", "every command"),
}


def error_codes() -> dict[int, list[str]]:
    """Every exit code the error tree uses, with the classes that use it."""
    found: dict[int, list[str]] = {}
    todo: list[type[AideployError]] = [AideployError]
    while todo:
        cls = todo.pop()
        found.setdefault(cls.exit_code, []).append(cls.__name__)
        todo.extend(cls.__subclasses__())
    return {code: sorted(names) for code, names in sorted(found.items())}
