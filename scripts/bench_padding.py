"""Padding benchmark for the MindNLP IMDb flow: fixed length vs length buckets vs dynamic padding.

On reviews with an IMDb-like length distribution (log-normal, median about 230 tokens, a long tail past
512), ``process_dataset`` batches the same rows three ways: every batch padded to 512 (the course's
static mode), padded to the smallest of a few bucket lengths (static, ``len(buckets)`` shapes), and
padded per batch (dynamic). For each it reports the share of real tokens, the padded tokens, the
distinct shapes, and the speed of one training epoch through the Hugging Face Trainer (the flow's own
bridge) on a small random openai-gpt. Ratios are against the fixed-length run of the same invocation.

Target (issue 6): buckets cut padded tokens at least 2x against fixed 512, with at most 4 static shapes.

    .venv/bin/python scripts/bench_padding.py [--reviews 512] [--batch-size 4] [--buckets 128,256,512]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reviews", type=int, default=512, help="reviews to batch and train on (default 512)")
    p.add_argument("--batch-size", type=int, default=4, help="reviews a batch (default: 4, the course's)")
    p.add_argument("--max-seq-len", type=int, default=512, help="tokens a review is cut to (default: 512)")
    p.add_argument("--buckets", default="128,256,512", help="bucket lengths (default: 128,256,512)")
    p.add_argument("--median-words", type=float, default=230, help="median review length in words (default 230; "
                   "each synthetic word is one BPE token, so about 230 tokens, as IMDb with openai-gpt's BPE)")
    p.add_argument("--n-layer", type=int, default=2, help="layers of the random openai-gpt (default: 2)")
    p.add_argument("--n-embd", type=int, default=64, help="its width (default: 64)")
    p.add_argument("--n-head", type=int, default=4, help="its attention heads (default: 4)")
    p.add_argument("--no-train", action="store_true",
                   help="only count tokens (no mindnlp, seconds; default: train too)")
    p.add_argument("--seed", type=int, default=0, help="the synthetic reviews' seed (default: 0)")
    args = p.parse_args(argv)

    from ms_gpt import hf_openai_gpt as hf
    from ms_gpt import testing
    from ms_gpt.config import parse_lengths
    from ms_gpt.data import imdb_pipeline as mi
    from ms_gpt.data.batching import check_buckets
    from ms_gpt.environment import device

    buckets = check_buckets(parse_lengths(args.buckets), args.max_seq_len, "max_seq_len")
    settings = device.setup("CPU", mode="pynative", seed=args.seed)
    rows = testing.synthetic_reviews(args.reviews, args.seed, median_words=args.median_words, sigma=0.75)
    work = Path(tempfile.mkdtemp(prefix="bench_padding_"))
    model_dir = testing.write_random_openai_gpt(work / "model", [t for t, _ in testing.synthetic_reviews(400, 99)],
                                                vocab_size=300, n_positions=args.max_seq_len, seed=args.seed,
                                                n_layer=args.n_layer, d_model=args.n_embd, n_head=args.n_head)
    if not args.no_train:
        from ms_gpt.environment import compat

        compat.import_mindnlp()
    tok = hf.load_tokenizer(str(model_dir))
    lengths = np.array([len(mi.encode(tok, t, 10 ** 6)) for t, _ in rows])

    modes = {
        f"fixed_{args.max_seq_len}": dict(static_shapes=True),
        "buckets_" + "_".join(map(str, buckets)): dict(buckets=buckets),
        "dynamic": dict(static_shapes=False),
    }
    report = {
        "bench": "padding", "device": settings.target, "reviews": len(rows), "batch_size": args.batch_size,
        "max_seq_len": args.max_seq_len, "model": {"n_layer": args.n_layer, "n_embd": args.n_embd, "n_head": args.n_head},
        "lengths": {"median": float(np.median(lengths)), "p90": float(np.percentile(lengths, 90)),
                    "max": int(lengths.max()), "share_over_max_seq_len": float((lengths > args.max_seq_len).mean())},
        "modes": {},
    }
    for name, kw in modes.items():
        batched = mi.BatchedDataset(mi.process_dataset(rows, tok, max_seq_len=args.max_seq_len,
                                                       batch_size=args.batch_size, shuffle=True, seed=args.seed,
                                                       fill_remainder=True, **kw))
        c = batched.token_counts()
        entry = {"shapes": len(batched.shapes()), "batches": c["batches"], "real_tokens": c["real_tokens"],
                 "total_tokens": c["total_tokens"], "padded_tokens": c["total_tokens"] - c["real_tokens"],
                 "real_ratio": round(c["real_tokens"] / c["total_tokens"], 4)}
        if not args.no_train:
            entry.update(train_epoch(model_dir, tok, batched, args.seed))
        report["modes"][name] = entry
        print(f"[bench_padding] {name}: {json.dumps(entry)}", file=sys.stderr, flush=True)

    fixed, bucket, dynamic = (report["modes"][n] for n in modes)
    cut = fixed["padded_tokens"] / max(bucket["padded_tokens"], 1)
    report["buckets_padding_cut_vs_fixed"] = round(cut, 2)
    report["dynamic_padding_cut_vs_fixed"] = round(fixed["padded_tokens"] / max(dynamic["padded_tokens"], 1), 2)
    if not args.no_train:
        report["epoch_speedup_vs_fixed"] = {n: round(fixed["epoch_seconds"] / m["epoch_seconds"], 2)
                                            for n, m in report["modes"].items()}
    report["target"] = {"padding_cut_at_least": 2.0, "static_shapes_at_most": 4,
                        "met": bool(cut >= 2.0 and bucket["shapes"] <= 4)}
    print(json.dumps(report))
    return report


def train_epoch(model_dir, tok, batched, seed) -> dict:
    """One epoch of the flow's Trainer over ``batched``; steps/s after the first 2 steps (warm-up)."""
    import torch  # mindtorch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from ms_gpt import hf_openai_gpt as hf
    from ms_gpt.data import imdb_pipeline as mi

    torch.manual_seed(seed)
    model = hf.load_classifier(str(model_dir), tok)
    stamps = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(output_dir=scratch, num_train_epochs=1, per_device_train_batch_size=1,
                                 learning_rate=2e-5, save_strategy="no", report_to=[], seed=seed, data_seed=seed,
                                 disable_tqdm=True, remove_unused_columns=False, logging_strategy="no")
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs; stdout is the JSON report
            Trainer(model=model, args=args, train_dataset=batched, data_collator=mi.collate_batch,
                    callbacks=[Clock()]).train()
        epoch_s = time.perf_counter() - t0
    warm = 2 if len(stamps) > 4 else 0
    steps_per_s = (len(stamps) - 1 - warm) / (stamps[-1] - stamps[warm])
    real = batched.token_counts()["real_tokens"]
    return {"steps": len(stamps), "steps_per_s": round(steps_per_s, 4), "epoch_seconds": round(epoch_s, 2),
            "real_tokens_per_s": round(real / epoch_s, 1)}


if __name__ == "__main__":
    main()
