"""Regex rules: error text -> error class, ordered candidate strategies and extracted details.

Two objects live here:

* :class:`RuleSet` - the built-in rules (every error class of DESIGN.md) plus custom
  :class:`ErrorPattern` s from configuration or the knowledge base. Every hit is reported with
  its weight and the details its named groups captured (port, service, command, package, path...).
  Patterns are compiled once with the ``regex`` module and searched with a timeout; custom
  patterns are first checked by :func:`check_pattern_safe`, which rejects nested quantifiers.
* :data:`GUIDE_PATTERNS` / :class:`GuideTable` - the original system's ten patterns as a
  first-match table: the baseline of the benchmarks and the simplest recovery advisor.
"""

from __future__ import annotations

import re
import re._parser as sre_parse  # type: ignore[import-not-found]
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import regex

from aideploy.core.errors import ConfigError
from aideploy.core.recovery import Candidate, Failure, Outcome
from aideploy.knowledge.classes import CATALOGUE, ERROR_CLASSES, UNKNOWN, strategies_for
from aideploy.knowledge.signature import signature_of

if TYPE_CHECKING:
    from aideploy.core.result import Result

MAX_PATTERN_CHARS = 1000
MAX_TEXT_CHARS = 64 * 1024
DEFAULT_TIMEOUT = 0.05  # seconds per pattern search
SEVERITIES = ("low", "medium", "high", "critical")


class UnsafePatternError(ConfigError):
    """A custom pattern is invalid or could backtrack catastrophically."""


# --- pattern safety ------------------------------------------------------------------------


def check_pattern_safe(pattern: str) -> None:
    """Reject patterns that do not compile or could take exponential time.

    Rejected: longer than MAX_PATTERN_CHARS; nested quantifiers (``(a+)+``, ``(a*)*``,
    ``(\\w+\\s?)*``); alternations under a repeat whose branches can start alike or be empty
    (``(a|aa)+``, ``(a|a?)+``); backreferences under a repeat. Raises UnsafePatternError.
    """
    if len(pattern) > MAX_PATTERN_CHARS:
        raise UnsafePatternError(f"pattern longer than {MAX_PATTERN_CHARS} characters")
    try:
        parsed = sre_parse.parse(pattern)
        regex.compile(pattern)
    except (re.error, regex.error, RecursionError, OverflowError) as exc:
        raise UnsafePatternError(f"pattern does not compile: {exc}") from None
    problem = _unsafe(list(parsed), under_repeat=False)
    if problem:
        raise UnsafePatternError(f"pattern could backtrack catastrophically: {problem}")


_REPEATS = ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")


def _op(node: Any) -> str:
    return str(node[0])


def _children(node: Any) -> list[list[Any]]:
    op, av = _op(node), node[1]
    if op in _REPEATS:
        return [list(av[2])]
    if op == "SUBPATTERN":
        return [list(av[-1])]
    if op == "BRANCH":
        return [list(b) for b in av[1]]
    if op in ("ASSERT", "ASSERT_NOT"):
        return [list(av[1])]
    if op == "GROUPREF_EXISTS":
        return [list(b) for b in av[1:] if b is not None]
    if op == "ATOMIC_GROUP":
        return [list(av)]
    return []


def _unsafe(seq: list[Any], *, under_repeat: bool) -> str | None:
    for node in seq:
        op = _op(node)
        if op in _REPEATS:
            lo, hi = node[1][0], node[1][1]
            multi = hi is sre_parse.MAXREPEAT or hi > 1
            if multi and under_repeat:
                return "nested quantifier"
            if (multi and hi is sre_parse.MAXREPEAT) or (multi and hi > 10):
                inner = list(node[1][2])
                found = _unsafe(inner, under_repeat=True)
                if found:
                    return found
                continue
            del lo
        if under_repeat and op == "BRANCH":
            branches = [list(b) for b in node[1][1]]
            firsts: list[set[int] | None] = []
            for b in branches:
                if _nullable(b):
                    return "optional alternative under a repeat"
                firsts.append(_first_chars(b))
            for i, a in enumerate(firsts):
                for b2 in firsts[i + 1 :]:
                    if a is None or b2 is None or a & b2:
                        return "overlapping alternatives under a repeat"
        if under_repeat and op == "GROUPREF":
            return "backreference under a repeat"
        for child in _children(node):
            found = _unsafe(child, under_repeat=under_repeat)
            if found:
                return found
    return None


def _nullable(seq: list[Any]) -> bool:
    for node in seq:
        op = _op(node)
        if op in ("AT", "ASSERT", "ASSERT_NOT"):
            continue
        if op in _REPEATS:
            if node[1][0] == 0:
                continue
            return _nullable(list(node[1][2]))
        if op == "SUBPATTERN":
            if not _nullable(list(node[1][-1])):
                return False
            continue
        if op == "BRANCH":
            if not any(_nullable(list(b)) for b in node[1][1]):
                return False
            continue
        return False
    return True


