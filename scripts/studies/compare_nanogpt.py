"""Pretraining quality per step against nanoGPT: the same characters, the same shape, the same held-out text.

nanoGPT's ``train.py`` (PyTorch eager, no compile) and ``ms-gpt pretrain`` train on one character-level
text with nanoGPT's CPU recipe shape: 4 layers, d_model 128, 4 heads, block 64, batch 12, 2,000
iterations. nanoGPT runs its shakespeare_char settings (lr 1e-3 → 1e-4 cosine, warmup 100, β2 0.99,
weight decay 0.1, dropout 0); ms_gpt gets only the shape (its run file,
scripts/studies/compare_nanogpt/pretrain.json: the ``small`` preset, characters, blocks of 64, batch 12; ``--steps``
from ``--iters``): its own defaults decide the rest. Both read the text as a
stream with its line breaks, split the same way (the first 90 % of the lines train, the last 10 %
validate, as nanoGPT's prepare.py), and report the mean next-character loss on the held-out part.

nanoGPT is not vendored: pass a checkout (``--nanogpt DIR``, e.g. ``git clone
https://github.com/karpathy/nanoGPT``) and a Python with ``torch==2.13.0`` (``--torch-python``, default
the project's ``.venv-ref``). The script links nanoGPT's files into a scratch folder, writes its
``train.bin``/``val.bin``/``meta.pkl`` there, and runs it.

  python scripts/studies/compare_nanogpt.py --nanogpt ../nanoGPT [--text chitchat|peoples-daily|FILE] [--iters 2000]

Prints one JSON object (also OUT/compare_nanogpt.json): held-out loss of each, the gap (ms_gpt − nanoGPT,
nats per character), the loss curves and wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from study import ROOT, run_job

SHAPE = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12)
RUN_FILE = ROOT / "scripts" / "studies" / "compare_nanogpt" / "pretrain.json"  # ms-gpt pretrain's side
NANOGPT_FILES = ("train.py", "model.py", "configurator.py")
EVAL_LINE = re.compile(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)")


def text_lines(src: str, chars: int) -> list[str]:
    """The first lines of ``src`` (builtin:NAME, ``chitchat``/``peoples-daily``, or a file) up to ``chars``."""
    from ms_gpt.data import load_corpus

    name = src if src.startswith("builtin:") or Path(src).exists() else f"builtin:{src}"
    out, total = [], 0
    for line in load_corpus(name):
        if total >= chars:
            break
        out.append(line)
        total += len(line) + 1
    return out


def split_lines(lines: list[str]) -> tuple[list[str], list[str]]:
    n_train = int(len(lines) * 0.9)
    return lines[:n_train], lines[n_train:]


def write_nanogpt_data(folder: Path, train: list[str], val: list[str]) -> int:
    """nanoGPT's shakespeare_char format: uint16 ids of every character (line breaks included), and
    meta.pkl with the vocabulary. Returns the vocabulary size."""
    text_train, text_val = "".join(l + "\n" for l in train), "".join(l + "\n" for l in val)
    chars = sorted(set(text_train + text_val))
    stoi = {c: i for i, c in enumerate(chars)}
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", text_train), ("val", text_val)):
        np.array([stoi[c] for c in text], dtype=np.uint16).tofile(folder / f"{name}.bin")
    with open(folder / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}, f)
    return len(chars)


def run_nanogpt(args, work: Path, dataset: str) -> dict:
    for name in NANOGPT_FILES + ("config",):
        link = work / name
        if not link.exists():
            link.symlink_to(Path(args.nanogpt).resolve() / name)
    cmd = [args.torch_python, "train.py", "config/train_shakespeare_char.py", f"--dataset={dataset}",
           "--device=cpu", "--compile=False", "--dtype=float32", f"--eval_iters={args.eval_iters}",
           "--log_interval=100", f"--max_iters={args.iters}", f"--lr_decay_iters={args.iters}", "--dropout=0.0",
           "--eval_interval=250", f"--out_dir={work / 'out-nanogpt'}", *(f"--{k}={v}" for k, v in SHAPE.items())]
    print("+ (in " + str(work) + ") " + " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": str(os.cpu_count())}
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env)
    (work / "nanogpt.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"nanoGPT failed ({proc.returncode}); see {work / 'nanogpt.log'}:\n{proc.stderr[-2000:]}")
    curve = [(int(s), float(t), float(v)) for s, t, v in EVAL_LINE.findall(proc.stdout)]
    if not curve:
        raise SystemExit(f"no 'step N: train loss X, val loss Y' lines in nanoGPT's output; see {work / 'nanogpt.log'}")
    return {"val_loss": curve[-1][2], "steps": curve[-1][0], "curve": [[s, v] for s, _, v in curve],
            "wall_s": round(time.perf_counter() - t0, 1)}


def run_ms_gpt(args, work: Path, train: list[str], val: list[str]) -> dict:
    (work / "train.txt").write_text("".join(l + "\n" for l in train), encoding="utf-8")
    (work / "val.txt").write_text("".join(l + "\n" for l in val), encoding="utf-8")
    out = work / "ms_gpt"
    m = run_job("pretrain", RUN_FILE, out, work / "ms_gpt.log", "--corpus", work / "train.txt", "--val-corpus",
                work / "val.txt", "--steps", args.iters, *args.ms_gpt_args)
    run_config = json.loads((out / "run_config.json").read_text())
    shape = (run_config["data"]["max_len"], run_config["data"]["batch_size"])
    if shape != (SHAPE["block_size"], SHAPE["batch_size"]):
        raise SystemExit(f"{RUN_FILE} does not train nanoGPT's shape (block {SHAPE['block_size']}, batch "
                         f"{SHAPE['batch_size']}): it gave {run_config['data']}")
    return {"val_loss": m["val_loss"], "steps": m["steps"], "val_loss_before": m["val_loss_before"],
            "vocab_size": m["vocab_size"], "boundaries": m["boundaries"], "parameters": m["parameters"],
            "tokens_per_s": m["tokens_per_s"], "wall_s": m["wall_s"],
            "run_config": run_config, "metrics_keys": sorted(k for k in m if k != "wall_s")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nanogpt", required=True,
                   help="a checkout of karpathy/nanoGPT (train.py, model.py, config/) (required)")
    p.add_argument("--torch-python", default=str(ROOT / ".venv-ref" / "bin" / "python"),
                   help="a Python with torch (default: the project's .venv-ref)")
    p.add_argument("--text", default="chitchat", help="chitchat, peoples-daily, or a .txt file (default chitchat)")
    p.add_argument("--chars", type=int, default=1_200_000, help="characters of the text to use (default 1.2M)")
    p.add_argument("--iters", type=int, default=2000, help="training iterations of each (default 2000)")
    p.add_argument("--eval-iters", type=int, default=200, help="nanoGPT's held-out batches per estimate (default: 200)")
    p.add_argument("--out", default="runs/compare-nanogpt", help="the study's folder (default: runs/compare-nanogpt)")
    p.add_argument("--ms-gpt-args", nargs=argparse.REMAINDER, default=[],
                   help="more ms-gpt pretrain flags (everything after this one), e.g. to try other settings "
                        "(default: none)")
    args = p.parse_args()
    if not (Path(args.nanogpt) / "train.py").is_file():
        p.error(f"--nanogpt {args.nanogpt}: no train.py there (expected a checkout of karpathy/nanoGPT)")
    if not Path(args.torch_python).exists():
        p.error(f"--torch-python {args.torch_python} not found (bash scripts/setup.sh --venv .venv-ref --lock "
                f"docker/requirements-torch-ref.txt --no-project makes the project's)")
    out = Path(args.out).resolve()
    work = out / "work"
    lines = text_lines(args.text, args.chars)
    train, val = split_lines(lines)
    dataset = "ms_gpt_compare"
    vocab = write_nanogpt_data(work / "data" / dataset, train, val)
    nano = run_nanogpt(args, work, dataset)
    ours = run_ms_gpt(args, work, train, val)
    summary = {
        "text": args.text, "characters": sum(len(l) + 1 for l in lines), "train_lines": len(train),
        "val_lines": len(val), "characters_in_text": vocab, "iters": args.iters, "shape": SHAPE,
        "nanogpt": nano, "ms_gpt": ours, "gap_nats_per_char": round(ours["val_loss"] - nano["val_loss"], 4),
        "target_met": ours["val_loss"] <= nano["val_loss"] + 0.02, "cpu_count": os.cpu_count(),
        "ms_gpt_extra_flags": args.ms_gpt_args,
    }
    (out / "compare_nanogpt.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
