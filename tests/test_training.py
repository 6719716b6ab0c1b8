"""The train loop: schedules, learning, exact resume, atomic checkpoints, the NaN guard."""
import json
import math

import mindspore
import numpy as np
import pytest

from ms_gpt import GPTConfig
from ms_gpt.data import block_dataset, demo_en, encode_lines, train_val_split
from ms_gpt.environment import device
from ms_gpt.model import GPT
from ms_gpt.text import WhitespaceTokenizer
from ms_gpt.training import TrainConfig, Trainer, TrainingDiverged, lr_schedule


@pytest.fixture(scope="module")
def data():
    device.setup("CPU", mode="pynative", seed=0)
    train, val = train_val_split(demo_en(), 0.1, seed=0)
    tok = WhitespaceTokenizer.build(train)
    return (tok, block_dataset(encode_lines(tok, train), 16, 8, seed=0),
            block_dataset(encode_lines(tok, val), 16, 8, shuffle=False))


def new_model(tok, dropout=0.0, backend=None):
    mindspore.set_seed(0)
    return GPT(GPTConfig.preset("tiny", vocab_size=tok.vocab_size, pad_token_id=None, embd_dropout=dropout,
                                attn_dropout=dropout, resid_dropout=dropout), backend=backend)


def test_schedules():
    cos = lr_schedule(TrainConfig(steps=100, learning_rate=1.0, warmup_steps=10, min_lr_ratio=0.1))
    assert cos[0] == pytest.approx(0.1) and cos[9] == pytest.approx(1.0)
    assert cos[10] == pytest.approx(1.0) and cos[-1] == pytest.approx(0.1) and np.all(np.diff(cos[10:]) <= 1e-7)
    lin = lr_schedule(TrainConfig(steps=100, learning_rate=1.0, warmup_steps=0, schedule="linear", min_lr_ratio=0.0))
    assert lin[0] == pytest.approx(1.0) and lin[-1] == pytest.approx(0.0) and lin[50] == pytest.approx(1 - 50 / 99)