def _first_chars(seq: list[Any]) -> set[int] | None:
    """Characters a sequence can start with (lower-cased); None if unknown/any."""
    for node in seq:
        op, av = _op(node), node[1]
        if op in ("AT", "ASSERT", "ASSERT_NOT"):
            continue
        if op == "LITERAL":
            return {av, ord(chr(av).lower()), ord(chr(av).upper())}
        if op == "IN":
            out: set[int] = set()
            for item in av:
                iop = str(item[0])
                if iop == "LITERAL":
                    out |= {item[1], ord(chr(item[1]).lower()), ord(chr(item[1]).upper())}
                elif iop == "RANGE" and item[1][1] - item[1][0] < 4096:
                    out |= set(range(item[1][0], item[1][1] + 1))
                else:
                    return None
            return out
        if op == "SUBPATTERN":
            return _first_chars(list(av[-1]))
        if op in _REPEATS:
            return _first_chars(list(av[2])) if av[0] > 0 else None
        if op == "BRANCH":
            acc: set[int] = set()
            for b in av[1]:
                f = _first_chars(list(b))
                if f is None:
                    return None
                acc |= f
            return acc
        return None
    return None


# --- patterns and rules --------------------------------------------------------------------


def error_class_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a pattern's error class, or None."""
    if value not in ERROR_CLASSES:
        return f"unknown error class {value!r} (one of: {', '.join(ERROR_CLASSES)})"
    return None


def severity_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a pattern's severity, or None."""
    if value not in SEVERITIES:
        return f"must be one of {', '.join(SEVERITIES)}, got {value!r}"
    return None


@dataclass(frozen=True)
class ErrorPattern:
    """A custom detection rule, in the shape of the guide's ErrorPattern."""

    name: str
    pattern: str
    error_class: str
    recovery: str
    severity: str = "medium"
    description: str = ""
    retry_count: int = 3

    def validate(self) -> None:
        if not self.name:
            raise ConfigError("a pattern needs a name")
        problem = error_class_problem(self.error_class)
        if problem:
            raise ConfigError(problem)
        problem = severity_problem(self.severity)
        if problem:
            raise ConfigError(f"severity {problem}")
        if not 0 <= self.retry_count <= 20:
            raise ConfigError("retry_count must be between 0 and 20")
        if not self.recovery:
            raise ConfigError("a pattern needs a recovery strategy")
        check_pattern_safe(self.pattern)

    @classmethod
    def from_row(cls, row: object) -> ErrorPattern:
        """Build from a KB row (object with attributes) or a mapping (config)."""
        get = row.get if isinstance(row, Mapping) else (lambda k, d=None: getattr(row, k, d))
        return cls(
            name=str(get("name", "") or ""),
            pattern=str(get("pattern", "") or ""),
            error_class=str(get("error_class", "") or ""),
            recovery=str(get("recovery", None) or get("recovery_function", "") or ""),
            severity=str(get("severity", "medium") or "medium").lower(),
            description=str(get("description", "") or ""),
            retry_count=int(get("retry_count", 3) or 0),
        )


@dataclass(frozen=True)
class Rule:
    name: str
    error_class: str
    pattern: str
    strategies: tuple[str, ...]
    weight: float
    flags: int = regex.IGNORECASE
    custom: bool = False
    description: str = ""

    def compiled(self) -> Any:
        return regex.compile(self.pattern, self.flags)


@dataclass(frozen=True)
class RuleHit:
    rule: str
    error_class: str
    strategies: tuple[str, ...]
    weight: float
    matched: str
    details: Mapping[str, str] = field(default_factory=dict)
    custom: bool = False


def _r(
    name: str, cls: str, pattern: str, weight: float = 0.8, strategies: tuple[str, ...] = ()
) -> Rule:
    return Rule(name, cls, pattern, strategies or strategies_for(cls), weight)


