"""Training throughput of the from-scratch GPT, printed as JSON.

Measures, in one run: MindSpore train-step tokens/s (median of >= 3 timed steps after warm-up),
compile seconds, peak RSS, the share of a float32 matmul peak measured in the same process, and -
when a Python with ``torch==2.13.0`` is available (this one, ``--torch-python``, or ``.venv-ref``) -
the same model in PyTorch eager, reported as a ratio. PyTorch runs in a child process so the two
frameworks never share threads or allocators.

    .venv/bin/python scripts/bench_train.py                 # tutorial preset, batch 8 x 128 tokens
    .venv/bin/python scripts/bench_train.py --preset tiny --steps 5 --no-torch
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would include a parent's, kept across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def train_flops_per_step(cfg: dict, batch: int, block: int) -> float:
    """Matmul FLOPs of one forward + backward step (x3 the forward), embeddings lookups excluded."""
    d, layers, ff, vocab = cfg["d_model"], cfg["n_layer"], cfg["d_ff"], cfg["vocab_size"]
    tokens = batch * block
    per_token = layers * (4 * d * d + 2 * d * ff) + d * vocab  # projections, FFN, LM head
    attention = layers * 2 * block * d  # Q K^T and weights @ V, per token
    return 3 * 2 * tokens * (per_token + attention)


def run_times(fn, repeats: int) -> list:
    """Wall seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def matmul_peak_gflops(framework: str, n: int = 1024, repeats: int = 7) -> float:
    """Median GFLOP/s of an n x n x n float32 matmul in ``framework`` (after one warm-up)."""
    import numpy as np

    a = np.random.RandomState(0).rand(n, n).astype(np.float32)
    if framework == "mindspore":
        import mindspore
        from mindspore import ops

        x, y = mindspore.Tensor(a), mindspore.Tensor(a)

        def run():
            ops.matmul(x, y).asnumpy()
    else:
        import torch

        x, y = torch.from_numpy(a), torch.from_numpy(a)

        def run():
            torch.matmul(x, y)
    run()
    return 2 * n ** 3 / statistics.median(run_times(run, repeats)) / 1e9


def timed_steps(step, warmup: int, steps: int) -> dict:
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        step()
    times = run_times(step, steps)
    median = statistics.median(times)
    return {"first_step_s": round(first, 3), "step_s_median": round(median, 4), "step_s": [round(t, 4) for t in times],
            "compile_s": round(max(first - median, 0.0), 3)}


def bench_mindspore(args) -> dict:
    import mindspore
    import numpy as np

    from ms_gpt import device
    from ms_gpt.config import GPTConfig
    from ms_gpt.model import GPT
    from ms_gpt.training import TrainConfig, Trainer

    device.setup(args.device, mode="pynative", seed=0)
    cfg = GPTConfig.preset(args.preset, vocab_size=args.vocab_size,
                           n_positions=max(args.block, GPTConfig.preset(args.preset).n_positions),
                           compute_dtype="float16" if args.amp else "float32")
    model = GPT(cfg)
    import tempfile

    trainer = Trainer(model, TrainConfig(steps=10_000, warmup_steps=0, amp=args.amp), tempfile.mkdtemp())
    rng = np.random.RandomState(0)
    ids = mindspore.Tensor(rng.randint(4, args.vocab_size, (args.batch, args.block)).astype(np.int32))

    def step():
        loss, _ = trainer._train_step(ids, ids)
        loss.asnumpy()

    timing = timed_steps(step, args.warmup, args.steps)
    flops = train_flops_per_step(cfg.to_dict(), args.batch, args.block)
    peak = matmul_peak_gflops("mindspore")
    achieved = flops / timing["step_s_median"] / 1e9
    return {"framework": "mindspore " + mindspore.__version__, "device": device.resolve_target(args.device)[0],
            "amp": args.amp, **timing, "tokens_per_s": round(args.batch * args.block / timing["step_s_median"], 1),
            "achieved_gflops": round(achieved, 3), "matmul_peak_gflops": round(peak, 2),
            "share_of_matmul_peak": round(achieved / peak, 3), "peak_rss_mib": round(peak_rss_mib(), 1),
            "parameters": sum(int(p.size) for p in model.trainable_params()), "config": cfg.to_dict()}


