"""Which folders a command may write into, and which files in them are ms_gpt's to delete.

The rule (git's and rsync's: never touch what you do not own):
- ``--out`` is a new folder, an empty one, or a folder an earlier ``ms-gpt`` command of the **same kind**
  wrote (its marker file :data:`MARKER` names the command). A folder that holds anything else is refused,
  so a user's files are never mixed with, or removed with, a run.
- ``/``, the home folder and the current folder are never an ``--out``; neither is a file.
- ``--out`` may not be, contain or lie inside any input of the same command (paths compared after
  resolving symlinks), so ``--overwrite`` cannot remove what the command reads.
- The clean-up of interrupted writes removes only names ms_gpt itself creates (:func:`is_leftover`), and
  only once the folder has been accepted.

Folders written by an ms_gpt from before the marker existed are recognised by the files they hold
(:func:`legacy_command`) and keep working (resume, ``--overwrite``); the marker is added to them then.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from pathlib import Path

from ms_gpt.errors import MsGptError
from ms_gpt.run_folder.names import (BEST, GPT_CONFIG, HF_CHECKPOINTS, HF_EXPORT, METRICS, MINDNLP_ENTRIES, MODEL,
                                     RUN_CONFIG, RUN_ENTRIES, SMOKE_MODEL, TOKENIZER, TRAIN_STATE)

MARKER = ".ms_gpt.json"  # {"command": "pretrain"}: the ms-gpt command whose output the folder holds
LOCK = ".lock"  # run_lock's file
# Files and folders ms_gpt writes at the top of a run folder: the checkpoint's, the Hugging Face export's, the
# MindNLP flow's.
OWN_FILES = RUN_ENTRIES + HF_EXPORT + MINDNLP_ENTRIES
_RAND = r"[a-z0-9_]{8}"  # tempfile's random part
_LEFTOVER = re.compile(
    r"^(?:\.pending-" + _RAND + r"|\.commit"
    r"|\.(?:" + "|".join(re.escape(n) for n in OWN_FILES + (MARKER,)) + r")\." + _RAND + r"\.tmp(?:\.[A-Za-z0-9]+)?"
    r"|\.(?:" + "|".join(re.escape(n) for n in (TOKENIZER, BEST, SMOKE_MODEL, HF_CHECKPOINTS)) + r")\.old)$")


class NotOwned(MsGptError, ValueError):
    """An ``--out`` that ms_gpt may not write into (a one-line error)."""


def is_leftover(name: str) -> bool:
    """Whether ``name`` (a file or folder at the top of a run folder) is what an interrupted ms_gpt write
    leaves: a ``.pending-XXXXXXXX`` checkpoint stage, a ``.NAME.XXXXXXXX.tmp`` beside one of ms_gpt's files,
    an ``atomic_dir`` swap's ``.NAME.old``."""
    return bool(_LEFTOVER.match(name))


def read_marker(out: Path) -> dict | None:
    path = Path(out) / MARKER
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"command": "?"}
    return record if isinstance(record, dict) else {"command": "?"}


def write_marker(out: Path, command: str) -> None:
    from ms_gpt.run_folder import atomic

    if (read_marker(out) or {}).get("command") != command:
        atomic.write_json(Path(out) / MARKER, {"command": command})


TRAINING = "a training job"  # what a folder from before the marker says of its writer: one of the training jobs


def legacy_command(entries: set) -> str | None:
    """Which command wrote a folder from before the marker, judged by its files: a training job (its run
    record or state), ``convert --to-hf`` (a Hugging Face folder) or ``convert --from-hf`` (weights and
    config alone); None when it holds none of ms_gpt's files."""
    if entries & {TRAIN_STATE, RUN_CONFIG, METRICS}:
        return TRAINING
    if set(HF_EXPORT) <= entries:
        return "convert --to-hf"
    if {GPT_CONFIG, MODEL} <= entries:
        return "convert --from-hf"
    return None


def _forbidden(out: Path) -> str | None:
    resolved = out.resolve()
    named = {Path("/").resolve(): "the root folder", Path.home().resolve(): "your home folder",
             Path.cwd().resolve(): "the current folder"}
    return named.get(resolved)


def check_out(out, command: str, flag: str = "--out") -> Path:
    """``out`` when ``command`` may write into it (see the module's rule), else :class:`NotOwned` naming what
    is there. Reads only: nothing is created or removed."""
    out = Path(out)
    what = _forbidden(out)
    if what:
        raise NotOwned(f"{flag} {out} is {what}; a command writes into a folder of its own: choose a new folder, "
                       f"e.g. {flag} runs/{command}")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file; {flag} must be a folder (or a path that does not exist yet)")
    if not out.is_dir():
        return out
    marker = read_marker(out)
    if marker is not None:
        owner = marker.get("command")
        if owner != command:
            raise NotOwned(f"{flag} {out} holds the output of ms-gpt {owner}; ms-gpt {command} writes only into a new "
                           "folder or one of its own: choose another folder")
        return out
    entries = sorted(os.listdir(out))
    legacy = legacy_command(set(entries))
    if legacy is not None:  # written by an ms_gpt from before the marker
        training = not command.startswith("convert")
        if legacy != (TRAINING if training else command):
            what = "a training run" if legacy == TRAINING else f"the output of ms-gpt {legacy}"
            raise NotOwned(f"{flag} {out} holds {what}; ms-gpt {command} writes only into a new folder or one of its "
                           "own: choose another folder")
        return out
    foreign = [name for name in entries if name != LOCK and not is_leftover(name)]
    if foreign:
        shown = ", ".join(foreign[:4]) + (f" and {len(foreign) - 4} more" if len(foreign) > 4 else "")
        raise NotOwned(f"{flag} {out} is not empty and not an ms_gpt run folder (it holds {shown}); ms-gpt {command} "
                       "writes only into a new or empty folder or one of its own: choose another folder")
    return out


def check_inputs(out, inputs: dict) -> None:
    """``out`` must not be, contain or lie inside any of ``inputs`` (flag -> path; None entries skipped),
    compared after resolving symlinks: ``--overwrite`` (or the run itself) would otherwise change an input."""
    target = Path(out).resolve()
    for flag, path in inputs.items():
        if path is None or not Path(path).exists():
            continue
        source = Path(path).resolve()
        if target == source:
            raise NotOwned(f"--out {out} is the {flag} folder: the run would overwrite what it reads; choose "
                           "another --out")
        if source in target.parents:
            raise NotOwned(f"--out {out} lies inside {flag} {path}: the run would write into what it reads; choose "
                           "a folder outside it")
        if target in source.parents:
            raise NotOwned(f"--out {out} holds {flag} {path}: the run (or --overwrite) would change what it reads; "
                           "choose another --out")


@contextmanager
def claim(out, command: str, inputs: dict | None = None, writer: bool = True, mark: bool = False):
    """Hold ``out`` for ``command``: checked (:func:`check_out`, :func:`check_inputs`), then its lock held
    (one writer per folder) and checked again under it. ``writer=False`` (a data-parallel worker that writes
    nothing) only yields. ``mark``: the folder is accepted as it is and marked as ``command``'s at once;
    otherwise the caller writes the marker (:func:`write_marker`) once it accepts the run."""
    from ms_gpt.run_folder import run_lock

    out = Path(out)
    if writer:
        check_inputs(out, inputs or {})
        check_out(out, command)
    with run_lock.hold(out, enabled=writer):
        if writer:
            check_out(out, command)
            if mark:
                write_marker(out, command)
        yield out
