"""Static Ansible inventories, INI and YAML, read as they are.

What is understood: hosts (also ``host:port`` and ranges such as ``web[01:03]``), groups,
groups of groups (``[g:children]`` / ``children:``), host variables on the host's line or under
the host in YAML, group variables (``[g:vars]`` / ``vars:``), ``all`` and ``ungrouped``. Dynamic
inventory scripts and plugins are not run.
"""

from __future__ import annotations

import ast
import shlex
from typing import Any

from aideploy.core.errors import ConfigError
from aideploy.services.inventory.model import ALL, UNGROUPED, Group, Host, Inventory
from aideploy.services.inventory.ranges import expand


class _Builder:
    """Hosts and groups as they are met; a name seen again adds to what is known of it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.hosts: dict[str, dict[str, Any]] = {}
        self.members: dict[str, dict[str, None]] = {ALL: {}}
        self.children: dict[str, dict[str, None]] = {ALL: {}}
        self.vars: dict[str, dict[str, Any]] = {ALL: {}}

    def group(self, name: str) -> None:
        if not name or any(c.isspace() for c in name):
            raise ConfigError(f"{self.source}: bad group name {name!r}")
        self.members.setdefault(name, {})
        self.children.setdefault(name, {})
        self.vars.setdefault(name, {})

    def host(self, pattern: str, group: str | None, values: dict[str, Any]) -> None:
        name, port = _split_port(pattern)
        if port is not None:
            values = {"ansible_port": port, **values}
        for host in expand(name):
            self.hosts.setdefault(host, {}).update(values)
            if group is not None:
                self.group(group)
                self.members[group][host] = None

    def build(self) -> Inventory:
        grouped = {h for g, m in self.members.items() if g != ALL for h in m}
        for host in self.hosts:
            if host not in grouped:
                self.group(UNGROUPED)
                self.members[UNGROUPED][host] = None
        top = set(self.members) - {c for kids in self.children.values() for c in kids} - {ALL}
        self.children[ALL].update(dict.fromkeys(sorted(top)))
        hosts = {name: Host(name, values) for name, values in self.hosts.items()}
        groups = {
            name: Group(
                name,
                tuple(self.members[name]),
                tuple(self.children[name]),
                self.vars[name],
            )
            for name in self.members
        }
        return Inventory(self.source, hosts, groups)


def _split_port(pattern: str) -> tuple[str, int | None]:
    """``host:2222`` -> (host, 2222); ranges (``web[1:3]``) and IPv6 addresses are left alone."""
    head, sep, tail = pattern.rpartition(":")
    if sep and tail.isdigit() and "]" not in tail and head.count(":") == 0:
        return head, int(tail)
    return pattern, None


def _value(text: str) -> Any:
    """A variable's value: a Python literal when it is one (``8080``, ``True``, ``'x'``), else
    the text itself, as Ansible reads INI values."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def _assignments(source: str, lineno: int, words: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ConfigError(f"{source}:{lineno}: expected key=value, got {word!r}")
        values[key] = _value(value)
    return values


def parse_ini(text: str, source: str) -> Inventory:
    build = _Builder(source)
    section, kind = UNGROUPED, "hosts"
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ConfigError(f"{source}:{lineno}: unclosed section header {line!r}")
            name, _, kind = line[1:-1].partition(":")
            kind = kind or "hosts"
            if kind not in ("hosts", "children", "vars"):
                raise ConfigError(f"{source}:{lineno}: unknown section kind {kind!r}")
            section = name.strip()
            build.group(section)
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise ConfigError(f"{source}:{lineno}: {exc}") from None
        if not words:
            continue
        if kind == "hosts":
            group = None if section == UNGROUPED else section
            build.host(words[0], group, _assignments(source, lineno, words[1:]))
        elif kind == "children":
            build.group(words[0])
            build.children[section][words[0]] = None
        else:
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"{source}:{lineno}: expected key=value, got {line!r}")
            build.vars[section][key.strip()] = _value(value.strip())
    return build.build()


def parse_yaml(data: Any, source: str) -> Inventory:
    build = _Builder(source)
    if data is None:
        return build.build()
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of groups at the top level")
    for name, body in data.items():
        _yaml_group(build, str(name), body, f"{source}: {name}")
    return build.build()


def _yaml_group(build: _Builder, name: str, body: Any, where: str) -> None:
    build.group(name)
    if body is None:
        return
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: expected hosts, children or vars")
    unknown = set(body) - {"hosts", "children", "vars"}
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(map(str, unknown))[0]!r}")
    hosts = body.get("hosts") or {}
    if not isinstance(hosts, dict):
        raise ConfigError(f"{where}.hosts: expected a mapping of host names")
    for host, values in hosts.items():
        if values is not None and not isinstance(values, dict):
            raise ConfigError(f"{where}.hosts.{host}: expected a mapping of variables")
        build.host(str(host), None if name == ALL else name, dict(values or {}))
    group_vars = body.get("vars") or {}
    if not isinstance(group_vars, dict):
        raise ConfigError(f"{where}.vars: expected a mapping")
    build.vars[name].update({str(k): v for k, v in group_vars.items()})
    children = body.get("children") or {}
    if not isinstance(children, dict):
        raise ConfigError(f"{where}.children: expected a mapping of groups")
    for child, child_body in children.items():
        build.group(str(child))
        if name != ALL:
            build.children[name][str(child)] = None
        _yaml_group(build, str(child), child_body, f"{where}.{child}")
