"""``ms-gpt finetune``: GPT-1 style supervised fine-tuning of a pretrained (or random) GPT.

The objective is GPT-1's L3 = L2 + λ·L1: cross-entropy of the task head on the extract token plus λ
times the language-modelling loss on the same inputs (λ = 0.5 by default; 0 turns it off and skips
the vocabulary projection). Schedule by default as GPT-1: linear warmup over 0.2% of the steps, then
linear decay to zero. The validation split is scored after each epoch and the best epoch's model is
kept in ``OUT/best`` (model.ckpt, gpt_config.json, classifier.json, tokenizer/); the test split is scored with it.
"""

from __future__ import annotations

from pathlib import Path

import mindspore
import numpy as np
from mindspore import ops

from ms_gpt import checkpoint
from ms_gpt.data import tasks
from ms_gpt.data.batching import IGNORE, default_buckets
from ms_gpt.flows import common
from ms_gpt.flows.configs import FinetuneConfig
from ms_gpt.model import GPTForSequenceClassification
from ms_gpt.model.params import load_params, model_params
from ms_gpt.training import Trainer, lm_loss

BEST = "best"


def make_objective(lm_weight: float):
    """L3 = CE(head) + λ·LM over (input_ids, lm_labels, labels) batches."""
    def finetune_objective(model, ids, lm_labels, labels):
        logits, lm_logits = model(ids)
        loss = ops.cross_entropy(logits.astype(mindspore.float32), labels, ignore_index=IGNORE)
        if lm_weight > 0:
            loss = loss + lm_weight * lm_loss(lm_logits, lm_labels, model.gpt.fused_loss)
        return loss

    return finetune_objective


def classification_report(preds, labels, num_labels: int, names=None) -> dict:
    """Accuracy, and precision / recall / F1 / support per class (numpy; no hub, no sklearn)."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    if preds.shape != labels.shape or preds.size == 0:
        raise ValueError(f"need equal, non-empty prediction and label arrays, got {preds.shape} and {labels.shape}")
    names = [str(n) for n in (names if names is not None else range(num_labels))]
    per_class = {}
    for k, name in enumerate(names):
        tp = int(np.sum((preds == k) & (labels == k)))
        predicted, actual = int(np.sum(preds == k)), int(np.sum(labels == k))
        p = tp / predicted if predicted else 0.0
        r = tp / actual if actual else 0.0
        per_class[name] = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "support": actual}
    return {"accuracy": float(np.mean(preds == labels)), "per_class": per_class,
            "macro_f1": float(np.mean([c["f1"] for c in per_class.values()]))}


class Predictor:
    """Compiled forward of a classifier in eval mode: logits for every real row of a dataset."""

    def __init__(self, clf, jit: bool = True):
        self.clf = clf
        self.clf.validate_inputs = False

        def predict_step(ids):
            return self.clf(ids)[0]

        self._step = mindspore.jit(predict_step) if jit else predict_step

    def __call__(self, dataset):
        was = self.clf.training
        self.clf.set_train(False)
        preds, gold = [], []
        for ids, _, labels in dataset.create_tuple_iterator(num_epochs=1):
            labels = labels.asnumpy()
            keep = labels != IGNORE
            preds.append(self._step(ids).asnumpy().argmax(-1)[keep])
            gold.append(labels[keep])
        self.clf.set_train(was)
        return np.concatenate(preds), np.concatenate(gold)


def build_classifier(gpt, task: str, num_labels: int, cfg: FinetuneConfig, seed: int):
    """GPTForSequenceClassification on ``gpt``'s architecture, with its weights unless ``cfg.reinit``."""
    clf = GPTForSequenceClassification(gpt.config, num_labels, dropout_seed=seed, task=task,
                                       classifier_dropout=cfg.classifier_dropout, with_lm=cfg.lm_weight > 0,
                                       pool=cfg.pool)
    if not cfg.reinit:
        load_params(clf.gpt, {f"gpt.{k}": v for k, v in model_params(gpt).items()})
    return clf


