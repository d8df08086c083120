"""One writer per run directory: ``with writer_lock(run_dir): ...``.

On a local path the lock is ``RUN_DIR/.lock``, held with ``fcntl.flock`` for as long as the
writing command runs, and holding the holder's pid, host and command. The operating system
drops it when that process ends however it ends, so a lock left by a killed run never blocks
the next one (the file stays, with the last holder's details, and is taken over). A second
command on the same directory, from this machine or another one that mounts it with working
``flock`` (local disks; NFS v4), fails at once with :class:`RunDirBusy` naming the holder.

On a bucket (``s3://``, ``gs://``, ...) there is no lock: object stores have no atomic
create-if-absent through pyarrow, so ``writer_lock`` only logs that it cannot guard the run
directory, and it is up to the user not to start two runs on one bucket prefix.

The lock is re-entrant within a process (``popdistill run`` takes it, and the steps it calls
may take it again for the same directory).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator

from popdistill.errors import UserError
from popdistill.storage import RunPath

__all__ = ["writer_lock", "RunDirBusy", "LOCK_FILE"]

LOCK_FILE = ".lock"
_held: dict[str, list] = {}  # local lock path -> [open file, depth]
_guard = threading.Lock()


class RunDirBusy(UserError):
    """Another live process is writing the run directory."""


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']} ({info['command']})"
    except (ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def writer_lock(run_dir: str, log: Callable[[str], None] = print) -> Iterator[None]:
    """Hold the run directory's writer lock for the block (see the module docstring)."""
    root = RunPath.of(run_dir)
    if not root.is_local:
        log(f"{root.uri}: a bucket has no writer lock; make sure no other run writes here")
        yield
        return
    import fcntl

    root.mkdir()
    path = f"{root.path}/{LOCK_FILE}"
    with _guard:
        entry = _held.get(path)
        if entry is not None:
            entry[1] += 1
        else:
            f = open(path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = _holder(f.read())
                f.close()
                raise RunDirBusy(
                    f"{root.uri} is being written by {holder}; wait for it to finish, stop it, "
                    "or give this run another directory (--out)") from None
            f.seek(0)
            f.truncate()
            f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                "command": " ".join(sys.argv)[:300]}))
            f.flush()
            _held[path] = entry = [f, 1]
    try:
        yield
    finally:
        with _guard:
            entry[1] -= 1
            if entry[1] == 0:
                del _held[path]
                fcntl.flock(entry[0], fcntl.LOCK_UN)
                entry[0].close()
