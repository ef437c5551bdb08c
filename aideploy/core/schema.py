"""Schema building blocks: value checks, and the conversion of plain data into typed sections.

A configuration section is a frozen ``msgspec.Struct`` (``forbid_unknown_fields``, ``kw_only``)
whose fields carry their range and description in ``Annotated[..., msgspec.Meta(...)]``; a value
that ends up in a shell command also names its check (:func:`checked`). :func:`convert` validates
plain data (parsed JSON) against a section in one pass: msgspec checks the types, strictly (the
string ``"22"`` is not an integer, ``true`` is not a number), the ranges and the keys; then every
declared check runs, text is refused if it carries control characters, mapping keys must be names,
and paths are checked and ``~``-expanded. Any problem is one :class:`ConfigError` line that names
the field path (``ssh.port: ...``, ``server_profiles.prod.hostname: ...``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
import msgspec.inspect as schema_info

from aideploy.core.errors import ConfigError

T = TypeVar("T")

#: a value check: the problem with a value, or None
Check = Callable[[Any], str | None]

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_UNSAFE_PATH = re.compile(r"[\x00-\x1f\x7f`$;|&<>\"'\\*?\[\]{}()!]")


# -- value checks (each returns an error message or None) ------------------------------------


def check_hostname(value: str) -> str | None:
    """An RFC 1123 host name or an IP address literal."""
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    if len(value) > 253 or not value or value.endswith("."):
        return f"malformed host name {value!r}"
    if not all(_LABEL.match(label) for label in value.split(".")):
        return f"malformed host name {value!r}"
    return None


def check_domain(value: str) -> str | None:
    """A DNS name of at least two labels (``example.com``), or ``localhost``."""
    if value == "localhost":
        return None
    if check_hostname(value) is not None or "." not in value or value.replace(".", "").isdigit():
        return f"malformed domain {value!r} (expected a name like example.com)"
    if value.rsplit(".", 1)[1].isdigit():
        return f"malformed domain {value!r} (top-level label cannot be numeric)"
    return None


def check_username(value: str) -> str | None:
    if not _USER.match(value):
        return f"malformed user name {value!r} (lower-case letters, digits, '_', '-', '.')"
    return None


def check_path(value: str) -> str | None:
    if not value:
        return "empty path"
    if _UNSAFE_PATH.search(value):
        return f"path {value!r} contains characters that are not allowed (quotes, $, ;, |, ...)"
    return None


def check_name(value: str) -> str | None:
    if not _NAME.match(value):
        return f"malformed name {value!r} (letters, digits, '_', '-', '.')"
    return None


# -- declaring fields --------------------------------------------------------------------------

#: a TCP port
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]


def checked(check: Check, description: str) -> msgspec.Meta:
    """A field's description (shown in the docs) and the check its value must pass."""
    return msgspec.Meta(description=description, extra={"check": check})


def describe(node: schema_info.Type) -> str:
    """The description declared on a field's type (looked for inside ``X | None`` too)."""
    if isinstance(node, schema_info.Metadata):
        return str((node.extra_json_schema or {}).get("description", "")) or describe(node.type)
    if isinstance(node, schema_info.UnionType):
        return next((d for d in map(describe, node.types) if d), "")
    return ""


def unwrap(node: schema_info.Type) -> schema_info.Type:
    """The type under its metadata, and the one that is not None in ``X | None``."""
    while True:
        if isinstance(node, schema_info.Metadata):
            node = node.type
        elif isinstance(node, schema_info.UnionType):
            node = next(t for t in node.types if not isinstance(t, schema_info.NoneType))
        else:
            return node


# -- conversion --------------------------------------------------------------------------------


def convert(data: Any, cls: type[T], where: str = "") -> T:
    """``data`` as a ``cls`` section, or one :class:`ConfigError` naming the field and problem;
    ``where`` is the section's own path (``metrics``), prefixed to every field's."""
    value = _decode(data, cls, where)
    finished: T = _finish(value, schema_info.type_info(cls), where)
    return finished


def _decode(data: Any, cls: type[T], where: str) -> T:
    try:
        return msgspec.convert(data, cls, strict=True, dec_hook=_decode_custom)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(str(exc), cls, data, where)) from None


def _decode_custom(tp: type, value: Any) -> Any:
    if tp is Path:
        if not isinstance(value, str):
            raise TypeError(f"expected a path string, got {_got(_json_name(value))}")
        problem = check_path(value)
        if problem:
            raise ValueError(problem)
        return Path(value)  # expanded once the whole section is valid
    raise NotImplementedError(tp)  # pragma: no cover - a schema declaring an unsupported type


