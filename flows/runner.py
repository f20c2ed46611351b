"""Running a command for a Prefect task: live, line-by-line logs, and the one retry policy.

Stage commands (and DVC around them) run for up to hours, so their output is streamed into the run
logger while they run, not dumped at the end. Two kinds of noise are summarised rather than logged
raw: tqdm's carriage-return progress bars (one entry per ``PROGRESS_EVERY`` seconds, plus a bar's
final state); no other line is dropped. DVC's "Running stage 'x':" lines become a visible boundary entry.

Which failures are worth a retry is decided here and only here (``is_retryable``): a DVC lock held
by another process or a transient OS error may pass on a second try; a stage that exits with a
validation / config / data-quality code, or an override that does not validate, never will.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Callable

PROGRESS_EVERY = 15.0  # seconds between two logged states of one progress bar
TAIL_LINES = 40  # lines of output kept for the error message of a failed command

# Exit codes of the seppo CLI that mean "your input is wrong" (cli._exit_on: 2 = bad params or missing
# source/weights, 1 = data-quality failure or divergence): deterministic, so never retried.
# DVC itself exits 1 for almost everything, so for DVC the message decides (see TRANSIENT_MARKERS).
TRANSIENT_MARKERS = (
    "Unable to acquire lock",  # another dvc process holds .dvc/tmp/lock (or rwlock)
    "is busy",  # dvc: a file or lock in use
    "Resource temporarily unavailable",
    "Connection reset by peer",
)
_STAGE = re.compile(r"^(Running stage|Stage) '([^']+)'")


class CommandFailed(RuntimeError):
    """A command exited non-zero; carries its exit code and the tail of its output."""

    def __init__(self, cmd: list[str], returncode: int, tail: str):
        self.cmd, self.returncode, self.tail = cmd, returncode, tail
        super().__init__(f"{' '.join(cmd)} failed with exit code {returncode}:\n{tail}")


class BadOverrides(ValueError):
    """Overrides that do not validate against the params models: never retried, nothing run."""


def is_retryable(exc: BaseException | None) -> bool:
    """The single retry policy: True only for failures a second attempt can fix."""
    if exc is None or isinstance(exc, (BadOverrides, ValueError)):
        return False
    if isinstance(exc, CommandFailed):
        return any(m in exc.tail for m in TRANSIENT_MARKERS)
    if isinstance(exc, (FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError)):
        return False  # a missing tool or path stays missing
    return isinstance(exc, (OSError, TimeoutError))


def retry_condition(task, task_run, state) -> bool:
    """Prefect's ``retry_condition_fn``: retry a failed task run only when ``is_retryable`` says so."""
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - the failure to classify
        return is_retryable(exc)
    return False


class LineSummariser:
    """Turns a byte stream into log entries: whole lines as they come, progress bars throttled.

    A chunk's text is split on both newlines and carriage returns; a segment terminated by a
    carriage return is a progress-bar redraw, kept only as "latest" and emitted at most every
    ``every`` seconds (and once more when the bar finishes with a newline or the stream ends).
    """

    def __init__(self, emit: Callable[[str], None], every: float = PROGRESS_EVERY,
                 clock: Callable[[], float] = time.monotonic):
        self.emit, self.every, self.clock = emit, every, clock
        self.buf = ""
        self.pending_bar: str | None = None
        self.last_bar_at = -float("inf")
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)

    def _line(self, text: str) -> None:
        text = text.rstrip()
        if not text:
            return
        self.tail.append(text)
        m = _STAGE.match(text)
        self.emit(f"==== stage {m.group(2)} ==== {text}" if m and m.group(1) == "Running stage" else text)

    def _bar(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        now = self.clock()
        if now - self.last_bar_at >= self.every:
            self.emit(text)
            self.last_bar_at, self.pending_bar = now, None
        else:
            self.pending_bar = text

    def feed(self, chunk: str) -> None:
        self.buf += chunk
        while True:
            i = min((j for j in (self.buf.find("\n"), self.buf.find("\r")) if j >= 0), default=-1)
            if i < 0:
                return
            seg, sep, self.buf = self.buf[:i], self.buf[i], self.buf[i + 1:]
            if sep == "\r":
                if self.buf.startswith("\n"):  # \r\n is an ordinary line end
                    self.buf = self.buf[1:]
                    self._flush_bar(seg)
                    self._line(seg)
                else:
                    self._bar(seg)
            else:
                self._flush_bar(seg)
                self._line(seg)

    def _flush_bar(self, next_seg: str) -> None:
        """A bar's final state (when the next real line is not that same state) is always logged."""
        if self.pending_bar is not None and self.pending_bar != next_seg.strip():
            self.emit(self.pending_bar)
        self.pending_bar = None

    def close(self) -> None:
        if self.buf.strip():
            self._flush_bar(self.buf)
            self._line(self.buf)
        self.buf = ""
        self._flush_bar("")


def tool_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a stage: this interpreter's bin dir first on PATH, unbuffered Python."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return dict(os.environ, PATH=path, PYTHONUNBUFFERED="1", **(extra or {}))


def stream(cmd: list[str], cwd: str, emit: Callable[[str], None], extra_env: dict[str, str] | None = None,
           on_line: Callable[[str], None] | None = None) -> str:
    """Run ``cmd``, emitting its merged stdout/stderr as it comes; return that text.

    ``on_line`` sees every complete line too (e.g. to react when DVC reports it has started).
    Raises CommandFailed with the output's tail on a non-zero exit.
    """
    out: list[str] = []
    summary = LineSummariser(emit)
    if on_line is not None:
        inner = summary._line

        def hooked(text: str) -> None:
            inner(text)
            on_line(text)

        summary._line = hooked  # type: ignore[method-assign]
    proc = subprocess.Popen(cmd, cwd=cwd, env=tool_env(extra_env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, bufsize=0)
    assert proc.stdout is not None
    try:
        for chunk in iter(lambda: os.read(proc.stdout.fileno(), 65536), b""):  # type: ignore[union-attr]
            text = chunk.decode("utf-8", errors="replace")
            out.append(text)
            summary.feed(text)
    finally:
        code = proc.wait()
        summary.close()
    if code != 0:
        raise CommandFailed(cmd, code, "\n".join(summary.tail))
    return "".join(out)
