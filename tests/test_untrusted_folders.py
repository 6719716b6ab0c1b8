"""A run folder is untrusted input (Reliability II, items 4 and 7): sizes are checked against the weights
before anything is allocated, the tokenizer must be the weights' own by content, --max-new-tokens is bounded,
and the smaller cases: a no-op --resume, a first checkpoint a kill left committed, a run with no checkpoint
yet, data files that are not UTF-8 or are folders, an interrupted sft folder that chats."""
import json
import resource
import shutil
import subprocess
import time

import pytest

from ms_gpt import cli
from ms_gpt.data.dialogue import read_pairs
from ms_gpt.data.tasks import DataError, iter_jsonl
from ms_gpt.run_folder import checkpoint, ownership
from ms_gpt.run_folder.interrupt import Interrupted


def ms_gpt(venv_bin, *args):
    return subprocess.run([str(venv_bin / "ms-gpt"), *map(str, args)], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def run(tmp_path_factory, venv_bin):
    """A finished tiny pretraining run (4 steps, whitespace words)."""
    out = tmp_path_factory.mktemp("untrusted") / "run"
    proc = ms_gpt(venv_bin, "pretrain", "--out", out, "--steps", 4, "--block-size", 16, "--batch-size", 8,
                  "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def edited(run, tmp_path, **changes):
    folder = tmp_path / "edited"
    shutil.copytree(run, folder)
    config = json.loads((folder / "gpt_config.json").read_text())
    (folder / "gpt_config.json").write_text(json.dumps({**config, **changes}))
    return folder


@pytest.mark.parametrize("field,value,message", [
    ("n_positions", 100_000_000, "GPTConfig.n_positions must be at most 1,048,576, got 100,000,000"),
    ("n_layer", 10_000, "GPTConfig.n_layer must be at most 1,024, got 10,000"),
    ("vocab_size", 2_000_000_000, "GPTConfig.vocab_size must be at most 4,000,000, got 2,000,000,000"),
    ("d_model", 4_194_304, "GPTConfig.d_model must be at most 65,536, got 4,194,304"),
    ("n_positions", 64, "the config says decoder.pos_emb is (64, 32) (n_positions, d_model) but the weights hold "
                        "(16, 32)"),  # the run's table is its 16-token block
    ("n_layer", 3, "the config says n_layer=3 but the weights hold 2 layers"),
    ("d_ff", 4096, "the config says decoder.layers.0.feed_forward.fc1.weight is (4096, 32) (d_ff, d_model)"),
])
def test_config_sizes_are_checked_before_anything_is_allocated(run, tmp_path, field, value, message):
    folder = edited(run, tmp_path, **{field: value})
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ValueError) as err:  # CheckpointError or ParameterMismatch
        checkpoint.load_model(folder)
    assert time.perf_counter() - start < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 100_000  # KB: nothing of the config's size
    assert str(err.value).startswith(f"{folder / 'gpt_config.json'}: ") and message in str(err.value)


def test_a_foreign_tokenizer_of_the_same_size_is_refused(run, tmp_path, venv_bin):
    folder = tmp_path / "swapped"
    shutil.copytree(run, folder)
    meta = folder / "tokenizer" / "tokenizer.json"
    tokens = json.loads(meta.read_text())
    tokens["tokens"][4], tokens["tokens"][5] = tokens["tokens"][5], tokens["tokens"][4]  # same size, other meanings
    meta.write_text(json.dumps(tokens))
    proc = ms_gpt(venv_bin, "generate", "--ckpt", folder, "--prompt", "the")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert f"{folder / 'tokenizer'} is not the tokenizer the weights in {folder} were saved with" in proc.stderr


def test_the_digest_is_recorded_beside_the_weights_and_old_folders_still_load(run, tmp_path):
    tok = checkpoint.load_tokenizer(run)
    assert checkpoint.read_format(run)["tokenizer"] == tok.digest()
    old = tmp_path / "old"
    shutil.copytree(run, old)
    (old / "format.json").write_text(json.dumps({"format_version": 1, "kind": "lm"}))  # before the digest
    model, tok2 = checkpoint.load_init(old)
    assert tok2.digest() == tok.digest() and model.config.vocab_size == tok.vocab_size


def test_max_new_tokens_is_bounded_before_loading(run, capsys):
    start = time.perf_counter()
    assert cli.main(["generate", "--ckpt", str(run), "--prompt", "the", "--max-new-tokens", "100000000"]) == 2
    assert capsys.readouterr().err == "ms-gpt generate: max_new_tokens must be at most 10,000, got 100,000,000\n"
    assert cli.main(["chat", "--ckpt", str(run), "--prompt", "hi", "--max-new-tokens", "10001"]) == 2
    assert "max_new_tokens must be at most 10,000, got 10,001" in capsys.readouterr().err
    assert time.perf_counter() - start < 5.0


def test_a_no_op_resume_leaves_metrics_alone(run, tmp_path, venv_bin):
    folder = tmp_path / "done"
    shutil.copytree(run, folder)
    before = (folder / "metrics.json").read_text()
    proc = ms_gpt(venv_bin, "pretrain", "--out", folder, "--steps", 4, "--block-size", 16, "--batch-size", 8,
                  "--no-progress", "--resume")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{folder} is at step 4 already; nothing to train" in proc.stderr
    assert (folder / "metrics.json").read_text() == before
    assert json.loads(proc.stdout)["tokens_per_s"] > 0


def test_a_first_checkpoint_left_committed_by_a_kill_generates(run, tmp_path, venv_bin):
    folder = tmp_path / "killed"
    shutil.copytree(run, folder)
    (folder / checkpoint.COMMIT).mkdir()  # killed between the commit (rename) and the publish of the first save
    for name in ("model.ckpt", "optimizer.ckpt", "gpt_config.json", "format.json", "train_state.json"):
        (folder / name).rename(folder / checkpoint.COMMIT / name)
    proc = ms_gpt(venv_bin, "generate", "--ckpt", folder, "--prompt", "the")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("the") and (folder / "model.ckpt").is_file()


def test_a_run_with_no_checkpoint_yet_is_named_as_such(run, tmp_path, capsys):
    folder = tmp_path / "young"
    folder.mkdir()
    shutil.copytree(run / "tokenizer", folder / "tokenizer")
    shutil.copy(run / "run_config.json", folder)
    ownership.write_marker(folder, "pretrain")
    assert cli.main(["generate", "--ckpt", str(folder), "--prompt", "the"]) == 2
    assert capsys.readouterr().err == (f"ms-gpt generate: {folder} holds an ms_gpt run that has saved no model yet (no "
                                       "gpt_config.json and model.ckpt): wait for its first checkpoint (or let it "
                                       "finish), then use it\n")


def test_data_that_is_not_utf8_or_a_folder_is_named(tmp_path):
    bad = tmp_path / "pairs.jsonl"
    bad.write_bytes(b'{"prompt": "a", "response": "b"}\n{"prompt": "\xff\xfe"}\n')
    with pytest.raises(DataError, match=rf"^{bad}:2: not UTF-8 text \(byte 45: invalid start byte\); convert"):
        list(iter_jsonl(bad))
    with pytest.raises(DataError, match=rf"^{bad}:2: not UTF-8"):
        read_pairs(bad)
    with pytest.raises(DataError, match=rf"^{tmp_path} is a folder; dialogue data is one JSONL file"):
        read_pairs(tmp_path)


def test_a_stop_promises_resume_only_where_the_command_has_it(tmp_path):
    assert "continue with the same command and --resume" in str(Interrupted(2, 5, tmp_path))
    message = str(Interrupted(2, 5, tmp_path, resumable=False))
    assert "--resume" not in message and "run it again with --overwrite to start over" in message


def test_an_interrupted_sft_folder_chats_and_promises_no_resume(run, tmp_path, venv_bin):
    """Ctrl-C in sft (here a KeyboardInterrupt raised from its progress callback, which the loop treats the
    same way): the folder keeps the step's weights with the tokenizer and template, so chat answers from it."""
    script = f"""
import json, sys
from ms_gpt.config import build
from ms_gpt.flows import configs, sft
from ms_gpt.flows import common
real = common.step_bar
def stopping(enabled, total, desc, initial=0):
    def report(step, **shown):
        if step == 2:
            raise KeyboardInterrupt
    class Bar:
        def __enter__(self): return report
        def __exit__(self, *exc): return False
    return Bar()
common.step_bar = stopping
cfg = build(configs.SFTConfig, {{"init": {str(run)!r}, "data": {str(tmp_path / 'pairs.jsonl')!r},
                                 "out": {str(tmp_path / 'sft')!r}, "epochs": 4}})
try:
    sft.sft(cfg)
except KeyboardInterrupt:
    print("interrupted")
"""
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps({"prompt": f"the cat {i}", "response": "sat down"}) + "\n"
                                                  for i in range(40)))
    proc = subprocess.run([str(venv_bin / "python"), "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.stdout.strip() == "interrupted", proc.stderr[-2000:]
    state = json.loads((tmp_path / "sft" / "train_state.json").read_text())
    assert state["step"] == 2 and state["interrupted"] == "KeyboardInterrupt"
    chat = ms_gpt(venv_bin, "chat", "--ckpt", tmp_path / "sft", "--prompt", "the cat")
    assert chat.returncode == 0, chat.stderr[-2000:]
    again = ms_gpt(venv_bin, "sft", "--init", run, "--data", tmp_path / "pairs.jsonl", "--out", tmp_path / "sft")
    assert again.returncode == 2 and "already holds an unfinished run (stopped at step 2 of" in again.stderr
    assert "--resume" not in again.stderr and "replace it with --overwrite" in again.stderr
