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
    """A deploy lock is held by someone else."""

    exit_code = 6


class KnowledgeBaseError(AideployError):
    """The knowledge base cannot be opened, read or written."""


class NoKnowledgeBase(KnowledgeBaseError):
    """A command that only reads a knowledge base was given a file that does not exist."""

    exit_code = 2


class ImportRejected(KnowledgeBaseError):
    """An import file was rejected; nothing was imported."""

    exit_code = 2