# weights: 0.95 = the text names the cause unambiguously; 0.6 = generic wording
BUILTIN_RULES: tuple[Rule, ...] = (
    # nodejs_conflict
    _r(
        "dpkg_overwrite_node",
        "nodejs_conflict",
        r"trying to overwrite '(?P<path>[^']*node[^']*)', which is also in package (?P<package>\S+)",
        0.97,
    ),
    _r(
        "nodejs_conflicts_depends",
        "nodejs_conflict",
        r"\b(?:nodejs|npm|libnode\S*)\s*:\s*(?:Conflicts|Depends|Breaks):\s*(?P<package>[\w.+-]+)"
        r"|\b(?:nodejs|npm)\b[^\n]{0,80}\bbut it is not (?:going to be )?install",
        0.9,
    ),
    _r(
        "node_held_broken",
        "nodejs_conflict",
        r"you have held broken packages[\s\S]{0,400}?\b(?:node|npm)|"
        r"\b(?:node|npm)\S*[\s\S]{0,400}?you have held broken packages",
        0.8,
    ),
    _r("libnode_conflict", "nodejs_conflict", r"libnode(?:72|-dev)?\b[^\n]{0,120}conflict", 0.85),
    _r(
        # dpkg refusing a package for a declared Conflicts (Debian 12's libnode108 against
        # NodeSource's nodejs, which provides nodejs-legacy)
        "dpkg_conflicts_node",
        "nodejs_conflict",
        r"\b(?P<package>(?:libnode|nodejs|npm)[\w.+-]*)(?::[\w-]+)? conflicts with "
        r"(?:libnode|nodejs|npm)[\w.+-]*|conflicting packages - not installing (?:nodejs|npm)\b",
        0.95,
    ),
    # package_not_found
    _r(
        "apt_unable_locate",
        "package_not_found",
        r"Unable to locate package (?P<package>\S+)",
        0.97,
    ),
    _r(
        "apt_no_candidate",
        "package_not_found",
        r"Package '?(?P<package>[\w.+-]+)'? has no installation candidate"
        r"|no installation candidate",
        0.95,
    ),
    _r(
        "apt_no_release",
        "package_not_found",
        r"does not have a Release file|(?:404|Not Found)\s+\[IP:|"
        r"Failed to fetch \S+\s+404|no longer has a Release file",
        0.85,
        ("apt_update", "manual_intervention"),
    ),
    _r(
        "pip_no_distribution",
        "package_not_found",
        r"No matching distribution found for (?P<package>\S+)"
        r"|Could not find a version that satisfies the requirement (?P<package>\S+)",
        0.95,
        ("retry_with_backoff", "apt_update", "manual_intervention"),
    ),
    _r(
        "npm_e404",
        "package_not_found",
        r"npm (?:ERR!|error) (?:code )?E404|npm (?:ERR!|error) 404\b[^\n]*?'(?P<package>[^'\s]+)'"
        r"|is not in (?:the npm|this) registry|(?-i:ETARGET)|No matching version found for "
        r"(?P<package>\S+)",
        0.95,
        ("retry_with_backoff", "manual_intervention"),
    ),
    _r("apt_no_package", "package_not_found", r"E: Package (?P<package>\S+) .*not available", 0.9),
    # permission_denied (generic: files and dirs)
    _r(
        "eacces_path",
        "permission_denied",
        r"(?:EACCES|(?-i:EPERM))[:,]? (?:permission denied|operation not permitted),? "
        r"\w+ '(?P<path>[^']+)'",
        0.75,
        ("fix_ownership", "npm_user_prefix", "manual_intervention"),
    ),
    _r(
        "permission_denied_path",
        "permission_denied",
        r"(?P<path>(?:~|\.{0,2})/[^\s:'\"]+)['\"]?:? Permission denied"
        r"|Permission denied:? ['\"]?(?P<path>/[^\s'\"]+)"
        r"|\[Errno 13\] Permission denied|PermissionError"
        r"|could not open file \S+ for writing: Permission denied",
        0.75,
    ),
    _r("permission_denied_generic", "permission_denied", r"permission denied|(?-i:EACCES)", 0.55),
    _r(
        "operation_not_permitted",
        "permission_denied",
        r"Operation not permitted|are you root\?|must be run as root|requires superuser",
        0.6,
    ),
    # database_connection
    _r(
        "pg_connect",
        "database_connection",
        r"could not connect to server|connection to server (?:at|on) [^\n]{0,160}failed"
        r"|Is the server running (?:on host|locally)"
        r"|psycopg2?\.OperationalError|django\.db\.utils\.OperationalError",
        0.85,
    ),
    _r(
        "pg_auth",
        "database_connection",
        r"password authentication failed for user \"?(?P<user>[^\"\s]+)"
        r"|Peer authentication failed for user \"?(?P<user>[^\"\s]+)"
        r"|no pg_hba\.conf entry",
        0.95,
        ("database_create_role", "restart_service", "manual_intervention"),
    ),
    _r(
        "pg_missing_role_db",
        "database_connection",
        r"role \"(?P<user>[^\"]+)\" does not exist|database \"(?P<database>[^\"]+)\" does not exist",
        0.95,
        ("database_create_role", "manual_intervention"),
    ),
    _r(
        "pg_socket",
        "database_connection",
        r"\.s\.PGSQL\.\d+|connections on Unix domain socket",
        0.9,
        ("start_service", "restart_service", "manual_intervention"),
    ),
    # port_in_use
    _r(
        "eaddrinuse",
        "port_in_use",
        r"(?-i:EADDRINUSE)[^\n]*?:(?P<port>\d{1,5})\b|(?-i:EADDRINUSE)|address already in use"
        r"|port (?P<port>\d{1,5}) is already in use|Errno 98",
        0.92,
    ),
    _r(
        "nginx_bind",
        "port_in_use",
        r"bind\(\) to (?:\S*?):(?P<port>\d{1,5}) failed \(98",
        0.97,
    ),
    _r(
        "port_already_allocated",
        "port_in_use",
        r"port is already allocated|Can't listen on port|Connection in use: \S*?(?P<port>\d{2,5})",
        0.9,
    ),
    # connection_refused
    _r(
        "curl_refused",
        "connection_refused",
        r"curl: \(7\)|Failed to connect to (?P<host>\S+) port (?P<port>\d+)",
        0.85,
    ),
    _r(
        "upstream_refused",
        "connection_refused",
        r"connect\(\) (?:to (?P<path>unix:\S+) )?failed \((?:111|2): [^)]*\) while connecting to "
        r"upstream|upstream: \"?http://[^:\s]+:(?P<port>\d+)",
        0.95,
        ("start_service", "restart_service", "manual_intervention"),
    ),
    _r(
        "econnrefused",
        "connection_refused",
        r"(?-i:ECONNREFUSED)(?: [\w.\[\]:]*?:(?P<port>\d+))?|Connection refused|\[Errno 111\]",
        0.65,
    ),
    _r(
        "redis_refused",
        "connection_refused",
        r"Error \d+ connecting to [^\n]*?:(?P<port>\d+)\. Connection refused|"
        r"No such file or directory[^\n]{0,40}\.sock\b|\.sock(?:et)?\b[^\n]{0,40}"
        r"No such file or directory|502 Bad Gateway",
        0.85,
    ),
    # disk_full
    _r(
        "no_space",
        "disk_full",
        r"No space left on device|(?-i:ENOSPC)|not enough free space|Disk quota exceeded"
        r"|You don't have enough free space|could not extend file|write error: No space",
        0.97,
    ),
    # dns_failure
    _r(
        "dns",
        "dns_failure",
        r"Temporary failure in name resolution|Temporary failure resolving '(?P<host>[^']+)'"
        r"|Could not resolve host:? (?P<host>[\w.-]+)|Could not resolve hostname (?P<host>[\w.-]+)"
        r"|(?-i:EAI_AGAIN)|(?-i:ENOTFOUND)|getaddrinfo failed|Name or service not known"
        r"|nodename nor servname provided|Failed to resolve|NameResolutionError"
        r"|Could not resolve '(?P<host>[^']+)'|Name does not resolve|no such host",
        0.95,
    ),
    # ssl_certificate
    _r(
        "certbot",
        "ssl_certificate",
        r"certbot|Challenge failed|acme|too many certificates|rateLimited"
        r"|Timeout during connect \(likely firewall problem\)|Some challenges have failed"
        r"|unauthorized :: Invalid response|urn:ietf:params:acme",
        0.9,
    ),
    _r(
        "cert_verify",
        "ssl_certificate",
        r"CERTIFICATE_VERIFY_FAILED|certificate verify failed|SSL certificate problem"
        r"|UNABLE_TO_(?:GET_ISSUER|VERIFY_LEAF)|SELF_SIGNED_CERT|CERT_HAS_EXPIRED"
        r"|certificate has expired|ERR_TLS_CERT|SSL: CERTIFICATE|server certificate verification"
        r"|cannot load certificate|SSL_CTX_use_PrivateKey|no \"ssl_certificate\" is defined",
        0.93,
    ),
    # npm_permissions
    _r(
        "npm_global_eacces",
        "npm_permissions",
        r"Missing write access to (?P<path>\S+)"
        r"|(?:EACCES|permission denied)[^\n]{0,60}(?P<path>/usr(?:/local)?/(?:lib/)?node_modules\S*)"
        r"|(?:EACCES|permission denied)[^\n]{0,60}(?P<path>/usr(?:/local)?/bin/\S*)"
        r"|npm (?:ERR!|error) (?:code )?(?-i:EACCES)"
        r"|(?:EACCES|permission denied)[^\n]{0,60}(?P<path>\S*\.npm\S*)",
        0.93,
    ),
    # apt_lock
    _r(
        "apt_lock",
        "apt_lock",
        r"Could not get lock (?P<path>\S+?)\.?(?:\s|$)|Unable to acquire the dpkg"
        r"|Unable to lock the administration directory|is another process using it"
        r"|Waiting for cache lock|dpkg frontend lock",
        0.96,
    ),
    _r(
        "dpkg_interrupted",
        "apt_lock",
        r"dpkg was interrupted|dpkg --configure -a",
        0.95,
        ("dpkg_repair", "wait_for_apt_lock", "manual_intervention"),
    ),
    # out_of_memory
    _r(
        "js_heap",
        "out_of_memory",
        r"JavaScript heap out of memory|heap limit Allocation failed|Reached heap limit",
        0.97,
    ),
    _r(
        "oom_generic",
        "out_of_memory",
        r"Cannot allocate memory|MemoryError|Out of memory|oom-kill|\bKilled\s*$"
        r"|exit (?:code|status) 137|signal 9\b|SIGKILL|status=9/KILL|std::bad_alloc"
        r"|virtual memory exhausted|(?-i:ENOMEM)",
        0.85,
    ),
    # ssh_auth
    _r(
        "ssh_publickey",
        "ssh_auth",
        r"Permission denied \((?:publickey|password|keyboard-interactive)[^)]*\)",
        0.97,
    ),
    _r(
        "ssh_hostkey",
        "ssh_auth",
        r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED"
        r"|Too many authentication failures|no matching host key type|Offending \w+ key",
        0.95,
    ),
    _r(
        "ssh_key_permissions",
        "ssh_auth",
        r"UNPROTECTED PRIVATE KEY FILE|Permissions 0?\d{3,4} for '(?P<path>[^']+)' are too open"
        r"|bad permissions|Bad owner or permissions on (?P<path>\S+)",
        0.96,
        ("fix_ownership", "manual_intervention"),
    ),
    # build_toolchain_missing
    _r(
        "wheel_toolchain",
        "build_toolchain_missing",
        r"pg_config executable not found|Python\.h: No such file|error: command '(?P<command>"
        r"[\w+.-]*(?:gcc|cc|g\+\+|x86_64-linux-gnu-gcc|clang))' failed"
        r"|(?:gcc|cc|make|g\+\+): (?:command )?not found|unable to execute '?(?:gcc|cc)"
        r"|Microsoft Visual C\+\+|fatal error: (?P<path>[\w/.-]+\.h): No such file"
        r"|gyp ERR! (?:find Python|stack Error: not found: make)|No CMAKE_C_COMPILER"
        r"|Failed building wheel|Failed to build (?:installable wheels|[\w-]+)"
        r"|Could not build wheels|libpq-fe\.h|ffi\.h|openssl/\w+\.h",
        0.9,
    ),
    # python_env
    _r(
        "python_venv_missing",
        "python_env",
        r"ensurepip is not available|No module named (?:venv|ensurepip|pip)\b"
        r"|python3-venv|externally-managed-environment|externally managed"
        r"|virtualenv[^\n]{0,40}not found|bad interpreter: No such file",
        0.95,
    ),
    _r(
        "python_module_missing",
        "python_env",
        r"ModuleNotFoundError: No module named '(?P<module>[\w.]+)'"
        r"|ImportError: (?:No module named|cannot import name) '?(?P<module>[\w.]+)"
        r"|Couldn't import Django|pkg_resources\.DistributionNotFound",
        0.8,
    ),
    # node_version
    _r(
        "node_engine",
        "node_version",
        r"Unsupported engine|(?-i:EBADENGINE)|The engine \"node\" is incompatible|requires a peer of"
        r"|ERR_OSSL_EVP_UNSUPPORTED|digital envelope routines::unsupported"
        r"|Node\.js (?:version )?v?(?P<version>[\d.]+) is not supported|requires Node(?:\.js)?"
        r" (?:version )?[>=^~]*\s*v?(?P<version>\d+)|SyntaxError: Unexpected token '?\?\.?'?"
        r"|ERR_REQUIRE_ESM|Unexpected token \?|node: bad option",
        0.9,
    ),
    # service_failed
    _r(
        "systemd_job_failed",
        "service_failed",
        r"Job for (?P<service>[\w@.-]+?)(?:\.service)? failed"
        r"|(?<=(?P<service>[\w@.-]{1,80}))\.service: (?:Main process exited|Failed with result"
        r"|Start request repeated)|status=203/EXEC|status=\d+/\w+",
        0.93,
    ),
    _r(
        "unit_not_found",
        "service_failed",
        r"Unit (?P<service>[\w@.-]+?)(?:\.service)? (?:not found|could not be found)"
        r"|Failed to (?:start|restart|enable) (?P<service>[\w@.-]+?)(?:\.service)?: "
        r"|Active: failed",
        0.92,
    ),
    # nginx_config
    _r(
        "nginx_emerg",
        "nginx_config",
        r"nginx: configuration file (?P<path>\S+) test failed"
        r"|unknown directive \"(?P<directive>[^\"]+)\"|\"server\" directive is not allowed"
        r"|invalid number of arguments in \"\w+\" directive|duplicate (?:default server|location)"
        r"|directive is not allowed here|no \"events\" section|unexpected \"?[{};]|"
        r"unexpected end of file|host not found in upstream",
        0.9,
    ),
    _r("nginx_emerg_generic", "nginx_config", r"\[emerg\]", 0.6),
    # django_migration
    _r(
        "django_migration",
        "django_migration",
        r"relation \"(?P<table>[^\"]+)\" does not exist|no such table: (?P<table>\S+)"
        r"|InconsistentMigrationHistory|Conflicting migrations detected"
        r"|You have \d+ unapplied migration|unapplied migration"
        r"|django\.db\.migrations|column \"[^\"]+\" (?:of relation \"[^\"]+\" )?does not exist"
        r"|NodeNotFoundError|Migration \S+ dependencies reference nonexistent"
        r"|(?:table|relation) \"?[^\"\s]+\"? already exists|DuplicateTable",
        0.93,
    ),
    # django_settings
    _r(
        "django_settings",
        "django_settings",
        r"DisallowedHost|ALLOWED_HOSTS|Invalid HTTP_HOST header"
        r"|SECRET_KEY setting must not be empty|ImproperlyConfigured"
        r"|CSRF verification failed|Origin checking failed|CSRF_TRUSTED_ORIGINS"
        r"|STATIC_ROOT|DJANGO_SETTINGS_MODULE|settings are not configured",
        0.93,
    ),
    # git_auth
    _r(
        "git_auth",
        "git_auth",
        r"fatal: Authentication failed|Support for password authentication was removed"
        r"|could not read (?:Username|Password) for|Repository not found"
        r"|fatal: Could not read from remote repository|remote: Invalid username or password"
        r"|terminal prompts disabled|HTTP Basic: Access denied|remote: Permission to \S+ denied",
        0.93,
    ),
    # network_timeout
    _r(
        "timeouts",
        "network_timeout",
        r"Read timed out|(?-i:ETIMEDOUT)|(?-i:ESOCKETTIMEDOUT)|Connection timed out|connect timeout"
        r"|Operation timed out|timed out after|ReadTimeoutError|ConnectTimeoutError"
        r"|network timeout|(?:socket|request) timeout|Failed to connect[^\n]*Timed out"
        r"|Could not connect to \S+ \(.*\)\. - connect \(110|ERR_SOCKET_TIMEOUT|i/o timeout",
        0.9,
    ),
    # command_not_found
    _r(
        "command_not_found",
        "command_not_found",
        r"(?<=(?:^|[\s:])(?P<command>[\w.+-]{1,60})): (?:command )?not found"
        r"|/usr/bin/env: ['\"\u2018]?(?P<command>[\w.+-]+)['\"\u2019]?: No such file or directory"
        r"|Command '(?P<command>[\w.+-]+)' not found|(?P<command>[\w.+-]+): No such file or directory"
        r"$|exec: \"?(?P<command>[\w.+-]+)\"?: executable file not found|spawn (?P<command>"
        r"[\w.+-]+) (?-i:ENOENT)|which: no (?P<command>[\w.+-]+) in",
        0.85,
    ),
)

