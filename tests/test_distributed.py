"""Data-parallel pretraining through msrun with two CPU workers on loopback (MCCL AllReduce)."""
import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ms_gpt.data import block_dataset
from ms_gpt.environment import distributed

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PRETRAIN = ["--device", "CPU", "--preset", "tiny", "--corpus", "builtin:demo-en", "--steps", "6", "--block-size", "16",
            "--no-progress"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(*args, env=None, timeout=300, cwd=ROOT):
    return subprocess.run(["bash", str(ROOT / "scripts" / "run_distributed.sh"), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=cwd)


def history(out: Path) -> list:
    return [h["loss"] for h in json.loads((out / "train_state.json").read_text())["history"]]


def test_shards_reassemble_the_single_process_batches():
    enc = [list(range(1, 400))]
    single = [b[0] for b in block_dataset(enc, 8, 4, seed=3).create_tuple_iterator(num_epochs=1, output_numpy=True)]
    shards = [[b[0] for b in block_dataset(enc, 8, 2, seed=3, num_shards=2, shard_id=r)
               .create_tuple_iterator(num_epochs=1, output_numpy=True)] for r in (0, 1)]
    assert len(single) == len(shards[0]) == len(shards[1]) == 12  # 49 blocks: 12 global batches of 4
    for g, batch in enumerate(single):  # step g: rank 0 holds the first half of the global batch, rank 1 the rest
        assert np.array_equal(np.concatenate([shards[0][g], shards[1][g]]), batch)
    with pytest.raises(ValueError, match=r"shard_id must be in \[0, 2\), got 2"):
        block_dataset(enc, 8, 2, num_shards=2, shard_id=2)


def test_two_workers_match_one_process_with_the_global_batch(tmp_path):
    """Data parallel with 2 x batch 2 = one process with batch 4 on the same data, step by step."""
    # relative --log-dir and --out: taken from the caller's folder (here tmp_path), not the repository
    dp = launch("--workers", "2", "--master-port", str(free_port()), "--log-dir", "logs", "--",
                *PRETRAIN, "--batch-size", "2", "--out", "dp", cwd=tmp_path)
    assert dp.returncode == 0, dp.stdout[-3000:] + dp.stderr[-3000:]
    assert (tmp_path / "logs" / "worker_0.log").is_file() and (tmp_path / "dp" / "model.ckpt").is_file()
    single = subprocess.run([str(BIN / "ms-gpt"), "pretrain", *PRETRAIN, "--batch-size", "4", "--out",
                             str(tmp_path / "one")], capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    a, b = history(tmp_path / "dp"), history(tmp_path / "one")
    # Same data and same weights at every step; only the float32 summation order differs (the AllReduce
    # averages two half-batch means). Measured: at most 4.8e-7, one float32 ulp at a loss of 4.4. A wrong
    # shard or an unaveraged gradient moves the loss by 1e-3 or more within these 6 steps.
    assert len(a) == len(b) == 6 and np.allclose(a, b, rtol=0, atol=1e-5), (a, b)
    assert a[-1] < a[0]
    m = json.loads((tmp_path / "dp" / "metrics.json").read_text())
    assert m["distributed"] == {"workers": 2, "batch_per_worker": 2, "global_batch": 4,
                                "tokens_per_s_all_workers": m["distributed"]["tokens_per_s_all_workers"]}
    logs = {r: (tmp_path / "logs" / f"worker_{r}.log").read_text() for r in (0, 1)}
    results = [[json.loads(l) for l in logs[r].splitlines() if l.startswith("{")][-1] for r in (0, 1)]
    assert results[0]["train_loss"] == results[1]["train_loss"]  # both workers report the global loss
    assert json.loads(dp.stdout.strip().splitlines()[-1])["train_loss"] == m["train_loss"]
    # Only rank 0 wrote; its checkpoint works in single-process generate, like the single run's.
    from ms_gpt.run_folder import checkpoint

    wa, wb = (checkpoint.model_params(checkpoint.load_model(tmp_path / d)) for d in ("dp", "one"))
    assert max(float(np.abs(wa[k] - wb[k]).max()) for k in wa) < 1e-5
    outs = [subprocess.run([str(BIN / "ms-gpt"), "generate", "--device", "CPU", "--ckpt", str(tmp_path / d),
                            "--prompt", "the old", "--max-new-tokens", "8"], capture_output=True, text=True,
                           timeout=120) for d in ("dp", "one")]
    assert outs[0].returncode == 0, outs[0].stderr[-2000:]
    assert outs[0].stdout.strip().splitlines()[-1] == outs[1].stdout.strip().splitlines()[-1]


def test_busy_port_is_a_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = launch("--workers", "2", "--master-port", str(port), "--", *PRETRAIN, "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert f"--master-port {port} on 127.0.0.1 is in use: stop what holds it or choose another --master-port" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_a_crashing_worker_fails_the_launch_naming_its_rank_and_log(tmp_path):
    env = {**__import__("os").environ, "MS_GPT_FAULT_INJECT": "rank=1,step=2"}
    proc = launch("--workers", "2", "--master-port", str(free_port()), "--log-dir", str(tmp_path / "logs"), "--",
                  *PRETRAIN, "--batch-size", "2", "--out", str(tmp_path / "o"), env=env)
    assert proc.returncode != 0
    assert f"rank 1 failed; its log is {tmp_path / 'logs' / 'worker_1.log'}" in proc.stderr, proc.stderr[-3000:]
    assert "fault injected (MS_GPT_FAULT_INJECT) on rank 1 at step 2" in proc.stderr
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_launcher_and_flag_errors(tmp_path):
    for args, message in ((["--workers", "0", "--", "--steps", "1"], "--workers must be a positive integer"),
                          (["--workers", "2"], "nothing to run: give the pretrain options after --"),
                          (["--workers", "2", "--", "--distributed"], "do not pass --distributed"),
                          (["--workers", "2", "--total-workers", "1", "--", "x"], "--total-workers must be an integer >= --workers"),
                          (["--workers", "2", "--master-port", "80", "--", "x"], "--master-port must be in 1024..65535"),
                          (["--workers", "2", "--bogus"], "unknown option '--bogus'")):
        proc = launch(*args)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
    proc = subprocess.run([str(BIN / "ms-gpt"), "pretrain", "--distributed", "--out", str(tmp_path / "o"),
                           "--steps", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--distributed needs the workers msrun starts" in proc.stderr


def test_fault_injection_spec():
    assert distributed.fault_injection({}) is None
    assert distributed.fault_injection({"MS_GPT_FAULT_INJECT": "rank=1,step=2"}) == (1, 2)
    with pytest.raises(ValueError, match="MS_GPT_FAULT_INJECT must look like 'rank=1,step=2', got 'x'"):
        distributed.fault_injection({"MS_GPT_FAULT_INJECT": "x"})
    assert not distributed.launched_by_msrun({}) and distributed.launched_by_msrun(
        {"MS_WORKER_NUM": "2", "MS_ROLE": "MS_WORKER"})
