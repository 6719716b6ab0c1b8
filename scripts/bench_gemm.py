"""The GEMM paths a Linear layer can take on this machine, forward + backward, printed as JSON.

For each shape (rows m = batch x block, in k, out n) it times y = x W^T + b and the gradients of all
three inside one ``mindspore.jit`` graph, the median of ``--repeats`` runs, for:
- ``matmul_2d``:  ``ops.MatMul(transpose_b=True)`` on the 2-D [m, k] view (MindSpore's native path),
- ``batch_matmul``: ``ops.BatchMatMul(transpose_b=True)`` of [b, l, k] with W broadcast over the batch,
- ``mint_matmul``: ``mint.matmul(x, W.T)`` on [b, l, k] (the PyTorch-style API),
- ``ms_gpt_kernel``: the CPU kernel (``ms_gpt.kernels``: OpenBLAS sgemm, bias and its gradient fused),
and the largest difference of its values and gradients from ``matmul_2d`` (relative to their scale).

    .venv/bin/python scripts/bench_gemm.py
    .venv/bin/python scripts/bench_gemm.py --shapes 768x128x512 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# (batch, block, k, n): the tutorial preset's projections, FFN and LM head at batch 8 x 128; nanoGPT's
# CPU recipe (batch 12 x 64, d 128) projection and FFN.
DEFAULT_SHAPES = ("8x128x512x512", "8x128x512x2048", "8x128x2048x512", "8x128x512x8000", "12x64x128x128",
                  "12x64x128x512")


def parse_shape(text: str) -> tuple:
    parts = text.lower().split("x")
    if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"shape {text!r} must be BATCHxBLOCKxKxN with positive integers, "
                                         "e.g. 8x128x512x2048")
    return tuple(int(p) for p in parts)


def probed_loss(fn, probe):
    """sum(fn(x, w, b) * probe): its gradients are the backward pass of fn for the upstream gradient probe."""
    def loss(x, w, b):
        return (fn(x, w, b) * probe).sum()

    return loss


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", type=parse_shape, nargs="+", default=[parse_shape(s) for s in DEFAULT_SHAPES],
                   help=f"GEMM shapes MxKxN (default: {' '.join(DEFAULT_SHAPES)})")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per path and shape (median; >= 3; default: 7)")
    args = p.parse_args(argv)
    if args.repeats < 3:
        p.error(f"--repeats must be >= 3, got {args.repeats}")

    import mindspore
    import numpy as np
    from mindspore import mint, ops

    from ms_gpt import kernels
    from ms_gpt.environment import device

    device.setup("CPU", mode="jit", seed=0)
    mm2d, bmm = ops.MatMul(transpose_b=True), ops.BatchMatMul(transpose_b=True)

    def matmul_2d(x, w, b):
        return mm2d(x.reshape(-1, x.shape[-1]), w).reshape(x.shape[:-1] + (w.shape[0],)) + b

    def batch_matmul(x, w, b):
        return bmm(x, ops.broadcast_to(w, (x.shape[0],) + w.shape)) + b

    def mint_matmul(x, w, b):
        return mint.matmul(x, w.T) + b

    paths = {"matmul_2d": matmul_2d, "batch_matmul": batch_matmul, "mint_matmul": mint_matmul}
    if kernels.enabled():
        from ms_gpt.kernels import custom

        fused = custom.linear()

        def ms_gpt_kernel(x, w, b):
            return fused(x.reshape(-1, x.shape[-1]), w, b).reshape(x.shape[:-1] + (w.shape[0],))

        paths["ms_gpt_kernel"] = ms_gpt_kernel

    rows = []
    for (batch, block, k, n) in args.shapes:
        rs = np.random.RandomState(0)
        x = mindspore.Tensor(rs.randn(batch, block, k).astype(np.float32))
        w = mindspore.Tensor((rs.randn(n, k) * 0.05).astype(np.float32))
        b = mindspore.Tensor(rs.randn(n).astype(np.float32))
        probe = mindspore.Tensor(rs.randn(batch, block, n).astype(np.float32))
        flops = 3 * 2 * batch * block * k * n  # forward + the two backward products
        row = {"shape": {"batch": batch, "block": block, "k": k, "n": n}}
        reference = None
        for name, fn in paths.items():
            step = mindspore.jit(mindspore.value_and_grad(probed_loss(fn, probe), (0, 1, 2)))
            value, grads = step(x, w, b)
            got = [value.asnumpy()] + [g.asnumpy() for g in grads]
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                value, grads = step(x, w, b)
                value.asnumpy()
                times.append(time.perf_counter() - t0)
            seconds = statistics.median(times)
            entry = {"ms": round(seconds * 1e3, 3), "gflops": round(flops / seconds / 1e9, 1)}
            if reference is None:
                reference = got
            else:
                entry["max_rel_diff"] = float(max(np.abs(a - r).max() / max(np.abs(r).max(), 1.0)
                                                  for a, r in zip(got, reference)))
            row[name] = entry
        best = min(paths, key=lambda name: row[name]["ms"])
        row["fastest"] = best
        row["fastest_vs_matmul_2d"] = round(row["matmul_2d"]["ms"] / row[best]["ms"], 2)
        rows.append(row)
    print(json.dumps({"bench": "gemm", "framework": "mindspore " + mindspore.__version__,
                      "cpu_kernels": kernels.status(), "repeats": args.repeats, "shapes": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