assert {r.error_class for r in BUILTIN_RULES} == set(ERROR_CLASSES) - {UNKNOWN}


# details found anywhere in the text, whatever rule matched
_DETAIL_PATTERNS: tuple[tuple[str, Any], ...] = (
    ("port", regex.compile(r"(?:\d{1,3}(?:\.\d{1,3}){3}|\]|localhost|\*):(\d{2,5})\b")),
    ("port", regex.compile(r"(?i)\bport (\d{2,5})\b")),
    ("service", regex.compile(r"(?i)\b([\w@-]+(?:\.[\w@-]+)*)\.service\b")),
    ("command", regex.compile(r"(?m)(?:^|: )([\w.+-]+): (?:command )?not found")),
    ("package", regex.compile(r"(?i)Unable to locate package (\S+)")),
    ("path", regex.compile(r"(?<![\w.])(/(?:[\w.@+-]+/)*[\w.@+-]+)")),
    ("host", regex.compile(r"(?i)(?:resolve host:?|resolving|hostname) '?([\w-]+(?:\.[\w-]+)+)")),
)


def extract_details(text: str) -> dict[str, str]:
    """Generic details (first port, service, missing command, package, path, host)."""
    out: dict[str, str] = {}
    for key, pattern in _DETAIL_PATTERNS:
        if key in out:
            continue
        try:
            m = pattern.search(text, timeout=DEFAULT_TIMEOUT)
        except TimeoutError:
            continue
        if m:
            out[key] = m.group(1)
    return out


