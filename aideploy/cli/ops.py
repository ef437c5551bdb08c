"""Operator commands: ``aideploy audit verify|show`` and ``aideploy init``.

Thin click commands over :mod:`audit` and :mod:`wizard`; library errors
(AideployError) propagate to the CLI's one error boundary.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from aideploy.cli import wizard
from aideploy.core.errors import AideployError, UsageError
from aideploy.core.inputs import check_regular
from aideploy.core.redact import register_secret
from aideploy.core.schema import check_domain, check_hostname, check_name, check_username
from aideploy.engine import audit
from aideploy.services.config import parse_config

# -- audit -------------------------------------------------------------------------------------


@click.group("audit")
def audit_group() -> None:
    """The append-only, hash-chained audit log of deployments, rollbacks, imports..."""


@audit_group.command("verify")
@click.option(
    "--file",
    "file",
    metavar="FILE",
    type=click.Path(),
    help="Audit log (default: the one in use).",
)
@click.option(
    "--head",
    metavar="HASH",
    help="A head hash printed earlier: also detect that newer entries were cut off.",
)
@click.pass_context
def audit_verify(ctx: click.Context, file: str | None, head: str | None) -> None:
    """Check the hash chain; exit 1 naming the first broken line."""
    if file:
        check_regular(file)
    result = audit.verify(Path(file) if file else None, head=head)
    if not result.ok:
        click.echo(
            f"audit log broken at line {result.broken_line}: {result.problem} "
            f"({result.count} entries intact before it)",
            err=True,
        )
        ctx.exit(1)
    click.echo(f"{result.count} entries, chain intact (head {result.head})")


@audit_group.command("show")
@click.option("-n", "limit", type=click.IntRange(1), help="Only the last N entries.")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON lines.")
@click.option("--file", "file", metavar="FILE", type=click.Path(), help="Audit log.")
def audit_show(limit: int | None, as_json: bool, file: str | None) -> None:
    """Show the audit log, oldest first."""
    if file:
        check_regular(file)
    rows = [entry for _, entry in audit.entries(Path(file) if file else None)]
    if limit:
        rows = rows[-limit:]
    if not rows:
        click.echo("no audit entries yet")
        return
    for entry in rows:
        if as_json:
            click.echo(json.dumps(entry, sort_keys=True))
            continue
        click.echo(
            f"{entry.get('seq', '?'):>5} {entry.get('time', '?')} {entry.get('user', '?')}"
            f" {entry.get('action', '?')} {entry.get('target') or '-'}"
            f" -> {entry.get('result', '?')}"
            + (f" [{entry['deployment_id']}]" if entry.get("deployment_id") else "")
        )


# -- init --------------------------------------------------------------------------------------

DEFAULT_CONFIG = "ai_deployment_config.json"


def _env_secret(name: str | None, what: str) -> str | None:
    if not name:
        return None
    value = os.environ.get(name)
    if value is None:
        raise UsageError(f"{what}: environment variable {name} is not set")
    register_secret(value)
    return value


def _valid(check: Callable[[str], str | None], optional: bool = False) -> Callable[[str], str]:
    def convert(value: str) -> str:
        value = value.strip()
        if optional and not value:
            return ""
        problem = check(value)
        if problem:
            raise click.BadParameter(problem)
        return value

    return convert


def stdin_is_terminal() -> bool:
    """Whether init can ask: standard input is a terminal."""
    return sys.stdin.isatty()


@click.command("init")
@click.option(
    "--auto",
    "--yes",
    "auto",
    is_flag=True,
    help="Never ask: every answer comes from the options, the rest take their defaults.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help=f"Configuration file to write (default: ./{DEFAULT_CONFIG}).",
)
@click.option("--force", is_flag=True, help="Replace an existing configuration file.")
@click.option("--profile", default="production", show_default=True, help="Profile to create.")
@click.option("--hostname", help="Server host name or address.")
@click.option("--username", help="Remote user (default: the guide's user for the profile).")
@click.option("--domain", help="Domain the app is served on.")
@click.option("--port", type=click.IntRange(1, 65535), default=22, show_default=True)
@click.option(
    "--key-type", type=click.Choice(wizard.KEY_TYPES), default="ed25519", show_default=True
)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False),
    help="Private key to use or create (default: ~/.ssh/id_<type>).",
)
@click.option(
    "--passphrase-env",
    metavar="NAME",
    help="Encrypt a new key (or open an existing one) with the passphrase in this variable.",
)
@click.option(
    "--install-key",
    is_flag=True,
    help="Add the public key to the server's authorized_keys, logging in once with a password.",
)
@click.option(
    "--password-env",
    metavar="NAME",
    help="With --auto --install-key: the login password is in this variable (never stored).",
)
@click.option(
    "--protected/--unprotected",
    "protected",
    default=None,
    help="Whether deploying to the profile asks to type its name (default: the guide's: "
    "production is protected).",
)
@click.option("--test-connection", "test_conn", is_flag=True, help="--auto: log in once to test.")
@click.option(
    "--known-hosts",
    type=click.Path(dir_okay=False),
    default="~/.ssh/known_hosts",
    show_default=True,
    help="known_hosts file checked (and extended with --accept-new-host-key).",
)
@click.option(
    "--accept-new-host-key", is_flag=True, help="Trust the server's key on first connection."
)
@click.pass_context
def init(
    ctx: click.Context,
    auto: bool,
    config_file: str | None,
    force: bool,
    profile: str,
    hostname: str | None,
    username: str | None,
    domain: str | None,
    port: int,
    key_type: str,
    key_file: str | None,
    passphrase_env: str | None,
    install_key: bool,
    password_env: str | None,
    protected: bool | None,
    test_conn: bool,
    known_hosts: str,
    accept_new_host_key: bool,
) -> None:
    """Set up: SSH key, server profiles and a validated configuration file (the guide's wizard)."""
    if not auto and not stdin_is_terminal():
        # no one to ask: the options are the answers, and the one without a default must be there
        if not hostname:
            raise UsageError(
                "init: standard input is not a terminal, so nothing can be asked; run "
                "`aideploy init --yes --hostname HOST` (answers: --profile, --username, "
                "--domain, --port, --key-type, --key-file, --passphrase-env, --protected, "
                "--install-key --password-env, --test-connection, --force)"
            )
        auto = True
    ask = not auto
    root = ctx.find_root().params.get("config_path")
    path = Path(config_file or root or DEFAULT_CONFIG).expanduser()

    # 1. what is missing on this machine
    missing = wizard.missing_tools()
    for tool in missing:
        click.echo(f"warning: {tool} is not installed (install it with your package manager)")
    if not missing:
        click.echo(f"found: {', '.join(wizard.TOOLS)}")

    # 2. never clobber a config without asking
    if path.exists() and not force:
        if not ask:
            raise UsageError(f"{path} already exists; --force replaces it")
        if not click.confirm(f"{path} exists. Replace it?", default=False):
            click.echo(f"{path} left unchanged.")
            return

    # 3. the SSH key
    if ask:
        key_type = click.prompt(
            "SSH key type", type=click.Choice(wizard.KEY_TYPES), default=key_type
        )
    key_path = Path(key_file).expanduser() if key_file else wizard.default_key_path(key_type)
    passphrase = _env_secret(passphrase_env, "--passphrase-env")
    while ask:
        key_path = Path(
            click.prompt(
                "SSH private key (used if it exists, created if not)", default=str(key_path)
            )
        ).expanduser()
        if not key_path.exists() or click.confirm(
            f"Use the existing key {key_path}?", default=True
        ):
            break
    if ask and passphrase is None:
        passphrase = (
            click.prompt(
                "Key passphrase (empty: none)",
                default="",
                hide_input=True,
                show_default=False,
                confirmation_prompt=not key_path.exists(),
            )
            or None
        )
    pair = wizard.ensure_key(key_path, key_type, passphrase, comment=f"aideploy@{profile}")
    click.echo(f"{'created' if pair.created else 'using'} key {pair.private}")

    # 4. profiles
    names = [profile]
    if ask:
        answer = click.prompt("Profiles to create (comma separated)", default=profile)
        names = [n.strip() for n in answer.split(",") if n.strip()]
    profiles: dict[str, dict[str, Any]] = {}
    for name in names:
        problem = check_name(name)
        if problem:
            raise UsageError(f"profile: {problem}")
        guide_user = wizard.GUIDE_PROFILES.get(name, {}).get("username", "root")
        host, user, dom = hostname, username or guide_user, domain
        is_protected = protected
        if ask:
            host = click.prompt(
                f"[{name}] server host name or address",
                default=hostname,
                value_proc=_valid(check_hostname),
            )
            user = click.prompt(
                f"[{name}] remote user", default=user, value_proc=_valid(check_username)
            )
            dom = click.prompt(
                f"[{name}] domain (empty: none)",
                default=domain or "",
                value_proc=_valid(check_domain, optional=True),
            )
            is_protected = click.confirm(
                f"[{name}] protected (deploying asks to type the profile name)?",
                default=bool(
                    wizard.GUIDE_PROFILES.get(name, {}).get("protected")
                    if protected is None
                    else protected
                ),
            )
        elif not host:
            raise UsageError("init --yes (--auto) needs --hostname HOST")
        assert host is not None
        profiles[name] = wizard.profile_data(
            name, host, username=user, domain=dom or None, port=port, protected=is_protected
        )
    data = wizard.build_config(profiles, key_file=pair.private, port=22)
    parse_config(data, path.name)  # fail before touching the server

    # 5. install the key once, with a password that is never stored
    first = profiles[names[0]]
    server = {
        "port": port,
        "username": first["username"],
        "known_hosts": Path(known_hosts).expanduser(),
        "accept_new_host_key": accept_new_host_key,
    }
    if ask:
        install_key = click.confirm(
            f"Install the public key on {first['hostname']} now (password login, once)?",
            default=False,
        )
    if install_key:
        password = (
            click.prompt(f"Password for {first['username']}@{first['hostname']}", hide_input=True)
            if ask
            else _env_secret(password_env, "--password-env")
        )
        if password is None:
            raise UsageError("--install-key with --auto needs --password-env NAME")
        register_secret(password)
        added = wizard.install_public_key(
            pair.public_line, first["hostname"], password=password, **server
        )
        click.echo("public key installed" if added else "public key was already installed")

    # 6. test the connection
    if ask:
        test_conn = click.confirm(f"Test the connection to {first['hostname']}?", default=True)
    if test_conn:
        try:
            check = wizard.check_connection(
                first["hostname"], key_file=pair.private, passphrase=passphrase, **server
            )
        except AideployError as exc:
            click.echo(f"warning: connection test failed: {exc}")
        else:
            click.echo(
                f"connected: {check.system}, host key {check.fingerprint} "
                f"({check.seconds * 1000:.0f} ms)"
            )

    # 7. write the validated config
    wizard.write_config(path, data, overwrite=True)
    audit.try_record("init", result="written", target=str(path), details={"profiles": names})
    click.echo(f"wrote {path} (profiles: {', '.join(names)})")
    click.echo(f"next: aideploy --config {path} deploy --profile {names[0]}")
