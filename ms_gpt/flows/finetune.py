"""``ms-gpt finetune``: GPT-1 style supervised fine-tuning of a pretrained (or random) GPT.

The objective is GPT-1's L3 = L2 + λ·L1: cross-entropy of the task head on the extract token plus λ
times the language-modelling loss on the same inputs (λ = 0.5 by default; 0 turns it off and skips
the vocabulary projection). Schedule by default as GPT-1: linear warmup over 0.2% of the steps, then
linear decay to zero. The validation split is scored after each epoch and the best epoch's model is
kept in ``OUT/best`` (classifier.ckpt, finetune.json, tokenizer/); the test split is scored with it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ms_gpt import atomic

BEST, CLF_CKPT, CLF_META = "best", "classifier.ckpt", "finetune.json"


@dataclass
class FinetuneConfig:
    task: str = "classification"
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 6.25e-5  # GPT-1's
    lm_weight: float = 0.5  # λ of the auxiliary LM loss
    classifier_dropout: float = 0.1
    warmup_fraction: float = 0.002  # GPT-1: 0.2% of training
    schedule: str = "linear"
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    max_len: int = 128
    buckets: tuple | None = None  # static batch lengths; default max_len/4, /2, max_len
    train_limit: int | None = None  # use the first N training rows (the split is already shuffled)
    reinit: bool = False  # keep the checkpoint's architecture and tokenizer, start from random weights
    pool: str = "last"  # GPT-1: the extract token's state; "mean": average over real tokens

    def validate(self) -> None:
        from ms_gpt.checks import require_positive_ints
        from ms_gpt.data.tasks import _check_task

        _check_task(self.task)
        require_positive_ints(epochs=self.epochs, batch_size=self.batch_size, max_len=self.max_len)
        if self.train_limit is not None:
            require_positive_ints(train_limit=self.train_limit)
        if not (isinstance(self.lm_weight, (int, float)) and self.lm_weight >= 0):
            raise ValueError(f"lm_weight (λ) must be >= 0, got {self.lm_weight!r}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction!r}")
        if self.buckets is not None and (not self.buckets or max(self.buckets) != self.max_len
                                         or min(self.buckets) < 5):
            raise ValueError(f"buckets must be lengths >= 5 ending at max_len={self.max_len}, got {self.buckets!r}")


def make_objective(lm_weight: float):
    """L3 = CE(head) + λ·LM over (input_ids, lm_labels, labels) batches."""
    import mindspore
    from mindspore import ops

    from ms_gpt.data.pipeline import IGNORE
    from ms_gpt.training import lm_loss

    def finetune_objective(model, ids, lm_labels, labels):
        logits, lm_logits = model(ids)
        loss = ops.cross_entropy(logits.astype(mindspore.float32), labels, ignore_index=IGNORE)
        if lm_weight > 0:
            loss = loss + lm_weight * lm_loss(lm_logits, lm_labels)
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

    def __init__(self, clf):
        import mindspore

        self.clf = clf
        self.clf.validate_inputs = False

        def predict_step(ids):
            return self.clf(ids)[0]

        self._step = mindspore.jit(predict_step)

    def __call__(self, dataset):
        from ms_gpt.data.pipeline import IGNORE

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
    from ms_gpt.convert import _load_params, model_params
    from ms_gpt.model import GPTForSequenceClassification

    clf = GPTForSequenceClassification(gpt.config, num_labels, dropout_seed=seed, task=task,
                                       classifier_dropout=cfg.classifier_dropout, with_lm=cfg.lm_weight > 0,
                                       pool=cfg.pool)
    if not cfg.reinit:
        _load_params(clf.gpt, {f"gpt.{k}": v for k, v in model_params(gpt).items()})
    return clf


def save_classifier(clf, tok, meta: dict, directory: Path) -> Path:
    """``directory``/classifier.ckpt + finetune.json + tokenizer/, replaced as a whole (atomic)."""
    import mindspore

    with atomic.atomic_dir(directory) as tmp:
        mindspore.save_checkpoint(clf, str(tmp / CLF_CKPT))
        (tmp / CLF_META).write_text(json.dumps({"gpt_config": clf.config.to_dict(), "task": clf.task, "pool": clf.pool,
                                                "num_labels": clf.num_labels, **meta}, indent=2, ensure_ascii=False))
        tok.save(tmp / "tokenizer")
    return directory


def load_classifier(directory: str | Path):
    """``(classifier, tokenizer, meta)`` saved by :func:`save_classifier`."""
    import mindspore

    from ms_gpt import text
    from ms_gpt.config import GPTConfig
    from ms_gpt.convert import _load_params
    from ms_gpt.model import GPTForSequenceClassification

    directory = Path(directory)
    if not (directory / CLF_META).is_file():
        raise FileNotFoundError(f"{directory}/{CLF_META} not found: not a folder written by ms-gpt finetune")
    meta = json.loads((directory / CLF_META).read_text(encoding="utf-8"))
    clf = GPTForSequenceClassification(GPTConfig.from_dict(meta["gpt_config"]), meta["num_labels"], task=meta["task"],
                                       with_lm=False, pool=meta.get("pool", "last"))
    params = {k: v.asnumpy() for k, v in mindspore.load_checkpoint(str(directory / CLF_CKPT)).items()}
    _load_params(clf, params)
    clf.set_train(False)
    return clf, text.load(directory / "tokenizer"), meta


def finetune(init: str, data: str, out: str | Path, cfg: FinetuneConfig | None = None, device: str | None = None,
             seed: int = 0, progress: bool = True) -> dict:
    """Fine-tune ``init`` (ms_gpt or Hugging Face openai-gpt folder) on ``data`` for ``cfg.task``."""
    import mindspore

    from ms_gpt import device as dev
    from ms_gpt.data import tasks
    from ms_gpt.flows.pretrain import plot_losses
    from ms_gpt.flows.progress import step_bar
    from ms_gpt.training import TrainConfig, Trainer

    cfg = cfg or FinetuneConfig()
    cfg.validate()
    settings = dev.setup(device, mode="pynative", seed=seed)
    mindspore.dataset.config.set_seed(seed)
    out = Path(out)
    data_set = tasks.load_task_data(data, cfg.task, seed=seed)
    gpt, tok = load_for_tuning(init, need_sep=cfg.task != "classification", seed=seed)
    if cfg.max_len > gpt.config.n_positions:
        raise ValueError(f"max_len={cfg.max_len} exceeds the model's position table (n_positions="
                         f"{gpt.config.n_positions}); use --max-len <= {gpt.config.n_positions}")
    buckets = list(cfg.buckets or tasks.default_buckets(cfg.max_len))
    encoded = {s: tasks.encode_split(tok, data_set, s, cfg.max_len, cfg.train_limit if s == "train" else None)
               for s in tasks.SPLITS}
    train_ds = tasks.task_dataset(encoded["train"], cfg.batch_size, tok.pad_id, buckets, shuffle=True, seed=seed)
    eval_ds = {s: tasks.task_dataset(encoded[s], cfg.batch_size, tok.pad_id, buckets, shuffle=False)
               for s in ("valid", "test")}
    per_epoch = train_ds.get_dataset_size()
    steps = per_epoch * cfg.epochs
    train_cfg = TrainConfig(steps=steps, learning_rate=cfg.learning_rate,
                            warmup_steps=min(int(round(cfg.warmup_fraction * steps)), steps - 1),
                            schedule=cfg.schedule, min_lr_ratio=0.0, weight_decay=cfg.weight_decay,
                            grad_clip=cfg.grad_clip, eval_every=steps, ckpt_every=per_epoch)
    clf = build_classifier(gpt, cfg.task, data_set.num_labels, cfg, seed)
    trainer = Trainer(clf, train_cfg, out, objective=make_objective(cfg.lm_weight))
    predict = Predictor(clf)
    names = [str(c) for c in data_set.classes] or [f"choice {i}" for i in range(data_set.num_labels)]
    meta = {"classes": data_set.classes, "init": str(init), "data": data,
            "finetune_config": {**asdict(cfg), "buckets": buckets}}
    epochs, best = [], None
    with step_bar(progress, steps, "finetune") as report:
        for epoch in range(1, cfg.epochs + 1):
            fit = trainer.fit(train_ds, None, until=epoch * per_epoch, progress=report)
            valid = classification_report(*predict(eval_ds["valid"]), data_set.num_labels, names)
            losses = [h["loss"] for h in trainer.history[-per_epoch:]]
            epochs.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "valid_accuracy": valid["accuracy"],
                           "valid_macro_f1": valid["macro_f1"], "tokens_per_s": round(fit["tokens_per_s"], 1)})
            if best is None or valid["accuracy"] > best["valid_accuracy"]:
                best = epochs[-1]
                save_classifier(clf, tok, {**meta, "epoch": epoch, "valid_accuracy": valid["accuracy"]}, out / BEST)
    best_clf, _, _ = load_classifier(out / BEST)  # a fresh model + compile: the kept checkpoint is what is scored
    test = classification_report(*Predictor(best_clf)(eval_ds["test"]), data_set.num_labels, names)
    metrics = {
        "task": cfg.task, "data": data, "init": str(init), "reinit": cfg.reinit, "device": settings.target,
        "train_examples": len(encoded["train"]), "valid_examples": len(encoded["valid"]),
        "test_examples": len(encoded["test"]), "num_labels": data_set.num_labels, "classes": data_set.classes,
        "steps": steps, "lm_weight": cfg.lm_weight, "best_epoch": best["epoch"],
        "valid_accuracy": best["valid_accuracy"], "accuracy": test["accuracy"], "macro_f1": test["macro_f1"],
        "per_class": test["per_class"], "epochs": epochs,
        "train_loss": {"first": trainer.history[0]["loss"], "last": float(np.mean([h["loss"] for h in trainer.history[-10:]]))},
    }
    atomic.write_json(out / "metrics.json", metrics)
    plot_losses(trainer.history, out / "loss.png")
    return metrics


def load_for_tuning(init: str, need_sep: bool, seed: int = 0):
    """``(GPT, tokenizer)`` from ``init`` made ready to tune: ``<sep>`` appended (and one embedding row
    grown) when ``need_sep``, and the model's pad_token_id set to the tokenizer's (openai-gpt has none)."""
    from ms_gpt import convert
    from ms_gpt.text import SEP

    gpt, tok = convert.load_init(init)
    if need_sep:
        tok.add_special(SEP)  # no-op when present
    return convert.grow_vocab(gpt, tok.vocab_size, seed=seed, pad_token_id=tok.pad_id), tok
