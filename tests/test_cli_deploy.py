"""The CLI end to end on this machine: the example plan, dry run, secrets kept out of every file."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.support.cli import run_cli, start_cli


def _all_files_text(root: Path) -> str:
    chunks = []
    for path in root.rglob("*"):
        if path.is_file():
            chunks.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(chunks)


def test_example_plan_deploys_locally_and_prints_what_it_did(tmp_path: Path) -> None:
    kb = tmp_path / "kb.sqlite"
    proc = run_cli(tmp_path, "deploy", "--local", "--kb", str(kb))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for step in ("validate_host", "prepare_release", "write_site", "switch_current", "verify_site"):
        assert step in proc.stdout
    assert "completed" in proc.stdout
    site = tmp_path / "home" / "example-site"
    current = (site / "current").resolve()
    assert current.parent == (site / "releases").resolve()
    assert "release" in (site / "current" / "index.html").read_text()
    report = run_cli(tmp_path, "learn", "report", "--kb", str(kb), "--format", "json")
    assert report.returncode == 0, report.stderr
    weeks = json.loads(report.stdout)["deployments"]
    assert sum(w["deployments"] for w in weeks) == 1 and sum(w["succeeded"] for w in weeks) == 1


def test_dry_run_runs_nothing(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "deploy", "--local", "--dry-run", "--offline")
    assert proc.returncode == 0, proc.stderr
    assert "Dry run" in proc.stdout and "run: " in proc.stdout
    assert not (tmp_path / "home" / "example-site").exists()
    assert not (tmp_path / "home" / "deployments").exists()


def test_secrets_never_reach_logs_state_or_kb(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(
        """
name = "secretive"
[[steps]]
name = "leak"
commands = ['echo "connecting with $DB_PASSWORD and $API_TOKEN"; echo PGPASSWORD=$DB_PASSWORD psql', 'echo postgres://app:$DB_PASSWORD@db/app']
"""
    )
    proc = run_cli(
        tmp_path,
        "-v",
        "deploy",
        "--local",
        "--plan",
        str(plan),
        "--kb",
        str(tmp_path / "kb.sqlite"),
        "--set",
        "DB_PASSWORD=Sup3r-Secret-Pw",
        "--secret-env",
        "API_TOKEN",
        env={"API_TOKEN": "tok-0123456789-abcdef"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "connecting with ***" in proc.stdout
    everything = proc.stdout + proc.stderr + _all_files_text(tmp_path / "home")
    everything += (tmp_path / "kb.sqlite").read_bytes().decode("utf-8", "replace")
    assert "Sup3r-Secret-Pw" not in everything
    assert "tok-0123456789-abcdef" not in everything


def test_failed_deploy_exit_code_and_reason(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(
        """
