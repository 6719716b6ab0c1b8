"""The mindtorch gaps are real, the patches fill them, and AdamW + clipping matches numpy."""
import subprocess
import sys
import types

import numpy as np
import pytest

from ms_gpt import compat

UNPATCHED_ADAMW = """
import mindnlp, torch
p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
p.grad = torch.tensor([0.1, 0.2])
opt = torch.optim.AdamW([p], lr=0.1)
try:
    opt.step()
    print("ADDCDIV-OK")
except Exception as e:
    print("ADDCDIV-ERR", e)
try:
    torch.nn.utils.clip_grad_norm_([p], 1.0)
    print("NORM-OK")
except Exception as e:
    print("NORM-ERR", e)
try:
    opt.zero_grad()
    print("ZERO-GRAD-OK")
except Exception as e:
    print("ZERO-GRAD-ERR", e)
"""


def test_gaps_exist_without_patches():
    """Documents why compat exists: plain mindnlp 0.5.1 cannot run AdamW or clip gradients on CPU."""
    out = subprocess.run([sys.executable, "-c", UNPATCHED_ADAMW], capture_output=True, text=True, timeout=300)
    assert "ADDCDIV-ERR No implementation for function: addcdiv on cpu" in out.stdout, out.stdout + out.stderr
    assert "NORM-ERR" in out.stdout and "NoneType" in out.stdout
    assert "ZERO-GRAD-ERR" in out.stdout and "profiler" in out.stdout


def test_import_order_check_detects_real_torch_first():
    real = types.ModuleType("torch")
    real.__file__ = "/venv/lib/python3.11/site-packages/torch/__init__.py"
    with pytest.raises(compat.ImportOrderError, match=r"real PyTorch .*imported before mindnlp.*import mindnlp"):
        compat.check_import_order({"torch": real})
    compat.check_import_order({"torch": real, "mindnlp": types.ModuleType("mindnlp")})  # mindnlp first: fine
    fake = types.ModuleType("torch")
    fake.__file__ = "/venv/lib/python3.11/site-packages/mindtorch/__init__.py"
    compat.check_import_order({"torch": fake})


@pytest.fixture(scope="module")
def torch():
    compat.import_mindnlp()
    import torch as mindtorch

    assert "mindtorch" in mindtorch.__file__
    return mindtorch


def test_patches_are_idempotent(torch):
    assert compat.apply_mindtorch_patches() == []
    import mindtorch._apis.cpu as api

    assert getattr(api.addcdiv, compat._PATCH_MARK)
    assert getattr(api.linalg_vector_norm, compat._PATCH_MARK)
    with torch.autograd.profiler.record_function("zero_grad"):  # what Optimizer.zero_grad enters
        pass


def test_vector_norm_over_all_axes(torch):
    x = np.array([[3.0, -4.0], [12.0, 0.0]], dtype=np.float32)
    t = torch.tensor(x)
    assert float(torch.linalg.vector_norm(t)) == pytest.approx(13.0)
    assert float(torch.linalg.vector_norm(t, ord=float("inf"))) == pytest.approx(12.0)
    np.testing.assert_allclose(torch.linalg.vector_norm(t, dim=1).numpy(), [5.0, 12.0], rtol=1e-6)


def test_addcdiv_is_exact_for_tiny_denominators(torch):
    # MindSpore's CPU Addcdiv kernel gives nan/inf here (Adam's eps=1e-8 with zero second moments).
    a = torch.tensor([1.0, 2.0, 3.0])
    num = torch.tensor([1e-8, 0.0, -2e-8])
    den = torch.tensor([1e-8, 1e-8, 1e-8])
    np.testing.assert_allclose(torch.addcdiv(a, num, den, value=-0.5).numpy(), [0.5, 2.0, 4.0], rtol=1e-7)


def _numpy_adamw_with_clipping(w, b, x, steps, lr, wd, max_norm, betas=(0.9, 0.999), eps=1e-8):
    w, b = w.astype(np.float64), b.astype(np.float64)
    state = [np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)]
    norms = []
    for t in range(1, steps + 1):
        y = x @ w.T + b
        gw, gb = (2 * y).T @ x, (2 * y).sum(0)
        total = np.sqrt((gw ** 2).sum() + (gb ** 2).sum())
        norms.append(total)
        coef = min(1.0, max_norm / (total + 1e-6))
        gw, gb = gw * coef, gb * coef
        new = []
        for p, g, m, v in ((w, gw, state[0], state[1]), (b, gb, state[2], state[3])):
            p = p * (1 - lr * wd)
            m[:] = betas[0] * m + (1 - betas[0]) * g
            v[:] = betas[1] * v + (1 - betas[1]) * g * g
            mhat, vhat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
            new.append(p - lr * mhat / (np.sqrt(vhat) + eps))
        w, b = new
    return w, b, norms


def test_adamw_step_with_clipping_matches_numpy(torch):
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(2, 3)).astype(np.float32)
    b0 = rng.normal(size=(2,)).astype(np.float32)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    w = torch.nn.Parameter(torch.tensor(w0))
    b = torch.nn.Parameter(torch.tensor(b0))
    xt = torch.tensor(x)
    opt = torch.optim.AdamW([w, b], lr=0.05, weight_decay=0.01, eps=1e-8)
    grad_fn = torch.autograd.value_and_grad(lambda inp: ((inp @ w.T + b) ** 2).sum(), [w, b])
    norms = []
    for _ in range(3):
        opt.zero_grad()
        grad_fn(xt)
        norms.append(float(torch.nn.utils.clip_grad_norm_([w, b], max_norm=1.0)))
        opt.step()
    ref_w, ref_b, ref_norms = _numpy_adamw_with_clipping(w0, b0, x, 3, lr=0.05, wd=0.01, max_norm=1.0)
    assert np.isfinite(w.detach().numpy()).all() and np.isfinite(b.detach().numpy()).all()
    np.testing.assert_allclose(norms, ref_norms, rtol=1e-5)
    assert ref_norms[0] > 1.0  # clipping was active, not a no-op
    np.testing.assert_allclose(w.detach().numpy(), ref_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.detach().numpy(), ref_b, rtol=1e-5, atol=1e-6)
