"""The ``aideploy`` command line: a thin click layer over the library.

Library errors (AideployError) become one line and an exit code here, in one place; tracebacks go
to the debug log and reach the screen only with ``--debug``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from aideploy import __version__
from aideploy.cli.progress import ConsoleProgress, say, set_plain
from aideploy.core import paths
from aideploy.core.errors import (
    AideployError,
    ConfigError,
    StateError,
    StepFailed,
    UsageError,
)
from aideploy.core.redact import MASK, is_secret_key, redact, register_secret
from aideploy.engine.logs import configure_console
from aideploy.engine.state import DeploymentState, DeploymentStatus, list_states
from aideploy.services.config import Config, default_config, load_config, schema_docs
from aideploy.services.target import Target, resolve_target

log = logging.getLogger("aideploy.cli")

DEFAULT_CONFIG = "ai_deployment_config.json"


class Settings:
    def __init__(self, debug: bool, verbosity: int, config_path: str | None) -> None:
        self.debug = debug
        self.verbosity = verbosity
        self.config_path = config_path

    def config(self) -> Config:
        if self.config_path:
            return load_config(Path(self.config_path))
        env = os.environ.get("AIDEPLOY_CONFIG")
        if env:
            return load_config(Path(env))
        if Path(DEFAULT_CONFIG).is_file():
            return load_config(Path(DEFAULT_CONFIG))
        return default_config()


def _settings() -> Settings:
    ctx = click.get_current_context()
    obj = ctx.find_object(Settings)
    return obj if obj is not None else Settings(False, 0, None)


# -- the group ---------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    set_plain(plain)
    ctx.obj = Settings(debug, verbosity, config_path)
    configure_console(verbosity)


# -- shared options ----------------------------------------------------------------------------

_TARGET_OPTIONS = (
    "profile",
    "server",
    "username",
    "port",
    "key_file",
    "local",
    "accept_new_host_key",
)


def target_options(*, local: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options that say where a command goes; they reach it as ``target_opts``, ready for
    :func:`resolve_target`."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            opts = {key: kwargs.pop(key) for key in _TARGET_OPTIONS if key in kwargs}
            return func(target_opts=opts, **kwargs)

        options = [
            click.option("--profile", help="Server profile from the configuration file."),
            click.option("--server", help="Host name or address (overrides the profile's)."),
            click.option("--user", "username", help="Remote user."),
            click.option("--port", type=click.IntRange(1, 65535), help="SSH port."),
            click.option("--key-file", type=click.Path(dir_okay=False), help="SSH private key."),
        ]
        if local:
            options.append(click.option("--local", is_flag=True, help="This machine, without SSH."))
        options.append(
            click.option(
                "--accept-new-host-key",
                is_flag=True,
                help="Trust and record the host key of a server seen for the first time.",
            )
        )
        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate


# -- deploy / resume ---------------------------------------------------------------------------


def _secret_prompt() -> Callable[[str], str] | None:
    """Ask for a passphrase or password on the terminal, unechoed; None without a terminal."""
    if not sys.stdin.isatty():
        return None
    return lambda prompt: str(click.prompt(prompt, hide_input=True))


def _operator(mode: str, progress: ConsoleProgress) -> Any:
    from aideploy.services.deploy import Operator

    tty = sys.stdin.isatty()
    secret_prompt = _secret_prompt()

    def approve(question: str) -> bool:
        if mode == "auto" or not tty:
            say(f"      not approved (no one to ask): {question}", fg="yellow")
            return False
        with progress.paused():
            return click.confirm(question, default=False)

    def ask_prompt(text: str) -> str | None:
        with progress.paused():
            click.echo(f"\n[command waits for input] {text}")
            answer = click.prompt(
                "answer (empty: leave it waiting)", default="", show_default=False
            )
        return str(answer) or None

    def ask_secret(prompt: str) -> str:
        assert secret_prompt is not None
        with progress.paused():
            return secret_prompt(prompt)

    return Operator(
        approve=approve,
        ask_secret=ask_secret if secret_prompt is not None else None,
        ask_prompt=ask_prompt if mode == "interactive" else None,
        on_line=progress.line,
        on_command=progress.on_command,
        progress=progress,
    )


def _parse_sets(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE")
        if is_secret_key(key):
            register_secret(value)  # masked in output; stored as *** (prefer --secret-env)
        out[key] = value
    return out


def _finish(state: DeploymentState) -> None:
    if state.status is DeploymentStatus.COMPLETED:
        say(
            f"Deployment {state.deployment_id} completed ({state.total_steps} steps, "
            f"{state.error_count} errors recovered).",
            fg="green",
        )


def _run(request: Any, state: DeploymentState, mode: str) -> None:
    from aideploy.services import deploy

    progress = ConsoleProgress(_settings().verbosity)
    if progress.verbosity >= 0:
        say(f"Deployment {state.deployment_id}: plan {state.plan} -> {request.target.describe()}")
    try:
        with progress:
            final = deploy.run(request, state, _operator(mode, progress))
    except StepFailed as exc:
        say(
            f"Deployment {state.deployment_id} {state.status.value.upper()}: {exc}",
            fg="red",
            err=True,
        )
        say(f"Resume with: aideploy resume {state.deployment_id}", err=True)
        raise SystemExit(exc.exit_code) from None
    _finish(final)


@cli.command()
@target_options()
@click.option("--domain", help="Domain the app is served on.")
@click.option(
    "--plan",
    "plan_spec",
    default="example",
    show_default=True,
    help="Built-in plan name, module:attribute, or a .toml plan file.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Plan variable (passed to commands as an environment variable).",
)
@click.option(
    "--secret-env",
    "secret_env",
    multiple=True,
    metavar="NAME",
    help="Plan variable whose value is read from this environment variable at run "
    "(and resume) time; it is masked in output and never stored.",
)
@click.option("--interactive", is_flag=True, help="Ask about risky recoveries and prompts.")
@click.option("--auto", is_flag=True, help="Never ask; high-risk recoveries need auto_approve.")
@click.option("--dry-run", is_flag=True, help="Print what would run; run nothing.")
@click.option(
    "--yes",
    "assume_yes",
    is_flag=True,
    help="Confirm a deploy to a protected profile without typing its name (for CI).",
)
@click.option(
    "--kb",
    metavar="PATH_OR_URL",
    envvar="AIDEPLOY_KB",
    help="Knowledge base (SQLite path or SQLAlchemy URL).",
)
@click.option("--resume", "resume_flag", is_flag=True, help="Resume --deployment-id.")
@click.option("--deployment-id", help="With --resume: the deployment to continue.")
def deploy(
    target_opts: dict[str, Any],
    domain: str | None,
    plan_spec: str,
    sets: tuple[str, ...],
    secret_env: tuple[str, ...],
    interactive: bool,
    auto: bool,
    dry_run: bool,
    assume_yes: bool,
    kb: str | None,
    resume_flag: bool,
    deployment_id: str | None,
) -> None:
    """Run a deployment plan against a server (or this machine with --local)."""
    if resume_flag:
        if not deployment_id:
            raise UsageError("--resume needs --deployment-id ID")
        _resume(deployment_id, kb)
        return
    if interactive and auto:
        raise UsageError("--interactive and --auto cannot be used together")
    from aideploy.services import deploy as deploy_mod

    config = _settings().config()
    target = resolve_target(config, domain=domain, **target_opts)
    profile = target_opts.get("profile")
    env = _parse_sets(sets)
    if target.domain:
        env.setdefault("DOMAIN", target.domain)
    mode = "interactive" if interactive else ("auto" if auto else "default")
    if profile:
        _guard_protected(config, profile, auto, assume_yes)
    request = deploy_mod.DeployRequest(
        plan_spec=plan_spec,
        target=target,
        config=config,
        env=env,
        kb=kb,
        mode=mode,
        secret_env=tuple(secret_env),
    )
    if dry_run:
        plan = deploy_mod.prepare_plan(plan_spec, env, "<deployment-id>")
        _print_dry_run(plan, target)
        return
    plan = deploy_mod.prepare_plan(plan_spec, env, "dry")  # validates the plan before any state
    request.secrets()  # and every --secret-env is set
    state = deploy_mod.new_state(request, plan)
    state.save()
    _run(request, state, mode)


def _guard_protected(config: Config, profile: str, auto: bool, assume_yes: bool = False) -> None:
    prof = config.profile(profile)
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or ""
    if prof.allowed_users and user not in prof.allowed_users:
        raise UsageError(f"profile {profile!r}: local user {user!r} may not deploy to it")
    if prof.protected and not assume_yes:
        if auto or not sys.stdin.isatty():
            raise UsageError(
                f"profile {profile!r} is protected: run interactively to confirm, or pass --yes"
            )
        typed = click.prompt(f"Profile {profile!r} is protected. Type its name to deploy")
        if typed != profile:
            raise UsageError("confirmation did not match; nothing was deployed")


def _print_dry_run(plan: Any, target: Target) -> None:
    click.echo(f"Dry run: plan {plan.name} -> {target.describe()} (nothing is run)")
    for key, value in sorted(plan.env.items()):
        click.echo(f"  env {key}={MASK if is_secret_key(key) else redact(value)}")
    for index, step in enumerate(plan.steps, 1):
        click.echo(f"[{index}/{len(plan.steps)}] {step.name}: {step.description}")
        if isinstance(step.check, str):
            click.echo(f"    skip if: {step.check}")
        for command in step.commands:
            click.echo(f"    run: {command}")
        if step.work is not None:
            click.echo(f"    run: <python {getattr(step.work, '__name__', 'work')}>")
        if isinstance(step.verify, str):
            click.echo(f"    verify: {step.verify}")


def _resume(deployment_id: str, kb: str | None) -> None:
    from aideploy.services import deploy as deploy_mod

    state = DeploymentState.load(deployment_id)
    if state.status is DeploymentStatus.COMPLETED:
        say(f"Deployment {deployment_id} already completed; nothing to resume.")
        return
    if state.owner_alive():
        raise StateError(
            f"deployment {deployment_id} is still running (pid {state.owner.get('pid')})"
        )
    opts = state.options
    target = Target.from_state(opts.get("target", {}))
    request = deploy_mod.DeployRequest(
        plan_spec=str(opts.get("plan_spec", state.plan)),
        target=target,
        config=_settings().config(),
        env=dict(opts.get("env", {})),
        kb=kb if kb is not None else opts.get("kb"),
        mode=str(opts.get("mode", "default")),
        secret_env=tuple(opts.get("secret_env", ())),
    )
    index = state.first_unfinished()
    say(f"Resuming {deployment_id} at step {index + 1}/{state.total_steps}")
    _run(request, state, request.mode)


@cli.command()
@click.argument("deployment_id")
@click.option("--kb", metavar="PATH_OR_URL", envvar="AIDEPLOY_KB", help="Knowledge base.")
def resume(deployment_id: str, kb: str | None) -> None:
    """Continue a deployment from its first unfinished step."""
    _resume(deployment_id, kb)


@cli.command()
@target_options()
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Stack plan variable (APP_NAME, APP_ROOT, DB_PORT...), as given to deploy.",
)
@click.option(
    "--to",
    "to",
    metavar="RELEASE",
    help="Release to switch to (default: the previous verified one).",
)
@click.option(
    "--with-database",
    is_flag=True,
    help="Also restore the database dump taken before the live release migrated.",
)
@click.option("--list", "list_only", is_flag=True, help="List the releases; change nothing.")
def rollback(
    target_opts: dict[str, Any],
    sets: tuple[str, ...],
    to: str | None,
    with_database: bool,
    list_only: bool,
) -> None:
    """Switch the stack app back to an earlier release and restart it."""
    from aideploy.engine import audit
    from aideploy.engine.runner import Runner
    from aideploy.services.target import build_connector
    from aideploy.steps.stack.releases import list_releases
    from aideploy.steps.stack.releases import rollback as do_rollback

    config = _settings().config()
    target = resolve_target(config, **target_opts)
    plan_vars = _parse_sets(sets)
    connector = build_connector(
        target,
        session=False,
        ask_secret=_secret_prompt(),
    )
    connector.connect()
    try:
        runner = Runner(connector, timeout=config.deployment.command_timeout)
        if list_only:
            for release in list_releases(runner, **plan_vars):
                flags = ",".join(
                    f for f, on in (("live", release.live), ("verified", release.verified)) if on
                )
                click.echo(f"{release.name}  {flags or '-'}  {release.commit}")
            return
        try:
            result = do_rollback(runner, to=to, with_database=with_database, **plan_vars)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    finally:
        connector.close()
    _notify_rollback(config, target.describe(), result.ok, to, result.tail(2))
    audit.try_record(
        "rollback",
        result="ok" if result.ok else "failed",
        target=target.describe(),
        details={"to": to, "with_database": with_database},
    )
    if not result.ok:
        raise AideployError(f"rollback failed: {result.tail(3)}")
    click.echo(result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "rolled back")


def _notify_rollback(config: Config, target: str, ok: bool, to: str | None, tail: str) -> None:
    from aideploy.engine import notify
    from aideploy.engine.state import new_deployment_id

    state = DeploymentState(
        deployment_id=new_deployment_id(),
        plan="rollback",
        status=DeploymentStatus.COMPLETED if ok else DeploymentStatus.FAILED,
        current_step=1,
        total_steps=1,
        server_info={"hostname": target},
        reason=(
            f"rolled back to {to or 'the previous release'}" if ok else f"rollback failed: {tail}"
        ),
    )
    notifier = notify.Notifier(config.notifications)
    notifier.rolled_back(state, target)
    notifier.close()


# -- status / list / logs ------------------------------------------------------------------


@cli.command()
@click.argument("deployment_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the raw state as JSON.")
def status(deployment_id: str | None, as_json: bool) -> None:
    """Show one deployment (default: the newest)."""
    state = _state_or_newest(deployment_id)
    if as_json:
        click.echo(state.path.read_text(encoding="utf-8"), nl=False)
        return
    click.echo(f"deployment {state.deployment_id}: {state.status.value}")
    click.echo(
        f"  plan {state.plan}, step {state.current_step}/{state.total_steps}, "
        f"errors {state.error_count}"
    )
    click.echo(f"  started {state.start_time}, ended {state.end_time or '-'}")
    if state.reason:
        click.echo(f"  reason: {state.reason}")
    for step in state.steps:
        extra = f" (recovered by {', '.join(step.recoveries)})" if step.recoveries else ""
        click.echo(f"  - {step.name}: {step.status.value}{extra}")


@cli.command("list")
def list_cmd() -> None:
    """List deployments, newest first."""
    from tabulate import tabulate

    rows = [
        (
            s.deployment_id,
            s.plan,
            s.status.value,
            f"{s.current_step}/{s.total_steps}",
            s.error_count,
            s.server_info.get("hostname"),
            s.start_time,
        )
        for s in list_states()
    ]
    if not rows:
        click.echo("no deployments yet")
        return
    click.echo(
        tabulate(rows, headers=["id", "plan", "status", "step", "errors", "host", "started"])
    )


def _state_or_newest(deployment_id: str | None) -> DeploymentState:
    if deployment_id is not None:
        return DeploymentState.load(deployment_id)
    states = list_states()
    if not states:
        raise StateError("no deployments yet")
    return states[0]


@cli.command()
@click.argument("deployment_id", required=False)
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Keep printing new lines until the deployment completes, fails or pauses.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON lines as they are.")
def logs(deployment_id: str | None, follow: bool, as_json: bool) -> None:
    """Show a deployment's log (default: the newest deployment's)."""
    deployment_id = _state_or_newest(deployment_id).deployment_id  # a clear error if unknown
    path = paths.logs_dir() / f"{deployment_id}.jsonl"
    if not path.exists():
        raise StateError(f"no log for deployment {deployment_id}")
    ended = False
    with path.open(encoding="utf-8", errors="replace") as handle:
        while True:
            start = handle.tell()
            line = handle.readline()
            if follow and not ended and not line.endswith("\n"):
                handle.seek(start)  # nothing new, or a line still being written
                # once the deployment has ended, read what it wrote last, then stop
                ended = DeploymentState.load(deployment_id).status in _ENDED
                time.sleep(0.5)
                continue
            if not line:
                return
            click.echo(line.rstrip("\n") if as_json else _log_line(line))


_ENDED = (DeploymentStatus.COMPLETED, DeploymentStatus.FAILED, DeploymentStatus.PAUSED)


def _log_line(line: str) -> str:
    """One JSON log event as a readable line; a line that is not one is shown as it is."""
    try:
        event = json.loads(line)
        return (
            f"{event['time']} {event['level']:<7} [{event.get('step') or '-'}] {event['message']}"
        )
    except (ValueError, TypeError, KeyError):
        return line.rstrip("\n")


# -- connection / config -----------------------------------------------------------------------


@cli.command("test-connection")
@target_options(local=False)
def test_connection(target_opts: dict[str, Any]) -> None:
    """Connect, run a trivial command, report latency and the host key fingerprint."""
    from aideploy.engine.runner import Runner
    from aideploy.services.target import build_connector

    config = _settings().config()
    target = resolve_target(config, **target_opts)
    connector = build_connector(
        target,
        session=False,
        ask_secret=_secret_prompt(),
    )
    started = time.monotonic()
    connector.connect()
    try:
        connected = time.monotonic()
        result = Runner(connector, timeout=30).run("uname -srm && id -un")
        done = time.monotonic()
    finally:
        connector.close()
    if not result.ok:
        raise AideployError(f"connected, but the test command failed: {result.tail(2)}")
    click.echo(f"connected to {target.describe()}")
    fingerprint = getattr(connector, "host_key_fingerprint", None)
    if fingerprint:
        click.echo(f"host key: {fingerprint}")
    click.echo(f"system: {result.stdout.splitlines()[0] if result.stdout else '?'}")
    click.echo(
        f"connect: {(connected - started) * 1000:.0f} ms, "
        f"command round trip: {(done - connected) * 1000:.0f} ms"
    )


@cli.group("config")
def config_group() -> None:
    """Check and document the configuration file."""


@config_group.command("validate")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
def config_validate(file: str | None) -> None:
    """Validate a configuration file (default: the one in use)."""
    path = Path(
        file or _settings().config_path or os.environ.get("AIDEPLOY_CONFIG") or DEFAULT_CONFIG
    )
    config = load_config(path)
    names = ", ".join(sorted(config.server_profiles)) or "no profiles"
    click.echo(f"{path}: valid ({names})")


@config_group.command("docs")
def config_docs() -> None:
    """Print the configuration reference (generated from the schema)."""
    click.echo(schema_docs())


def _register_learn() -> None:
    from aideploy.cli import learn as cli_group  # its command modules load on first use

    cli.add_command(cli_group.learn)


_register_learn()


def _register_ops() -> None:
    from aideploy.cli.ops import audit_group, init

    cli.add_command(audit_group)
    cli.add_command(init)


_register_ops()


def _register_demo() -> None:
    from aideploy.cli.demo import demo

    cli.add_command(demo)


_register_demo()


# -- the one error boundary --------------------------------------------------------------------


def _debug_log(exc: BaseException) -> Path | None:
    try:
        folder = paths.logs_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "debug.log"
        with path.open("a", encoding="utf-8") as handle:
            handle.write(f"--- {datetime.now().isoformat()} {sys.argv!r}\n")
            handle.write(redact("".join(traceback.format_exception(exc))))
        return path
    except OSError:
        return None


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one line per error, exit codes from the error tree."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:]) or bool(
        os.environ.get("AIDEPLOY_DEBUG")
    )
    exit_with: Callable[[int], None] = sys.exit
    try:
        cli.main(args=argv, prog_name="aideploy", standalone_mode=False)
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
            traceback.print_exc()
        click.echo(f"error: {redact(str(exc))}", err=True)
        exit_with(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        exit_with(130)
    except Exception as exc:
        where = _debug_log(exc)
        if debug:
            traceback.print_exc()
        hint = f" (traceback in {where})" if where else ""
        click.echo(f"internal error: {type(exc).__name__}: {redact(str(exc))}{hint}", err=True)
        exit_with(70)


__all__ = ["ConfigError", "cli", "main"]
