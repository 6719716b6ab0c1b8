"""The NaN guard tells the truth (Reliability II, item 2): a checkpoint is only ever finite, a loss far past
its start stops the run like a NaN, the message names the checkpoint kept, and a --resume from it at a
lower learning rate is accepted and recorded."""
import json
import subprocess

import mindspore
import numpy as np
import pytest

from ms_gpt import GPTConfig
from ms_gpt.environment.distributed import DistInfo
from ms_gpt.model import GPT
from ms_gpt.run_folder import checkpoint
from ms_gpt.training import BLOWUP, TrainConfig, Trainer, TrainingDiverged


def trainer(tok, out, lr=3e-3, steps=8, ckpt_every=2):
    mindspore.set_seed(0)
    model = GPT(GPTConfig.preset("tiny", vocab_size=tok.vocab_size, pad_token_id=None))
    return Trainer(model, TrainConfig(steps=steps, learning_rate=lr, warmup_steps=0, ckpt_every=ckpt_every,
                                      schedule="constant"), out, jit=False)


def all_finite(folder) -> bool:
    return all(np.isfinite(v).all() for v in checkpoint.read_weights(folder / "model.ckpt").values())


def test_non_finite_weights_are_never_saved(tiny_blocks, tmp_path):
    tok, train = tiny_blocks
    t = trainer(tok, tmp_path)
    t.fit(train, until=2)
    kept = (tmp_path / "model.ckpt").read_bytes()
    weight = t.model.decoder.tok_emb
    weight.set_data(mindspore.Tensor(np.full(weight.shape, np.inf, np.float32)))  # as a blown-up update leaves it
    with pytest.raises(TrainingDiverged, match=r"the weights of step 2 are not finite \(1 tensors hold NaN or inf, "
                                               r"e\.g\. decoder\.tok_emb\); nothing was saved: .* keeps the checkpoint "
                                               r"of step 2 \(its weights are finite\); continue from it with --resume "
                                               r"and a lower --learning-rate"):
        t.save()
    assert (tmp_path / "model.ckpt").read_bytes() == kept and all_finite(tmp_path)
    t.dist = DistInfo(rank=1, size=2)  # a data-parallel worker writes nothing, but stops where rank 0 does
    with pytest.raises(TrainingDiverged, match=r"the weights of step 2 are not finite"):
        t.save()
    t.dist = DistInfo()
    t.resumable = False  # sft, finetune, reward: no --resume to offer
    with pytest.raises(TrainingDiverged, match=r"keeps the checkpoint of step 2 \(its weights are finite\); start again "
                                               r"with --overwrite and a lower --learning-rate$"):
        t.save()


def test_a_loss_far_past_its_start_stops_the_run_and_a_lower_rate_resumes(tiny_blocks, tmp_path):
    tok, train = tiny_blocks
    t = trainer(tok, tmp_path)
    real = t._train_step
    calls = []

    def blowing_up(ids, labels):  # from the 5th step on the loss is 50x what the model gives
        loss, finite = real(ids, labels)
        calls.append(1)
        return (loss * 50.0 if len(calls) >= 5 else loss), finite

    t._train_step = blowing_up
    with pytest.raises(TrainingDiverged, match=rf"over {BLOWUP:g}x its first value .* the run diverged; stopped "
                                               r"without saving: .* keeps the checkpoint of step 4"):
        t.fit(train)
    state = json.loads((tmp_path / "train_state.json").read_text())
    assert state["step"] == 4 and all_finite(tmp_path)

    again = trainer(tok, tmp_path, lr=1e-3)  # the same run at a third of the rate
    assert again.resume() == 4
    again.fit(train)
    state = json.loads((tmp_path / "train_state.json").read_text())
    assert state["step"] == 8
    assert state["changes"] == [{"step": 4, "learning_rate": [3e-3, 1e-3]}]
    assert state["train_config"]["learning_rate"] == 1e-3
    assert float(again.optimizer.learning_rate[4].asnumpy()) == pytest.approx(1e-3)


def test_other_settings_still_refuse_a_resume(tiny_blocks, tmp_path):
    tok, train = tiny_blocks
    trainer(tok, tmp_path).fit(train, until=2)
    other = trainer(tok, tmp_path, steps=9)
    with pytest.raises(ValueError, match=r"'steps': \(8, 9\)"):
        other.resume()


def test_the_command_keeps_a_finite_checkpoint_and_resumes_at_a_lower_rate(tmp_path, venv_bin):
    """The reproduction: --learning-rate 1000 used to keep a step-3 checkpoint with 10 of 41 tensors NaN/inf
    and refuse a --resume at a lower rate."""
    def pretrain(*extra):
        return subprocess.run([str(venv_bin / "ms-gpt"), "pretrain", "--out", str(tmp_path / "run"), "--steps", "16",
                               "--ckpt-every", "1", "--block-size", "16", "--batch-size", "8", "--no-progress",
                               *map(str, extra)], capture_output=True, text=True, timeout=600)

    proc = pretrain("--learning-rate", 1000)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    assert "the run diverged; stopped without saving" in proc.stderr
    step = json.loads((tmp_path / "run" / "train_state.json").read_text())["step"]
    assert f"keeps the checkpoint of step {step} (its weights are finite)" in proc.stderr
    assert all_finite(tmp_path / "run")
    resumed = pretrain("--learning-rate", 1e-3, "--resume", "--until", step + 1)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    state = json.loads((tmp_path / "run" / "train_state.json").read_text())
    assert state["step"] == step + 1 and state["changes"] == [{"step": step, "learning_rate": [1000.0, 1e-3]}]
    assert all_finite(tmp_path / "run")