@pytest.mark.parametrize("changes,match", [
    (dict(warmup_steps=100), r"warmup_steps must be an integer in \[0, steps=100\), got 100"),
    (dict(schedule="step"), r"schedule must be one of cosine, linear, constant, got 'step'"),
    (dict(learning_rate=0), r"learning_rate must be > 0, got 0"),
])
def test_bad_train_config(changes, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(steps=100, **changes).validate()


def test_tiny_pretrain_learns(data, tmp_path):
    tok, train, val = data
    t = Trainer(new_model(tok, dropout=0.1), TrainConfig(steps=60, learning_rate=3e-3, warmup_steps=5,
                                                          eval_every=30, ckpt_every=30), tmp_path)
    before = t.evaluate(val)["val_loss"]
    result = t.fit(train, val)
    first, last = t.history[0]["loss"], np.mean([h["loss"] for h in t.history[-5:]])
    assert first == pytest.approx(math.log(tok.vocab_size), abs=0.5)
    assert last < 0.7 * first and result["val_loss"] < 0.7 * before
    assert result["val_ppl"] == pytest.approx(math.exp(result["val_loss"]))
    state = json.loads((tmp_path / "train_state.json").read_text())
    assert state["step"] == 60 and len(state["history"]) == 60


@pytest.mark.parametrize("dropout,backend", [(0.0, None), (0.1, "mindspore"), (0.1, "cpu-kernels")])
def test_resume_reproduces_the_uninterrupted_run(data, tmp_path, dropout, backend):
    tok, train, _ = data
    cfg = TrainConfig(steps=30, learning_rate=3e-3, warmup_steps=5, ckpt_every=1000)
    straight = Trainer(new_model(tok, dropout, backend), cfg, tmp_path / "a")
    straight.fit(train)
    first = Trainer(new_model(tok, dropout, backend), cfg, tmp_path / "b")
    first.fit(train, until=12)  # "interrupted" after step 12 (saves at the stop)
    resumed = Trainer(new_model(tok, dropout, backend), cfg, tmp_path / "b")
    assert resumed.resume() == 12
    resumed.fit(train)
    a = [h["loss"] for h in straight.history]
    b = [h["loss"] for h in resumed.history]
    assert len(a) == len(b) == 30
    np.testing.assert_allclose(b, a, atol=1e-5)
    if dropout:  # the masks really were in play: a run without dropout takes another path
        plain = Trainer(new_model(tok, 0.0), cfg, tmp_path / "c")
        plain.fit(train, until=12)
        assert abs(plain.history[-1]["loss"] - a[11]) > 1e-3


def test_crash_during_checkpoint_write_keeps_the_previous_one(data, tmp_path, monkeypatch):
    tok, train, _ = data
    cfg = TrainConfig(steps=10, learning_rate=3e-3, warmup_steps=0, ckpt_every=5)
    t = Trainer(new_model(tok), cfg, tmp_path)
    t.fit(train, until=5)
    good = (tmp_path / "model.ckpt").read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(mindspore, "save_checkpoint", broken)
    with pytest.raises(OSError, match="disk full"):
        t.fit(train, until=10)
    monkeypatch.undo()
    assert (tmp_path / "model.ckpt").read_bytes() == good
    assert json.loads((tmp_path / "train_state.json").read_text())["step"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["format.json", "gpt_config.json", "model.ckpt",
                                                          "optimizer.ckpt", "train_state.json"]
    again = Trainer(new_model(tok), cfg, tmp_path)
    assert again.resume() == 5


def test_nan_guard_stops_with_step_and_lr_and_keeps_the_checkpoint(data, tmp_path):
    tok, train, _ = data
    cfg = TrainConfig(steps=20, learning_rate=3e-3, warmup_steps=0, ckpt_every=3, schedule="constant")
    t = Trainer(new_model(tok), cfg, tmp_path)
    t.fit(train, until=3)
    saved = (tmp_path / "model.ckpt").read_bytes()
    real_step = t._train_step

    def nan_step(ids, labels):  # MindSpore's CPU kernels crash on NaN weights, so the step is wrapped
        loss, _ = real_step(ids, labels)
        loss = loss * float("nan")
        return loss, mindspore.ops.isfinite(loss)

    t._train_step = nan_step
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 3 \(learning rate 0.003\)"):
        t.fit(train)
    assert (tmp_path / "model.ckpt").read_bytes() == saved


def test_resume_errors(data, tmp_path):
    tok, _, _ = data
    with pytest.raises(FileNotFoundError, match=r"nothing to resume in .*train_state.json not found"):
        Trainer(new_model(tok), TrainConfig(steps=5, warmup_steps=0), tmp_path).resume()
    Trainer(new_model(tok), TrainConfig(steps=5, warmup_steps=0, learning_rate=3e-3), tmp_path).save()
    with pytest.raises(ValueError, match=r"trained with other settings \(saved, now\): "
                                         r"\{'weight_decay': \(0.01, 0.1\)\}; resume with the same ones"):
        Trainer(new_model(tok), TrainConfig(steps=5, warmup_steps=0, learning_rate=3e-3, weight_decay=0.1),
                tmp_path).resume()
    other = GPT(GPTConfig.preset("tiny", vocab_size=tok.vocab_size, pad_token_id=None, n_layer=3))
    with pytest.raises(ValueError, match=r"model config differs from this model's \(saved, now\): "
                                         r"\{'n_layer': \(2, 3\)\}"):
        Trainer(other, TrainConfig(steps=5, warmup_steps=0, learning_rate=3e-3), tmp_path).resume()


def test_a_keyboard_interrupt_in_the_loop_saves_a_checkpoint_to_resume_from(data, tmp_path):
    """A KeyboardInterrupt raised inside the loop (as in a notebook, where no handler is routed) saves;
    real SIGINT/SIGTERM are tested in test_reliability.py."""
    tok, train, _ = data
    cfg = TrainConfig(steps=20, learning_rate=3e-3, warmup_steps=0, ckpt_every=1000)
    t = Trainer(new_model(tok), cfg, tmp_path)

    def interrupt_at_7(step, **shown):
        assert set(shown) == {"loss", "lr", "tok_s"}  # what the progress bar shows
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        t.fit(train, progress=interrupt_at_7)
    state = json.loads((tmp_path / "train_state.json").read_text())
    assert state["step"] == 7 and state["interrupted"] == "KeyboardInterrupt"
    assert Trainer(new_model(tok), cfg, tmp_path).resume() == 7


# --------------------------------------------------------------------------- mixed precision
def amp_model(tok):
    mindspore.set_seed(0)
    return GPT(GPTConfig.preset("tiny", vocab_size=tok.vocab_size, pad_token_id=None, compute_dtype="float16"))


def test_amp_trains_in_float16_with_a_dynamic_loss_scale(data, tmp_path):
    tok, train, val = data
    cfg = TrainConfig(steps=40, learning_rate=3e-3, warmup_steps=4, eval_every=40, ckpt_every=40, amp=True,
                      loss_scale=2.0 ** 12, loss_scale_window=10)
    t = Trainer(amp_model(tok), cfg, tmp_path)
    before = t.evaluate(val)["val_loss"]
    result = t.fit(train, val)
    first, last = t.history[0]["loss"], np.mean([h["loss"] for h in t.history[-5:]])
    assert t.skipped == 0 and last < 0.75 * first and result["val_loss"] < 0.8 * before
    scales = [h["loss_scale"] for h in t.history]
    assert scales[0] == 2.0 ** 12 and scales[-1] == 2.0 ** 15  # doubled after each 10 clean steps
    state = json.loads((tmp_path / "train_state.json").read_text())
    assert state["loss_scale"] == {"value": 2.0 ** 16, "counter": 0}
    again = Trainer(amp_model(tok), cfg, tmp_path)
    again.resume()
    assert float(again.scaler.scale_value.asnumpy()) == 2.0 ** 16


def test_amp_overflow_skips_the_step_and_lowers_the_scale(data, tmp_path):
    tok, train, _ = data
    cfg = TrainConfig(steps=30, learning_rate=3e-3, warmup_steps=0, ckpt_every=1000, amp=True, loss_scale=2.0 ** 40)
    model = amp_model(tok)
    t = Trainer(model, cfg, tmp_path)
    w0 = model.decoder.tok_emb.asnumpy().copy()
    t.fit(train, until=3)
    assert [h.get("skipped", False) for h in t.history] == [True] * 3  # 2^40 x fp16 gradients -> inf
    assert [h["loss_scale"] for h in t.history] == [2.0 ** 40, 2.0 ** 39, 2.0 ** 38]
    np.testing.assert_array_equal(model.decoder.tok_emb.asnumpy(), w0)  # skipped steps change nothing
    t.fit(train)
    skipped = [h.get("skipped", False) for h in t.history]
    n = skipped.index(False)
    assert 3 < n < 30 and not any(skipped[n:]) and t.skipped == n
    assert not np.array_equal(model.decoder.tok_emb.asnumpy(), w0)


def test_amp_overflow_at_scale_one_is_divergence(data, tmp_path):
    tok, train, _ = data
    t = Trainer(amp_model(tok), TrainConfig(steps=5, warmup_steps=0, amp=True, loss_scale=1.0), tmp_path)
    real_step = t._train_step

    def overflowing(ids, labels):
        loss, _ = real_step(ids, labels)
        return loss, mindspore.Tensor(False)

    t._train_step = overflowing
    with pytest.raises(TrainingDiverged, match=r"gradients overflow at step 0 even with loss scale 1"):
        t.fit(train)


def test_amp_needs_a_low_precision_model(data, tmp_path):
    tok, _, _ = data
    with pytest.raises(ValueError, match=r"amp=True needs a model built with compute_dtype='float16'"):
        Trainer(new_model(tok), TrainConfig(steps=5, warmup_steps=0, amp=True), tmp_path)
    with pytest.raises(ValueError, match=r"loss_scale must be >= 1, got 0.5"):
        TrainConfig(steps=5, warmup_steps=0, loss_scale=0.5).validate()