# --------------------------------------------------------------------------- PyTorch eager reference
def bench_torch(args) -> dict:
    """The same architecture (GPTConfig fields) in PyTorch eager, same batch, AdamW + clipping."""
    import numpy as np
    import torch
    from torch import nn

    from ms_gpt.config import GPTConfig

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    cfg = GPTConfig.preset(args.preset, vocab_size=args.vocab_size,
                           n_positions=max(args.block, GPTConfig.preset(args.preset).n_positions))

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            d = cfg.d_model
            self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
            self.ln1, self.ln2 = nn.LayerNorm(d, eps=cfg.layer_norm_eps), nn.LayerNorm(d, eps=cfg.layer_norm_eps)
            self.fc1, self.fc2 = nn.Linear(d, cfg.d_ff), nn.Linear(cfg.d_ff, d)
            self.act = nn.ReLU() if cfg.activation == "relu" else nn.GELU(
                approximate="tanh" if cfg.activation == "gelu_tanh" else "none")
            self.drop_attn, self.drop = nn.Dropout(cfg.attn_dropout), nn.Dropout(cfg.resid_dropout)

        def attn(self, x, mask):
            b, l, d = x.shape
            h = cfg.n_head

            def heads(t):
                return t.view(b, l, h, d // h).transpose(1, 2)

            q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
            scores = (q @ k.transpose(-1, -2)) / (d // h) ** 0.5
            w = self.drop_attn(torch.softmax(scores.masked_fill(mask, -1e9), dim=-1))
            return self.drop(self.o((w @ v).transpose(1, 2).reshape(b, l, d)))

        def forward(self, x, mask):
            if cfg.norm == "pre":
                x = x + self.attn(self.ln1(x), mask)
                return x + self.drop(self.fc2(self.act(self.fc1(self.ln2(x)))))
            x = self.ln1(x + self.attn(x, mask))
            return self.ln2(x + self.drop(self.fc2(self.act(self.fc1(x)))))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
            self.pos = nn.Embedding(cfg.n_positions, cfg.d_model)
            self.drop = nn.Dropout(cfg.embd_dropout)
            self.layers = nn.ModuleList(Layer() for _ in range(cfg.n_layer))
            self.head = None if cfg.tie_word_embeddings else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

        def forward(self, ids):
            l = ids.shape[1]
            x = self.drop(self.tok(ids) + self.pos(torch.arange(l)))
            mask = torch.triu(torch.ones(l, l, dtype=torch.bool), 1)
            for layer in self.layers:
                x = layer(x, mask)
            return x @ self.tok.weight.T if self.head is None else self.head(x)

    model = Model().train()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}], lr=3e-4)
    ids = torch.from_numpy(np.random.RandomState(0).randint(4, args.vocab_size, (args.batch, args.block)))

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(ids)
        loss = nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), ids.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()

    timing = timed_steps(step, args.warmup, args.steps)
    flops = train_flops_per_step(cfg.to_dict(), args.batch, args.block)
    peak = matmul_peak_gflops("torch")
    achieved = flops / timing["step_s_median"] / 1e9
    return {"framework": "torch " + torch.__version__, "threads": torch.get_num_threads(), **timing,
            "tokens_per_s": round(args.batch * args.block / timing["step_s_median"], 1),
            "achieved_gflops": round(achieved, 3), "matmul_peak_gflops": round(peak, 2),
            "share_of_matmul_peak": round(achieved / peak, 3), "peak_rss_mib": round(peak_rss_mib(), 1),
            "parameters": sum(p.numel() for p in model.parameters() if p is not model.pos.weight)
            + cfg.n_positions * cfg.d_model}


def torch_python(args) -> str | None:
    """A Python that has torch: --torch-python, this one, or the project's .venv-ref."""
    candidates = [args.torch_python] if args.torch_python else [sys.executable, str(ROOT / ".venv-ref/bin/python")]
    for py in candidates:
        if py and Path(py).exists() and subprocess.run([py, "-c", "import torch"], capture_output=True).returncode == 0:
            return py
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tutorial")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (the first one compiles)")
    p.add_argument("--steps", type=int, default=3, help="timed steps (>= 3; the median is reported)")
    p.add_argument("--device", default="CPU")
    p.add_argument("--amp", action="store_true", help="float16 compute + loss scaling (Ascend's default)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch eager reference")
    p.add_argument("--torch-python", default=None, help="a Python with torch==2.13.0 for the reference")
    p.add_argument("--only", choices=("mindspore", "torch"), default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.steps < 3 or args.warmup < 1:
        p.error(f"--steps must be >= 3 and --warmup >= 1, got {args.steps} and {args.warmup}")
    if args.only == "torch":
        print(json.dumps(bench_torch(args)))
        return 0
    result = {"bench": "train", "preset": args.preset, "batch": args.batch, "block": args.block,
              "cpu_count": os.cpu_count(), "mindspore": bench_mindspore(args)}
    py = None if args.no_torch else torch_python(args)
    if py is not None:
        cmd = [py, __file__, "--only", "torch", *[a for a in (argv if argv is not None else sys.argv[1:])]]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            result["torch"] = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
        else:
            result["torch"] = json.loads(proc.stdout.strip().splitlines()[-1])
            result["mindspore_vs_torch_tokens_per_s"] = round(
                result["mindspore"]["tokens_per_s"] / result["torch"]["tokens_per_s"], 3)
    else:
        result["torch"] = None if args.no_torch else {"error": "no Python with torch found (--torch-python)"}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