_MIN_NEEDLE = 3
_GROUP_NAME = re.compile(r"\(\?P<\w+>")


def _needles(pattern: str) -> tuple[str, ...] | None:
    """Case-folded ASCII literals of which at least one occurs in any text ``pattern`` matches
    (ignoring case), or None when no such set is found. A cheap test that skips most rules."""
    n = iter(range(10_000))
    try:  # group names are renamed only for parsing: the rules reuse names across branches
        parsed = sre_parse.parse(_GROUP_NAME.sub(lambda _: f"(?P<g{next(n)}>", pattern))
    except (re.error, RecursionError, OverflowError):
        return None
    found = _required(list(parsed))
    return tuple(sorted(found)) if found else None


def _required(seq: list[Any]) -> set[str] | None:
    """Alternatives (any one must occur) required by a sequence; the longest-worded choice."""
    best: set[str] | None = None

    def consider(alts: set[str] | None) -> None:
        nonlocal best
        if alts and (best is None or min(map(len, alts)) > min(map(len, best))):
            best = alts

    run: list[str] = []
    for node in [*seq, None]:
        op = _op(node) if node is not None else ""
        if op == "LITERAL" and node is not None and node[1] < 128:
            run.append(chr(node[1]).casefold())
            continue
        if len(run) >= _MIN_NEEDLE:
            consider({"".join(run)})
        run = []
        if node is None:
            break
        av = node[1]
        if op == "SUBPATTERN":
            consider(_required(list(av[-1])))
        elif op in _REPEATS and av[0] >= 1:
            consider(_required(list(av[2])))
        elif op == "BRANCH":
            alts: set[str] = set()
            for branch in av[1]:
                got = _required(list(branch))
                if not got:
                    alts = set()
                    break
                alts |= got
            consider(alts)
    return best


