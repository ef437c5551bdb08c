"""Inventories: the hosts a fleet run deploys to, their groups and variables.

Two formats are read: aideploy's own TOML format (:mod:`.native`) and a static Ansible inventory,
INI or YAML (:mod:`.ansible`). Both become one :class:`~.model.Inventory`; :mod:`.patterns`
selects hosts from it with Ansible-like patterns.
"""

from aideploy.services.inventory.load import load_inventory
from aideploy.services.inventory.model import Connection, Group, Host, Inventory
from aideploy.services.inventory.patterns import select_hosts

__all__ = ["Connection", "Group", "Host", "Inventory", "load_inventory", "select_hosts"]
