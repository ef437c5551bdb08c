"""Run one command through a connector: stream, answer prompts, enforce the timeout, return a Result.

The I/O loop lives here once, above every connector (template-method style): connectors only
start processes and hand over chunks.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import secrets
import shlex
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aideploy.core.clock import Clock, SystemClock
from aideploy.core.errors import CommandError
from aideploy.core.redact import StreamRedactor, is_registered_secret, is_secret_key, redact
from aideploy.core.result import Result
from aideploy.engine.connectors.base import Connector, Process, Stream
from aideploy.engine.responders import PROMPT_LIKE, Responder

log = logging.getLogger("aideploy.runner")

LineSink = Callable[[Stream, str], None]
PromptAsker = Callable[[str], str | None]

LOGGED_COMMAND_CHARS = 400  # a command longer than this (a whole script) is cut in the log
DEFAULT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}


def _is_secret(key: str, value: str) -> bool:
    return bool(value) and (is_secret_key(key) or is_registered_secret(value))


class _Tail:
    """Keep the last ``limit`` bytes of complete lines; memory stays bounded whatever streams."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lines: deque[str] = deque()
        self.size = 0
        self.dropped = False

    def add(self, line: str) -> None:
        if len(line) > self.limit:
            line = line[-self.limit :]
        self.lines.append(line)
        self.size += len(line) + 1
        while self.size > self.limit and self.lines:
            self.size -= len(self.lines.popleft()) + 1
            self.dropped = True

    def add_block(self, block: str) -> None:
        if len(block) > self.limit:
            self.dropped = True
            block = block[-self.limit :]
            self.lines.clear()
            self.size = 0
        for line in block.split("\n"):
            self.add(line)

    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class _StreamState:
    tail: _Tail
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace")
    )
    partial: str = ""
    #: complete lines go through it: a key block or token split across reads is still masked
    redactor: StreamRedactor = field(default_factory=StreamRedactor)


