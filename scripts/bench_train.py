"""Training throughput of the from-scratch GPT, printed as JSON.

Measures, in one run: MindSpore train-step tokens/s (median of >= 3 timed steps after warm-up),
compile seconds, peak RSS, and - when a Python with ``torch==2.13.0`` is available (this one,
``--torch-python``, or ``.venv-ref``) - the same model in PyTorch eager, reported as ratios. PyTorch
runs in a child process so the two frameworks never share threads or allocators.

Model FLOP utilisation is honest: each side's achieved GFLOP/s is divided by the machine's best
measured float32 GEMM rate in this run - the maximum over numpy, PyTorch, MindSpore's MatMul and the
OpenBLAS sgemm of ms_gpt's CPU kernels - not by each framework's own.

``--recipe nanogpt`` trains nanoGPT's documented CPU recipe shape instead (4 layers, 4 heads,
d 128, block 64, batch 12, a 65-character vocabulary, dropout 0, AdamW betas (0.9, 0.99), weight decay
0.1) against nanoGPT-style PyTorch code (fused qkv projection, ``scaled_dot_product_attention``,
tied head; no ``torch.compile``), as its ``train.py`` runs it on CPU.

    .venv/bin/python scripts/bench_train.py                 # tutorial preset, batch 8 x 128 tokens
    .venv/bin/python scripts/bench_train.py --recipe nanogpt
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
    """Median GFLOP/s of an n x n x n float32 matmul in ``framework`` (after one warm-up): numpy,
    mindspore, torch, or ms_gpt-kernels (the CPU kernels' sgemm, run as a MindSpore op)."""
    import numpy as np

    a = np.random.RandomState(0).rand(n, n).astype(np.float32)
    if framework == "numpy":
        def run():
            a @ a
    elif framework == "ms_gpt-kernels":
        import mindspore

        from ms_gpt.kernels import custom

        x = mindspore.Tensor(a)
        op = custom.matmul_nt()

        def run():
            op(x, x).asnumpy()
    elif framework == "mindspore":
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

    from ms_gpt import kernels
    from ms_gpt.environment import device
    from ms_gpt.model import GPT, count_parameters
    from ms_gpt.training import TrainConfig, Trainer

    settings = device.setup(args.device, mode=args.mode, seed=0)
    cfg = model_config(args, compute_dtype="float16" if args.amp else "float32")
    model = GPT(cfg)
    import tempfile

    trainer = Trainer(model, TrainConfig(steps=10_000, warmup_steps=0, amp=args.amp, weight_decay=args.weight_decay),
                      tempfile.mkdtemp(), jit=settings.compiled)
    rng = np.random.RandomState(0)
    ids = mindspore.Tensor(rng.randint(4, args.vocab_size, (args.batch, args.block)).astype(np.int32))

    def step():
        loss, _ = trainer._train_step(ids, ids)
        loss.asnumpy()

    timing = timed_steps(step, args.warmup, args.steps)
    flops = train_flops_per_step(cfg.to_dict(), args.batch, args.block)
    peaks = {"mindspore": matmul_peak_gflops("mindspore"), "numpy": matmul_peak_gflops("numpy")}
    if kernels.enabled():
        peaks["ms_gpt-kernels"] = matmul_peak_gflops("ms_gpt-kernels")
    achieved = flops / timing["step_s_median"] / 1e9
    return {"framework": "mindspore " + mindspore.__version__, "device": settings.target, "mode": settings.mode,
            "cpu_kernels": kernels.status(), "amp": args.amp, **timing,
            "tokens_per_s": round(args.batch * args.block / timing["step_s_median"], 1),
            "achieved_gflops": round(achieved, 3), "matmul_peaks_gflops": {k: round(v, 2) for k, v in peaks.items()},
            "peak_rss_mib": round(peak_rss_mib(), 1),
            "parameters": count_parameters(model), "config": cfg.to_dict()}


def model_config(args, **overrides):
    """The benchmarked GPTConfig: the preset, or nanoGPT's CPU recipe shape (``--recipe nanogpt``)."""
    from ms_gpt.config import GPTConfig

    if args.recipe == "nanogpt":
        return GPTConfig(vocab_size=args.vocab_size, n_positions=args.block, d_model=128, n_layer=4, n_head=4,
                         d_ff=512, activation="gelu", positions="learned", norm="pre", final_norm=True,
                         tie_word_embeddings=True, embd_dropout=0.0, attn_dropout=0.0, resid_dropout=0.0,
                         pad_token_id=None, **overrides)
    return GPTConfig.preset(args.preset, vocab_size=args.vocab_size,
                            n_positions=max(args.block, GPTConfig.preset(args.preset).n_positions), **overrides)


# --------------------------------------------------------------------------- PyTorch eager reference
def bench_torch(args) -> dict:
    """The same architecture (GPTConfig fields) in PyTorch eager, same batch, AdamW + clipping."""
    import numpy as np
    import torch
    from torch import nn


    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    if args.recipe == "nanogpt":
        return bench_torch_nanogpt(args)
    cfg = model_config(args)

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
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                            lr=3e-4)
    ids = torch.from_numpy(np.random.RandomState(0).randint(4, args.vocab_size, (args.batch, args.block)))

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(ids)
        loss = nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), ids.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()

    parameters = sum(p.numel() for p in model.parameters() if p is not model.pos.weight) + cfg.n_positions * cfg.d_model
    return torch_result(args, cfg, step, parameters)


