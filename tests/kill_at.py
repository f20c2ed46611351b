"""Run the seppo CLI and SIGKILL it at a chosen point of its output writes (for the kill tests).

    python tests/kill_at.py dir   <seppo args...>   # the stage's output folder is complete in its
                                                    # temp dir, just before the swap into place
    python tests/kill_at.py json:N <seppo args...>  # just before the N-th JSON file is written

The process kills itself with SIGKILL (no cleanup, no finally blocks run), exactly what kill -9 or
the OOM killer does; nothing in the product code knows about this. The wrappers are installed
before the CLI imports the stage modules (it imports them lazily), so their `from ..io_utils
import ...` bindings pick them up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    point, args = sys.argv[1], sys.argv[2:]
    import seppo.io_utils as io

    if point == "dir":
        orig_dir = io.atomic_dir

        @contextlib.contextmanager
        def atomic_dir(path):
            with orig_dir(path) as tmp:
                yield tmp
                _die()

        io.atomic_dir = atomic_dir
    elif point.startswith("json:"):
        n, calls, orig_json = int(point[5:]), [0], io.write_json

        def write_json(path, data):
            calls[0] += 1
            if calls[0] == n:
                _die()
            orig_json(path, data)

        io.write_json = write_json
    else:
        raise SystemExit(f"unknown kill point {point!r}")
    from seppo.cli import app

    sys.argv = ["seppo", *args]
    app()


if __name__ == "__main__":
    main()
