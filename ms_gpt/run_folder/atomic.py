"""Atomic file output: write beside the target, fsync, then rename over it.

A crash mid-write leaves the previous good file (or none), never a truncated one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

KILL_AT = "MS_GPT_KILL_AT"  # test hook: SIGKILL this process at the N-th fault point
_points_passed = 0


def fault_point(where: str) -> None:
    """A moment at which a crash must leave consistent files: before each rename that publishes a write
    (and so after every write). With ``$MS_GPT_KILL_AT=N`` the process kills itself (SIGKILL: no cleanup
    runs) at the N-th point it passes; the crash tests sweep N over a whole checkpoint save."""
    global _points_passed
    at = os.environ.get(KILL_AT)
    if at:
        _points_passed += 1
        if _points_passed == int(at):
            os.kill(os.getpid(), signal.SIGKILL)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()
_FILE_MODE, _DIR_MODE = 0o666 & ~_UMASK, 0o777 & ~_UMASK  # what open()/mkdir() would give


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path in the target's folder; on success it replaces ``path``.

    For writers that want a filename (``mindspore.save_checkpoint``, ``savefig``, ``save_pretrained``
    of a single file). The temporary is removed if the block raises. ``suffix`` keeps an extension
    for writers that look at it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.fchmod(fd, _FILE_MODE)  # mkstemp's 0600 would make every output private to its writer
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)  # some writers set their own (mindspore.save_checkpoint: 0400)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        fault_point(f"replace {path}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fsync_dir(path: str | os.PathLike) -> None:
    """Make the renames inside folder ``path`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def _old_dir(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def recover_dir(path: str | os.PathLike) -> None:
    """Undo half of an :func:`atomic_dir` swap a crash interrupted: the previous folder, moved aside, is
    put back when nothing replaced it; once the new one is in place the old copy is only garbage."""
    path = Path(path)
    old = _old_dir(path)
    if old.is_dir():
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, path)


@contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` as a whole (the old one is
    moved aside first; :func:`recover_dir` puts it back if a crash comes between the two renames)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, _DIR_MODE)  # mkdtemp's 0700, widened as the umask allows
    try:
        yield tmp
        fsync_dir(tmp)
        old = None
        if path.exists():
            old = _old_dir(path)
            fault_point(f"move aside {path}")
            os.replace(path, old)
        fault_point(f"replace {path}")
        os.replace(tmp, path)
        fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
