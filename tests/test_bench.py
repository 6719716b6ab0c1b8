"""The benchmark scripts run and report what they promise (tiny sizes; the speeds are not asserted)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(script, *args):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_bench_train_reports_throughput_peak_share_and_the_torch_ratio():
    ref = ROOT / ".venv-ref" / "bin" / "python"
    extra = ["--torch-python", str(ref)] if ref.exists() else ["--no-torch"]
    out = run("bench_train.py", "--preset", "tiny", "--batch", "2", "--block", "16", "--vocab-size", "100", *extra)
    ms = out["mindspore"]
    assert len(ms["step_s"]) == 3 and ms["step_s_median"] == sorted(ms["step_s"])[1]
    assert ms["tokens_per_s"] == pytest.approx(32 / ms["step_s_median"], rel=1e-2)
    assert ms["compile_s"] >= 0 and ms["peak_rss_mib"] > 100 and ms["matmul_peak_gflops"] > 0
    assert ms["achieved_gflops"] > 0
    assert ms["share_of_matmul_peak"] == pytest.approx(ms["achieved_gflops"] / ms["matmul_peak_gflops"], abs=2e-3)
    if ref.exists():
        assert out["torch"]["parameters"] == ms["parameters"]  # the same model on both sides
        assert out["mindspore_vs_torch_tokens_per_s"] == pytest.approx(
            ms["tokens_per_s"] / out["torch"]["tokens_per_s"], rel=1e-2)


def test_bench_generate_compares_cache_and_context():
    out = run("bench_generate.py", "--preset", "tiny", "--new-tokens", "4", "8", "--contexts", "4", "16")
    assert [r["new_tokens"] for r in out["decoding"]] == [4, 8]
    assert all(r["same_tokens"] and r["cached_tokens_per_s"] > 0 for r in out["decoding"])
    assert [r["context"] for r in out["per_token_vs_context"]] == [4, 16]
    assert out["per_token_vs_context"][0]["ratio_to_shortest"] == 1.0


def test_bench_rejects_too_few_timed_steps():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_train.py"), "--steps", "2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--steps must be >= 3" in proc.stderr


def test_bench_padding_counts_tokens_and_meets_the_bucket_target():
    out = run("bench_padding.py", "--no-train", "--reviews", "256")
    modes = out["modes"]
    fixed, buckets, dynamic = modes["fixed_512"], modes["buckets_128_256_512"], modes["dynamic"]
    assert fixed["real_tokens"] == buckets["real_tokens"] == dynamic["real_tokens"]  # same rows, same truncation
    assert (fixed["shapes"], buckets["shapes"]) == (1, 3) and dynamic["shapes"] > 4
    assert fixed["total_tokens"] == fixed["batches"] * 4 * 512
    assert out["buckets_padding_cut_vs_fixed"] == pytest.approx(fixed["padded_tokens"] / buckets["padded_tokens"], abs=0.01)
    assert 150 <= out["lengths"]["median"] <= 300 and out["lengths"]["share_over_max_seq_len"] > 0.05
    assert out["target"]["met"] and out["buckets_padding_cut_vs_fixed"] >= 2


def test_bench_padding_trains_each_mode_through_the_trainer_bridge():
    out = run("bench_padding.py", "--reviews", "24", "--max-seq-len", "64", "--buckets", "16,32,64",
              "--median-words", "20", "--n-embd", "32")
    for name in ("fixed_64", "buckets_16_32_64", "dynamic"):
        m = out["modes"][name]
        assert m["steps"] == m["batches"] and m["steps_per_s"] > 0 and m["epoch_seconds"] > 0
    assert out["epoch_speedup_vs_fixed"]["fixed_64"] == 1.0