def torch_result(args, cfg, step, parameters: int) -> dict:
    import torch

    timing = timed_steps(step, args.warmup, args.steps)
    flops = train_flops_per_step(cfg.to_dict(), args.batch, args.block)
    achieved = flops / timing["step_s_median"] / 1e9
    return {"framework": "torch " + torch.__version__, "threads": torch.get_num_threads(), **timing,
            "tokens_per_s": round(args.batch * args.block / timing["step_s_median"], 1),
            "achieved_gflops": round(achieved, 3), "matmul_peaks_gflops": {"torch": round(matmul_peak_gflops("torch"), 2)},
            "peak_rss_mib": round(peak_rss_mib(), 1), "parameters": int(parameters)}


def bench_torch_nanogpt(args) -> dict:
    """nanoGPT-style PyTorch (its model.py's structure, written here): one c_attn projection to q, k, v,
    ``scaled_dot_product_attention(is_causal=True)``, exact GELU, LayerNorm with bias, a tied LM head;
    AdamW(betas=(0.9, 0.99), weight decay on matrices), clipping at 1.0 - eager, no torch.compile."""
    import numpy as np
    import torch
    from torch import nn
    from torch.nn import functional as F

    cfg = model_config(args)
    d, h = cfg.d_model, cfg.n_head

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.c_attn, self.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.c_fc, self.mlp_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
            q, k, v = (z.view(b, t, h, d // h).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.c_proj(y.transpose(1, 2).contiguous().view(b, t, d))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))

    class NanoGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(cfg.vocab_size, d), nn.Embedding(cfg.n_positions, d)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.n_layer))
            self.ln_f = nn.LayerNorm(d)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.blocks:
                x = block(x)
            logits = self.ln_f(x) @ self.wte.weight.T
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    model = NanoGPT().train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.99))
    rng = np.random.RandomState(0)
    x = torch.from_numpy(rng.randint(0, cfg.vocab_size, (args.batch, args.block)))
    y = torch.from_numpy(rng.randint(0, cfg.vocab_size, (args.batch, args.block)))

    def step():
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()

    return torch_result(args, cfg, step, sum(p.numel() for p in model.parameters()))


def add_gemm_shares(result: dict) -> None:
    """The machine's best float32 GEMM rate measured in this run, and each side's share of it."""
    peaks = dict(result["mindspore"]["matmul_peaks_gflops"])
    if isinstance(result.get("torch"), dict) and "matmul_peaks_gflops" in result["torch"]:
        peaks.update(result["torch"]["matmul_peaks_gflops"])
    best = max(peaks, key=peaks.get)
    result["best_gemm"] = {"gflops": peaks[best], "from": best}
    for side in ("mindspore", "torch"):
        if isinstance(result.get(side), dict) and "achieved_gflops" in result[side]:
            result[side]["share_of_best_gemm"] = round(result[side]["achieved_gflops"] / peaks[best], 3)