def finetune(cfg: FinetuneConfig) -> dict:
    """Fine-tune ``cfg.init`` (an ms_gpt or Hugging Face openai-gpt folder) on ``cfg.data`` for ``cfg.task``."""
    cfg.validate()
    settings = common.setup(cfg)
    out = Path(cfg.out)
    data_set = tasks.load_task_data(cfg.data, cfg.task, seed=cfg.seed)
    gpt, tok = checkpoint.load_for_tuning(cfg.init, need_sep=cfg.task != "classification", seed=cfg.seed)
    max_len = cfg.batching.max_len
    if max_len > gpt.config.n_positions:
        raise ValueError(f"max_len={max_len} exceeds the model's position table (n_positions="
                         f"{gpt.config.n_positions}); use --max-len <= {gpt.config.n_positions}")
    shapes = common.shapes_for(cfg.batching, settings, max_len, default_buckets(max_len))
    encoded = {s: tasks.encode_split(tok, data_set, s, max_len, cfg.train_limit if s == "train" else None)
               for s in tasks.SPLITS}
    batch = cfg.batching.batch_size
    train_ds = tasks.task_dataset(encoded["train"], batch, tok.pad_id, shapes, shuffle=True)
    eval_ds = {s: tasks.task_dataset(encoded[s], batch, tok.pad_id, shapes, shuffle=False) for s in ("valid", "test")}
    per_epoch = train_ds.get_dataset_size()
    train_cfg = common.epoch_schedule(cfg.train, cfg.epochs, per_epoch, cfg.warmup_fraction, ckpt_every=per_epoch)
    run = common.resolved(cfg, train_cfg, shapes)
    out.mkdir(parents=True, exist_ok=True)
    record = common.record_run(out, run)
    clf = build_classifier(gpt, cfg.task, data_set.num_labels, cfg, cfg.seed)
    trainer = Trainer(clf, train_cfg, out, jit=settings.compiled, objective=make_objective(cfg.lm_weight))
    predict = Predictor(clf, jit=settings.compiled)
    names = [str(c) for c in data_set.classes] or [f"choice {i}" for i in range(data_set.num_labels)]
    meta = {"classes": data_set.classes, "init": str(cfg.init), "data": cfg.data, "run_config": record}
    epochs, best = [], None
    with common.step_bar(cfg.progress, train_cfg.steps, "finetune") as report:
        for epoch in range(1, cfg.epochs + 1):
            fit = trainer.fit(train_ds, None, until=epoch * per_epoch, progress=report)
            valid = classification_report(*predict(eval_ds["valid"]), data_set.num_labels, names)
            losses = [h["loss"] for h in trainer.history[-per_epoch:]]
            epochs.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "valid_accuracy": valid["accuracy"],
                           "valid_macro_f1": valid["macro_f1"], "tokens_per_s": round(fit["tokens_per_s"], 1)})
            if best is None or valid["accuracy"] > best["valid_accuracy"]:
                best = epochs[-1]
                checkpoint.save_classifier(clf, tok, {**meta, "epoch": epoch, "valid_accuracy": valid["accuracy"]},
                                           out / BEST)
    best_clf, _, _ = checkpoint.load_classifier(out / BEST)  # a fresh model + compile: the kept checkpoint is scored
    test = classification_report(*Predictor(best_clf, jit=settings.compiled)(eval_ds["test"]), data_set.num_labels,
                                 names)
    metrics = {
        "task": cfg.task, "data": cfg.data, "init": str(cfg.init), "reinit": cfg.reinit, "device": settings.target,
        "static_shapes": shapes.static, "shape_mode": shapes.mode, "train_shapes": trainer.input_shapes(),
        "train_examples": len(encoded["train"]), "valid_examples": len(encoded["valid"]),
        "test_examples": len(encoded["test"]), "num_labels": data_set.num_labels, "classes": data_set.classes,
        "steps": train_cfg.steps, "lm_weight": cfg.lm_weight, "best_epoch": best["epoch"],
        "valid_accuracy": best["valid_accuracy"], "accuracy": test["accuracy"], "macro_f1": test["macro_f1"],
        "per_class": test["per_class"], "epochs": epochs,
        "train_loss": {"first": trainer.history[0]["loss"],
                       "last": float(np.mean([h["loss"] for h in trainer.history[-10:]]))},
    }
    return common.finish(out, metrics, trainer.history)
