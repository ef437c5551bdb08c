"""The plan ``benchmarks/fleet.py`` deploys to every host: 20 separate ``true`` commands, a
100 KB upload, a hash check of the upload and a marker file. Loaded as
``benchmarks.fleet_plan:plan`` with the repository on ``PYTHONPATH``; ``$PAYLOAD`` is the local
file to upload, ``$ROOT`` the host's directory, ``$PAYLOAD_SHA256`` its hash."""

from __future__ import annotations

from pathlib import Path

from aideploy.core.result import Result
from aideploy.engine.plan import Plan, Step, StepContext

COMMANDS = 20


def upload(ctx: StepContext) -> Result | None:
    ctx.connector.put_file(Path(ctx.env["PAYLOAD"]), f"{ctx.env['ROOT']}/payload.bin")
    return None


def plan() -> Plan:
    return Plan(
        name="fleet-bench",
        env={"ROOT": "/nonexistent", "PAYLOAD": "", "PAYLOAD_SHA256": ""},
        steps=(
            Step("prepare", "Make the host's directory", commands=('mkdir -p "$ROOT"',)),
            Step("commands", "20 separate commands", commands=("true",) * COMMANDS),
            Step("upload", "Upload 100 KB", work=upload),
            Step(
                "hash",
                "Check the upload's hash",
                commands=(
                    'test "$(sha256sum "$ROOT/payload.bin" | cut -d" " -f1)" = "$PAYLOAD_SHA256"',
                ),
            ),
            Step("marker", "Leave a marker", commands=('touch "$ROOT/marker"',)),
        ),
        health='test -e "$ROOT/marker"',
    )
