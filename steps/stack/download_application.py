"""download_application: fetch ``APP_REPO`` at ``APP_REF`` into a new release directory.

The repository is fetched into a bare cache (``$APP_ROOT/shared/repo.git``) and the commit is
exported into ``releases/<deployment id>`` (no ``.git`` in a release). When the current release is
verified and already at the wanted commit, the step is done and the release steps after it are
skipped too.

A token for a private repository comes from ``GIT_TOKEN_ENV`` (the name of a variable in
aideploy's own environment), ``GIT_TOKEN_FILE`` (a file on aideploy's machine) or the credentials
of ``APP_REPO`` itself (``https://TOKEN@host/...``, ``https://user:TOKEN@host/...``). It is sent
over SFTP into a private temporary directory on the server, read there by a credential helper
given with ``git -c`` (so it is never in the URL, a command line, ``.git/config`` or the logs)
and removed right after: the server's ``git`` only ever sees ``APP_REPO`` without its user part,
and that is the cache's configured origin.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from aideploy.core.errors import ConfigError
from aideploy.core.redact import register_secret
from aideploy.core.result import Result
from aideploy.engine.plan import Step, StepContext
from aideploy.engine.preview import StepPreview, Verdict
from aideploy.steps.stack.common import fail, run

GIT = r"""
git_() {
  if [ -n "${TOKEN_FILE:-}" ]; then
    GIT_TERMINAL_PROMPT=0 git -c credential.helper= \
      -c 'credential.helper=!f() { test "$1" = get || exit 0; if [ -n "${USER_FILE:-}" ]; then printf "username=%s\n" "$(cat "$USER_FILE")"; else echo "username=$GIT_USERNAME"; fi; printf "password=%s\n" "$(cat "$TOKEN_FILE")"; }; f' "$@"
  else
    GIT_TERMINAL_PROMPT=0 git "$@"
  fi
}
wanted() {
  case "$APP_REF" in
    *[!0-9a-f]*|"") ;;
    *) if [ ${#APP_REF} -eq 40 ]; then echo "$APP_REF"; return 0; fi ;;
  esac
  refs=$(git_ ls-remote "$APP_REPO" "refs/heads/$APP_REF" "refs/tags/$APP_REF" "refs/tags/$APP_REF^{}")
  sha=$(printf '%s\n' "$refs" | awk '/\^\{\}$/ {print $1; exit}')
  [ -n "$sha" ] || sha=$(printf '%s\n' "$refs" | awk 'NR==1 {print $1}')
  [ -n "$sha" ] || { echo "fatal: no ref $APP_REF in the repository" >&2; return 1; }
  echo "$sha"
}
"""

CHECK = (
    GIT
    + r"""
if pending && marked fetched; then exit 0; fi
pending && exit 1
current_verified || exit 1
[ "$(cat "$APP_ROOT/current/.aideploy/commit")" = "$(wanted)" ]
"""
)

WORK = (
    GIT
    + r"""
cache="$SHARED/repo.git"
if [ ! -d "$cache" ]; then git init -q --bare "$cache"; fi
git --git-dir="$cache" config remote.origin.url "$APP_REPO"
git_ --git-dir="$cache" fetch -q --prune --force origin '+refs/heads/*:refs/heads/*' '+refs/tags/*:refs/tags/*'
sha=$(git --git-dir="$cache" rev-parse --verify -q "$APP_REF^{commit}") || {
  echo "fatal: couldn't find remote ref $APP_REF" >&2; exit 1; }
rm -rf "$REL.partial" && mkdir -p "$REL.partial"
git --git-dir="$cache" archive --format=tar "$sha" | tar -x -C "$REL.partial"
mkdir -p "$REL.partial/.aideploy"
printf '%s\n' "$sha" > "$REL.partial/.aideploy/commit"
printf '%s\n' "$APP_REF" > "$REL.partial/.aideploy/ref"
date -u +%FT%TZ > "$REL.partial/.aideploy/fetched"
mv -T "$REL.partial" "$REL"
echo "release $DEPLOYMENT_ID: $APP_REF at $sha"
"""
)


@dataclass(frozen=True)
class Credentials:
    """What the credential helper answers: ``user`` (None: ``GIT_USERNAME``) and ``token``."""

    token: str
    user: str | None = None


def split_credentials(repo: str) -> tuple[str, Credentials | None]:
    """``APP_REPO`` without its user part, and the credentials that part held. A login name in
    an ``ssh://`` URL is not a credential and stays; scp-like ``git@host:path`` has none."""
    parts = urlsplit(repo)
    if parts.scheme in ("", "ssh", "git+ssh", "ssh+git", "file") or "@" not in parts.netloc:
        return repo, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    clean = urlunsplit(parts._replace(netloc=host))
    user, password = unquote(user), unquote(password)
    if colon:
        return clean, Credentials(token=password, user=user or None)
    return clean, Credentials(token="", user=user) if user else None


def _credentials(ctx: StepContext) -> Credentials | None:
    name = ctx.env.get("GIT_TOKEN_ENV", "")
    path = ctx.env.get("GIT_TOKEN_FILE", "")
    token = None
    if name:
        token = os.environ.get(name)
        if not token:
            raise ConfigError(f"GIT_TOKEN_ENV: {name} is not set in aideploy's environment")
    elif path:
        token = Path(path).expanduser().read_text(encoding="utf-8").strip()
    _, in_url = split_credentials(ctx.env.get("APP_REPO", ""))
    found = Credentials(token) if token else in_url
    if found is not None:
        register_secret(found.token)
        register_secret(found.user if not found.token else None)  # a token as the user part
    return found


@contextlib.contextmanager
def token_on_server(ctx: StepContext) -> Iterator[dict[str, str]]:
    """Extra env for the git commands: ``APP_REPO`` without credentials, and TOKEN_FILE (and
    USER_FILE) in a 0700 temporary directory when there are credentials."""
    clean, _ = split_credentials(ctx.env.get("APP_REPO", ""))
    found = _credentials(ctx)
    if found is None:
        yield {"APP_REPO": clean}
        return
    made = ctx.runner.run("mktemp -d /tmp/aideploy-git.XXXXXXXX", env=ctx.env, timeout=30)
    directory = made.stdout.strip()
    if not made.ok or not directory.startswith("/tmp/aideploy-git."):
        raise ConfigError(f"cannot make a private directory on the server: {made.tail(2)}")
    try:
        extra = {"APP_REPO": clean, "TOKEN_FILE": f"{directory}/token"}
        ctx.connector.write_file(extra["TOKEN_FILE"], found.token.encode(), mode=0o600)
        if found.user is not None:
            extra["USER_FILE"] = f"{directory}/user"
            ctx.connector.write_file(extra["USER_FILE"], found.user.encode(), mode=0o600)
        yield extra
    finally:
        ctx.runner.run('rm -rf -- "$DIR"', env={**ctx.env, "DIR": directory}, timeout=30)


def check(ctx: StepContext) -> bool:
    with token_on_server(ctx) as extra:
        return run(ctx, CHECK, timeout=120, **extra).ok


def preview(ctx: StepContext) -> StepPreview:
    if check(ctx):
        return StepPreview(Verdict.SKIP, "the live release is at the wanted commit")
    return StepPreview(Verdict.CHANGE, "a new release of APP_REPO at APP_REF would be fetched")


def work(ctx: StepContext) -> Result:
    try:
        with token_on_server(ctx) as extra:
            return run(ctx, WORK, timeout=900, **extra)
    except (ConfigError, OSError) as exc:
        return fail(ctx, "<download_application>", str(exc))


def step() -> Step:
    return Step(
        "download_application",
        "Fetch APP_REPO at APP_REF into a new release",
        work=work,
        check=check,
        timeout=900,
        requires=("APP_REPO",),
        preview=preview,
    )
