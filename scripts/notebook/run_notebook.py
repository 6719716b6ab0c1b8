"""Execute the tutorial notebook headless (nbclient) and print its summary - on the host or inside the image.

    python scripts/notebook/run_notebook.py [--notebook PATH] [--mode tiny|full] [--out DIR] [--summary FILE]

Runs every cell in a fresh python3 kernel with MS_GPT_NOTEBOOK_MODE and MS_GPT_NOTEBOOK_OUT set; a cell that
raises stops the run (exit 1, the cell's error printed). The last line printed is
`NOTEBOOK-SUMMARY {json}`: the notebook's own summary plus the seconds it took. scripts/environment/container_check.sh
runs this inside the CPU image and on the host and compares the two summaries.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

DEFAULT_NOTEBOOK = Path(__file__).resolve().parents[2] / "docker" / "notebooks" / "ms_gpt_tutorial.ipynb"
MARK = "NOTEBOOK-SUMMARY "


def run(notebook: Path, mode: str, out: Path, timeout: int = 1800) -> dict:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    os.environ["MS_GPT_NOTEBOOK_MODE"] = mode  # the kernel inherits this process's environment
    os.environ["MS_GPT_NOTEBOOK_OUT"] = str(out)
    out.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(str(notebook), as_version=4)
    t0 = time.perf_counter()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(out)}}).execute()
    except CellExecutionError as err:
        raise SystemExit(f"run_notebook.py: a cell failed in {notebook.name}:\n{err}") from None
    texts = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    found = [t.split(MARK, 1)[1].splitlines()[0] for t in texts if MARK in t]
    if not found:
        raise SystemExit(f"run_notebook.py: {notebook.name} ran but printed no {MARK.strip()} line")
    summary = json.loads(found[-1])
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--notebook", type=Path, default=DEFAULT_NOTEBOOK,
                    help="the notebook (default: docker/notebooks/ms_gpt_tutorial.ipynb)")
    ap.add_argument("--mode", choices=("tiny", "full"), default="tiny", help="MS_GPT_NOTEBOOK_MODE (default: tiny)")
    ap.add_argument("--out", type=Path, default=Path("runs/notebook"),
                    help="the notebook's output folder (default: runs/notebook)")
    ap.add_argument("--summary", type=Path, help="also write the summary JSON here (default: only print it)")
    args = ap.parse_args(argv)
    if not args.notebook.is_file():
        ap.error(f"--notebook {args.notebook} is not a file")
    summary = run(args.notebook.resolve(), args.mode, args.out.resolve())
    if args.summary:
        tmp = args.summary.with_name(args.summary.name + ".tmp")
        tmp.write_text(json.dumps(summary, ensure_ascii=False, indent=1))
        tmp.replace(args.summary)
    print(MARK + json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
