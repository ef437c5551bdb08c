"""Heavy third-party modules are loaded when first used: a deployment that never fails never
loads numpy."""

from __future__ import annotations

import json.decoder
import subprocess
import sys
import threading

from aideploy.core.lazy_module import lazy_module


def test_the_deploy_command_does_not_load_numpy_until_a_failure_is_classified() -> None:
    code = (
        "import sys, aideploy.cli.deploy_actions\n"
        "assert 'numpy' not in sys.modules, 'numpy loaded at import'\n"
        "from aideploy.knowledge.outcome_model import OutcomeModel\n"
        "from aideploy.knowledge.classifier import TextClassifier\n"
        "TextClassifier()\n"
        "assert 'numpy' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_a_lazy_module_is_the_module_once_used_from_many_threads_at_once() -> None:
    lazy = lazy_module("json.decoder")
    start = threading.Barrier(4)
    seen: list[object] = []

    def use() -> None:
        start.wait()
        seen.append(lazy.JSONDecoder)

    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [json.decoder.JSONDecoder] * 4
    assert lazy.JSONDecodeError is json.decoder.JSONDecodeError