name = "broken"
[[steps]]
name = "boom"
commands = ['echo "E: Unable to locate package definitely-not-a-package" >&2; exit 100']
"""
    )
    config = tmp_path / "c.json"
    config.write_text('{"deployment": {"max_retries": 0}}')
    proc = run_cli(
        tmp_path,
        "--config",
        str(config),
        "deploy",
        "--local",
        "--plan",
        str(plan),
        "--kb",
        str(tmp_path / "kb.sqlite"),
    )
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "FAILED" in proc.stderr and "package_not_found" in proc.stderr
    assert "completed" not in proc.stdout.lower()
    assert "Traceback" not in proc.stderr


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "deploy", "--plan", "no-such-plan", "--local")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown plan 'no-such-plan'")
    assert "Traceback" not in proc.stderr
    proc = run_cli(tmp_path, "deploy", "--server", "bad host;rm")
    assert proc.returncode == 2 and "--server: malformed host name" in proc.stderr
    proc = run_cli(tmp_path, "--debug", "deploy", "--plan", "no-such-plan", "--local")
    assert "Traceback" in proc.stderr  # --debug shows it


def test_help_on_every_command(tmp_path: Path) -> None:
    for command in (
        ["deploy"],
        ["resume"],
        ["status"],
        ["list"],
        ["logs"],
        ["test-connection"],
        ["config", "validate"],
        ["learn"],
    ):
        proc = run_cli(tmp_path, *command, "--help")
        assert proc.returncode == 0 and "Usage:" in proc.stdout, command
    version = run_cli(tmp_path, "--version")
    assert version.returncode == 0 and "aideploy" in version.stdout


def test_protected_profile_needs_confirmation(tmp_path: Path) -> None:
    import json

    config = tmp_path / "c.json"
    config.write_text(
        json.dumps(
            {
                "server_profiles": {
                    "production": {"hostname": "prod.example.com", "protected": True},
                    "staging": {"hostname": "staging.example.com", "allowed_users": ["nobody-x"]},
                }
            }
        )
    )
    proc = run_cli(tmp_path, "--config", str(config), "deploy", "--profile", "production", "--auto")
    assert proc.returncode == 2 and "protected" in proc.stderr
    proc = run_cli(tmp_path, "--config", str(config), "deploy", "--profile", "staging")
    assert proc.returncode == 2 and "may not deploy" in proc.stderr
    assert not (tmp_path / "home" / "deployments").exists()
    confirmed = run_cli(
        tmp_path,
        "--config",
        str(config),
        "deploy",
        "--profile",
        "production",
        "--yes",
        "--dry-run",
        "--offline",
    )
    assert confirmed.returncode == 0, confirmed.stderr
    assert "Dry run" in confirmed.stdout


def test_quiet_and_verbose_change_the_detail(tmp_path: Path) -> None:
    quiet = run_cli(tmp_path, "-q", "deploy", "--local", "--kb", str(tmp_path / "kb.sqlite"))
    assert quiet.returncode == 0, quiet.stderr
    assert (
        quiet.stdout.strip().splitlines()[-1].endswith("completed (6 steps, 0 errors recovered).")
    )
    assert "[1/6]" not in quiet.stdout and "DEBUG" not in quiet.stderr + quiet.stdout
    normal = run_cli(tmp_path, "deploy", "--local", "--kb", str(tmp_path / "kb.sqlite"))
    assert "[1/6] validate_host" in normal.stdout
    assert all(line[:2].isdigit() and line[2] == ":" for line in normal.stdout.splitlines())
    verbose = run_cli(tmp_path, "-vv", "deploy", "--local", "--kb", str(tmp_path / "kb.sqlite"))
    assert "DEBUG run on" in verbose.stderr


def test_bad_deploy_options_are_refused_before_any_state_exists(tmp_path: Path) -> None:
    for args, message in (
        (
            ("--secret-env", "AIDEPLOY_TEST_UNSET_SECRET"),
            # a secret-looking name followed by ": value" would be masked; this names it whole
            "error: --secret-env AIDEPLOY_TEST_UNSET_SECRET is not set in the environment\n",
        ),
        (
            ("--domain", "x.com;reboot"),
            "error: --domain: malformed domain 'x.com;reboot' (expected a name like example.com)\n",
        ),
    ):
        proc = run_cli(tmp_path, "deploy", "--local", *args)
        assert (proc.returncode, proc.stderr) == (2, message)
        assert "Deployment" not in proc.stdout
        listed = run_cli(tmp_path, "list")
        assert listed.returncode == 0 and "example" not in listed.stdout, listed.stdout


def test_logs_show_the_newest_deployment_and_survive_odd_lines(tmp_path: Path) -> None:
    deployed = run_cli(tmp_path, "-v", "deploy", "--local")
    assert deployed.returncode == 0
    # the console's progress display shows steps and commands; -v does not repeat them
    assert "ran on" not in deployed.stdout + deployed.stderr
    newest = run_cli(tmp_path, "status", "--json")
    deployment_id = json.loads(newest.stdout)["deployment_id"]
    proc = run_cli(tmp_path, "logs")
    assert proc.returncode == 0 and f"deployment {deployment_id} finished" in proc.stdout
    assert "step 1/6 validate_host started" in proc.stdout
    assert "[write_site] ran on " in proc.stdout and "-> exit 0 in " in proc.stdout

    log = tmp_path / "home" / "logs" / f"{deployment_id}.jsonl"
    with log.open("a", encoding="utf-8") as handle:
        handle.write('not json at all\n{"time": "t", "level": "INFO", "message": "half')
    proc = run_cli(tmp_path, "logs", deployment_id)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.splitlines()[-2:] == [
        "not json at all",
        '{"time": "t", "level": "INFO", "message": "half',
    ]

    # following a completed deployment prints its log and stops
    done = run_cli(tmp_path, "logs", "--follow", deployment_id, timeout=60)
    assert done.returncode == 0 and done.stdout == proc.stdout


def test_logs_follow_a_running_deployment_until_it_ends(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text('name = "slow"\n[[steps]]\nname = "wait"\ncommands = ["sleep 6"]\n')
    deploy = start_cli(tmp_path, "deploy", "--local", "--plan", str(plan))
    home = tmp_path / "home"

    def running() -> bool:  # the step has started (and logged so): it sleeps from then on
        return any('"step_start"' in p.read_text() for p in home.glob("logs/*.jsonl"))

    deadline = time.monotonic() + 60
    while not running():
        assert time.monotonic() < deadline and deploy.poll() is None, "the step never started"
        time.sleep(0.1)
    [log] = home.glob("logs/*.jsonl")
    follow = start_cli(tmp_path, "logs", "--follow")
    # a line still being written is shown once it is complete, and only then
    with log.open("a", encoding="utf-8") as handle:
        handle.write('{"time": "t", "level": "INFO", "message": "half')
    time.sleep(1.0)
    with log.open("a", encoding="utf-8") as handle:
        handle.write(' and whole"}\n')
    try:
        out, err = follow.communicate(timeout=90)  # it ends by itself when the deployment does
    finally:
        follow.kill()
        deploy.communicate(timeout=90)
    assert follow.returncode == 0 and "Traceback" not in err, err
    lines = out.splitlines()
    assert lines.count("t INFO    [-] half and whole") == 1
    assert not any("half" in line and "whole" not in line for line in lines)
    assert "finished in" in lines[-1] and deploy.returncode == 0
    assert any("step 1/1 wait started" in line for line in lines)
    assert any("sleep 6 -> exit 0 in " in line for line in lines)


def test_rollback_where_nothing_was_deployed_says_so(tmp_path: Path) -> None:
    root = tmp_path / "app"
    proc = run_cli(tmp_path, "rollback", "--local", "--set", f"APP_ROOT={root}")
    assert (proc.returncode, proc.stderr) == (
        1,
        f"error: rollback failed: no releases under {root}: nothing has been deployed there\n",
    )
    assert not root.exists()


def test_a_secret_a_plan_file_sets_is_masked_in_the_dry_run_and_the_output(
    tmp_path: Path,
) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(
        """
