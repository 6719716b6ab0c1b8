"""The CPU kernels (ms_gpt/kernels) against MindSpore's own ops and a NumPy reference: forward values,
gradients, the optimizer step, and a whole train step with either backend (ms_gpt.backend)."""

import tempfile

import mindspore
import numpy as np
import pytest
from mindspore import Parameter, Tensor, ops

from ms_gpt import backend, kernels
from ms_gpt.config import GPTConfig
from ms_gpt.environment import device
from ms_gpt.optim import AdamW

device.setup("CPU", mode="jit", seed=0)
pytestmark = pytest.mark.skipif(not kernels.enabled("CPU"), reason=f"CPU kernels unavailable: {kernels.status()}")


def custom():
    from ms_gpt.kernels import custom as c

    return c


def grads_of(fn, *inputs):
    """Value and gradients w.r.t. every input of sum(fn(*inputs) * fixed random weights)."""
    out_shape = fn(*inputs).shape
    probe = Tensor(np.random.RandomState(1).randn(*out_shape).astype(np.float32))

    def loss(*xs):
        return (fn(*xs) * probe).sum()

    value, grads = mindspore.value_and_grad(loss, tuple(range(len(inputs))))(*inputs)
    return [value.asnumpy()] + [g.asnumpy() for g in grads]


def assert_close(a, b, tol=1e-4):
    for x, y in zip(a, b):
        scale = max(float(np.abs(y).max()), 1.0)
        assert float(np.abs(x - y).max()) <= tol * scale, (float(np.abs(x - y).max()), scale)


@pytest.mark.parametrize("m,n,k", [(1, 5000, 64), (3, 700, 96), (7, 5, 3), (96, 48, 32), (256, 130, 64)])
def test_linear_and_matmul_match_mindspore(m, n, k):
    rs = np.random.RandomState(m)
    x, w, b = (Tensor(rs.randn(*s).astype(np.float32)) for s in ((m, k), (n, k), (n,)))
    mm = ops.MatMul(transpose_b=True)
    assert_close(grads_of(custom().linear(), x, w, b), grads_of(lambda x, w, b: mm(x, w) + b, x, w, b))
    assert_close(grads_of(custom().matmul_nt(), x, w), grads_of(lambda x, w: mm(x, w), x, w))


def test_layer_norm_and_gelu_match_mindspore():
    rs = np.random.RandomState(0)
    x = Tensor((rs.randn(40, 24) * 3 + 1).astype(np.float32))
    w, b = Tensor(rs.randn(24).astype(np.float32)), Tensor(rs.randn(24).astype(np.float32))
    fused, eps = custom().layer_norm(1e-5)
    native = ops.LayerNorm(begin_norm_axis=-1, begin_params_axis=-1, epsilon=1e-5)
    assert_close(grads_of(lambda x, w, b: fused(x, w, b, eps)[0], x, w, b),
                 grads_of(lambda x, w, b: native(x, w, b)[0], x, w, b))
    assert_close(grads_of(custom().gelu(), x), grads_of(lambda x: ops.gelu(x, approximate="none"), x))


def numpy_adamw(p, m, v, g, lr, step, wd, b1, b2, eps, max_norm, corrected):
    norm = np.sqrt(sum(float((x.astype(np.float64) ** 2).sum()) for x in g))
    clip = max_norm / (norm + 1e-6) if max_norm > 0 and norm > max_norm else 1.0
    t = step + 1
    bc1, bc2 = (1 - b1 ** t, np.sqrt(1 - b2 ** t)) if corrected else (1.0, 1.0)
    out = []
    for pi, mi, vi, gi, wi in zip(p, m, v, g, wd):
        gi = gi * clip
        mi = b1 * mi + (1 - b1) * gi
        vi = b2 * vi + (1 - b2) * gi * gi
        out.append((pi * (1 - lr * wi) - lr / bc1 * mi / (np.sqrt(vi) / bc2 + eps), mi, vi))
    return norm, out


