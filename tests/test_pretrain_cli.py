"""`ms-gpt pretrain` then `ms-gpt generate`, as a user runs them."""
import json
import subprocess

import pytest


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, venv_bin):
    out = tmp_path_factory.mktemp("pretrain")
    proc = subprocess.run([str(venv_bin / "ms-gpt"), "pretrain", "--corpus", "builtin:demo-en", "--out", str(out),
                           "--steps", "60", "--seed", "0", "--no-progress"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads(proc.stdout.strip().splitlines()[-1])


def test_pretrain_writes_what_the_design_promises(pretrained):
    out, metrics = pretrained
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert metrics["train_loss"]["last"] < 0.7 * metrics["train_loss"]["first"]  # >= 30% lower
    assert metrics["val_ppl"] < 0.2 * metrics["val_ppl_before"]
    assert metrics["tokens_per_s"] > 0
    for name in ("model.ckpt", "gpt_config.json", "tokenizer/tokenizer.json", "loss.png"):
        assert (out / name).is_file(), name
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run_config = json.loads((out / "run_config.json").read_text())
    form = "lines" if run_config["boundaries"] == "newline" else "documents"
    assert json.loads((out / "prompting.json").read_text()) == {"form": form}  # how generate prompts it


def test_a_default_pretrain_trains_every_position_of_its_model(pretrained):
    """The default block is the preset's whole position table (tiny: 32) and the model's table is the block it
    trained: no position a later command feeds it was left at its random initialisation."""
    out, metrics = pretrained
    table = json.loads((out / "gpt_config.json").read_text())["n_positions"]
    block = json.loads((out / "run_config.json").read_text())["data"]["max_len"]
    assert table == block == metrics["block_size"] == metrics["n_positions"] == 32
    assert metrics["train_shapes"] == [[16, 32]]  # every training batch fills every position


def run_generate(venv_bin, out, *extra):
    proc = subprocess.run([str(venv_bin / "ms-gpt"), "generate", "--ckpt", str(out), "--prompt", "the cat",
                           "--max-new-tokens", "10", *extra], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_generate_every_strategy(pretrained, venv_bin, strategy):
    out, _ = pretrained
    text = run_generate(venv_bin, out, "--strategy", strategy)
    assert text.startswith("the cat ") and len(text.split()) > 3


def test_generate_no_cache_gives_the_same_text(pretrained, venv_bin):
    out, _ = pretrained
    assert run_generate(venv_bin, out) == run_generate(venv_bin, out, "--no-cache")


def test_cli_errors(venv_bin, tmp_path):
    proc = subprocess.run([str(venv_bin / "ms-gpt"), "pretrain", "--corpus", "builtin:wiki", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "unknown built-in corpus 'wiki'" in proc.stderr
    proc = subprocess.run([str(venv_bin / "ms-gpt"), "generate", "--ckpt", str(tmp_path), "--prompt", "x"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "tokenizer not found" in proc.stderr


def pretrain(venv_bin, out, *extra, steps="24"):
    proc = subprocess.run([str(venv_bin / "ms-gpt"), "pretrain", "--corpus", "builtin:demo-en", "--out", str(out),
                           "--steps", steps, "--block-size", "16", "--batch-size", "8", "--no-progress", *extra],
                          capture_output=True, text=True, timeout=600)
    return proc


def test_stop_and_resume_from_the_cli_matches_one_straight_run(venv_bin, tmp_path):
    """--until stops with a checkpoint; --resume continues it (dropout 0.1 included) to the same losses."""
    straight = pretrain(venv_bin, tmp_path / "a")
    assert straight.returncode == 0, straight.stderr[-3000:]
    part = pretrain(venv_bin, tmp_path / "b", "--until", "10")
    assert part.returncode == 0, part.stderr[-3000:]
    assert json.loads(part.stdout.splitlines()[-1])["steps"] == 10
    rest = pretrain(venv_bin, tmp_path / "b", "--resume")
    assert rest.returncode == 0, rest.stderr[-3000:]
    a, b = (json.loads((tmp_path / d / "train_state.json").read_text())["history"] for d in "ab")
    assert [h["step"] for h in b] == list(range(1, 25))
    assert [h["loss"] for h in b] == pytest.approx([h["loss"] for h in a], abs=1e-5)
    ma, mb = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab")
    assert mb["val_loss"] == pytest.approx(ma["val_loss"], abs=1e-5)
    run_config = (tmp_path / "b" / "run_config.json").read_text()
    lower = pretrain(venv_bin, tmp_path / "b", "--resume", "--learning-rate", "0.001")  # resumable; nothing left
    assert lower.returncode == 0 and "is at step 24 already; nothing to train" in lower.stderr
    assert (tmp_path / "b" / "run_config.json").read_text() == run_config
    changed = pretrain(venv_bin, tmp_path / "b", "--resume", "--batch-size", "4", "--corpus", "builtin:reviews-zh")
    assert changed.returncode == 2 and "'data.batch_size': (8, 4)" in changed.stderr
    assert "'corpus': ('builtin:demo-en', 'builtin:reviews-zh')" in changed.stderr
    missing = pretrain(venv_bin, tmp_path / "c", "--resume")
    assert missing.returncode == 2 and "nothing to resume" in missing.stderr


def test_a_run_folder_reloads_its_own_resolved_config(venv_bin, tmp_path):
    """run_config.json holds every setting, the automatic ones resolved; --config replays the run exactly."""
    first = pretrain(venv_bin, tmp_path / "a", "--seed", "3", "--static-shapes", "on", steps="12")
    assert first.returncode == 0, first.stderr[-3000:]
    metrics = json.loads(first.stdout.splitlines()[-1])
    assert metrics["static_shapes"] is True and metrics["train_shapes"] == [[8, 16]]  # one shape: blocks
    saved = json.loads((tmp_path / "a" / "run_config.json").read_text())
    assert saved["train"]["steps"] == 12 and saved["train"]["warmup_steps"] == 1  # min(20, 12 // 10): resolved
    assert saved["train"]["amp"] is False and saved["data"] == {"batch_size": 8, "max_len": 16, "buckets": None,
                                                                "static_shapes": True}
    assert json.loads((tmp_path / "a" / "gpt_config.json").read_text())["n_positions"] == 16  # the block, not 32
    again = subprocess.run([str(venv_bin / "ms-gpt"), "pretrain", "--config", str(tmp_path / "a" / "run_config.json"),
                            "--out", str(tmp_path / "b")], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    a, b = (json.loads((tmp_path / d / "train_state.json").read_text())["history"] for d in "ab")
    assert [h["loss"] for h in b] == [h["loss"] for h in a]
    assert json.loads((tmp_path / "b" / "run_config.json").read_text()) == {**saved, "out": str(tmp_path / "b")}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**saved, "train": {"stepz": 3}}))
    proc = subprocess.run([str(venv_bin / "ms-gpt"), "pretrain", "--config", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown field(s) ['stepz']" in proc.stderr


def test_amp_on_runs_on_cpu_in_float16(venv_bin, tmp_path):
    proc = pretrain(venv_bin, tmp_path, "--amp", "on", steps="12")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads(proc.stdout.splitlines()[-1])
    assert metrics["amp"] is True and metrics["skipped_steps"] == 0
    assert json.loads((tmp_path / "gpt_config.json").read_text())["compute_dtype"] == "float16"
    history = json.loads((tmp_path / "train_state.json").read_text())["history"]
    assert history[0]["loss_scale"] == 65536.0 and history[-1]["loss"] < history[0]["loss"]