class RuleSet:
    """The compiled rules: built-in ones plus custom patterns; every hit with its details."""

    def __init__(
        self,
        extra: Iterable[ErrorPattern] = (),
        *,
        builtin: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.timeout = timeout
        self.rules: list[Rule] = list(BUILTIN_RULES) if builtin else []
        self._compiled: list[Any] = [r.compiled() for r in self.rules]
        # built-in rules are only searched in texts that hold one of their literals
        self._needles: list[tuple[str, ...] | None] = [_needles(r.pattern) for r in self.rules]
        self.timeouts = 0
        for p in extra:
            self.add(p)

    def add(self, pattern: ErrorPattern) -> Rule:
        """Validate and add a custom pattern (raises ConfigError / UnsafePatternError)."""
        pattern.validate()
        strategies = (pattern.recovery, *strategies_for(pattern.error_class))
        rule = Rule(
            name=pattern.name,
            error_class=pattern.error_class,
            pattern=pattern.pattern,
            strategies=tuple(dict.fromkeys(strategies)),
            weight=0.99,
            flags=0,
            custom=True,
            description=pattern.description,
        )
        self.rules.append(rule)
        self._compiled.append(rule.compiled())
        self._needles.append(None)
        return rule

    @classmethod
    def from_kb(cls, kb: object, **kwargs: Any) -> RuleSet:
        """Built-in rules plus the KB's trusted patterns; unsafe rows are skipped."""
        rules = cls(**kwargs)
        rows_of = getattr(kb, "patterns", None)
        if rows_of is None:
            return rules
        for row in rows_of(trusted_only=True):
            try:
                rules.add(ErrorPattern.from_row(row))
            except ConfigError:
                continue
        return rules

    def match(self, text: str) -> list[RuleHit]:
        """Every rule that matches ``text``, strongest first."""
        if len(text) > MAX_TEXT_CHARS:
            text = text[-MAX_TEXT_CHARS:]
        hits: list[RuleHit] = []
        folded = text.casefold()
        needles = self._needles
        for i, (rule, compiled) in enumerate(zip(self.rules, self._compiled, strict=True)):
            need = needles[i] if i < len(needles) else None
            if need is not None and not any(n in folded for n in need):
                continue
            try:
                m = compiled.search(text, timeout=self.timeout)
            except TimeoutError:
                self.timeouts += 1
                continue
            if m is None:
                continue
            details = {k: v for k, v in m.groupdict().items() if v}
            hits.append(
                RuleHit(
                    rule=rule.name,
                    error_class=rule.error_class,
                    strategies=rule.strategies,
                    weight=rule.weight,
                    matched=m.group(0)[:200],
                    details=details,
                    custom=rule.custom,
                )
            )
        hits.sort(key=lambda h: -h.weight)
        return hits

    def class_scores(self, hits: Iterable[RuleHit]) -> dict[str, float]:
        """Per class, the strongest hit's weight."""
        scores: dict[str, float] = {}
        for h in hits:
            scores[h.error_class] = max(scores.get(h.error_class, 0.0), h.weight)
        return scores

    def details(self, text: str, hits: Iterable[RuleHit] = ()) -> dict[str, str]:
        """Details from the strongest hits' named groups, completed by the generic extractors."""
        out: dict[str, str] = {}
        for h in hits:
            for k, v in h.details.items():
                out.setdefault(k, v)
        for k, v in extract_details(text[-MAX_TEXT_CHARS:]).items():
            out.setdefault(k, v)
        return out


# --- the guide's original ten patterns (baseline) -----------------------------------------

GUIDE_PATTERNS: tuple[ErrorPattern, ...] = (
    ErrorPattern(
        "nodejs_conflicts",
        r"(?i)nodejs.*conflict|conflict.*nodejs|trying to overwrite.*node",
        "nodejs_conflict",
        "nodejs_clean_reinstall",
        "high",
        "Node.js conflicts",
    ),
    ErrorPattern(
        "package_not_found",
        r"(?i)unable to locate package|package .* not found|has no installation candidate",
        "package_not_found",
        "apt_update",
        "medium",
        "Package not found",
    ),
    ErrorPattern(
        "permission_denied",
        r"(?i)permission denied",
        "permission_denied",
        "fix_ownership",
        "high",
        "Permission denied",
    ),
    ErrorPattern(
        "database_connection_failed",
        r"(?i)could not connect to server|database connection failed|connection to database",
        "database_connection",
        "restart_service",
        "high",
        "Database connection failed",
    ),
    ErrorPattern(
        "port_in_use",
        r"(?i)address already in use|port .* already in use",
        "port_in_use",
        "free_port",
        "medium",
        "Port already in use",
    ),
    ErrorPattern(
        "connection_refused",
        r"(?i)connection refused",
        "connection_refused",
        "restart_service",
        "high",
        "Connection refused",
    ),
    ErrorPattern(
        "disk_space",
        r"(?i)no space left on device|disk.*full",
        "disk_full",
        "cleanup_disk",
        "critical",
        "Disk space insufficient",
    ),
    ErrorPattern(
        "dns_resolution",
        r"(?i)temporary failure in name resolution|could not resolve host|name resolution",
        "dns_failure",
        "dns_fallback_resolver",
        "medium",
        "DNS resolution failed",
    ),
    ErrorPattern(
        "ssl_certificate",
        r"(?i)ssl.*(?:error|fail)|certificate.*(?:error|fail|invalid)",
        "ssl_certificate",
        "certbot_retry",
        "high",
        "SSL certificate failed",
    ),
    ErrorPattern(
        "npm_permissions",
        r"(?i)npm ERR!.*EACCES|npm.*permission",
        "npm_permissions",
        "npm_user_prefix",
        "medium",
        "NPM permission errors",
    ),
)


class GuideTable:
    """The original first-match table: one class and one recovery per error, nothing learned.

    Implements RecoveryAdvisor so the executor can run with it and the benchmarks can compare.
    """

    def __init__(self, patterns: Iterable[ErrorPattern] = GUIDE_PATTERNS) -> None:
        self.patterns = tuple(patterns)
        self._compiled = [regex.compile(p.pattern) for p in self.patterns]

    def first_match(self, text: str) -> ErrorPattern | None:
        text = text[-MAX_TEXT_CHARS:]
        for p, compiled in zip(self.patterns, self._compiled, strict=True):
            try:
                if compiled.search(text, timeout=DEFAULT_TIMEOUT):
                    return p
            except TimeoutError:
                continue
        return None

    def classify(self, text: str) -> str:
        p = self.first_match(text)
        return p.error_class if p else UNKNOWN

    def detect(self, step: str, result: Result) -> Failure:
        text = result.output
        return Failure(
            step=step,
            result=result,
            error_class=self.classify(text),
            signature=signature_of(text),
            details=extract_details(text),
        )

    def candidates(self, failure: Failure, *, exclude: Collection[str] = ()) -> list[Candidate]:
        p = self.first_match(failure.result.output)
        names = [p.recovery] if p else ["retry_with_backoff"]
        names.append("manual_intervention")
        why = f"guide pattern {p.name!r} ({p.description})" if p else "no guide pattern matched"
        return [
            Candidate(strategy=n, score=1.0 - i * 0.5, why=why, decided_by="rule")
            for i, n in enumerate(names)
            if n not in exclude and n in CATALOGUE
        ]

    def record(
        self,
        failure: Failure,
        strategy: str,
        outcome: Outcome,
        *,
        duration: float,
        decided_by: str,
        deployment_id: str | None = None,
    ) -> None:
        """The guide's table learns nothing."""
