"""aideploy's own inventory format (TOML), checked strictly against a msgspec schema::

[profiles.production]          # app settings: plan variables for every host of the profile
APP_NAME = "shop"

[hosts."web[01:03]"]           # a host, or a range of hosts
host = "10.0.0.5"              # address (default: the name); port, user, key_file, profile
vars = { WORKERS = "4" }       # plan variables (UPPER_CASE) and other variables

[groups.web]
hosts = ["web[01:03]"]
children = ["canary"]          # groups inside this group
profile = "production"
vars = { REGION = "eu" }
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from aideploy.core.errors import ConfigError
from aideploy.core.schema import Port
from aideploy.services.inventory.model import ALL, Group, Host, Inventory
from aideploy.services.inventory.ranges import expand

Value = str | int | float | bool
Name = Annotated[str, Meta(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9_.\[\]:-]+$")]


class HostEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    host: Annotated[str, Meta(description="Address to connect to (default: the name).")] | None = (
        None
    )
    port: Port | None = None
    user: str | None = None
    key_file: str | None = None
    profile: str | None = None
    vars: dict[str, Value] = {}


class GroupEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    hosts: list[Name] = []
    children: list[Name] = []
    profile: str | None = None
    vars: dict[str, Value] = {}


class InventoryFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    profiles: dict[str, dict[str, Value]] = {}
    hosts: dict[Name, HostEntry] = {}
    groups: dict[Name, GroupEntry] = {}


def parse(data: Any, source: str) -> Inventory:
    """The inventory a decoded TOML document describes; :class:`ConfigError` names the field."""
    try:
        doc = msgspec.convert(data, InventoryFile, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_readable(str(exc))}") from None
    hosts: dict[str, Host] = {}
    for key, entry in doc.hosts.items():
        own: dict[str, Any] = dict(entry.vars)
        for field in ("host", "port", "user", "key_file", "profile"):
            value = getattr(entry, field)
            if value is not None:
                own[field] = value
        for name in expand(key):  # a host named again (alone and in a range) adds to itself
            before = hosts[name].vars if name in hosts else {}
            hosts[name] = Host(name, {**before, **own})
    groups: dict[str, Group] = {}
    for key, group in doc.groups.items():
        members: list[str] = []
        for pattern in group.hosts:
            for name in expand(pattern):
                hosts.setdefault(name, Host(name))
                members.append(name)
        group_vars: dict[str, Any] = dict(group.vars)
        if group.profile is not None:
            group_vars["profile"] = group.profile
        groups[key] = Group(key, tuple(members), tuple(group.children), group_vars)
    groups.setdefault(ALL, Group(ALL))
    profiles = {
        name: {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in values.items()}
        for name, values in doc.profiles.items()
    }
    return Inventory(source, hosts, groups, profiles)


def _readable(message: str) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.hosts.a.port`" as "hosts.a.port: expected
    int, got str"."""
    text, sep, where = message.rpartition(" - at ")
    if not sep:
        return message.replace("`", "")
    place = where.strip("`").removeprefix("$").lstrip(".")
    return f"{place}: {text[:1].lower()}{text[1:]}".replace("`", "")
