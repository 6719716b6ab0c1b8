"""One writer per run folder: an exclusive lock on ``OUT/.lock`` held for the whole job.

The lock is an ``flock`` on that file, so the kernel drops it when its holder dies in any way (kill -9
included): a lock left by a dead run is simply taken over. The file names the holder (pid, host, command,
start time) so that a refused second run can say who has the folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from ms_gpt.errors import MsGptError

LOCK = ".lock"


class FolderBusy(MsGptError, ValueError):
    """Another live process holds the run folder's lock."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}: "
                f"{info.get('command')}")
    except (OSError, ValueError):
        return "a process that has not written its name yet"


def _open_locked(path: Path) -> int:
    """An fd holding the exclusive lock on ``path`` (the file at that path now, not one unlinked meanwhile)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderBusy(f"{path.parent} is in use by another ms-gpt run ({_holder(path)}); wait for it to "
                             "finish, stop it, or choose another --out") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the previous holder removed the file between our open and lock: try again


@contextmanager
def hold(directory: str | os.PathLike, enabled: bool = True):
    """Hold ``directory``'s lock for the block (creating the folder); :class:`FolderBusy` if another live
    process holds it. ``enabled=False`` (e.g. a data-parallel worker that does not write) holds nothing."""
    if not enabled:
        yield None
        return
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{directory} is a file; --out must be a folder (or a path that does not exist yet)")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK
    fd = _open_locked(path)
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield path
    finally:
        try:
            path.unlink(missing_ok=True)  # while still holding the lock: the next run creates a fresh file
        finally:
            os.close(fd)
