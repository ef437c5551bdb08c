"""The inventory model: hosts, groups of hosts and groups, their variables, and profiles.

Variables of a host are merged from, lowest first: its profile's app settings, the ``all`` group,
every other group it belongs to (outer groups before the groups inside them, then by name), and
the host's own variables. Ansible merges group variables the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aideploy.core.errors import ConfigError
from aideploy.core.schema import check_hostname, check_username

ALL = "all"
UNGROUPED = "ungrouped"

#: names a host's variables may give its connection settings, in the order they are looked at
HOST_KEYS = ("host", "ansible_host", "ansible_ssh_host")
PORT_KEYS = ("port", "ansible_port", "ansible_ssh_port")
USER_KEYS = ("user", "ansible_user", "ansible_ssh_user")
KEY_FILE_KEYS = ("key_file", "ansible_ssh_private_key_file", "ansible_private_key_file")
PROFILE_KEY = "profile"


@dataclass(frozen=True)
class Host:
    name: str
    vars: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Group:
    name: str
    hosts: tuple[str, ...] = ()
    children: tuple[str, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Connection:
    """Where a host is reached: address, port, user, key (None: the usual defaults)."""

    hostname: str
    port: int | None = None
    user: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class Inventory:
    source: str
    hosts: Mapping[str, Host]
    groups: Mapping[str, Group]
    #: app settings (plan variables) by profile name
    profiles: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for group in self.groups.values():
            for child in group.children:
                if child not in self.groups:
                    raise ConfigError(f"{self.source}: group {group.name!r}: no group {child!r}")
            for host in group.hosts:
                if host not in self.hosts:
                    raise ConfigError(f"{self.source}: group {group.name!r}: no host {host!r}")
        for name in self.groups:
            self._check_cycle(name, ())

    def _check_cycle(self, name: str, path: tuple[str, ...]) -> None:
        if name in path:
            cycle = " -> ".join((*path[path.index(name) :], name))
            raise ConfigError(f"{self.source}: groups contain each other: {cycle}")
        for child in self.groups[name].children:
            self._check_cycle(child, (*path, name))

    # -- membership ----------------------------------------------------------------------------

    def group_hosts(self, name: str) -> list[str]:
        """Every host in group ``name`` and its children, in inventory order."""
        if name == ALL:
            return list(self.hosts)
        found: dict[str, None] = {}
        todo = [name]
        seen: set[str] = set()
        while todo:
            group = self.groups[todo.pop(0)]
            if group.name in seen:
                continue
            seen.add(group.name)
            found.update(dict.fromkeys(group.hosts))
            todo.extend(group.children)
        order = {h: i for i, h in enumerate(self.hosts)}
        return sorted(found, key=order.__getitem__)

    def groups_of(self, host: str) -> list[str]:
        """The groups ``host`` belongs to, directly or through a child group: ``all`` first,
        then outer groups before inner ones (by depth, then name)."""
        depth = self._depths()
        member = [g for g in self.groups if g != ALL and host in self.group_hosts(g)]
        return [ALL, *sorted(member, key=lambda g: (depth.get(g, 0), g))]

    def _depths(self) -> dict[str, int]:
        depth: dict[str, int] = {}

        def walk(name: str, level: int) -> None:
            if depth.get(name, -1) >= level:
                return
            depth[name] = level
            for child in self.groups[name].children:
                walk(child, level + 1)

        children = {c for g in self.groups.values() for c in g.children}
        for name in self.groups:
            if name not in children:
                walk(name, 0)
        return depth

    # -- variables -----------------------------------------------------------------------------

    def host_vars(self, host: str) -> dict[str, Any]:
        """The host's variables, merged as described in the module's docstring."""
        merged: dict[str, Any] = {}
        layers = [self.groups[g].vars for g in self.groups_of(host) if g in self.groups]
        layers.append(self.hosts[host].vars)
        profile = None
        for layer in layers:
            profile = layer.get(PROFILE_KEY, profile)
        if profile is not None:
            if str(profile) not in self.profiles:
                raise ConfigError(f"{self.source}: host {host!r}: no profile {profile!r}")
            merged.update(self.profiles[str(profile)])
        for layer in layers:
            merged.update(layer)
        return merged

    def connection(self, host: str) -> Connection:
        values = self.host_vars(host)
        hostname = str(_first(values, HOST_KEYS) or host)
        problem = check_hostname(hostname)
        if problem:
            raise ConfigError(f"{self.source}: host {host!r}: {problem}")
        port = _first(values, PORT_KEYS)
        if port is not None:
            try:
                port = int(str(port))
            except ValueError:
                port = -1
            if not 1 <= port <= 65535:
                raise ConfigError(f"{self.source}: host {host!r}: port must be 1..65535")
        user = _first(values, USER_KEYS)
        if user is not None:
            problem = check_username(str(user))
            if problem:
                raise ConfigError(f"{self.source}: host {host!r}: user: {problem}")
        key = _first(values, KEY_FILE_KEYS)
        return Connection(
            hostname,
            port,
            str(user) if user is not None else None,
            str(key) if key is not None else None,
        )

    def plan_vars(self, host: str) -> dict[str, str]:
        """The host's variables that are plan variables (UPPER_CASE names), as strings."""
        return {
            k: _text(v)
            for k, v in self.host_vars(host).items()
            if k[:1].isupper() and k.upper() == k
        }


def _first(values: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    return next((values[k] for k in keys if values.get(k) is not None), None)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
