"""The ``aideploy`` command line: a thin click layer over the library.

Library errors (AideployError) become one line and an exit code here, in one place; tracebacks go
to the debug log and reach the screen only with ``--debug``.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import click

from aideploy import __version__
from aideploy.cli.lazy import LazyCommand, LazyGroup
from aideploy.cli.options import DEFAULT_CONFIG, GlobalOptions
from aideploy.core import paths
from aideploy.core.errors import (
    AideployError,
    ConfigError,
)
from aideploy.core.private import open_private
from aideploy.core.redact import redact
from aideploy.engine.logs import configure_console

#: every command, by name: the module that holds it (imported on first use)
COMMANDS = {
    "deploy": LazyCommand(
        "aideploy.cli.deploy:deploy",
        "Run a deployment plan against a server (or this machine with --local).",
    ),
    "resume": LazyCommand(
        "aideploy.cli.deploy:resume",
        "Continue a deployment from its first unfinished step (or a run's unfinished hosts).",
    ),
    "rollback": LazyCommand(
        "aideploy.cli.deploy:rollback",
        "Switch the stack app back to an earlier release and restart it.",
    ),
    "unlock": LazyCommand(
        "aideploy.cli.locks:unlock", "Remove the deploy lock a dead deployment left on the target."
    ),
    "abandon": LazyCommand(
        "aideploy.cli.locks:abandon",
        "Give up a deployment for good and release the lock it held on its target.",
    ),
    "status": LazyCommand(
        "aideploy.cli.deployments:status",
        "Show one deployment or fleet run (default: the newest deployment).",
    ),
    "list": LazyCommand("aideploy.cli.deployments:list_cmd", "List deployments, newest first."),
    "logs": LazyCommand(
        "aideploy.cli.deployments:logs",
        "Show a deployment's log (default: the newest deployment's).",
    ),
    "test-connection": LazyCommand(
        "aideploy.cli.connection:test_connection",
        "Connect, run a trivial command, report latency and the host key fingerprint.",
    ),
    "config": LazyCommand(
        "aideploy.cli.config:config_group", "Check and document the configuration file."
    ),
    "learn": LazyCommand(
        "aideploy.cli.learn:learn",
        "The knowledge base: what failed, what fixed it, and what to try next.",
    ),
    "audit": LazyCommand(
        "aideploy.cli.ops:audit_group",
        "The append-only, hash-chained audit log of deployments, rollbacks, imports...",
    ),
    "init": LazyCommand(
        "aideploy.cli.ops:init",
        "Set up: SSH key, server profiles and a validated configuration file (the guide's wizard).",
    ),
    "inventory": LazyCommand(
        "aideploy.cli.inventory:inventory_group",
        "Read an inventory: list its hosts, check that they answer.",
    ),
    "demo": LazyCommand(
        "aideploy.cli.demo:demo",
        "Deploy the sample app with the stack plan into a throwaway copy of this machine.",
    ),
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aideploy")
@click.option(
    "--debug", is_flag=True, envvar="AIDEPLOY_DEBUG", help="Show tracebacks and debug output."
)
@click.option("-v", "--verbose", count=True, help="More detail (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the final result.")
@click.option(
    "--plain",
    is_flag=True,
    help="Plain, timestamped output lines: no colour, no live status line "
    "(as with NO_COLOR=1 or when output is not a terminal).",
)
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    help=f"Configuration file (default: $AIDEPLOY_CONFIG or ./{DEFAULT_CONFIG}).",
)
@click.pass_context
def cli(
    ctx: click.Context,
    debug: bool,
    verbose: int,
    quiet: bool,
    plain: bool,
    config_path: str | None,
) -> None:
    """Deploy web applications over SSH, recover from failures, and learn what works."""
    verbosity = -1 if quiet else (2 if debug else verbose)
    ctx.obj = GlobalOptions(debug, verbosity, config_path, plain)
    configure_console(verbosity)


def _debug_log(exc: BaseException) -> Path | None:
    try:
        path = paths.private_home("logs") / "debug.log"
        with open_private(path) as handle:
            handle.write(redact(f"--- {datetime.now().isoformat()} {sys.argv!r}\n"))
            handle.write(redact("".join(traceback.format_exception(exc))))
        return path
    except OSError:
        return None


def _print_traceback(exc: BaseException) -> None:
    """``--debug``: the traceback on stderr, redacted like every other output."""
    click.echo(redact("".join(traceback.format_exception(exc))).rstrip("\n"), err=True)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one line per error, exit codes from the error tree."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:]) or bool(
        os.environ.get("AIDEPLOY_DEBUG")
    )
    exit_with: Callable[[int], None] = sys.exit
    try:
        code = cli.main(args=argv, prog_name="aideploy", standalone_mode=False)
        if isinstance(code, int) and code:  # ctx.exit(N): returned, not raised, here
            exit_with(code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        exit_with(130)
    except click.exceptions.Exit as exc:
        exit_with(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        exit_with(exc.exit_code)
    except AideployError as exc:
        _debug_log(exc)
        if debug:
            _print_traceback(exc)
        click.echo(f"error: {redact(str(exc))}", err=True)
        exit_with(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        exit_with(130)
    except Exception as exc:
        where = _debug_log(exc)
        if debug:
            _print_traceback(exc)
        hint = f" (traceback in {where})" if where else ""
        click.echo(f"internal error: {type(exc).__name__}: {redact(str(exc))}{hint}", err=True)
        exit_with(70)


__all__ = ["ConfigError", "cli", "main"]