@pytest.mark.parametrize("corrected,max_norm", [(False, 1.0), (True, 1.0), (True, 0.0), (False, 100.0)])
def test_adamw_fused_and_composite_match_numpy(corrected, max_norm):
    rs = np.random.RandomState(3)
    shapes = [(6, 4), (4,), (3, 5)]
    init = [rs.randn(*s).astype(np.float32) for s in shapes]
    lrs = np.array([0.01, 0.02, 0.005], np.float32)
    opts = [AdamW([Parameter(Tensor(x.copy()), name=f"w{i}") for i, x in enumerate(init)], lrs, weight_decay=0.1,
                  max_norm=max_norm, bias_correction=corrected, backend=name) for name in backend.NAMES]
    steps = [mindspore.jit(o.construct) for o in opts]
    p, m, v = init, [np.zeros(s, np.float32) for s in shapes], [np.zeros(s, np.float32) for s in shapes]
    for step in range(4):  # the 4th step reuses the table's last rate
        g = [(rs.randn(*s) * 2).astype(np.float32) for s in shapes]
        norm, new = numpy_adamw(p, m, v, g, lrs[min(step, 2)], step, [0.1, 0.0, 0.1], 0.9, 0.999, 1e-8, max_norm,
                                corrected)
        p, m, v = (list(x) for x in zip(*new))
        for opt, fn in zip(opts, steps):
            got = fn(mindspore.mutable(tuple(Tensor(x) for x in g)))
            assert float(got.asnumpy()[0]) == pytest.approx(norm, rel=1e-5)
            for param, moment, want_p, want_m in zip(opt.parameters, opt.moment1, p, m):
                np.testing.assert_allclose(param.asnumpy(), want_p, rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(moment.asnumpy(), want_m, rtol=1e-5, atol=1e-6)
            assert int(opt.global_step.asnumpy()[0]) == step + 1


def test_adamw_rejects_bad_hyperparameters():
    params = [Parameter(Tensor(np.ones((2, 2), np.float32)), name="w")]
    with pytest.raises(ValueError, match=r"beta2 .* got 1.0"):
        AdamW(params, [0.1], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="at least one learning rate"):
        AdamW(params, [])


def train_losses(name: str, steps=6):
    from ms_gpt.model import GPT
    from ms_gpt.training import TrainConfig, Trainer

    mindspore.set_seed(0)
    cfg = GPTConfig(vocab_size=50, n_positions=16, d_model=32, n_layer=2, n_head=4, d_ff=64, embd_dropout=0.1,
                    attn_dropout=0.1, resid_dropout=0.1, tie_word_embeddings=True, activation="gelu", norm="pre",
                    final_norm=True)
    model = GPT(cfg, dropout_seed=0, backend=name)
    used = type(model.decoder.layers[0].self_attn.attend) is backend.KernelAttention
    trainer = Trainer(model, TrainConfig(steps=steps, warmup_steps=1, learning_rate=3e-3), tempfile.mkdtemp())
    ids = Tensor(np.random.RandomState(0).randint(1, 50, (4, 16)).astype(np.int32))
    return used, [float(trainer._train_step(ids, ids)[0].asnumpy()) for _ in range(steps)]


def test_train_step_same_with_either_backend():
    used_on, on = train_losses("cpu-kernels")
    used_off, off = train_losses("mindspore")
    assert used_on and not used_off
    assert on[-1] < on[0] - 0.3  # it learns
    np.testing.assert_allclose(on, off, rtol=0, atol=2e-4)


def test_kernel_choice_is_checked(monkeypatch):
    monkeypatch.setenv(kernels.ENV, "fast")
    with pytest.raises(ValueError, match=r"MS_GPT_CPU_KERNELS='fast' is not understood; use one of auto, on, off"):
        kernels.enabled("CPU")
    monkeypatch.setenv(kernels.ENV, "on")
    with pytest.raises(kernels.KernelUnavailable, match=r"CPU only \(the target is GPU\)"):
        kernels.enabled("GPU")
    monkeypatch.setenv(kernels.ENV, "auto")
    assert kernels.enabled("GPU") is False and kernels.enabled("CPU") is True
    monkeypatch.setenv(kernels.ENV, "off")
    assert kernels.enabled("CPU") is False
    assert backend.choose("CPU").name == "mindspore"  # what device.setup makes the models' default
    monkeypatch.setenv(kernels.ENV, "auto")
    assert backend.choose("GPU").name == "mindspore" and backend.choose("CPU").name == "cpu-kernels"
    with pytest.raises(ValueError, match=r"backend 'fused' is not known; use one of mindspore, cpu-kernels"):
        backend.get("fused")


def test_padded_batch_gradients_same_with_either_backend():
    """Left and right padding, padding masks and the fused attention's backward against MindSpore's ops."""
    from ms_gpt.model import GPT

    cfg = GPTConfig(vocab_size=40, n_positions=12, d_model=24, n_layer=2, n_head=3, d_ff=48, embd_dropout=0.0,
                    attn_dropout=0.0, resid_dropout=0.0, pad_token_id=0, activation="gelu", norm="post")
    ids = np.random.RandomState(2).randint(1, 40, (3, 12)).astype(np.int32)
    ids[0, :4] = 0  # left padding
    ids[1, 9:] = 0  # right padding
    labels = np.where(ids == 0, -100, np.roll(ids, -1, axis=1)).astype(np.int32)
    results = []
    for name in backend.NAMES:
        model = GPT(cfg, dropout_seed=0, backend=name)
        if results:  # the same weights as the first model
            mindspore.load_param_into_net(model, {p.name: Parameter(Tensor(v), name=p.name)
                                                  for p, v in zip(model.trainable_params(), results[0][2])})
        params = model.trainable_params()

        def loss_fn(x, y, model=model):
            return model.lm_loss(model(x), y)

        loss, grads = mindspore.value_and_grad(loss_fn, None, params)(Tensor(ids), Tensor(labels))
        results.append((float(loss.asnumpy()), [g.asnumpy() for g in grads], [p.asnumpy() for p in params]))
    (loss_on, grads_on, _), (loss_off, grads_off, _) = results
    assert loss_on == pytest.approx(loss_off, abs=1e-5)
    for a, b in zip(grads_on, grads_off):
        assert float(np.abs(a - b).max()) <= 1e-4 * max(float(np.abs(b).max()), 1.0)


@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
def test_cross_entropy_matches_mindspore_with_ignored_rows(label_dtype):
    from ms_gpt.training import lm_loss

    rs = np.random.RandomState(4)
    logits = Tensor((rs.randn(3, 5, 11) * 4).astype(np.float32))
    labels = rs.randint(0, 11, (3, 5)).astype(label_dtype)
    labels[0, :2] = -100
    labels[2, 4] = -100
    fused = custom().cross_entropy()
    kernel_loss = backend.get("cpu-kernels").lm_loss()
    assert_close(grads_of(lambda lg: kernel_loss(lg, Tensor(labels)).reshape(1), logits),
                 grads_of(lambda lg: lm_loss(lg, Tensor(labels)).reshape(1), logits), tol=1e-5)
    loss, _, count = fused(logits.reshape(15, 11), Tensor(np.full(15, -100, label_dtype)))
    assert np.isnan(loss.asnumpy()[0]) and count.asnumpy()[0] == 0  # nothing scored: NaN, as ops.cross_entropy
    with pytest.raises(RuntimeError):
        fused(logits.reshape(15, 11), Tensor(np.full(15, 11, label_dtype))).__getitem__(0).asnumpy()


def test_kernel_thread_count_is_checked():
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "from ms_gpt import kernels; kernels.library()"],
                          env={**os.environ, "MS_GPT_KERNEL_THREADS": "0"}, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "MS_GPT_KERNEL_THREADS='0' must be a positive integer" in proc.stderr


