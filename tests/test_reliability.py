"""Run folders under faults: real signals, kills inside a checkpoint save, two runs on one folder,
resume that refuses what it cannot honour, full and read-only disks, one-line errors."""
import errno
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import mindspore
import numpy as np
import pytest

from ms_gpt import GPTConfig, cli
from ms_gpt.model import GPT
from ms_gpt.run_folder import atomic, checkpoint, ownership, run_lock
from ms_gpt.training import TrainConfig, Trainer


def ms_gpt(venv_bin, *args, env=None, **kw):
    return subprocess.run([str(venv_bin / "ms-gpt"), *map(str, args)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})}, **kw)


def pretrain_args(out, steps=6, *extra):
    return ("pretrain", "--out", out, "--steps", steps, "--block-size", 16, "--batch-size", 8, "--no-progress",
            *extra)


def weights(folder):
    return {k: v.asnumpy() for k, v in mindspore.load_checkpoint(str(Path(folder) / "model.ckpt")).items()}


def assert_same_weights(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# --------------------------------------------------------------------------------------------- signals
def start_and_signal(venv_bin, out, sig):
    """Start a long `ms-gpt pretrain`, wait until it has trained a step, send ``sig``; (returncode, stderr)."""
    proc = subprocess.Popen([str(venv_bin / "ms-gpt"), "pretrain", "--out", str(out), "--steps", "100000",
                             "--eval-every", "100000", "--block-size", "16", "--batch-size", "8"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen = ""
    while "| 1/" not in seen and "| 2/" not in seen:  # tqdm's bar: a step has finished
        ch = proc.stderr.read(1)
        assert ch, f"pretrain ended before its first step: {seen[-2000:]}"
        seen += ch
    proc.send_signal(sig)
    _, rest = proc.communicate(timeout=120)
    return proc.returncode, seen + rest


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_real_signal_saves_a_resumable_checkpoint_and_exits_128_plus_signal(venv_bin, tmp_path, sig, code):
    out = tmp_path / "run"
    rc, err = start_and_signal(venv_bin, out, sig)
    assert rc == code, err[-2000:]
    state = json.loads((out / "train_state.json").read_text())
    step = state["step"]
    assert step >= 1 and state["interrupted"] == sig.name
    assert f"stopped by {sig.name} at step {step}; a resumable checkpoint is saved in {out}" in err
    assert "Traceback" not in err
    resumed = ms_gpt(venv_bin, "pretrain", "--out", out, "--steps", 100000, "--eval-every", 100000,
                     "--block-size", 16, "--batch-size", 8, "--no-progress", "--resume", "--until", step + 2)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((out / "train_state.json").read_text())["step"] == step + 2
    assert not (out / ".lock").exists()


def test_a_second_signal_exits_at_once(tmp_path):
    script = ("import os, signal, time\nfrom ms_gpt.run_folder.interrupt import StopRequests\n"
              "with StopRequests() as stop:\n"
              "    os.kill(os.getpid(), signal.SIGINT)\n"
              "    time.sleep(0.2)\n"
              "    print('first:', stop.signum, flush=True)\n"
              "    os.kill(os.getpid(), signal.SIGINT)\n"
              "    time.sleep(5)\n"
              "print('not reached')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130
    assert proc.stdout == f"first: {int(signal.SIGINT)}\n"
    assert "SIGINT: finishing this step and saving a checkpoint" in proc.stderr
    assert "SIGINT again: exiting now without saving" in proc.stderr


# ----------------------------------------------------------------------------------- kills inside saves
def new_model(tok):
    mindspore.set_seed(0)
    return GPT(GPTConfig.preset("tiny", vocab_size=tok.vocab_size, pad_token_id=None))


CFG = TrainConfig(steps=6, learning_rate=3e-3, warmup_steps=0, ckpt_every=2)


class Killed(BaseException):
    """Stands in for SIGKILL in-process (the subprocess test below sends the real one)."""


def count_fault_points(monkeypatch, fn) -> int:
    seen = []
    monkeypatch.setattr(atomic, "fault_point", lambda where: seen.append(where))
    fn()
    monkeypatch.undo()
    return len(seen)


def test_a_kill_at_any_point_of_any_save_resumes_to_the_uninterrupted_run(tiny_blocks, tmp_path, monkeypatch):
    """Every fault point (before each rename, i.e. after each write) of the three checkpoint saves of a
    6-step run: the folder then holds one whole step, and resuming from it ends bit for bit where the
    uninterrupted run ends."""
    tok, train = tiny_blocks
    straight = tmp_path / "straight"
    points = count_fault_points(monkeypatch, lambda: Trainer(new_model(tok), CFG, straight, jit=False).fit(train))
    assert points == 3 * 12  # 5 staged files, the commit rename, 5 moves, removing .commit; per save
    reference = weights(straight)
    ref_history = json.loads((straight / "train_state.json").read_text())["history"]
    steps_found = set()
    for n in range(1, points + 1):
        out = tmp_path / f"kill{n}"
        calls = []

        def fault(where, n=n, calls=calls):
            calls.append(where)
            if len(calls) == n:
                raise Killed(where)

        monkeypatch.setattr(atomic, "fault_point", fault)
        with pytest.raises(Killed):
            Trainer(new_model(tok), CFG, out, jit=False).fit(train)
        monkeypatch.undo()
        again = Trainer(new_model(tok), CFG, out, jit=False)
        if (out / "train_state.json").is_file() or (out / checkpoint.COMMIT).is_dir():
            steps_found.add(again.resume())
        else:
            steps_found.add(0)
        again.fit(train)
        assert_same_weights(weights(out), reference)
        history = json.loads((out / "train_state.json").read_text())["history"]
        assert [h["loss"] for h in history] == [h["loss"] for h in ref_history], calls[-1]
        assert not (out / checkpoint.COMMIT).exists()
    assert steps_found == {0, 2, 4, 6}  # killed before the first commit, and after each of the three


def test_a_mixed_folder_is_named_not_resumed(tiny_blocks, tmp_path):
    """A folder whose weights do not belong to its state file (copied over, or an older ms_gpt killed
    mid-save) is refused, naming the file."""
    tok, train = tiny_blocks
    Trainer(new_model(tok), CFG, tmp_path / "a", jit=False).fit(train, until=2)
    Trainer(new_model(tok), CFG, tmp_path / "b", jit=False).fit(train, until=4)
    (tmp_path / "a" / "model.ckpt").write_bytes((tmp_path / "b" / "model.ckpt").read_bytes())
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"model.ckpt is not the file train_state.json \(step 2\) was saved with"):
        Trainer(new_model(tok), CFG, tmp_path / "a", jit=False).resume()


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, venv_bin):
    """An uninterrupted 6-step pretrain (checkpoints at 2, 4, 6) and the number of fault points it passes
    before its first checkpoint save (run_config.json, the tokenizer)."""
    tmp = tmp_path_factory.mktemp("straight")
    script = ("from ms_gpt import cli\nfrom ms_gpt.run_folder import atomic\nseen = []\n"
              "atomic.fault_point = lambda where: seen.append(where)\n"
              f"assert cli.main({[str(a) for a in pretrain_args(tmp / 'run', 6, '--ckpt-every', 2)]!r}) == 0\n"
              "print(next(i for i, w in enumerate(seen) if '.pending-' in w))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return tmp / "run", int(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("point", [3, 6, 9, 12])  # in an atomic write, at the commit, mid-publish, at the end
def test_a_real_sigkill_inside_a_save_leaves_a_resumable_folder(venv_bin, tmp_path, straight_run, point):
    """SIGKILL for real (no cleanup code runs) at points of the second checkpoint save (step 4 of 6):
    the next run takes over the dead run's lock, finishes or drops the interrupted save, resumes the step
    the folder holds and ends bit for bit where the uninterrupted run ends."""
    straight, before_first_save = straight_run
    out = tmp_path / "killed"
    killed = ms_gpt(venv_bin, *pretrain_args(out, 6, "--ckpt-every", 2),
                    env={atomic.KILL_AT: str(before_first_save + 12 + point)})
    assert killed.returncode == -signal.SIGKILL
    assert (out / ".lock").exists()  # the dead run's lock file
    committed = (out / checkpoint.COMMIT).is_dir()
    assert committed == (point > 6)
    if not committed:
        assert json.loads((out / "train_state.json").read_text())["step"] == 2
    assert any(p.name.startswith(".pending-") for p in out.iterdir()) == (point <= 6)
    resumed = ms_gpt(venv_bin, *pretrain_args(out, 6, "--ckpt-every", 2, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_weights(weights(out), weights(straight))
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [ownership.MARKER]  # no leftovers, no lock


# ------------------------------------------------------------------------------------------ one writer
def test_a_second_run_on_a_held_folder_is_refused_naming_the_holder(venv_bin, tmp_path):
    out = tmp_path / "run"
    with run_lock.hold(out):
        proc = ms_gpt(venv_bin, *pretrain_args(out, 2))
    assert proc.returncode == 2
    assert f"{out} is in use by another ms-gpt run (pid {os.getpid()} on " in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (out / "model.ckpt").exists()


def test_two_runs_started_together_one_wins(venv_bin, tmp_path):
    out = tmp_path / "run"
    procs = [subprocess.Popen([str(venv_bin / "ms-gpt"), *map(str, pretrain_args(out, 30))], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = sorted((p.wait(timeout=600), p.stderr.read()) for p in procs)
    assert [rc for rc, _ in results] == [0, 2], results
    assert "is in use by another ms-gpt run" in results[1][1]
    assert json.loads((out / "train_state.json").read_text())["step"] == 30


def test_a_dead_holders_lock_is_taken_over(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom ms_gpt.run_folder import run_lock\n"
                               f"with run_lock.hold({str(tmp_path)!r}):\n    print('held', flush=True)\n"
                               "    time.sleep(60)\n"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(run_lock.FolderBusy, match=rf"pid {holder.pid} on "):
        with run_lock.hold(tmp_path):
            pass
    holder.kill()
    holder.wait()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == holder.pid  # stale
    with run_lock.hold(tmp_path):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".lock").exists()


# ----------------------------------------------------------------------------- resume and overwriting
@pytest.fixture(scope="module")
def stopped(tmp_path_factory, venv_bin):
    out = tmp_path_factory.mktemp("stopped")
    proc = ms_gpt(venv_bin, *pretrain_args(out, 6, "--until", 2, "--seed", 1))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.mark.parametrize("flag,value,field,saved", [
    ("--corpus", "builtin:chitchat", "corpus", "'builtin:demo-en'"),
    ("--tokenizer", "char", "tokenizer", "'auto'"),
    ("--batch-size", 4, "data.batch_size", "8"),
    ("--block-size", 32, "data.max_len", "16"),
    ("--preset", "small", "preset", "'tiny'"),
    ("--seed", 2, "seed", "1"),
])
def test_resume_refuses_a_changed_setting_naming_it(venv_bin, stopped, flag, value, field, saved):
    before = (stopped / "model.ckpt").read_bytes()
    proc = ms_gpt(venv_bin, *pretrain_args(stopped, 6, "--seed", 1, "--resume", flag, value))
    assert proc.returncode == 2
    assert "was trained with other settings (saved, now): {" in proc.stderr
    assert f"'{field}': ({saved}, " in proc.stderr
    assert (stopped / "model.ckpt").read_bytes() == before


def test_an_occupied_out_needs_resume_or_overwrite(venv_bin, stopped, tmp_path):
    proc = ms_gpt(venv_bin, *pretrain_args(stopped, 6, "--seed", 1))
    assert proc.returncode == 2
    assert (f"--out {stopped} already holds an unfinished run (stopped at step 2 of 6); continue it with --resume "
            "(same settings), replace it with --overwrite, or choose another --out") in proc.stderr
    done = tmp_path / "done"
    assert ms_gpt(venv_bin, *pretrain_args(done, 2)).returncode == 0
    (done / "notes.txt").write_text("mine")
    again = ms_gpt(venv_bin, *pretrain_args(done, 3))
    assert again.returncode == 2 and "already holds a finished run (2 steps); replace it with --overwrite" in again.stderr
    over = ms_gpt(venv_bin, *pretrain_args(done, 3, "--overwrite", "--until", 1))
    assert over.returncode == 0, over.stderr[-2000:]
    state = json.loads((done / "train_state.json").read_text())
    assert state["step"] == 1 and state["train_config"]["steps"] == 3
    assert not (done / "metrics.json").exists() or json.loads((done / "metrics.json").read_text())["of_steps"] == 3
    assert (done / "notes.txt").read_text() == "mine"  # only the run's own files are removed


@pytest.mark.parametrize("command", ["finetune", "sft"])
def test_out_equal_to_init_is_refused(venv_bin, stopped, command, tmp_path):
    before = (stopped / "model.ckpt").read_bytes()
    (tmp_path / "pairs.jsonl").write_text(json.dumps({"prompt": "the cat", "response": "sat"}) + "\n")
    extra = (["--task", "classification", "--data", "builtin:reviews-zh"] if command == "finetune"
             else ["--data", tmp_path / "pairs.jsonl"])
    proc = ms_gpt(venv_bin, command, "--init", stopped, "--out", str(stopped) + "/", *extra)
    assert proc.returncode == 2
    assert f"--out {stopped} is the --init folder: the run would overwrite what it reads" in proc.stderr
    assert (stopped / "model.ckpt").read_bytes() == before


# ------------------------------------------------------------------------------------- disks and errors
def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(venv_bin, tmp_path):
    """A file-size limit (as a full disk would) hits the checkpoint written at step 4: exit 2, one line
    naming the file, no temporary left, the step-2 checkpoint intact and resumable."""
    out = tmp_path / "run"
    assert ms_gpt(venv_bin, *pretrain_args(out, 4, "--until", 2, "--ckpt-every", 2)).returncode == 0
    saved = (out / "model.ckpt").read_bytes()

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))  # model.ckpt is ~90 kB

    proc = ms_gpt(venv_bin, *pretrain_args(out, 4, "--ckpt-every", 2, "--resume"), preexec_fn=limit)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ms-gpt pretrain: File too large: ") and "model.ckpt" in last and "ulimit -f" in last
    assert "Traceback" not in proc.stderr
    assert (out / "model.ckpt").read_bytes() == saved
    assert json.loads((out / "train_state.json").read_text())["step"] == 2
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [ownership.MARKER]
    assert ms_gpt(venv_bin, *pretrain_args(out, 4, "--ckpt-every", 2, "--resume")).returncode == 0


@pytest.mark.parametrize("err,hint", [(errno.EROFS, "a read-only file system: choose a writable --out"),
                                      (errno.ENOSPC, "the disk is full: free space or choose another --out")])
def test_disk_errors_are_one_line_with_the_remedy(tmp_path, monkeypatch, capsys, err, hint):
    def refuse(path, *args, **kwargs):
        raise OSError(err, os.strerror(err), str(path))

    monkeypatch.setattr(run_lock, "_open_locked", refuse)
    rc = cli.main(["pretrain", "--out", str(tmp_path / "x"), "--steps", "2", "--no-progress"])
    assert rc == 2
    assert capsys.readouterr().err == f"ms-gpt pretrain: {os.strerror(err)}: {tmp_path / 'x' / '.lock'} ({hint})\n"


def test_out_that_is_a_file_is_one_line(venv_bin, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    proc = ms_gpt(venv_bin, *pretrain_args(f, 2))
    assert proc.returncode == 2
    assert proc.stderr == f"ms-gpt pretrain: {f} is a file; --out must be a folder (or a path that does not exist yet)\n"


def test_debug_shows_the_traceback(venv_bin, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    proc = ms_gpt(venv_bin, *pretrain_args(f, 2, "--debug"))
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "FileExistsError" in proc.stderr


def test_files_are_written_with_the_umasks_mode(venv_bin, tmp_path):
    out = tmp_path / "run"
    assert ms_gpt(venv_bin, *pretrain_args(out, 2)).returncode == 0
    for name in ("model.ckpt", "optimizer.ckpt", "train_state.json", "metrics.json", "tokenizer/tokenizer.json"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~current_umask(), name


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_stopped_runs_checkpoint_generates(venv_bin, stopped):
    proc = ms_gpt(venv_bin, "generate", "--ckpt", stopped, "--prompt", "the", "--max-new-tokens", 3)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("the")


def test_nan_guard_says_when_there_is_no_checkpoint(tiny_blocks, tmp_path):
    from ms_gpt.training import TrainingDiverged

    tok, train = tiny_blocks
    t = Trainer(new_model(tok), TrainConfig(steps=6, learning_rate=3e-3, warmup_steps=0, ckpt_every=5), tmp_path,
                jit=False)
    real = t._train_step

    def nan_step(ids, labels):
        loss, _ = real(ids, labels)
        return loss * float("nan"), mindspore.ops.isfinite(loss * float("nan"))

    t._train_step = nan_step
    with pytest.raises(TrainingDiverged, match=r"has no checkpoint of this run \(none was due yet\)"):
        t.fit(train)
    assert not (tmp_path / "model.ckpt").exists()
    t._train_step = real
    t.fit(train, until=5)
    t._train_step = nan_step
    with pytest.raises(TrainingDiverged, match=r"keeps the checkpoint of step 5"):
        t.fit(train)


def test_ctrl_c_before_training_is_one_line_and_130(venv_bin, tmp_path):
    """SIGINT while the command is still starting up (imports, device setup): exit 130, no traceback."""
    proc = subprocess.Popen([str(venv_bin / "ms-gpt"), *map(str, pretrain_args(tmp_path / "run", 50))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == ("SIGINT outside a training step: exiting now (the last checkpoint in "
                                            "--out, if any, is kept)")


# ------------------------------------------------------------------------------ damaged or foreign files
@pytest.mark.parametrize("name,damage,message", [
    ("gpt_config.json", b'{"vocab_size": 8', r"gpt_config.json: not valid JSON"),
    ("tokenizer/tokenizer.json", b'{"kind": "wh', r"tokenizer/tokenizer.json: not valid JSON .* the tokenizer folder "
                                                 r"is damaged"),
    ("model.ckpt", b"", r"model.ckpt \(0 bytes\) is not a readable MindSpore checkpoint|model.ckpt \(0 bytes\) "
                        r"holds no parameters"),
    ("model.ckpt", b"\x00" * 100, r"model.ckpt \(100 bytes\) (is not a readable|holds no parameters)"),
])
def test_a_damaged_file_is_named_by_generate(venv_bin, stopped, tmp_path, name, damage, message):
    import re
    import shutil

    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    (run / name).write_bytes(damage)
    proc = ms_gpt(venv_bin, "generate", "--ckpt", run, "--prompt", "the", "--max-new-tokens", 2)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and re.search(message, proc.stderr), proc.stderr


def test_a_damaged_state_file_is_named_by_resume(venv_bin, stopped, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    (run / "train_state.json").write_text('{"step": 2, "hist')
    proc = ms_gpt(venv_bin, *pretrain_args(run, 6, "--seed", 1, "--resume"))
    assert proc.returncode == 2
    assert f"{run / 'train_state.json'}: not valid JSON" in proc.stderr and "Traceback" not in proc.stderr


def test_generate_refuses_another_runs_tokenizer(venv_bin, stopped, tmp_path):
    import shutil

    run, other = tmp_path / "run", tmp_path / "other"
    shutil.copytree(stopped, run)
    assert ms_gpt(venv_bin, *pretrain_args(other, 1, "--tokenizer", "char")).returncode == 0
    shutil.rmtree(run / "tokenizer")
    shutil.copytree(other / "tokenizer", run / "tokenizer")
    proc = ms_gpt(venv_bin, "generate", "--ckpt", run, "--prompt", "the", "--max-new-tokens", 2)
    assert proc.returncode == 2
    assert "this is not the tokenizer the model was trained with" in proc.stderr


def test_non_utf8_corpus_bytes_are_warned_about(tmp_path, capsys):
    from ms_gpt.data import load_corpus

    f = tmp_path / "gbk.txt"
    f.write_bytes("hello world\n".encode() + "中文".encode("gbk") + b"\nok\n")
    lines = load_corpus(str(f))
    assert lines[0] == "hello world" and "\ufffd" in lines[1]
    err = capsys.readouterr().err
    assert f"ms-gpt: warning: {f}: " in err and "are not UTF-8 (the first at byte 12)" in err


def test_a_bpe_vocabulary_larger_than_asked_is_warned_about(capsys):
    from ms_gpt.text import BPETokenizer

    tok = BPETokenizer.train(["abc abd"], 5)
    assert tok.vocab_size > 5
    err = capsys.readouterr().err
    assert f"BPE vocabulary of {tok.vocab_size} tokens, not --vocab-size 5" in err


def test_doctor_says_when_it_does_not_know_a_message_and_names_a_missing_scan_path(tmp_path, capsys):
    assert cli.main(["doctor", "--explain", "a message nobody has seen"]) == 0
    assert "[explain] no known breakage matches 'a message nobody has seen'" in capsys.readouterr().out
    assert cli.main(["doctor", "--scan", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err == f"ms-gpt doctor: --scan '{tmp_path / 'missing'}': no such file or folder\n"


def test_convert_names_what_is_wrong_in_one_line(tmp_path, stopped, capsys):
    import shutil

    garbage, bert, bad_json, cut = (tmp_path / n for n in ("garbage", "bert", "json", "cut"))
    for d in (garbage, bert, bad_json):
        d.mkdir()
    (garbage / "config.json").write_text('{"model_type": "openai-gpt"}')
    (garbage / "model.safetensors").write_bytes(bytes(range(256)) * 2)
    (bert / "config.json").write_text('{"model_type": "bert"}')
    (bad_json / "config.json").write_text('{"model_ty')
    shutil.copytree(stopped, cut)
    (cut / "model.ckpt").write_bytes((stopped / "model.ckpt").read_bytes()[:1000])
    cases = [(["--from-hf", str(garbage)], f"ms-gpt convert: {garbage / 'model.safetensors'}: not a readable "
                                           "safetensors file ("),
             (["--from-hf", str(bert)], "ms-gpt convert: config.json has model_type 'bert'; only 'openai-gpt' can be "
                                        "converted"),
             (["--from-hf", str(bad_json)], f"ms-gpt convert: {bad_json / 'config.json'}: not valid JSON"),
             (["--to-hf", str(cut)], f"ms-gpt convert: {cut / 'model.ckpt'} (1000 bytes) is not a readable MindSpore "
                                     "checkpoint")]
    for args, start in cases:
        assert cli.main(["convert", *args, "--out", str(tmp_path / "out")]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith(start) and err.count("\n") == 1, (args, err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["finetune-imdb", "smoke"])
def test_the_mindnlp_flows_hold_the_lock_too(tmp_path, capsys, command):
    out = tmp_path / "run"
    with run_lock.hold(out):
        assert cli.main([command, "--out", str(out)]) == 2
    assert f"{out} is in use by another ms-gpt run (pid {os.getpid()} on " in capsys.readouterr().err


@pytest.mark.parametrize("verbose", [False, True])
def test_mindspore_log_lines_are_off_unless_verbose(tmp_path, monkeypatch, capsys, verbose):
    """GLOG_v=3 (errors only) is set before MindSpore is imported, unless --verbose (or the user set it)."""
    monkeypatch.delenv("GLOG_v", raising=False)
    f = tmp_path / "file"
    f.write_text("x")
    assert cli.main(["pretrain", "--out", str(f), *(["--verbose"] if verbose else [])]) == 2
    assert os.environ.get("GLOG_v") == (None if verbose else "3")
    monkeypatch.setenv("GLOG_v", "1")
    cli.main(["pretrain", "--out", str(f)])
    assert os.environ["GLOG_v"] == "1"  # the user's own setting stays