def _finish(value: Any, node: schema_info.Type, where: str) -> Any:
    """Run the declared checks over a converted value; return it with its paths expanded."""
    if isinstance(node, schema_info.Metadata):
        value = _finish(value, node.type, where)
        check = (node.extra or {}).get("check")
        problem = check(value) if check is not None and value is not None else None
        if problem:
            raise ConfigError(f"{where}: {problem}")
        return value
    if value is None:
        return None
    if isinstance(node, schema_info.UnionType):
        member = next(t for t in node.types if not isinstance(t, schema_info.NoneType))
        return _finish(value, member, where)
    if isinstance(node, schema_info.StructType):
        changes = {}
        for fld in node.fields:
            old = getattr(value, fld.name)
            new = _finish(old, fld.type, _join(where, fld.name))
            if new is not old:
                changes[fld.name] = new
        return msgspec.structs.replace(value, **changes) if changes else value
    if isinstance(node, schema_info.DictType):
        out = {}
        for key, item in value.items():
            problem = check_name(key)
            if problem:
                raise ConfigError(f"{where}: {problem}")
            out[key] = _finish(item, node.value_type, _join(where, key))
        return out
    if isinstance(node, schema_info.ListType):
        return [_finish(item, node.item_type, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(node, schema_info.StrType) and ("\x00" in value or "\n" in value):
        raise ConfigError(f"{where}: control characters are not allowed")
    if isinstance(node, schema_info.CustomType) and node.cls is Path:
        return value.expanduser()
    return value


# -- msgspec's errors, said the way the rest of aideploy says them ------------------------------

_ERROR = re.compile(r"(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.DOTALL)
_TYPE = re.compile(r"Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`")
_BOUND = re.compile(r"Expected `(?:int|float)` (?:>=|<=|>|<) \S+")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<key>.*)`", re.DOTALL)
_MISSING = re.compile(r"Object missing required field `(?P<key>.*)`", re.DOTALL)
_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")

_WANT = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "object": "an object",
    "array": "a list",
    "null": "null",
}
_GOT = {**_WANT, "bool": "true/false"}


def _got(name: str) -> str:
    return _GOT.get(name, name)


def _json_name(value: Any) -> str:
    if value is None:
        return "null"
    names = {bool: "bool", int: "int", float: "float", str: "str", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def _join(where: str, name: str) -> str:
    return f"{where}.{_key(name)}" if where else _key(name)


def _key(name: str) -> str:
    """A key as shown in a field path: as written, or quoted if it would not print on one line."""
    return name if name.isprintable() else repr(name)


def _explain(message: str, cls: type[Any], data: Any, where: str) -> str:
    """One msgspec ``ValidationError`` (``Expected `int`, got `str` - at `$.ssh.port```) as
    ``ssh.port: expected an integer, got a string``."""
    match = _ERROR.fullmatch(message)
    what, path = (match["what"], match["path"] or "") if match else (message, "")
    if "[...]" in path:  # msgspec does not name the key of a mapping: find the entry that fails
        head = path[: path.index("[...]")]
        node, mapping = _locate(schema_info.type_info(cls), data, head)
        entry = unwrap(node.value_type) if isinstance(node, schema_info.DictType) else None
        if isinstance(entry, schema_info.StructType) and isinstance(mapping, dict):
            for key, item in mapping.items():
                _decode(item, entry.cls, _join(_at(where, head), key))
        path = path.replace("[...]", ".<name>")
    field = _at(where, path)
    if found := _TYPE.fullmatch(what):
        want = " or ".join(_WANT.get(w, w) for w in found["want"].split(" | "))
        problem = f"expected {want}, got {_got(found['got'])}"
    elif _BOUND.fullmatch(what):
        node, value = _locate(schema_info.type_info(cls), data, path)
        problem = _out_of_range(node, value) or what
    elif found := _UNKNOWN.fullmatch(what):
        node, _ = _locate(schema_info.type_info(cls), data, path)
        names = node.fields if isinstance(node, schema_info.StructType) else ()
        allowed = ", ".join(sorted(f.encode_name for f in names))
        return f"{_join(field, found['key'])}: unknown key (allowed: {allowed})"
    elif found := _MISSING.fullmatch(what):
        return f"{_join(field, found['key'])}: missing required field"
    else:
        problem = what[:1].lower() + what[1:]
    return f"{field}: {problem}" if field else problem


def _at(where: str, path: str) -> str:
    """A section's path joined to msgspec's path inside it (``.port``, ``[0].name``)."""
    return (where + path).lstrip(".")


def _locate(node: schema_info.Type, data: Any, path: str) -> tuple[schema_info.Type, Any]:
    """The declared type at ``path`` (``.ssh.port``, ``.custom_patterns[0]``) and its value."""
    for name, index in _SEGMENT.findall(path):
        node = unwrap(node)
        if name and isinstance(node, schema_info.StructType):
            node = next(f.type for f in node.fields if f.encode_name == name)
        elif isinstance(node, schema_info.DictType | schema_info.ListType):
            node = node.value_type if isinstance(node, schema_info.DictType) else node.item_type
        if name:
            data = data.get(name) if isinstance(data, dict) else None
        else:
            data = data[int(index)] if isinstance(data, list) else None
    return unwrap(node), data


def _out_of_range(node: schema_info.Type, value: Any) -> str | None:
    if not isinstance(node, schema_info.IntType | schema_info.FloatType):
        return None
    low, high = node.ge, node.le
    if low is not None and high is not None:
        return f"must be between {_number(low)} and {_number(high)}, got {value!r}"
    if low is not None:
        return f"must be at least {_number(low)}, got {value!r}"
    if high is not None:
        return f"must be at most {_number(high)}, got {value!r}"
    return None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