class Runner:
    """Runs commands on one connector.

    ``on_line`` gets every complete output line (already redacted) as it arrives.
    ``ask`` is called in interactive mode with a prompt no responder answered; it returns the
    answer to type (without newline), or None to leave the command waiting.
    """

    poll_interval = 0.05
    line_limit = 16384

    def __init__(
        self,
        connector: Connector,
        *,
        responders: Sequence[Responder] = (),
        on_line: LineSink | None = None,
        on_command: Callable[[str], None] | None = None,
        ask: PromptAsker | None = None,
        clock: Clock | None = None,
        timeout: float = 300.0,
        env: Mapping[str, str] | None = None,
        tail_bytes: int = 64 * 1024,
        prompt_idle: float = 1.0,
    ) -> None:
        self.connector = connector
        self.responders = list(responders)
        self.on_line = on_line
        self.on_command = on_command
        self.ask = ask
        self.clock = clock or SystemClock()
        self.timeout = timeout
        self.env = {**DEFAULT_ENV, **(env or {})}
        self.tail_bytes = tail_bytes
        self.prompt_idle = prompt_idle
        self._env_files: dict[str, str] = {}

    def run(
        self,
        command: str | Sequence[str],
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        responders: Sequence[Responder] = (),
    ) -> Result:
        """Run ``command``; a list is quoted with :func:`shlex.join`, a string runs as given."""
        text = command if isinstance(command, str) else shlex.join(command)
        shown = redact(text)
        full_env = {**self.env, **(env or {})}
        hidden = {k: v for k, v in full_env.items() if _is_secret(k, v)}
        if hidden and self.connector.env_in_command:
            # secrets never go into the target's process list: a private file is sourced instead
            full_env = {k: v for k, v in full_env.items() if k not in hidden}
            text = self._secret_env_prefix(hidden) + text
        limit = self.timeout if timeout is None else timeout
        watchers = [*responders, *self.responders]
        for watcher in watchers:
            watcher.answered = 0
        log.debug("run on %s: %s", self.connector.host, shown)
        if self.on_command is not None:
            self.on_command(shown)
        started = self.clock.now()
        process = self.connector.start(text, env=full_env)
        process.limit(limit)
        streams: dict[Stream, _StreamState] = {
            "stdout": _StreamState(_Tail(self.tail_bytes)),
            "stderr": _StreamState(_Tail(self.tail_bytes)),
        }
        timed_out = False
        last_output = started
        asked_for = ""
        try:
            while not process.done():
                if limit is not None and self.clock.now() - started > limit:
                    timed_out = True
                    log.warning("timeout after %.1fs, stopping: %s", limit, shown)
                    process.kill()
                    break
                chunks = process.read(self.poll_interval)
                for chunk in chunks:
                    self._feed(streams[chunk.stream], chunk.stream, chunk.data)
                if chunks:
                    last_output = self.clock.now()
                    self._respond(process, streams, watchers)
                elif self.ask is not None and self.clock.now() - last_output > self.prompt_idle:
                    asked_for = self._ask_user(process, streams, asked_for)
            for name, state in streams.items():
                self._flush(state, name)
            code = None if timed_out else process.exit_code()
        finally:
            process.close()
        duration = self.clock.now() - started
        log.info(
            "ran on %s: %s -> %s in %.1fs",
            self.connector.host,
            shown if len(shown) <= LOGGED_COMMAND_CHARS else shown[:LOGGED_COMMAND_CHARS] + "…",
            "timed out" if timed_out else ("no exit status" if code is None else f"exit {code}"),
            duration,
            extra={"event": "command"},
        )
        out, err = streams["stdout"].tail, streams["stderr"].tail
        return Result(
            command=shown,
            host=self.connector.host,
            exit_code=code,
            stdout=out.text(),
            stderr=err.text(),
            duration=duration,
            timed_out=timed_out,
            truncated=out.dropped or err.dropped,
        )

    # -- secret environment values -----------------------------------------------------------

    def _secret_env_prefix(self, hidden: Mapping[str, str]) -> str:
        content = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(hidden.items()))
        key = hashlib.sha256(content.encode()).hexdigest()[:16]
        name = self._env_files.get(key)
        if name is None:
            made = self.run(
                'mkdir -p "$HOME/.aideploy/env" && chmod 700 "$HOME/.aideploy" '
                '"$HOME/.aideploy/env" && cd "$HOME/.aideploy/env" && pwd -P'
            )
            folder = made.stdout.strip().splitlines()[-1] if made.ok and made.stdout else ""
            if not folder.startswith("/"):
                raise CommandError(f"cannot make a private directory on {self.connector.host}")
            name = f"{folder}/{secrets.token_hex(8)}"
            self.connector.write_file(name, content.encode(), mode=0o600)
            self._env_files[key] = name
        return f". {shlex.quote(name)}; "

    def close(self) -> None:
        """Remove the private environment files this runner left on the target."""
        if self._env_files:
            names = " ".join(shlex.quote(n) for n in self._env_files.values())
            self._env_files.clear()
            self.run(f"rm -f {names}")

    # -- stream handling -------------------------------------------------------------------

    def _feed(self, state: _StreamState, stream: Stream, data: bytes) -> None:
        state.partial += state.decoder.decode(data)
        if "\n" not in state.partial and len(state.partial) < self.line_limit:
            return
        *lines, state.partial = state.partial.split("\n")
        if len(state.partial) >= self.line_limit:
            lines.append(state.partial)
            state.partial = ""
        if lines:
            self._emit_block(state, stream, lines)

    def _flush(self, state: _StreamState, stream: Stream) -> None:
        state.partial += state.decoder.decode(b"", final=True)
        if state.partial:
            self._emit(state, stream, state.partial.rstrip("\r"))
            state.partial = ""
        self._release(state, stream, state.redactor.flush())

    def _emit(self, state: _StreamState, stream: Stream, line: str) -> None:
        self._emit_block(state, stream, [line])

    def _emit_block(self, state: _StreamState, stream: Stream, lines: list[str]) -> None:
        # redact a whole block at once: one regex pass per chunk, not per line; the redactor
        # holds back the lines of a private key block until its end arrived
        text = "".join(line.rstrip("\r") + "\n" for line in lines)
        self._release(state, stream, state.redactor.feed(text))

    def _release(self, state: _StreamState, stream: Stream, text: str) -> None:
        if not text:
            return
        block = text[:-1] if text.endswith("\n") else text
        state.tail.add_block(block)
        if self.on_line is not None:
            for clean in block.split("\n"):
                self.on_line(stream, clean)

    # -- prompts ---------------------------------------------------------------------------

    @staticmethod
    def _pending(streams: Mapping[Stream, _StreamState]) -> str:
        # a prompt is the unterminated last line of either stream
        return "\n".join(s.partial for s in streams.values() if s.partial)

    def _respond(
        self,
        process: Process,
        streams: Mapping[Stream, _StreamState],
        watchers: Sequence[Responder],
    ) -> None:
        pending = self._pending(streams)
        if not pending:
            return
        for watcher in watchers:
            if watcher.match(pending):
                watcher.answered += 1
                shown = "***" if watcher.secret else watcher.answer.strip()
                log.info("answering prompt %r with %r", watcher.name, shown)
                process.write(watcher.answer.encode())
                self._consume_prompt(streams)
                return

    def _consume_prompt(self, streams: Mapping[Stream, _StreamState]) -> None:
        for name, state in streams.items():
            if state.partial:
                self._emit(state, name, state.partial)
                state.partial = ""

    def _ask_user(
        self, process: Process, streams: Mapping[Stream, _StreamState], asked_for: str
    ) -> str:
        pending = self._pending(streams)
        if not pending or pending == asked_for or not PROMPT_LIKE.search(pending):
            return asked_for
        assert self.ask is not None
        answer = self.ask(redact(pending))
        if answer is None:
            return pending
        process.write((answer + "\n").encode())
        self._consume_prompt(streams)
        return ""
