"""Resume keeps the real secrets: the state file holds them masked, a 0600 file beside it holds
the values, and a resumed deployment writes the real value into the app's environment. Without
the file, resume names the missing secret; ``--set`` gives it back; ``--from`` restarts at a
named step. The CLI runs as a real subprocess."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from aideploy.core.errors import UsageError
from aideploy.engine import kept_secrets
from aideploy.engine.fleet_state import HostResult, HostRun, RunState, RunStatus
from aideploy.services import fleet
from aideploy.services.config import Config
from tests.support.cli import run_cli

CANARY = "dj-canary-5b0e9f1d7c"

PLAN = """
name = "app-env"

[[steps]]
name = "write_env"
commands = ['printf "SECRET_KEY=%s\\\\n" "$DJANGO_SECRET_KEY" > "$APP_ENV"']

[[steps]]
name = "gate"
description = "fails until the gate file exists"
commands = ['test -e "$GATE"']

[[steps]]
name = "write_env_again"
commands = ['printf "SECRET_KEY=%s\\\\n" "$DJANGO_SECRET_KEY" > "$APP_ENV"']
"""


def _deploy(tmp_path: Path) -> tuple[str, Path, Path]:
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)
    # no recovery attempts: the gate fails the deployment at once
    (tmp_path / "ai_deployment_config.json").write_text('{"deployment": {"max_retries": 0}}')
    app_env, gate = tmp_path / "app.env", tmp_path / "gate"
    result = run_cli(
        tmp_path,
        "deploy",
        "--local",
        "--plan",
        str(plan),
        "--kb",
        str(tmp_path / "kb.sqlite"),
        "--set",
        f"DJANGO_SECRET_KEY={CANARY}",
        "--set",
        f"APP_ENV={app_env}",
        "--set",
        f"GATE={gate}",
    )
    assert result.returncode != 0, result.stdout + result.stderr
    assert CANARY not in result.stdout + result.stderr
    states = list((tmp_path / "home" / "deployments").glob("*.json"))
    assert len(states) == 1
    return states[0].stem, app_env, gate


def test_a_resumed_deployment_writes_the_real_secret(tmp_path: Path) -> None:
    deployment_id, app_env, gate = _deploy(tmp_path)
    folder = tmp_path / "home" / "deployments"
    state = json.loads((folder / f"{deployment_id}.json").read_text())
    assert state["options"]["env"]["DJANGO_SECRET_KEY"] == "***"
    kept = folder / f"{deployment_id}.secrets"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert json.loads(kept.read_text())["env"] == {"DJANGO_SECRET_KEY": CANARY}

    gate.touch()
    result = run_cli(tmp_path, "resume", deployment_id)
    assert result.returncode == 0, result.stdout + result.stderr
    assert app_env.read_text() == f"SECRET_KEY={CANARY}\n"
    assert CANARY not in result.stdout + result.stderr
    assert not kept.exists()  # completed: nothing kept any more
    assert CANARY not in (folder / f"{deployment_id}.json").read_text()


def test_a_missing_secret_is_named_and_set_gives_it_back(tmp_path: Path) -> None:
    deployment_id, app_env, gate = _deploy(tmp_path)
    (tmp_path / "home" / "deployments" / f"{deployment_id}.secrets").unlink()
    gate.touch()

    refused = run_cli(tmp_path, "resume", deployment_id)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "DJANGO_SECRET_KEY" in lines[0] and "--set" in lines[0]
    assert "--set KEY=VALUE, DJANGO_SECRET_KEY as KEY" in lines[0]  # the hint is not masked
    assert "Traceback" not in refused.stderr

    fresh = "dj-corrected-4a1c77e2"
    result = run_cli(tmp_path, "resume", deployment_id, "--set", f"DJANGO_SECRET_KEY={fresh}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert app_env.read_text() == f"SECRET_KEY={fresh}\n"
    assert fresh not in result.stdout + result.stderr


def test_resume_from_a_named_step(tmp_path: Path) -> None:
    deployment_id, app_env, gate = _deploy(tmp_path)
    gate.touch()
    unknown = run_cli(tmp_path, "resume", deployment_id, "--from", "no-such-step")
    assert unknown.returncode == 2
    assert "no-such-step" in unknown.stderr and "write_env" in unknown.stderr
    app_env.write_text("changed\n")
    result = run_cli(tmp_path, "resume", deployment_id, "--from", "gate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert app_env.read_text() == f"SECRET_KEY={CANARY}\n"  # write_env_again ran, not write-env
    again = run_cli(tmp_path, "resume", deployment_id, "--from", "write_env_again")
    assert again.returncode == 2  # completed: its secrets are gone and must be given again
    assert "DJANGO_SECRET_KEY" in again.stderr


def test_abandoning_drops_the_kept_secrets(tmp_path: Path) -> None:
    deployment_id, _, _ = _deploy(tmp_path)
    kept = tmp_path / "home" / "deployments" / f"{deployment_id}.secrets"
    assert kept.exists()
    result = run_cli(tmp_path, "abandon", deployment_id)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not kept.exists()


def test_resume_set_corrects_the_value_a_deployment_failed_on(tmp_path: Path) -> None:
    deployment_id, app_env, _gate = _deploy(tmp_path)  # GATE names a file that is not there
    again = run_cli(tmp_path, "resume", deployment_id)
    assert again.returncode != 0  # the same wrong value fails the same way
    right = tmp_path / "right-gate"
    right.touch()
    result = run_cli(tmp_path, "resume", deployment_id, "--set", f"GATE={right}")
    assert result.returncode == 0, result.stdout + result.stderr
    status = json.loads(run_cli(tmp_path, "status", deployment_id, "--json").stdout)
    assert status["status"] == "completed"
    assert status["options"]["env"]["GATE"] == str(right)  # the corrected value is the state's
    assert app_env.read_text() == f"SECRET_KEY={CANARY}\n"


def test_a_fleet_run_keeps_its_secrets_for_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's state holds inventory and ``--set`` secrets masked; the values are kept beside it
    (0600), put back by resume, and a value not kept for a host left to deploy is named."""
    monkeypatch.setenv("AIDEPLOY_HOME", str(tmp_path / "home"))
    hosts = [
        HostRun("web1", {}, env={"DB_PASSWORD": CANARY, "ROOT": "/srv"}),
        HostRun("web2", {}, env={"ROOT": "/srv"}),
    ]
    run = RunState("run-20260101-000000-abcdef", "p", RunStatus.FAILED, hosts)
    run.options["env"] = {"API_TOKEN": CANARY + "t", "APP_NAME": "shop"}
    kept_secrets.save_run(run)
    run.save()
    kept = kept_secrets.run_secrets_path(run.run_id)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert CANARY not in run.path.read_text()
    loaded = RunState.load(run.run_id)
    assert loaded.hosts[0].env["DB_PASSWORD"] == "***"
    request = fleet.request_of(loaded, Config())
    assert loaded.hosts[0].env == {"DB_PASSWORD": CANARY, "ROOT": "/srv"}
    assert request.env == {"API_TOKEN": CANARY + "t", "APP_NAME": "shop"}
    kept.unlink()
    with pytest.raises(UsageError, match="DB_PASSWORD for host web1, which is not kept") as err:
        fleet.request_of(RunState.load(run.run_id), Config())
    assert err.value.hint == (
        f"give it again: aideploy resume {run.run_id} --set KEY=VALUE with DB_PASSWORD as KEY"
    )
    # resume RUN --set gives it back (to the run and every host left to deploy)
    again = RunState.load(run.run_id)
    again.hosts[1].result = HostResult.OK
    request = fleet.request_of(again, Config(), given={"DB_PASSWORD": CANARY + "2"})
    assert again.hosts[0].env["DB_PASSWORD"] == CANARY + "2"
    assert "DB_PASSWORD" not in again.hosts[1].env  # an ok host is left as it is
    assert request.env["DB_PASSWORD"] == CANARY + "2"
    kept_secrets.remove_run(run.run_id)  # no file: nothing to do


def test_resume_run_names_a_secret_it_lacks_and_refuses_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the CLI: a run whose kept secret is gone is refused with a line naming it and how
    to give it back (exit 2); ``--from`` is for one host's deployment (exit 2)."""
    monkeypatch.setenv("AIDEPLOY_HOME", str(tmp_path / "home"))  # where run_cli's home is
    run = RunState(
        "run-20260101-000000-abcdef",
        "p",
        RunStatus.FAILED,
        [HostRun("web1", {}, env={"DB_PASSWORD": "***"})],
    )
    run.save()
    proc = run_cli(tmp_path, "resume", run.run_id)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "needs the secret value of DB_PASSWORD for host web1, which is not kept" in proc.stderr
    # the hint reaches the console unmasked (a NAME=VALUE form would show NAME=***)
    assert f"aideploy resume {run.run_id} --set KEY=VALUE with DB_PASSWORD as KEY" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli(tmp_path, "resume", run.run_id, "--from", "migrate")
    assert proc.returncode == 2 and "--from applies to one host's deployment" in proc.stderr