def torch_python(args) -> str | None:
    """A Python that has torch: --torch-python, this one, or the project's .venv-ref."""
    candidates = [args.torch_python] if args.torch_python else [sys.executable, str(ROOT / ".venv-ref/bin/python")]
    for py in candidates:
        if py and Path(py).exists() and subprocess.run([py, "-c", "import torch"], capture_output=True).returncode == 0:
            return py
    return None


def torch_reference(args, script: str, argv) -> dict | None:
    """The PyTorch side of a bench: ``script --only torch`` with this run's arguments, in a child
    process with a Python that has torch; its JSON, None with ``--no-torch``, or ``{"error": ...}``."""
    if args.no_torch:
        return None
    py = torch_python(args)
    if py is None:
        return {"error": "no Python with torch found (--torch-python)"}
    cmd = [py, script, "--only", "torch", *(argv if argv is not None else sys.argv[1:])]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", choices=("preset", "nanogpt"), default="preset",
                   help="nanogpt: nanoGPT's CPU recipe shape against nanoGPT-style PyTorch (sets the defaults "
                        "below; default: preset)")
    p.add_argument("--preset", default="tutorial",
                   help="the model's shape (default: tutorial; --recipe nanogpt sets its own)")
    p.add_argument("--batch", type=int, default=None, help="sequences a step (default: 8; nanogpt: 12)")
    p.add_argument("--block", type=int, default=None, help="tokens a sequence (default: 128; nanogpt: 64)")
    p.add_argument("--vocab-size", type=int, default=None, help="vocabulary size (default: 8000; nanogpt: 65)")
    p.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay (default: 0.01; nanogpt: 0.1)")
    p.add_argument("--mode", choices=("graph", "jit", "pynative"), default="graph",
                   help="graph: GRAPH_MODE (the flows' default); jit: PyNative with the step compiled; pynative: "
                        "nothing compiled (default: graph)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (the first one compiles; default: 1)")
    p.add_argument("--steps", type=int, default=3, help="timed steps (>= 3; the median is reported; default: 3)")
    p.add_argument("--device", default="CPU", help="Ascend, GPU or CPU (default: CPU)")
    p.add_argument("--amp", action="store_true",
                   help="float16 compute + loss scaling (Ascend's default; default here: float32)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch eager reference (default: run it)")
    p.add_argument("--torch-python", default=None,
                   help="a Python with torch==2.13.0 for the reference (default: this Python if it has torch, "
                        "else .venv-ref's)")
    p.add_argument("--only", choices=("mindspore", "torch"), default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    nano = args.recipe == "nanogpt"
    for name, preset_default, nano_default in (("batch", 8, 12), ("block", 128, 64), ("vocab_size", 8000, 65),
                                               ("weight_decay", 0.01, 0.1)):
        if getattr(args, name) is None:
            setattr(args, name, nano_default if nano else preset_default)
    if args.steps < 3 or args.warmup < 1:
        p.error(f"--steps must be >= 3 and --warmup >= 1, got {args.steps} and {args.warmup}")
    if args.only == "torch":
        print(json.dumps(bench_torch(args)))
        return 0
    result = {"bench": "train", "recipe": args.recipe, "preset": None if nano else args.preset, "batch": args.batch,
              "block": args.block, "cpu_count": os.cpu_count(), "mindspore": bench_mindspore(args)}
    ms = result["mindspore"]
    pt = result["torch"] = torch_reference(args, __file__, argv)
    if pt and "error" not in pt:
        result["mindspore_vs_torch_tokens_per_s"] = round(ms["tokens_per_s"] / pt["tokens_per_s"], 3)
        result["mindspore_vs_torch_peak_rss"] = round(ms["peak_rss_mib"] / pt["peak_rss_mib"], 3)
    add_gemm_shares(result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
