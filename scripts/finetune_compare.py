"""Does pretraining help? GPT-1's fine-tuning on real Chinese reviews, three ways, the same split, several seeds.

  (a) a GPT pretrained on unlabelled text, then fine-tuned on builtin:reviews-zh (ms-gpt finetune)
  (b) the same architecture and tokenizer fine-tuned from random weights (ms-gpt finetune --reinit)
  (c) TF-IDF over jieba words (unigrams + bigrams) + logistic regression (scikit-learn), C chosen on
      the validation split

The levers GPT-1 itself used: the pretraining text is in-domain and unlabelled - the review *training*
texts (no labels; never the validation or test texts) plus the People's Daily corpus - and the tokens
are characters, so no review is read through <unk>. The split (deduplicated, stratified, 80/10/10) is
drawn once (--split-seed) and written to OUT/data, so every seed trains and tests on the same rows;
each seed (--seeds) changes the fine-tuning (head initialisation, shuffling). The model is pretrained
once (seed 0). (a) and (b) run the real CLI commands (printed, so each step can be re-run alone).

  python scripts/finetune_compare.py [--out runs/compare] [--seeds 0 1 2] [--pretrain-steps 4000] [--mode graph] ...

Prints one JSON object; writes OUT/compare.json and OUT/compare.md (the table in docs/results.md): the mean ± std over
the seeds of each, each seed's figures, and whether (a) >= (c) + 1 point on the mean and (a) > (b) in every seed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ms_gpt.config import POOLS  # noqa: E402  (pure Python: no MindSpore import)


def run(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    print("+ " + "".join(f"{k}={v} " for k, v in (env or {}).items()) + " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=fh, text=True, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    return result


def tfidf_baseline(splits: dict, train_limit: int | None, seed: int) -> dict:
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from ms_gpt.text import JiebaTokenizer

    t0 = time.perf_counter()
    words = JiebaTokenizer(["<pad>", "<bos>", "<eos>", "<unk>"]).split
    train = splits["train"][:train_limit] if train_limit else splits["train"]
    xs = {s: [r["text"] for r in rows] for s, rows in (("train", train), ("valid", splits["valid"]),
                                                       ("test", splits["test"]))}
    ys = {s: np.array([r["label"] for r in rows]) for s, rows in (("train", train), ("valid", splits["valid"]),
                                                                  ("test", splits["test"]))}
    vec = TfidfVectorizer(tokenizer=words, lowercase=False, token_pattern=None, ngram_range=(1, 2),
                          sublinear_tf=True, min_df=1)
    train_x = vec.fit_transform(xs["train"])
    best = None
    for c in (0.3, 1.0, 3.0, 10.0, 30.0):
        clf = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(train_x, ys["train"])
        acc = float((clf.predict(vec.transform(xs["valid"])) == ys["valid"]).mean())
        if best is None or acc > best[0]:
            best = (acc, c, clf)
    acc, c, clf = best
    test = float((clf.predict(vec.transform(xs["test"])) == ys["test"]).mean())
    return {"valid_accuracy": acc, "accuracy": test, "C": c, "features": len(vec.vocabulary_),
            "train_examples": len(train), "wall_s": round(time.perf_counter() - t0, 1)}


def write_split(splits: dict, folder: Path, train_limit: int | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        rows = rows[:train_limit] if name == "train" and train_limit else rows
        (folder / f"{name}.jsonl").write_text(
            "".join(json.dumps({"text": r["text"], "label": r["label"]}, ensure_ascii=False) + "\n" for r in rows),
            encoding="utf-8")


def float_or_auto(text: str) -> float | None:
    """A number, or ``auto`` (None: ms-gpt finetune's default by model size)."""
    return None if text == "auto" else float(text)


def mean_std(values) -> dict:
    import numpy as np

    v = np.asarray(values, dtype=float)
    return {"mean": round(float(v.mean()), 4), "std": round(float(v.std(ddof=1)) if v.size > 1 else 0.0, 4)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/compare", help="the study's folder (default: runs/compare)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="fine-tuning seeds (default 0 1 2)")
    p.add_argument("--split-seed", type=int, default=0,
                   help="the one train/valid/test split every seed uses (default: 0)")
    p.add_argument("--device", default=None,
                   help="Ascend, GPU or CPU (default: $MS_GPT_DEVICE, else the best available)")
    p.add_argument("--preset", default="small", help="the GPT's size (default: small)")
    p.add_argument("--tokenizer", default="char", choices=("char", "jieba", "bpe"),
                   help="the GPT's tokenizer (default: char: every review character has a token, so none is <unk>)")
    p.add_argument("--vocab-size", type=int, default=8000, help="the jieba/BPE vocabulary (default: 8000)")
    p.add_argument("--pretrain-text", default="reviews+peoples-daily", choices=("reviews+peoples-daily", "peoples-daily"),
                   help="unlabelled pretraining text: the review training texts plus People's Daily, or People's "
                        "Daily alone (default: reviews+peoples-daily)")
    p.add_argument("--pretrain-steps", type=int, default=4000,
                   help="at 8 x 128 characters a step, about 1.4 passes over the 2.9 M characters of reviews + People's "
                        "Daily (default: 4000)")
    p.add_argument("--block-size", type=int, default=128,
                   help="pretraining sequence length (default: 128, the fine-tuning --max-len, so every position the "
                        "classifier reads was trained in pretraining)")
    p.add_argument("--pretrain-batch-size", type=int, default=8,
                   help="pretraining sequences per step (default: 8: 1,024 characters a step)")
    p.add_argument("--epochs", type=int, default=2, help="at most (early stopping may end sooner) (default: 2)")
    p.add_argument("--batch-size", type=int, default=32, help="fine-tuning batch (default: 32)")
    p.add_argument("--learning-rate", type=float_or_auto, default=3e-4,
                   help="fine-tuning peak learning rate (default: 3e-4, below the 1e-3 the model was pretrained at, so fine-tuning keeps more of what pretraining learned; auto = ms-gpt finetune's default by model size)")
    p.add_argument("--lm-weight", type=float_or_auto, default=0.5,
                   help="λ of the auxiliary LM loss, GPT-1's 0.5 (default: 0.5; auto = ms-gpt finetune's default by model size)")
    p.add_argument("--pool", choices=POOLS, default="mean",
                   help="what the head reads: the mean of the real tokens' states (default), their element-wise "
                        "maximum, or the last token's")
    p.add_argument("--mode", choices=("graph", "jit"), default="graph",
                   help="how pretrain and finetune run: graph (MindSpore's GRAPH_MODE, about 1.3x faster on CPU; default) or jit")
    p.add_argument("--max-len", type=int, default=128, help="fine-tuning length in tokens (default: 128)")
    p.add_argument("--static-shapes", choices=("on", "off"), default="on",
                   help="on: fine-tune in length buckets (MS_GPT_STATIC_SHAPES=1, the Ascend policy; far less "
                        "padding than one padded length per batch; default); off: padded_batch")
    p.add_argument("--train-limit", type=int, default=None, help="first N training rows for all three (default: all)")
    args = p.parse_args()
    if args.learning_rate is not None and not args.learning_rate > 0:
        p.error(f"--learning-rate must be > 0 or auto, got {args.learning_rate}")
    if args.lm_weight is not None and not args.lm_weight >= 0:
        p.error(f"--lm-weight must be >= 0 or auto, got {args.lm_weight}")

    from ms_gpt.data.corpus import peoples_daily
    from ms_gpt.data.tasks import reviews_zh_splits
    from ms_gpt.run_folder import atomic

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    splits = reviews_zh_splits(args.split_seed)
    write_split(splits, out / "data", args.train_limit)
    train = splits["train"][:args.train_limit] if args.train_limit else splits["train"]
    corpus = out / "pretrain-text"
    corpus.mkdir(exist_ok=True)
    (corpus / "peoples-daily.txt").write_text("\n".join(peoples_daily()) + "\n", encoding="utf-8")
    reviews = corpus / "reviews-train.txt"
    if args.pretrain_text == "reviews+peoples-daily":
        reviews.write_text("".join(" ".join(r["text"].split()) + "\n" for r in train), encoding="utf-8")
    elif reviews.exists():
        reviews.unlink()
    ms_gpt = [str(Path(sys.executable).parent / "ms-gpt")]
    dev = ["--device", args.device] if args.device else []
    pre = out / "pretrained"
    results = {"pretrain": run(ms_gpt + [
        "pretrain", "--corpus", str(corpus), "--out", str(pre), "--preset", args.preset, "--tokenizer", args.tokenizer,
        "--steps", str(args.pretrain_steps), "--block-size", str(args.block_size),
        "--batch-size", str(args.pretrain_batch_size), "--vocab-size", str(args.vocab_size), "--seed", "0",
        "--no-progress", "--overwrite", "--mode", args.mode, *dev], out / "pretrain.log")}
    ft = ["finetune", "--init", str(pre), "--task", "classification", "--data", str(out / "data"),
          "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--pool", args.pool,
          "--max-len", str(args.max_len), "--mode", args.mode, "--no-progress", "--overwrite", *dev]
    shapes_env = {"MS_GPT_STATIC_SHAPES": "1" if args.static_shapes == "on" else "0"}
    if args.learning_rate is not None:
        ft += ["--learning-rate", str(args.learning_rate)]
    if args.lm_weight is not None:
        ft += ["--lm-weight", str(args.lm_weight)]
    per_seed = []
    c = tfidf_baseline(splits, args.train_limit, args.split_seed)
    for seed in args.seeds:
        a = run(ms_gpt + ft + ["--seed", str(seed), "--out", str(out / f"a_pretrained_seed{seed}")],
                out / f"a_pretrained_seed{seed}.log", shapes_env)
        b = run(ms_gpt + ft + ["--seed", str(seed), "--out", str(out / f"b_scratch_seed{seed}"), "--reinit"],
                out / f"b_scratch_seed{seed}.log", shapes_env)
        per_seed.append({"seed": seed, "a": a, "b": b})
        print(f"seed {seed}: (a) {a['accuracy']:.4f}  (b) {b['accuracy']:.4f}  (c) {c['accuracy']:.4f}",
              file=sys.stderr, flush=True)
    acc = {"a_pretrained_finetuned": [r["a"]["accuracy"] for r in per_seed],
           "b_random_init_finetuned": [r["b"]["accuracy"] for r in per_seed],
           "c_tfidf_logreg": [c["accuracy"]] * len(per_seed)}
    stats = {k: mean_std(v) for k, v in acc.items()}
    a_mean, c_mean = stats["a_pretrained_finetuned"]["mean"], stats["c_tfidf_logreg"]["mean"]
    keep = ("accuracy", "valid_accuracy", "best_epoch", "steps", "of_steps", "stopped_early", "defaults", "unk_share",
            "train_examples", "wall_s", "reinit", "lm_weight")
    summary = {
        "settings": vars(args), "test_examples": per_seed[0]["a"]["test_examples"],
        "train_examples": per_seed[0]["a"]["train_examples"], "seeds": args.seeds,
        "accuracy": acc, "mean_std": stats,
        "targets": {"a_ge_c_plus_1pt": a_mean >= c_mean + 0.01,
                    "a_gt_b_every_seed": all(r["a"]["accuracy"] > r["b"]["accuracy"] for r in per_seed)},
        "pretrain": {k: results["pretrain"][k] for k in ("val_ppl_before", "val_ppl", "steps", "parameters", "wall_s",
                                                         "tokenizer", "vocab_size")},
        "c_tfidf": c, "runs": [{"seed": r["seed"], "a": {k: r["a"].get(k) for k in keep},
                                "b": {k: r["b"].get(k) for k in keep}} for r in per_seed],
        "wall_s": round(time.perf_counter() - t0, 1), "cpu_count": os.cpu_count(),
    }
    names = {"a_pretrained_finetuned": "(a) GPT pretrained on review texts + People's Daily, fine-tuned",
             "b_random_init_finetuned": "(b) same GPT from random weights, fine-tuned",
             "c_tfidf_logreg": "(c) TF-IDF (jieba 1-2 grams) + logistic regression"}
    if args.pretrain_text == "peoples-daily":
        names["a_pretrained_finetuned"] = "(a) GPT pretrained on People's Daily, fine-tuned"
    header = "| model | test acc, mean ± std | " + " | ".join(f"seed {s}" for s in args.seeds) + " |\n"
    table = header + "|---|---|" + "---|" * len(args.seeds) + "\n" + "".join(
        f"| {names[k]} | {stats[k]['mean']:.4f} ± {stats[k]['std']:.4f} | "
        + " | ".join(f"{v:.4f}" for v in acc[k]) + " |\n" for k in acc)
    atomic.write_text(out / "compare.md", table)
    atomic.write_text(out / "compare.json", json.dumps(summary, indent=2, ensure_ascii=False))
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
