"""What the study drivers share: their run files, checked before any work, and one ``ms-gpt`` job run from a run
file, its result read from the metrics.json it writes (never from what it prints).

A study's settings are run files, ``--config`` files of the commands (``scripts/studies/NAME/COMMAND.json``); a
driver adds only the plumbing (data, folders, seeds) and computes its table from the runs' metrics.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def read_run_files(prog: str, folder: Path, plumbing: dict) -> dict:
    """``{command: settings}`` of the run files ``folder/COMMAND.json`` for each command of ``plumbing``
    (``{command: (its config class, {field: placeholder})}``: what the driver fills in), each checked by the
    command's own config validator; a missing file, an unknown field or a bad value exits 2 naming the file,
    before any work."""
    from ms_gpt.config import build

    runs = {}
    for command, (config_class, filled) in plumbing.items():
        path = Path(folder) / f"{command}.json"
        try:
            runs[command] = json.loads(path.read_text(encoding="utf-8"))
            build(config_class, {**runs[command], **filled}, where=str(path)).validate()
        except (OSError, ValueError) as exc:
            print(f"{prog}: {path}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    return runs


def run_job(command: str, run_file: Path, out: Path, log: Path, *flags, reuse: bool = False) -> dict:
    """``ms-gpt COMMAND --config RUN_FILE --out OUT FLAGS...`` (its stderr to ``log``; the command is printed, so
    each step can be re-run alone), and the metrics.json it wrote into ``out``, with the wall time (``wall_s``).
    ``reuse``: take ``out``'s finished metrics.json instead of running, when it has one."""
    import subprocess

    metrics = Path(out) / "metrics.json"
    if reuse and metrics.is_file():
        print(f"= reusing {out}", file=sys.stderr, flush=True)
        return {**json.loads(metrics.read_text(encoding="utf-8")), "wall_s": None, "reused": True}
    cmd = [str(Path(sys.executable).parent / "ms-gpt"), command, "--config", str(run_file), "--out", str(out),
           *(str(f) for f in flags)]
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=fh)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    result = json.loads(metrics.read_text(encoding="utf-8"))
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    return result
