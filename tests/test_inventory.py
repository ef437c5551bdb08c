"""Inventories: aideploy's TOML format and static Ansible INI/YAML inventories, read from files
shaped like real ones; host ranges; variable precedence; selection patterns; bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aideploy.core.errors import ConfigError, UsageError
from aideploy.services.inventory import Group, Host, Inventory, load_inventory, select_hosts
from aideploy.services.inventory.ranges import expand

DATA = Path(__file__).parent / "data" / "inventory"


@pytest.mark.parametrize("name", ["hosts.ini", "hosts.yml"])
def test_ansible_inventory_hosts_groups_and_vars(name: str) -> None:
    inv = load_inventory(DATA / name)
    assert list(inv.hosts)[:1] == ["mail.example.com"]
    assert set(inv.group_hosts("webservers")) == {
        "foo.example.com",
        "bar.example.com",
        "www01.example.com",
        "www02.example.com",
        "www03.example.com",
    }
    # groups of groups, two levels deep, a host in two groups listed once
    assert inv.group_hosts("usa") == ["host1", "host2", "host3"]
    assert inv.group_hosts("southeast") == ["host1", "host2", "host3"]
    assert "mail.example.com" in inv.group_hosts("ungrouped")
    host2 = inv.host_vars("host2")
    assert host2["ntp_server"] == "ntp.atlanta.example.com"  # from atlanta
    assert host2["halon_system_timeout"] == 30  # from southeast, a number
    assert host2["ansible_user"] == "ops"  # from all
    assert inv.connection("host1").hostname == "192.0.2.50"
    foo = inv.connection("foo.example.com")
    assert (foo.hostname, foo.port, foo.user) == ("foo.example.com", 2222, "ops")
    assert inv.connection("one.example.com").hostname == "10.0.0.21"
    assert inv.plan_vars("two.example.com") == {"APP_NAME": "shop"}
    assert inv.groups_of("host2")[0] == "all"
    assert inv.groups_of("host2").index("usa") < inv.groups_of("host2").index("atlanta")


def test_ini_specifics_port_suffix_key_file_quoted_values() -> None:
    inv = load_inventory(DATA / "hosts.ini")
    bar = inv.connection("bar.example.com")
    assert (bar.port, bar.user) == (5309, "deploy")  # host var beats all:vars
    assert inv.connection("one.example.com").key_file == "~/.ssh/db_key"
    assert inv.host_vars("host1")["proxy"] == "proxy.atlanta.example.com"
    assert inv.host_vars("foo.example.com")["maxRequestsPerChild"] == 808


def test_native_toml_profiles_groups_precedence() -> None:
    inv = load_inventory(DATA / "fleet.toml")
    assert list(inv.hosts) == ["web01", "web02", "web03", "web04", "canary"]
    assert inv.group_hosts("frontline") == ["web01", "web02", "web03", "web04", "canary"]
    web01 = inv.connection("web01")
    assert web01 == type(web01)("10.1.0.11", 2201, "deploy", "~/.ssh/deploy_ed25519")
    # host var > inner group var > outer group var > profile
    assert inv.plan_vars("web01") == {
        "APP_NAME": "shop",
        "DEBUG": "false",
        "WORKERS": "8",
        "REGION": "eu",
    }
    assert inv.plan_vars("web02")["WORKERS"] == "4"
    assert inv.plan_vars("canary") == {"APP_NAME": "shop-staging", "REGION": "global"}
    assert inv.host_vars("canary")["tier"] == "front"


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("web", ["foo.example.com", "bar.example.com"]),
        ("webservers", None),
        ("www0*", ["www01.example.com", "www02.example.com", "www03.example.com"]),
        ("usa:!raleigh", ["host1"]),
        ("usa,&raleigh", ["host2", "host3"]),
        ("all:!webservers:!usa:!dbservers", ["mail.example.com"]),
        ("!ungrouped:&dbservers", ["one.example.com", "two.example.com"]),
        ("host3,one.example.com", ["one.example.com", "host3"]),
    ],
)
def test_patterns(pattern: str, expected: list[str] | None) -> None:
    inv = load_inventory(DATA / "hosts.ini")
    if pattern == "web":
        with pytest.raises(UsageError, match="matches no host or group"):
            select_hosts(inv, pattern)
        return
    got = select_hosts(inv, pattern)
    if expected is None:
        assert got == inv.group_hosts("webservers")
    else:
        assert got == expected


def test_empty_selection_is_refused() -> None:
    inv = load_inventory(DATA / "hosts.ini")
    with pytest.raises(UsageError, match="selects no host"):
        select_hosts(inv, "atlanta:!southeast")


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("web[01:03]", ["web01", "web02", "web03"]),
        ("db-[a:c].x", ["db-a.x", "db-b.x", "db-c.x"]),
        ("n[0:10:5]", ["n0", "n5", "n10"]),
        ("r[1:2]c[1:2]", ["r1c1", "r1c2", "r2c1", "r2c2"]),
        ("plain", ["plain"]),
    ],
)
def test_ranges(spec: str, names: list[str]) -> None:
    assert expand(spec) == names


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.toml", "[hosts.a]\nprot = 22\n", "prot"),
        ("bad2.toml", '[hosts.a]\nport = "22"\n', "port"),
        ("bad3.toml", '[groups.g]\nhosts = ["nobody"]\nchildren = ["ghost"]\n', "ghost"),
        ("cyc.toml", '[groups.a]\nchildren=["b"]\n[groups.b]\nchildren=["a"]\n', "a -> b -> a"),
        ("r.ini", "web[3:1]\n", "3 is after 1"),
        ("h.ini", "[web\nx\n", "unclosed"),
        ("v.ini", "[web:vars]\njustaword\n", "key=value"),
        ("k.ini", "[web:hostz]\nx\n", "unknown section kind"),
        ("y.yml", "all:\n  hostz: {}\n", "hostz"),
        ("y2.yml", "all:\n  hosts: [a, b]\n", "mapping of host names"),
        ("y3.yml", "all: [\n", "y3.yml"),
        ("e.ini", "# nothing\n", "no hosts"),
        ("p.toml", '[hosts.a]\nhost = "a;rm -rf /"\n', "host 'a'"),
        ("pr.toml", '[hosts.a]\nprofile = "nope"\n', "no profile 'nope'"),
    ],
)
def test_bad_files_one_clear_error(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as info:
        inv = load_inventory(path)
        for host in inv.hosts:  # problems of one host's values show when it is used
            inv.connection(host)
            inv.plan_vars(host)
    assert "\n" not in str(info.value)


def test_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such inventory file"):
        load_inventory(tmp_path / "absent.ini")
    with pytest.raises(ConfigError):
        load_inventory(tmp_path)


_names = st.lists(st.sampled_from([f"h{i}" for i in range(8)]), unique=True, min_size=1)


@given(a=_names, b=_names, extra=_names)
def test_pattern_algebra_matches_set_algebra(a: list[str], b: list[str], extra: list[str]) -> None:
    hosts = {name: Host(name) for name in sorted({*a, *b, *extra})}
    groups = {
        "ga": Group("ga", tuple(a)),
        "gb": Group("gb", tuple(b)),
        "all": Group("all", (), ("ga", "gb")),
    }
    inv = Inventory("mem", hosts, groups)
    order = list(hosts)

    def expect(chosen: set[str]) -> list[str]:
        return [h for h in order if h in chosen]

    cases = {
        "ga,gb": set(a) | set(b),
        "ga:&gb": set(a) & set(b),
        "ga:!gb": set(a) - set(b),
        "all:!ga": set(hosts) - set(a),
        "h*:&ga": set(a),
    }
    for pattern, chosen in cases.items():
        if chosen:
            assert select_hosts(inv, pattern) == expect(chosen), pattern
        else:
            with pytest.raises(UsageError):
                select_hosts(inv, pattern)