name = "secretive"
[env]
SMTP_PASSWORD = "plan-file-Pw-42"
[[steps]]
name = "leak"
commands = ['echo "mail with $SMTP_PASSWORD"']
"""
    )
    dry = run_cli(tmp_path, "deploy", "--local", "--plan", str(plan), "--dry-run", "--offline")
    assert dry.returncode == 0 and "env SMTP_PASSWORD=***" in dry.stdout
    proc = run_cli(tmp_path, "-v", "deploy", "--local", "--plan", str(plan))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "mail with ***" in proc.stdout
    everything = dry.stdout + proc.stdout + proc.stderr + _all_files_text(tmp_path / "home")
    assert "plan-file-Pw-42" not in everything


def test_a_kb_strategy_with_commands_runs_only_once_trusted(tmp_path: Path) -> None:
    marker = tmp_path / "fixed"
    kb = tmp_path / "kb.sqlite"
    records = [
        {
            "type": "strategy",
            "name": "make_marker",
            "description": "create the marker file",
            "risk": "low",
            "commands": ['touch "$MARKER"'],  # a plan variable
        },
        {
            "type": "pattern",
            "name": "marker_missing",
            "regex": "the marker is missing",
            "error_class": "unknown",
            "strategy": "make_marker",
        },
    ]
    export = tmp_path / "team.jsonl"
    export.write_text(
        "\n".join(
            json.dumps(r) for r in [{"format": "aideploy-kb", "version": 1, "records": 2}, *records]
        )
        + "\n"
    )
    imported = run_cli(tmp_path, "learn", "import", str(export), "--kb", str(kb))
    assert imported.returncode == 0, imported.stderr
    plan = tmp_path / "plan.toml"
    plan.write_text(
        f"""
name = "needs_marker"
[env]
MARKER = "{marker}"
[[steps]]
name = "check_marker"
commands = ['test -e {marker} || {{ echo "the marker is missing" >&2; exit 1; }}']
"""
    )
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"deployment": {"retry_delay": 0.1, "max_retries": 2}}))
    deploy = ("--config", str(config), "deploy", "--local", "--plan", str(plan), "--kb", str(kb))

    untrusted = run_cli(tmp_path, *deploy, "--auto")
    assert untrusted.returncode != 0 and not marker.exists(), untrusted.stdout
    trust = run_cli(tmp_path, "learn", "trust", "team", "--yes", "--kb", str(kb))
    assert trust.returncode == 0, trust.stderr

    trusted = run_cli(tmp_path, *deploy, "--auto")
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert marker.exists()
    state = json.loads(run_cli(tmp_path, "status", "--json").stdout)
    assert state["steps"][0]["recoveries"] == ["make_marker"]


def test_a_custom_pattern_naming_no_strategy_is_reported_when_deploying(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps(
            {
                "custom_patterns": [
                    {"name": "typo", "pattern": "boom", "recovery": "restart_the_thing"},
                    {"name": "fine", "pattern": "bang", "recovery": "retry_with_backoff"},
                ]
            }
        )
    )
    proc = run_cli(tmp_path, "--config", str(config), "deploy", "--local")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "custom pattern" in line]
    assert warnings == [
        "WARNING custom pattern typo names recovery restart_the_thing, which no built-in, "
        "plugin or trusted knowledge-base strategy provides: it is never run"
    ]
