"""A real local Prefect server for tests: 127.0.0.1, a free port, a throwaway PREFECT_HOME.

Flows run against it from subprocesses (and Dask workers inherit its URL), so no process falls
back to an ephemeral server of its own; only the processes started here are stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


@contextlib.contextmanager
def prefect_server(tmp_path: Path):
    """Yields (env for clients, list of started processes to extend)."""
    port = free_port()
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONPATH=str(ROOT),
               PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    procs = [subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        deadline = time.time() + 120
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2).read() == b"true":
                    break
            except OSError:
                pass
            assert time.time() < deadline and procs[0].poll() is None, "prefect server did not start"
            time.sleep(1)
        yield env, procs
    finally:
        stop(procs)
