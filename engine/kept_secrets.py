"""The secret plan variables of a deployment, kept for ``resume`` beside its state.

The state file never holds a secret: every value :func:`~aideploy.core.redact.redact_obj` would
mask is stored there as ``***``. The real values a deployment was given (``--set`` values under a
secret-looking name, a URL with credentials, a registered secret) go to
``<home>/deployments/<id>.secrets``: a 0600 file in the 0700 deployments directory, written
atomically, registered for redaction when read back, and removed once the deployment completed
or was abandoned. A fleet run's are kept the same way in ``<home>/runs/<run id>.secrets`` (the
run's variables and each host's), removed once every host of the run is ok.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path

from aideploy.core import paths
from aideploy.core.atomic import write_atomic
from aideploy.core.errors import StateError
from aideploy.core.private import FILE_MODE
from aideploy.core.redact import redact_obj, register_secrets
from aideploy.engine.fleet_state import RunState, run_path
from aideploy.engine.state import state_path

SUFFIX = ".secrets"


def secrets_path(deployment_id: str) -> Path:
    return state_path(deployment_id).with_suffix(SUFFIX)


def secret_values(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``env`` the state file stores masked: the ones resume needs from here."""
    shown = redact_obj(dict(env))
    assert isinstance(shown, dict)
    return {key: value for key, value in env.items() if shown.get(key) != value}


def save(deployment_id: str, env: Mapping[str, str]) -> None:
    """Keep the secret values of ``env`` (nothing to keep: no file)."""
    values = secret_values(env)
    if not values:
        remove(deployment_id)
        return
    _write(secrets_path(deployment_id), "deployments", {"env": values})


def load(deployment_id: str) -> dict[str, str]:
    """The values kept for ``deployment_id`` (registered for redaction); none if no file."""
    path = secrets_path(deployment_id)
    data = _read(path)
    return {} if data is None else _env_in(data.get("env"), path)


def remove(deployment_id: str) -> None:
    _remove(secrets_path(deployment_id))


# -- fleet runs --------------------------------------------------------------------------------


def run_secrets_path(run_id: str) -> Path:
    return run_path(run_id).with_suffix(SUFFIX)


def save_run(run: RunState) -> None:
    """Keep the secret values of a run's variables and of each host's (inventory variables and
    ``--set``), which its state holds masked: a resumed run starts its pending hosts and
    re-checks its unhealthy ones with them (nothing to keep: no file)."""
    hosts = {host.name: secret_values(host.env) for host in run.hosts}
    data = {
        "env": secret_values(run.options.get("env", {})),
        "hosts": {name: values for name, values in hosts.items() if values},
    }
    if not data["env"] and not data["hosts"]:
        remove_run(run.run_id)
        return
    _write(run_secrets_path(run.run_id), "runs", data)


def load_run(run: RunState) -> None:
    """Put the values kept for ``run`` back into its variables and its hosts' (registered for
    redaction); nothing if no file."""
    path = run_secrets_path(run.run_id)
    data = _read(path)
    if data is None:
        return
    hosts = data.get("hosts")
    if not isinstance(hosts, dict):
        raise StateError(f"{path}: unreadable kept secrets")
    env = _env_in(data.get("env"), path)
    kept = {name: _env_in(values, path) for name, values in hosts.items()}
    run.options["env"] = {**run.options.get("env", {}), **env}
    for host in run.hosts:
        host.env = {**host.env, **kept.get(host.name, {})}


def remove_run(run_id: str) -> None:
    _remove(run_secrets_path(run_id))


# -- the files ---------------------------------------------------------------------------------


def _write(path: Path, folder: str, data: Mapping[str, object]) -> None:
    """Write kept values to ``path``: 0600, atomically, in the 0700 ``folder`` of the home."""
    paths.private_home(folder)
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    write_atomic(path, text.encode(), mode=FILE_MODE)


def _read(path: Path) -> dict[str, object] | None:
    """The JSON object kept at ``path``; None if there is no file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise StateError(f"{path}: unreadable kept secrets: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise StateError(f"{path}: unreadable kept secrets")
    return data


def _env_in(values: object, path: Path) -> dict[str, str]:
    """``values`` as variables (names to values, all strings), registered for redaction."""
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in values.items()
    ):
        raise StateError(f"{path}: unreadable kept secrets")
    register_secrets(values.values())
    return dict(values)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
