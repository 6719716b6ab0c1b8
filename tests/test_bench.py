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
    assert ms["compile_s"] >= 0 and ms["peak_rss_mib"] > 100 and ms["achieved_gflops"] > 0
    peaks = {**ms["matmul_peaks_gflops"], **(out["torch"] or {}).get("matmul_peaks_gflops", {})}
    assert {"mindspore", "numpy"} <= set(peaks) and min(peaks.values()) > 0
    assert out["best_gemm"] == {"gflops": max(peaks.values()), "from": max(peaks, key=peaks.get)}  # the best, not its own
    assert ms["share_of_best_gemm"] == pytest.approx(ms["achieved_gflops"] / max(peaks.values()), abs=2e-3)
    if ref.exists():
        assert out["torch"]["parameters"] == ms["parameters"]  # the same model on both sides
        assert out["mindspore_vs_torch_tokens_per_s"] == pytest.approx(
            ms["tokens_per_s"] / out["torch"]["tokens_per_s"], rel=1e-2)


def test_bench_train_nanogpt_recipe_trains_the_same_model_as_its_pytorch_reference():
    ref = ROOT / ".venv-ref" / "bin" / "python"
    extra = ["--torch-python", str(ref)] if ref.exists() else ["--no-torch"]
    out = run("bench_train.py", "--recipe", "nanogpt", "--batch", "2", "--block", "16", *extra)
    cfg = out["mindspore"]["config"]
    assert (out["recipe"], out["batch"], out["block"]) == ("nanogpt", 2, 16)
    assert (cfg["n_layer"], cfg["n_head"], cfg["d_model"], cfg["vocab_size"], cfg["resid_dropout"]) == (4, 4, 128, 65, 0.0)
    if ref.exists():
        assert out["torch"]["parameters"] == out["mindspore"]["parameters"]
        assert out["mindspore_vs_torch_peak_rss"] > 0


def test_bench_generate_compares_cache_and_context():
    ref = ROOT / ".venv-ref" / "bin" / "python"
    extra = ["--torch-python", str(ref)] if ref.exists() else ["--no-torch"]
    out = run("bench_generate.py", "--preset", "tiny", "--new-tokens", "4", "8", "--contexts", "4", "16", *extra)
    assert [r["new_tokens"] for r in out["decoding"]] == [4, 8]
    assert all(r["same_tokens"] and r["cached_tokens_per_s"] > 0 for r in out["decoding"])
    if ref.exists():
        assert [r["new_tokens"] for r in out["torch"]["decoding"]] == [4, 8]
        assert set(out["cached_vs_torch_tokens_per_s"]) == {"4", "8"}
    assert [r["context"] for r in out["per_token_vs_context"]] == [4, 16]
    assert out["per_token_vs_context"][0]["ratio_to_shortest"] == 1.0
    # the limit: the machine's bandwidth in this run, and the bytes a cached step must read (tiny: 2 layers, d 32)
    bw = out["memory_bandwidth"]
    assert bw["gb_s"] == max(bw["read_1_thread_gb_s"], bw["read_all_threads_gb_s"]) > 0.5 and bw["copy_gb_s"] > 0
    assert out["weight_mb_per_token"] == pytest.approx(out["parameters"] * 4 / 1e6, abs=0.05)
    shares = out["cached_share_of_bandwidth"]
    for n, row in zip(("4", "8"), out["decoding"]):
        need = 4 * (out["parameters"] + 2 * 2 * (16 + int(n) / 2) * 32)  # the prompt's 16 + half the new tokens
        assert shares["mindspore"][n] == pytest.approx(need * row["cached_tokens_per_s"] / (bw["gb_s"] * 1e9),
                                                       abs=2e-3)
    assert set(shares) == ({"mindspore", "torch"} if ref.exists() else {"mindspore"})


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


def test_bench_gemm_times_every_path_and_checks_parity():
    out = run("bench_gemm.py", "--shapes", "2x8x16x24", "4x4x8x8", "--repeats", "3")
    assert [r["shape"] for r in out["shapes"]] == [{"batch": 2, "block": 8, "k": 16, "n": 24},
                                                   {"batch": 4, "block": 4, "k": 8, "n": 8}]
    for row in out["shapes"]:
        paths = [p for p in ("matmul_2d", "batch_matmul", "mint_matmul", "ms_gpt_kernel") if p in row]
        assert len(paths) >= 3 and all(row[p]["ms"] > 0 for p in paths)
        assert all(row[p]["max_rel_diff"] <= 1e-4 for p in paths[1:])
        assert row["fastest"] in paths and row["fastest_vs_matmul_2d"] >= 1.0
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_gemm.py"), "--shapes", "8x128x512"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "shape '8x128x512' must be BATCHxBLOCKxKxN" in proc.stderr
