"""Redaction throughput: one-shot :func:`redact` and the :class:`StreamRedactor` fed 4 KiB reads,
over a synthetic build log (package downloads, pip and npm lines, commit ids, a few assignments
and one private key block), median of N runs. The streamed result is checked equal to one-shot.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from aideploy.core.redact import StreamRedactor, redact, register_secret


def build_log(lines: int, seed: int = 1) -> str:
    rnd = random.Random(seed)
    out = []
    for i in range(lines):
        kind = i % 5
        if kind == 0:
            out.append(
                f"  Downloading package-{i}.tar.gz (1.{i % 10} MB) from https://pypi.org/simple/p{i}/"
            )
        elif kind == 1:
            out.append(
                f"Step {i}: RUN pip install -r requirements.txt max_tokens={i} API_TOKEN=t{i:08d}"
            )
        elif kind == 2:
            sha = "".join(rnd.choice("0123456789abcdef") for _ in range(40))
            out.append(f"commit {sha} Author: dev <dev@example.com>")
        elif kind == 3:
            out.append(f"Collecting django>=4.2 (from -r requirements.txt (line {i}))")
        else:
            out.append(f"[{i}] npm WARN deprecated some-package@1.0.{i}: use other-package instead")
        if i == lines // 2:
            out += [
                "-----BEGIN RSA PRIVATE KEY-----",
                "MIIEowIBAAKCAQEA" * 4,
                "-----END RSA PRIVATE KEY-----",
            ]
    return "\n".join(out) + "\n"


def _streamed(text: str, read: int) -> str:
    redactor = StreamRedactor()
    parts = [redactor.feed(text[i : i + read]) for i in range(0, len(text), read)]
    return "".join(parts) + redactor.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    register_secret("a-registered-secret-value")
    text = build_log(args.lines)
    size = len(text) / 1e6
    one, streamed = [], []
    for _ in range(args.runs):
        start = time.perf_counter()
        expected = redact(text)
        one.append(time.perf_counter() - start)
        start = time.perf_counter()
        got = _streamed(text, 4096)
        streamed.append(time.perf_counter() - start)
        assert got == expected
    for name, times in (("one-shot", one), ("streamed, 4 KiB reads", streamed)):
        median = statistics.median(times)
        print(f"{name:22} {size:.2f} MB in {median * 1000:6.0f} ms = {size / median:5.1f} MB/s")


if __name__ == "__main__":
    main()
