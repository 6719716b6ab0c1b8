"""Does pretraining help? GPT-1's fine-tuning on real Chinese reviews, three ways, same split, one run.

  (a) a GPT pretrained on builtin:peoples-daily, then fine-tuned on builtin:reviews-zh (ms-gpt finetune)
  (b) the same architecture and tokenizer fine-tuned from random weights (ms-gpt finetune --reinit)
  (c) TF-IDF over jieba words (unigrams + bigrams) + logistic regression (scikit-learn), C chosen on
      the validation split

(a) and (b) run the real CLI commands (printed, so each step can be re-run alone). All three train on
the same training rows and are scored on the same test split. The GPT vocabulary is built over People's
Daily plus the review *training* texts (words only, no labels; the weights see only People's Daily
before fine-tuning), so review words are not <unk> for the GPT either.

  python scripts/finetune_compare.py [--out runs/compare] [--preset small] [--pretrain-steps 600] ...

Prints one JSON object; writes OUT/compare.json and OUT/compare.md (the README table).
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


def run(cmd: list[str], log: Path) -> dict:
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=fh, text=True)
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/compare")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--preset", default="small")
    p.add_argument("--tokenizer", default="char", choices=("char", "jieba", "bpe"),
                   help="the GPT's tokenizer (char: every review character has a token, so none is <unk>)")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--pretrain-steps", type=int, default=1000)
    p.add_argument("--pretrain-lr", type=float, default=3e-4)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--pretrain-batch-size", type=int, default=16)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=3e-4)
    p.add_argument("--lm-weight", type=float, default=0.0,
                   help="λ (0 here: twice the steps in the time budget; ms-gpt finetune defaults to 0.5)")
    p.add_argument("--pool", choices=("last", "mean"), default="last")
    p.add_argument("--max-len", type=int, default=64)
    p.add_argument("--train-limit", type=int, default=None, help="first N training rows for all three")
    args = p.parse_args()

    from ms_gpt.data.tasks import reviews_zh_splits

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    splits = reviews_zh_splits(args.seed)
    train = splits["train"][:args.train_limit] if args.train_limit else splits["train"]
    vocab_texts = out / "reviews-train.txt"
    vocab_texts.write_text("".join(r["text"].replace("\n", " ") + "\n" for r in train), encoding="utf-8")
    ms_gpt = [str(Path(sys.executable).parent / "ms-gpt")]
    common = ["--seed", str(args.seed)] + (["--device", args.device] if args.device else [])
    pre = out / "pretrained"
    results = {"pretrain": run(ms_gpt + [
        "pretrain", "--corpus", "builtin:peoples-daily", "--out", str(pre), "--preset", args.preset,
        "--steps", str(args.pretrain_steps), "--block-size", str(args.block_size),
        "--batch-size", str(args.pretrain_batch_size), "--vocab-size", str(args.vocab_size),
        "--learning-rate", str(args.pretrain_lr), "--vocab-corpus", str(vocab_texts), "--tokenizer", args.tokenizer,
        "--no-progress", *common],
        out / "pretrain.log")}
    ft = ["finetune", "--init", str(pre), "--task", "classification", "--data", "builtin:reviews-zh",
          "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--learning-rate", str(args.learning_rate),
          "--lm-weight", str(args.lm_weight), "--pool", args.pool, "--max-len", str(args.max_len), "--no-progress", *common]
    if args.train_limit:
        ft += ["--train-limit", str(args.train_limit)]
    results["a_pretrained"] = run(ms_gpt + ft + ["--out", str(out / "a_pretrained")], out / "a_pretrained.log")
    results["b_scratch"] = run(ms_gpt + ft + ["--out", str(out / "b_scratch"), "--reinit"], out / "b_scratch.log")
    results["c_tfidf"] = tfidf_baseline(splits, args.train_limit, args.seed)
    a, b, c = (results[k]["accuracy"] for k in ("a_pretrained", "b_scratch", "c_tfidf"))
    summary = {
        "settings": vars(args), "test_examples": results["a_pretrained"]["test_examples"],
        "train_examples": results["a_pretrained"]["train_examples"],
        "accuracy": {"a_pretrained_finetuned": a, "b_random_init_finetuned": b, "c_tfidf_logreg": c},
        "targets": {"a_ge_c": a >= c, "a_gt_b": a > b},
        "pretrain": {k: results["pretrain"][k] for k in ("val_ppl_before", "val_ppl", "steps", "parameters", "wall_s")},
        "wall_s": round(time.perf_counter() - t0, 1), "cpu_count": os.cpu_count(),
        "runs": {k: {kk: v for kk, v in r.items() if kk not in ("per_class",)} for k, r in results.items()
                 if k != "pretrain"},
    }
    rows = [("(a) GPT pretrained on People's Daily, fine-tuned", results["a_pretrained"]),
            ("(b) same GPT from random weights, fine-tuned", results["b_scratch"]),
            ("(c) TF-IDF (jieba 1-2 grams) + logistic regression", results["c_tfidf"])]
    table = "| model | valid acc | test acc | wall |\n|---|---|---|---|\n" + "".join(
        f"| {name} | {r['valid_accuracy']:.4f} | {r['accuracy']:.4f} | {r['wall_s']:.0f} s |\n" for name, r in rows)
    (out / "compare.md").write_text(table, encoding="utf-8")
    (out / "compare.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
