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