def test_kernels_that_cannot_be_built_are_a_one_line_error(venv_bin, tmp_path):
    """MS_GPT_CPU_KERNELS=on where no compiler exists: exit 2 with the reason, no traceback."""
    import os
    import subprocess

    env = {**os.environ, kernels.ENV: "on", "CXX": "no-such-compiler", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([str(venv_bin / "ms-gpt"), "pretrain", "--preset", "tiny", "--corpus", "builtin:demo-en",
                           "--out", str(tmp_path / "run"), "--steps", "2", "--device", "CPU"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "ms-gpt pretrain: MS_GPT_CPU_KERNELS=on, but no C++ compiler (g++) found to build the CPU kernels")


def test_building_a_model_starts_no_compiler(tmp_path):
    """Without device.setup a model takes the readable default (MindSpore's ops): nothing is compiled, even with
    MS_GPT_CPU_KERNELS=on and no compiler; the choice is recorded on the model."""
    import os
    import subprocess
    import sys

    code = ("from ms_gpt.config import GPTConfig\nfrom ms_gpt.model import GPT\n"
            "m = GPT(GPTConfig.preset('tiny'))\n"
            "print(m.backend.name, type(m.decoder.layers[0].self_attn.attend).__name__)")
    env = {**os.environ, kernels.ENV: "on", "CXX": "no-such-compiler", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["mindspore", "Attention"] and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("preset,overrides", [
    ("tiny", {}),  # post-LN, exact GELU, no final norm, tied head
    ("small", dict(vocab_size=97, d_model=64, d_ff=128)),  # pre-LN, final norm
    ("tutorial", dict(d_model=64, n_head=4, d_ff=96, n_layer=2)),  # ReLU, untied head
    ("tiny", dict(activation="gelu_tanh")),
])
def test_decode_layer_kernel_matches_the_models_step_and_writes_the_cache_in_place(preset, overrides):
    """The CPU kernels' cached step (one ``DecodeLayer`` kernel per layer) == the model's own cached forward in
    MindSpore ops: logits and cache, for a prompt in chunks, then token by token, over left-padded rows and a row
    that is finished (fed <pad>); the new keys and values land in the very buffers passed in (no copy)."""
    from ms_gpt.model import GPT, KVCache
    from ms_gpt.model.decode_step import decode_step

    cfg = GPTConfig.preset(preset, **overrides)
    plain = GPT(cfg, backend="mindspore")
    fused = GPT(cfg, backend="cpu-kernels")
    mindspore.load_param_into_net(fused, {p.name: p for p in plain.get_parameters()})
    for m in (plain, fused):
        m.set_train(False)
    assert fused.backend.decode_layer(cfg) is not None and plain.backend.decode_layer(cfg) is None
    rs = np.random.RandomState(3)
    prompt = rs.randint(1, cfg.vocab_size, (3, 6)).astype(np.int32)
    prompt[0, :2] = prompt[2, :5] = cfg.pad_token_id  # left padding
    whole = plain(Tensor(prompt), KVCache.empty(cfg, batch=3, size=12))
    want = whole.cache
    step = mindspore.jit(decode_step(fused))
    got = KVCache.empty(cfg, batch=3, size=12)
    for a, z in ((0, 4), (4, 6)):  # the prompt in two chunks
        logits, fields, _ = step(Tensor(prompt[:, a:z]), *got.as_inputs())
        got = got.updated(fields)
        real = (prompt[:, a:z] != cfg.pad_token_id)[..., None]  # a padding token's own output is never read
        np.testing.assert_allclose(logits.asnumpy() * real, whole.logits.asnumpy()[:, a:z] * real, rtol=1e-5,
                                   atol=1e-5)
    np.testing.assert_array_equal(got.pad.asnumpy(), want.pad.asnumpy())
    real = ~want.pad.asnumpy()[:, None, :, None]  # padding slots are never attended to: what they hold is free
    for mine, theirs in zip(got.keys + got.values, want.keys + want.values):
        np.testing.assert_allclose(mine.asnumpy() * real, theirs.asnumpy() * real, rtol=1e-5, atol=1e-5)
    for t in range(4):
        token = rs.randint(1, cfg.vocab_size, (3, 1)).astype(np.int32)
        if t >= 2:
            token[1, 0] = cfg.pad_token_id  # row 1 has finished
        out = plain(Tensor(token), want)
        logits, fields, _ = step(Tensor(token), *got.as_inputs())
        np.testing.assert_allclose(logits.asnumpy(), out.logits.asnumpy(), rtol=1e-5, atol=1e-5)
        assert fields[0] == () and fields[1] == ()  # nothing copied out: written into the buffers passed in
        real = ~out.cache.pad.asnumpy()[:, None, :, None]
        for mine, theirs in zip(got.keys + got.values, out.cache.keys + out.cache.values):
            np.testing.assert_allclose(mine.asnumpy() * real, theirs.asnumpy() * real, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(fields[2].asnumpy(), out.cache.pad.asnumpy())
        assert int(fields[3].asnumpy()) == out.cache.filled() == 7 + t
        want, got = out.cache, got.updated(fields)
