"""Error signatures: the stable, masked identity of an error across machines and runs.

A signature is built from the *error lines* of a command's output (the lines that say what went
wrong, not the progress noise around them), with every variable part replaced by a placeholder:
numbers, hex ids, UUIDs, addresses, ports, paths (the file name is kept), versions, timestamps,
PIDs, user and host names, and package names in the slots where tools print them.

The same error on two machines gives the same signature; different errors give different ones.
Input is capped to its last :data:`MAX_INPUT_CHARS` characters and the output to
:data:`MAX_LINES` lines of at most :data:`MAX_LINE_CHARS` characters, so the cost is bounded
whatever a command prints. ``signature_of`` is idempotent: a signature is its own signature.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

MAX_INPUT_CHARS = 64 * 1024
MAX_LINES = 6
MAX_LINE_CHARS = 160
FALLBACK_LINES = 3

_HEAD = 3  # error lines kept from the start of the error block...
_TAIL = MAX_LINES - _HEAD  # ...and from its end

# --- cleaning --------------------------------------------------------------------------------

_ANSI = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])"  # CSI, OSC, 2-byte
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x9b\ufffd]")
_SPACES = re.compile(r"[ \t\u00a0]+")


def _clean_line(line: str) -> str:
    if "\r" in line:  # progress bars redraw the line: keep what was shown last
        parts = [p for p in line.split("\r") if p.strip()]
        line = parts[-1] if parts else ""
    line = _CONTROL.sub("", line)
    return _SPACES.sub(" ", line).strip()


def _clean_lines(text: str) -> list[str]:
    if len(text) > MAX_INPUT_CHARS:
        text = text[-MAX_INPUT_CHARS:]
    text = _ANSI.sub("", text)
    text = text.replace("\r\n", "\n")
    return [c for c in (_clean_line(raw) for raw in text.split("\n")) if c]


# --- which lines are error lines -------------------------------------------------------------

_ERROR_WORDS = re.compile(
    r"(?i)(?:\berr(?:or|no)?\b|error|fatal|fail|denied|refused|cannot|can't|could ?not|couldn't|"
    r"unable|not found|no such|no space|killed|out of memory|timed? ?out|conflict|traceback|"
    r"exception|\[(?:emerg|crit|alert)\]|^E: |^W: .*lock|ERR!|invalid|missing|unsupported|"
    r"not (?:allowed|permitted|installed)|rejected|overwrite|interrupted|does not exist|"
    r"already in use|insufficient|improperly|disallowed|unknown|unmet|broken|abort|"
    r"\bE[A-Z]{3,}\b|\bwarn(?:ing)?\b.*\b(?:lock|engine)\b|status=\d|"
    r"exit (?:code|status)|"
    r"not enough|heap limit|changed|verification|unreachable|unrecognized|syntax|"
    r"^[\w.]*(?:Error|Exception|Exit|Interrupt|Warning|DoesNotExist)\b)"
)

# lines that contain an error word but say nothing about the error itself
_NOISE = re.compile(
    r"(?i)(?:complete log of this run|_logs/|^npm ERR!\s*$|^ERR!\s*$|see above for output|"
    r"this error originates from a subprocess|likely not a problem with pip|"
    r"^(?:hint|note):\s|for more information|please (?:report|try|check)|"
    r"if you believe this|re-run this command|^npm ERR! (?:\}|\[?\s*$)|"
    r"^npm ERR! (?:errno|code|syscall|path|dest|stack): |\] \{$|^-+$|^[│|╰─>\s]+$)"
)

_TRACEBACK = re.compile(r"^Traceback \(most recent call last\)")
# the marker line under a frame's source (Python 3.11+): carets and tildes only
_FRAME_MARKERS = re.compile(r"[~^]+")


def error_lines(text: str) -> list[str]:
    """The lines of ``text`` that describe the error (cleaned, unmasked, at most MAX_LINES).

    Lines with an error marker are chosen (the first and the last few when there are many);
    the exception line that ends a Python traceback is always kept. When no line carries a
    marker, the last few non-empty lines are the error.
    """
    lines = _clean_lines(text)
    if not lines:
        return []
    picked: list[int] = []
    in_traceback = False
    for i, line in enumerate(lines):
        if _TRACEBACK.match(line):
            in_traceback = True
            continue
        if in_traceback:
            # frames are indented or start with 'File "'; the first other line ends the traceback
            frame = line.startswith("File ") or _FRAME_MARKERS.fullmatch(line)
            if frame or _is_indented_frame(text, line):
                continue
            in_traceback = False
            picked.append(i)
            continue
        if _is_error_line(line):
            picked.append(i)
    if not picked:
        return lines[-FALLBACK_LINES:]
    unique: list[str] = []
    seen: set[str] = set()
    for i in picked:
        key = _mask_line(lines[i])
        if key in seen:
            continue
        seen.add(key)
        unique.append(lines[i])
    if len(unique) > MAX_LINES:
        unique = unique[:_HEAD] + unique[-_TAIL:]
    return unique


def _is_indented_frame(text: str, line: str) -> bool:
    # cleaned lines lose their indentation; traceback source lines follow a 'File "...", line'
    # frame and are recognised by shape instead
    return line.startswith(("raise ", "return ", "self.", "import ", "from ")) or (
        "(" in line and line.endswith(")") and ":" not in line.split("(", 1)[0]
    )


# --- masking ---------------------------------------------------------------------------------

_KNOWN_SERVICES = frozenset(
    [
        "nginx",
        "postgresql",
        "gunicorn",
        "apache2",
        "ssh",
        "sshd",
        "docker",
        "redis",
        "redis-server",
        "uwsgi",
        "celery",
        "supervisor",
        "cron",
        "systemd-resolved",
        "mysql",
        "mariadb",
        "memcached",
    ]
)

Sub = tuple["re.Pattern[str]", "str | Callable[[re.Match[str]], str]"]


def _service(m: re.Match[str]) -> str:
    name = m.group("unit")
    base = name.split("@", 1)[0]
    if base in _KNOWN_SERVICES or base.startswith("postgresql"):
        return m.group(0).replace(name, "postgresql" if base.startswith("postgresql") else base)
    return m.group(0).replace(name, "<service>")


def _path(m: re.Match[str]) -> str:
    path = m.group(0)
    parts = [p for p in path.split("/") if p and p != "~"]
    if not parts:
        return path
    name = parts[-1]
    if path.endswith("/"):
        return "<path>/"
    if len(parts) == 1 and not path.startswith("~"):
        # /tmp, /etc: well-known top-level directories keep their name
        return "<path>/" + name if name not in _TOP_DIRS else path
    return "<path>/" + name


_TOP_DIRS = frozenset(
    [
        "tmp",
        "etc",
        "usr",
        "var",
        "opt",
        "srv",
        "home",
        "root",
        "bin",
        "sbin",
        "lib",
        "run",
        "dev",
        "proc",
        "sys",
    ]
)

_NUM_KEEP = (
    r"(?i:errno|exit code|exit status|error code|status code|returned|code|status|signal|"
    r"http(?:/[\d.]+)?|curl: ?|e|npm ERR! ?|npm error ?)"
)

_SUBS: tuple[Sub, ...] = (
    # release and deployment ids made from a compact timestamp (20261127-032300-abc123,
    # 20240101123456): a new one at every deploy, so the same error must not carry it
    (re.compile(r"(?<![\w.])\d{8}[-T_]?\d{6}Z?(?:[-_][0-9a-f]{4,})?(?![\w.])"), "<id>"),
    # timestamps (ISO, nginx, syslog, bare clock times)
    (
        re.compile(
            r"\d{4}[-/]\d{2}[-/]\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"
        ),
        "<time>",
    ),
    (
        re.compile(
            r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) {1,2}\d{1,2} "
            r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
        ),
        "<time>",
    ),
    # syslog/journal prefix: "<time> host prog[pid]:" - the host is the machine's name
    (re.compile(r"^<time> (?!<)[\w.-]+ (?=[\w.@/-]+(?:\[\d+\])?: )"), "<time> <host> "),
    (re.compile(r"(?<![\w:])\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?(?![\w:])"), "<time>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}(?![\w-])"), "<date>"),
    # UUIDs before hex ids and numbers
    (
        re.compile(
            r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
        ),
        "<uuid>",
    ),
    # URLs: keep the scheme (https vs ssh matters for git), mask the rest
    (
        re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*)://(?!<url>)[^\s'\"<>()\[\]{},;]+"),
        r"\1://<url>",
    ),
    # user@host (ssh, git, emails, shell prompts)
    (
        re.compile(r"(?<![\w.<>@-])[A-Za-z0-9_.+-]+@(?![\d<])[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"),
        "<user>@<host>",
    ),
    # host names in the slots where tools print them
    (
        re.compile(
            r"(?i)(resolve host:? |resolving |EAI_AGAIN |ENOTFOUND |EAI_NONAME |connect to host |"
            r"resolve hostname |host key for |address of |Invalid HTTP_HOST header: |"
            r"translate host name |server_name |unknown host )"
            r"(['\"]?)(?!<)[A-Za-z0-9][A-Za-z0-9_.-]*[A-Za-z0-9](['\"]?)"
        ),
        r"\1\2<host>\3",
    ),
    (
        re.compile(r"(?i)(\[)(?!<)[A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9](\]:\d+)"),
        r"\1<host>\2",
    ),
    # IPv4 (port handled below) and IPv6
    (re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]\w)"), "<ip>"),
    (
        re.compile(
            r"(?i)(?<![\w:<])(?=[0-9a-f:]*:[0-9a-f:]*:)(?:[0-9a-f]{1,4}|:)?(?::[0-9a-f]{0,4}){2,7}"
            r"(?![\w:])"
        ),
        "<ip>",
    ),
    # ports: after an address, or in "port N"
    (re.compile(r"(<ip>\]?|<host>\]?|localhost):\d{1,5}\b"), r"\1:<port>"),
    (re.compile(r"(?i)\b(port) \d{1,5}\b"), r"\1 <port>"),
    # user/home directories and names in known slots
    (re.compile(r"(/home/|/Users/)(?!<)[^/\s'\"]+"), r"\1<user>"),
    (
        re.compile(
            r"(?i)\b(for user|user|role|database|relation|column|table|as user) \"[^\"<]+\""
        ),
        r'\1 "<name>"',
    ),
    # package names in the slots where package managers print them
    (
        re.compile(
            r"(?i)(Unable to locate package |No matching distribution found for |"
            r"requirement |(?-i:Package )|no installation candidate.*?for |No package |"
            r"No module named |Cannot find module |is not in the npm registry.*?|"
            r"depends on |Depends: |Conflicts: |Breaks: )"
            r"(['\"\u2018\u2019]?)(?!<)[@A-Za-z0-9][\w.+@/:=<>!~-]*?(['\"\u2018\u2019]?)(?=[\s,;:)]|$)"
        ),
        r"\1\2<pkg>\3",
    ),
    (
        re.compile(
            r"(?i)(E404.*?|\b404 (?:Not Found.*?)?)(['\"\u2018])(?!<)@?[\w./-]+"
            r"(?:@[^'\"\u2019\s]*)?(['\"\u2019])"
        ),
        r"\1\2<pkg>\3",
    ),
    # systemd units: well-known services keep their name
    (re.compile(r"(?P<unit>(?<![\w<>-])[A-Za-z0-9_@.-]+)\.(?:service|socket|timer)\b"), _service),
    # PIDs
    (re.compile(r"(?i)\b(pid|process|PID)([ =:]+)\d+\b"), r"\1\2<pid>"),
    (re.compile(r"\b([A-Za-z][\w.-]*)\[\d+\]"), r"\1[<pid>]"),
    (re.compile(r"(?<![\w<])\d+#\d+:"), "<pid>#<pid>:"),
    # absolute and home-relative paths: keep the file name
    (
        re.compile(r"(?<![\w.<>~/:\\-])~?/(?:(?:[\w.@+-]+|<\w+>)/)*(?:[\w.@+-]+|<\w+>)?/?"),
        _path,
    ),
    # hex ids (git shas, container ids, addresses)
    (re.compile(r"(?i)\b0x[0-9a-f]+\b"), "<hex>"),
    (re.compile(r"(?i)\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{8,}\b"), "<hex>"),
    # versions: 1.2.3, v18.19.0, 12.22.9~dfsg-1ubuntu3, python3.11
    (
        re.compile(
            r"(?<![\d.<])v?\d+\.\d+(?:\.\d+)+(?:[-+~][0-9A-Za-z.~+-]*[0-9A-Za-z])?"
            r"|(?<![\d.<])v\d+(?:\.\d+)*(?![\w.])"
            r"|(?<![\d.<])\d+\.\d+[-+~][0-9A-Za-z.~+-]*[0-9A-Za-z]"
            r"|(?<=[A-Za-z])\d+\.\d+(?![\d.]*\d)"
        ),
        "<ver>",
    ),
    # error codes stay (errno -13, exit code 137, status=203, curl: (7), (98: ...)); others go
    (
        re.compile(
            r"(?P<keep>\b" + _NUM_KEEP + r"[ =:]*\(?-?\d+\b|\(\d{1,3}(?=[:)])|\bE\d{3}\b)"
            r"|(?<![\w<>.])-?\d+(?:[.,]\d+)?(?![\w>]|\.\d)"
        ),
        lambda m: m.group("keep") or "<num>",
    ),
)


_D = "0123456789"
# per substitution, characters of which at least one must be in the line for it to apply
_NEEDS: tuple[str, ...] = (
    _D, _D, _D, "<", _D, _D, "-", ":", "@", " ", "]", _D, ":", ":", _D, "/", '"',
    " ", "4", ".", _D, "[", "#", "/", _D, _D, _D, _D,
)  # fmt: skip
assert len(_NEEDS) == len(_SUBS)
_PLAN = tuple(zip(_SUBS, _NEEDS, strict=True))


# a line's leading time stamp (and the machine name after it): when a line was printed and by
# which machine says nothing about the error, and logs print it or not
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,? "
_LEADING_STAMP = re.compile(
    r"^(?:\[(?:" + _DAY + r")?<(?:time|date)>(?: <(?:time|date)>)*(?: <num>)?\]:? ?"
    r"|" + _DAY + r"<(?:time|date)>(?: <num>)? ?"
    r"|(?:<(?:time|date)> ?)+)(?:<host> )?(?=\S)"
)


def _mask_once(line: str) -> str:
    for (pattern, replacement), needs in _PLAN:
        if any(ch in line for ch in needs):
            line = pattern.sub(replacement, line)
    line = _LEADING_STAMP.sub("", _SPACES.sub(" ", line).strip())
    if len(line) > MAX_LINE_CHARS:
        cut = line.rfind(" ", 0, MAX_LINE_CHARS)
        line = line[: cut if cut > MAX_LINE_CHARS // 2 else MAX_LINE_CHARS].rstrip()
    return line


@lru_cache(maxsize=4096)
def _mask_line(line: str) -> str:
    # a placeholder can open a word boundary another pattern then needs: repeat to a fixed point;
    # cached, as error_lines and signature_of mask the same lines
    for _ in range(4):
        masked = _mask_once(line)
        if masked == line:
            break
        line = masked
    return line


def mask(text: str) -> str:
    """Mask the variable parts of each line of ``text`` (no line selection)."""
    return "\n".join(_mask_line(c) for c in _clean_lines(text))


def signature_of(text: str) -> str:
    """The signature of raw command output: its error lines, masked, one per line.

    Empty output gives the empty string.
    """
    out: list[str] = []
    for line in error_lines(text):
        masked = _mask_line(line)
        if masked and masked not in out:
            out.append(masked)
    # keep only lines that would be chosen again, so a signature is its own signature
    marked = [line for line in out if _is_error_line(line)]
    return "\n".join(marked or out[-FALLBACK_LINES:])


def _is_error_line(line: str) -> bool:
    return bool(_ERROR_WORDS.search(line)) and not _NOISE.search(line)
