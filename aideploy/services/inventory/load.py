"""Reading an inventory file, whatever its format: ``.toml`` is aideploy's own format; ``.yml``
/ ``.yaml`` (or a file that starts like YAML) is an Ansible YAML inventory; anything else is read
as an Ansible INI inventory."""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec

from aideploy.core.errors import ConfigError
from aideploy.core.inputs import MAX_NESTING, check_regular, decode_within_nesting
from aideploy.services.inventory import ansible, native
from aideploy.services.inventory.model import Inventory

#: the largest inventory file read (a few thousand hosts fit easily)
MAX_BYTES = 8 * 1024 * 1024


def load_inventory(path: str | Path) -> Inventory:
    file = Path(path)
    source = str(path)
    check_regular(file, error=ConfigError)
    try:
        if file.stat().st_size > MAX_BYTES:
            raise ConfigError(f"{source}: larger than {MAX_BYTES // (1024 * 1024)} MiB")
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such inventory file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read: {exc}") from None
    too_deep = ConfigError(f"{source}: nested more than {MAX_NESTING} levels deep")
    suffix = file.suffix.lower()
    if suffix == ".toml":
        try:
            data = decode_within_nesting(tomllib.loads, text, too_deep)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        inventory = native.parse(data, source)
    elif suffix in (".yml", ".yaml") or text.lstrip().startswith("---"):
        try:
            data = decode_within_nesting(msgspec.yaml.decode, text, too_deep)
        except msgspec.DecodeError as exc:
            raise ConfigError(f"{source}: {_first_line(str(exc))}") from None
        inventory = ansible.parse_yaml(data, source)
    else:
        inventory = ansible.parse_ini(text, source)
    if not inventory.hosts:
        raise ConfigError(f"{source}: no hosts")
    return inventory


def _first_line(text: str) -> str:
    return " ".join(text.split())
