"""Reusing a release's built environment (the Python venv, the frontend build) in the next one.

Each release records what its environment was built from in ``.aideploy/<kind>-env``: one line of
``field=value`` words (for the venv: the requirements file's hash and the Python interpreter and
version; for the frontend: the git tree of its sources, package-lock.json's hash, node's version).
A new release whose line is the same as an earlier release's copies that release's environment
(``cp --reflink=auto -a``: copy-on-write where the filesystem can, a full copy otherwise), never
shares it in place: each release keeps its own, so a rollback runs with exactly what it ran with.

:data:`HELPERS` are the shell functions the steps use:

* ``env_source KIND KEY PATH`` prints the release to copy from: the live one first, then the
  newest, whose recorded line is ``KEY`` and which still has ``PATH``; nothing if none;
* ``env_change KIND KEY FIELD WHY ...`` prints why the environment has to be rebuilt, compared
  with the live release: ``no previous release``, the ``WHY`` of the first ``FIELD`` that differs,
  or that no earlier release keeps one like it.
"""

from __future__ import annotations

HELPERS = r"""
env_source() {  # env_source KIND KEY PATH
  _live=$(basename "$(readlink "$APP_ROOT/current" 2>/dev/null)" 2>/dev/null || true)
  for _r in $_live $(ls -1 "$APP_ROOT/releases" 2>/dev/null | sort -r); do
    case "$_r" in "$DEPLOYMENT_ID"|*.partial) continue ;; esac
    _d="$APP_ROOT/releases/$_r"
    if [ "$(cat "$_d/.aideploy/$1-env" 2>/dev/null)" = "$2" ] && [ -e "$_d/$3" ]; then
      echo "$_r"; return 0
    fi
  done
}
env_field() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
env_change() {  # env_change KIND KEY FIELD WHY [FIELD WHY ...]
  _kind="$1"; _key="$2"; shift 2
  [ -e "$APP_ROOT/current" ] || { echo "no previous release"; return 0; }
  _was=$(cat "$APP_ROOT/current/.aideploy/$_kind-env" 2>/dev/null) || {
    echo "the live release recorded no environment"; return 0; }
  while [ $# -ge 2 ]; do
    if [ "$(env_field "$1" "$_was")" != "$(env_field "$1" "$_key")" ]; then echo "$2"; return 0; fi
    shift 2
  done
  echo "no earlier release keeps this environment"
}
"""
