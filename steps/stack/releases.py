"""Releases: the atomic ``current`` switch, pruning, and rollback (code and, optionally, data).

``$APP_ROOT/releases/<deployment id>`` are complete releases; ``current`` is a relative symlink
replaced by renaming a new symlink over it, so readers see the old or the new target, never none.
Switching is the control script's ``switch`` (setup_services): the new app server starts beside
the old one and takes the traffic only once it answers. ``rollback`` switches to an earlier
verified release (the one before the live one, or ``to``) the same way; ``with_database`` also
restores the ``pg_dump`` taken before the migrations of the release being rolled back
(``shared/backups/db-<id>.dump``).
"""

from __future__ import annotations

from dataclasses import dataclass

from aideploy.core.result import Result
from aideploy.engine.runner import Runner
from aideploy.steps.stack.common import DEFAULTS, sh

PRUNE = r"""
prune_releases() {
  live=$(basename "$(readlink "$APP_ROOT/current")")
  ls -1 "$APP_ROOT/releases" | grep -v '\.partial$' | sort -r | tail -n +"$((KEEP_RELEASES + 1))" |
    while read -r old; do
      [ "$old" = "$live" ] && continue
      rm -rf -- "$APP_ROOT/releases/$old"
      echo "pruned release $old"
    done
}
"""

LIST = r"""
live=$(basename "$(readlink "$APP_ROOT/current" 2>/dev/null)" 2>/dev/null || true)
for dir in $(ls -1 "$APP_ROOT/releases" 2>/dev/null | sort); do
  state=unverified; [ -f "$APP_ROOT/releases/$dir/.aideploy/verified" ] && state=verified
  [ "$dir" = "$live" ] && state="$state,live"
  printf '%s %s %s\n' "$dir" "$state" "$(cat "$APP_ROOT/releases/$dir/.aideploy/commit" 2>/dev/null || echo -)"
done
"""

ROLLBACK = r"""
[ -d "$APP_ROOT/releases" ] || {
  echo "no releases under $APP_ROOT: nothing has been deployed there" >&2; exit 1; }
live=$(basename "$(readlink "$APP_ROOT/current")")
if [ -n "$TO" ]; then target="$TO"
else
  target=$(ls -1 "$APP_ROOT/releases" | sort | awk -v live="$live" '$0 < live' |
    while read -r r; do [ -f "$APP_ROOT/releases/$r/.aideploy/verified" ] && echo "$r"; done | tail -n 1)
fi
[ -n "$target" ] || { echo "no earlier verified release to roll back to" >&2; exit 1; }
[ -f "$APP_ROOT/releases/$target/.aideploy/verified" ] || {
  echo "release $target is not a verified release" >&2; exit 1; }
[ "$target" != "$live" ] || { echo "release $target is already live"; exit 0; }
if [ "$WITH_DATABASE" = 1 ]; then
  dump="$SHARED/backups/db-$live.dump"
  [ -s "$dump" ] || { echo "no database backup taken before release $live: $dump" >&2; exit 1; }
  "$CTL" stop
  if ! (cd / && runuser -u postgres -- pg_restore -p "$DB_PORT" --clean --if-exists \
      --single-transaction -d "$DB_NAME" < "$dump"); then
    echo "pg_restore failed (nothing restored); release $live keeps running" >&2
    "$CTL" start; exit 1
  fi
  echo "database restored from $dump"
fi
"$CTL" switch "$target"
echo "rolled back from $live to $target"
"""


@dataclass(frozen=True)
class Release:
    name: str
    verified: bool
    live: bool
    commit: str


def _env(settings: dict[str, str]) -> dict[str, str]:
    env = {**DEFAULTS, **settings}
    env.setdefault("DEPLOYMENT_ID", "rollback")
    return env


def list_releases(runner: Runner, **settings: str) -> list[Release]:
    result = runner.run(sh(LIST), env=_env(settings), timeout=30)
    out = []
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3:
            states = parts[1].split(",")
            out.append(Release(parts[0], "verified" in states, "live" in states, parts[2]))
    return out


def rollback(
    runner: Runner, *, to: str | None = None, with_database: bool = False, **settings: str
) -> Result:
    """Switch ``current`` back (to ``to`` or the previous verified release) and restart."""
    env = {**_env(settings), "TO": to or "", "WITH_DATABASE": "1" if with_database else "0"}
    if to is not None and ("/" in to or to.startswith(".")):
        raise ValueError(f"not a release name: {to!r}")
    return runner.run(sh(ROLLBACK), env=env, timeout=300)
