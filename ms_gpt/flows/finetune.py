"""``ms-gpt finetune``: GPT-1 style supervised fine-tuning of a pretrained (or random) GPT.

The objective is GPT-1's L3 = L2 + λ·L1: cross-entropy of the task head on the extract token plus λ
times the language-modelling loss on the same inputs (0 turns it off and skips the vocabulary
projection). The learning rate, λ, warmup and epochs default by model size (``ms_gpt.recipes``: GPT-1's
recipe for GPT-1-size models, larger steps and no LM term for small ones); the length defaults to the
model's position table. Schedule: linear warmup, then linear decay to zero. The validation split is
scored after each epoch, the best epoch's model is kept in ``OUT/best`` (model.ckpt, gpt_config.json,
classifier.json, tokenizer/) and the run stops early after ``patience`` epochs without a better one; the
test split is scored with the kept model. Before training, the share of ``<unk>`` tokens of every split
is measured: a tokenizer that cannot spell the task's words makes the task impossible, so above
``max_unk`` the run stops (``allow_unk`` overrides).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import mindspore
import numpy as np
from mindspore import ops

from ms_gpt import checkpoint, recipes
from ms_gpt.data import tasks
from ms_gpt.data.batching import IGNORE, default_buckets
from ms_gpt.errors import MsGptError
from ms_gpt.flows import common
from ms_gpt.flows.configs import FinetuneConfig
from ms_gpt.model import GPTForSequenceClassification, count_parameters
from ms_gpt.model.params import load_params, model_params
from ms_gpt.training import Trainer

BEST = checkpoint.BEST


def all_pairs_loss(logits, labels):
    """The pairwise loss over every (chosen, rejected) combination of a batch of two-choice rows: the mean of
    -log σ(r(chosen of row i) - r(rejected of row j)) over all i, j whose labels are not ``IGNORE``
    (``logits`` [b, 2], ``labels`` [b], the gold choice of each row: 0 or 1)."""
    logits = logits.astype(mindspore.float32)
    valid = (labels != IGNORE).astype(mindspore.float32)  # [b]
    first = (labels == 0).astype(mindspore.float32)
    chosen = first * logits[:, 0] + (1.0 - first) * logits[:, 1]  # [b]
    rejected = first * logits[:, 1] + (1.0 - first) * logits[:, 0]
    margin = chosen[:, None] - rejected[None, :]  # [b, b]: row i's chosen against row j's rejected
    weight = valid[:, None] * valid[None, :]
    return (ops.softplus(-margin) * weight).sum() / ops.maximum(weight.sum(), 1.0)


def make_objective(lm_weight: float, all_pairs: bool = False):
    """L3 = CE(head) + λ·LM over (input_ids, lm_labels, labels) batches; ``all_pairs``: the head's part is
    :func:`all_pairs_loss` (a reward model's ``--pairs all``)."""
    def finetune_objective(model, ids, lm_labels, labels):
        logits, lm_logits = model(ids)
        if all_pairs:
            loss = all_pairs_loss(logits, labels)
        else:
            loss = ops.cross_entropy(logits.astype(mindspore.float32), labels, ignore_index=IGNORE)
        if lm_weight > 0:
            loss = loss + lm_weight * model.gpt.lm_loss(lm_logits, lm_labels)
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
        """``(predicted class, gold label)`` arrays over the real rows of ``dataset``."""
        logits, gold = self.logits(dataset)
        return logits.argmax(-1), gold

    def logits(self, dataset):
        """``(logits [n, classes], gold labels [n])`` over the real rows of ``dataset``."""
        was = self.clf.training
        self.clf.set_train(False)
        out, gold = [], []
        for ids, _, labels in dataset.create_tuple_iterator(num_epochs=1):
            labels = labels.asnumpy()
            keep = labels != IGNORE
            out.append(self._step(ids).asnumpy().astype(np.float64)[keep])
            gold.append(labels[keep])
        self.clf.set_train(was)
        return np.concatenate(out), np.concatenate(gold)


def choice_margin(logits, labels) -> dict:
    """Multiple choice: the gold choice's score minus the best other one's, per row (for a reward model,
    r(chosen) - r(rejected)); mean, median, and the share above 0 (the pairwise accuracy)."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
    rows = np.arange(len(labels))
    gold = logits[rows, labels]
    others = logits.copy()
    others[rows, labels] = -np.inf
    margin = gold - others.max(-1)
    return {"mean": float(margin.mean()), "median": float(np.median(margin)), "positive_share": float((margin > 0).mean())}


def mean_cross_entropy(logits, labels) -> float:
    """The task head's mean cross-entropy (numpy, log-sum-exp)."""
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def build_classifier(gpt, task: str, num_labels: int, cfg: FinetuneConfig, seed: int):
    """GPTForSequenceClassification on ``gpt``'s architecture, with its weights unless ``cfg.reinit`` (the
    trunk's dropout set to ``cfg.dropout`` when given)."""
    config = gpt.config
    if cfg.dropout is not None:
        config = config.replace(embd_dropout=cfg.dropout, attn_dropout=cfg.dropout, resid_dropout=cfg.dropout)
    clf = GPTForSequenceClassification(config, num_labels, dropout_seed=seed, task=task,
                                       classifier_dropout=cfg.classifier_dropout, with_lm=cfg.lm_weight > 0,
                                       pool=cfg.pool)
    if not cfg.reinit:
        load_params(clf.gpt, {f"gpt.{k}": v for k, v in model_params(gpt).items()})
    if getattr(cfg, "ZERO_HEAD", False):  # a reward model starts scoring every response alike: loss ln 2
        for param in clf.classifier.get_parameters():
            param.set_data(mindspore.Tensor(np.zeros(param.shape, np.float32), param.dtype))
    return clf


class TooManyUnknown(MsGptError, ValueError):
    """A split has more ``<unk>`` tokens than ``max_unk`` allows."""


def resolve_defaults(cfg: FinetuneConfig, gpt) -> tuple[FinetuneConfig, dict]:
    """``cfg`` with its by-model-size defaults (``None`` fields) filled in, and what was chosen (for the log
    and metrics.json)."""
    n_params = count_parameters(gpt)
    recipe = recipes.finetune_recipe(n_params)
    max_len = cfg.batching.max_len
    if max_len is None:
        max_len = recipes.default_max_len(gpt.config.n_positions)
    elif max_len > gpt.config.n_positions:
        raise ValueError(f"max_len={max_len} exceeds the model's position table (n_positions="
                         f"{gpt.config.n_positions}); use --max-len <= {gpt.config.n_positions} (or leave it out: "
                         f"the default is the model's n_positions)")
    pick = lambda given, default: default if given is None else given  # noqa: E731
    train = dataclasses.replace(cfg.train, learning_rate=pick(cfg.train.learning_rate, recipe.learning_rate))
    resolved = dataclasses.replace(
        cfg, epochs=pick(cfg.epochs, recipe.epochs), lm_weight=pick(cfg.lm_weight, recipe.lm_weight),
        warmup_fraction=pick(cfg.warmup_fraction, recipe.warmup_fraction), train=train,
        batching=dataclasses.replace(cfg.batching, max_len=max_len))
    chosen = {"parameters": n_params, "size": recipe.size, "learning_rate": train.learning_rate,
              "lm_weight": resolved.lm_weight, "epochs": resolved.epochs, "warmup_fraction": resolved.warmup_fraction,
              "max_len": max_len, "patience": cfg.patience,
              "dropout": gpt.config.resid_dropout if cfg.dropout is None else cfg.dropout,
              "by_size": sorted(n for n, v in (("learning_rate", cfg.train.learning_rate), ("lm_weight", cfg.lm_weight),
                                               ("epochs", cfg.epochs), ("warmup_fraction", cfg.warmup_fraction),
                                               ("max_len", cfg.batching.max_len)) if v is None)}
    return resolved, chosen


def unknown_shares(tok, encoded: dict) -> dict:
    """``{split: share of <unk> among its text tokens}`` after the task's transform."""
    specials = [i for i in (tok.pad_id, tok.bos_id, tok.eos_id, tok.sep_id) if i is not None]
    return {s: round(recipes.unk_share((seq for ex in exs for seq in ex.seqs), tok.unk_id, specials), 5)
            for s, exs in encoded.items()}


def check_unknown(shares: dict, cfg: FinetuneConfig, tok) -> None:
    """Stop with the remedy when a split's ``<unk>`` share is above ``cfg.max_unk`` (unless ``allow_unk``)."""
    worst = max(shares, key=shares.get)
    if shares[worst] <= cfg.max_unk or cfg.allow_unk:
        return
    if tok.kind in ("char", "bpe"):
        remedy = f"pretrain with a larger --vocab-size (this {tok.kind} vocabulary has {tok.vocab_size} tokens)"
    else:
        remedy = "pretrain with a tokenizer that spells every text (--tokenizer char or bpe)"
    raise TooManyUnknown(
        f"{shares[worst]:.1%} of the {worst} split's tokens are <unk> under {cfg.init}'s {tok.kind} tokenizer "
        f"(limit --max-unk {cfg.max_unk:g}; every split: {', '.join(f'{s} {v:.1%}' for s, v in shares.items())}): "
        f"the model cannot read those tokens. {remedy[0].upper() + remedy[1:]}, or build the vocabulary over the "
        f"task's texts too (ms-gpt pretrain --vocab-corpus TASK_TEXTS); --allow-unk trains anyway")


def better(epoch: dict, best: dict) -> bool:
    """The model kept: the higher validation accuracy; at equal accuracy the lower validation loss."""
    return (epoch["valid_accuracy"], -epoch["valid_loss"]) > (best["valid_accuracy"], -best["valid_loss"])


def stop_now(epochs: list, patience: int) -> bool:
    """Early stopping: the last ``patience`` epochs beat neither the best validation accuracy nor the best
    validation loss of the epochs before them (loss counts too: a small model's accuracy can sit at chance
    for a few epochs while its loss already falls)."""
    if not patience or len(epochs) <= patience:
        return False
    before, recent = epochs[:-patience], epochs[-patience:]
    best_acc = max(e["valid_accuracy"] for e in before)
    best_loss = min(e["valid_loss"] for e in before)
    return all(e["valid_accuracy"] <= best_acc and e["valid_loss"] >= best_loss for e in recent)


def finetune(cfg: FinetuneConfig, data_set=None, meta: dict | None = None) -> dict:
    """Fine-tune ``cfg.init`` (an ms_gpt or Hugging Face openai-gpt folder) on ``cfg.data`` for ``cfg.task``
    (``data_set``: a :class:`~ms_gpt.data.tasks.TaskData` made by the caller instead, e.g. preference pairs
    as two-choice rows for a reward model; ``meta``: more entries for the head's classifier.json, e.g. a
    reward model's role)."""
    cfg.validate()
    settings = common.setup(cfg)
    # the inputs first: a bad one stops the run before --out is touched (--overwrite keeps the old run)
    if data_set is None:
        data_set = tasks.load_task_data(cfg.data, cfg.task, seed=cfg.seed)
    gpt, tok = checkpoint.load_for_tuning(cfg.init, need_sep=cfg.task != "classification", seed=cfg.seed)
    with common.run_folder(cfg.out, cfg.COMMAND, overwrite=cfg.overwrite,
                           inputs={"--init": cfg.init, "--data": cfg.data}) as out:
        return _finetune(cfg, settings, out, data_set, gpt, tok, meta or {})


def _finetune(cfg: FinetuneConfig, settings, out: Path, data_set, gpt, tok, extra_meta: dict) -> dict:
    cfg, chosen = resolve_defaults(cfg, gpt)
    max_len = cfg.batching.max_len
    shapes = common.shapes_for(cfg.batching, settings, max_len, default_buckets(max_len))
    encoded = {s: tasks.encode_split(tok, data_set, s, max_len, cfg.train_limit if s == "train" else None)
               for s in tasks.SPLITS}
    unk = unknown_shares(tok, encoded)
    print(f"finetune: {chosen['parameters'] / 1e6:.2f}M-parameter model, {chosen['size']}-model defaults for "
          f"{', '.join(chosen['by_size']) or 'nothing (all given)'}: learning rate {chosen['learning_rate']:g}, "
          f"λ {chosen['lm_weight']:g}, up to {chosen['epochs']} epochs (patience {cfg.patience}), max_len {max_len}; "
          f"<unk> share {', '.join(f'{s} {v:.1%}' for s, v in unk.items())}", file=sys.stderr)
    check_unknown(unk, cfg, tok)
    batch = cfg.batching.batch_size
    train_ds = tasks.task_dataset(encoded["train"], batch, tok.pad_id, shapes, shuffle=True)
    eval_ds = {s: tasks.task_dataset(encoded[s], batch, tok.pad_id, shapes, shuffle=False) for s in ("valid", "test")}
    per_epoch = train_ds.get_dataset_size()
    train_cfg = common.epoch_schedule(cfg.train, cfg.epochs, per_epoch, cfg.warmup_fraction, ckpt_every=per_epoch)
    run = common.resolved(cfg, train_cfg, shapes)
    out.mkdir(parents=True, exist_ok=True)
    record = common.record_run(out, run)
    clf = build_classifier(gpt, cfg.task, data_set.num_labels, cfg, cfg.seed)
    all_pairs = getattr(cfg, "pairs", "given") == "all"  # a reward model's --pairs all
    trainer = Trainer(clf, train_cfg, out, jit=settings.compiled, objective=make_objective(cfg.lm_weight, all_pairs),
                      resumable=False)
    predict = Predictor(clf, jit=settings.compiled)
    names = [str(c) for c in data_set.classes] or [f"choice {i}" for i in range(data_set.num_labels)]
    meta = {"classes": data_set.classes, "init": str(cfg.init), "data": cfg.data, "run_config": record,
            **extra_meta}
    epochs, best, stopped_early = [], None, False
    with common.step_bar(cfg.progress, train_cfg.steps, "finetune") as report:
        for epoch in range(1, cfg.epochs + 1):
            fit = trainer.fit(train_ds, None, until=epoch * per_epoch, progress=report)
            logits, gold = predict.logits(eval_ds["valid"])
            valid = classification_report(logits.argmax(-1), gold, data_set.num_labels, names)
            losses = [h["loss"] for h in trainer.history[-per_epoch:]]
            epochs.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "valid_accuracy": valid["accuracy"],
                           "valid_loss": mean_cross_entropy(logits, gold), "valid_macro_f1": valid["macro_f1"],
                           "tokens_per_s": round(fit["tokens_per_s"], 1)})
            if best is None or better(epochs[-1], best):
                best = epochs[-1]
                checkpoint.save_classifier(clf, tok, {**meta, "epoch": epoch, "valid_accuracy": valid["accuracy"]},
                                           out / BEST)
            if stop_now(epochs, cfg.patience) and epoch < cfg.epochs:
                stopped_early = True
                break
    best_clf, _, _ = checkpoint.load_classifier(out / BEST)  # a fresh model + compile: the kept checkpoint is scored
    test_logits, test_gold = Predictor(best_clf, jit=settings.compiled).logits(eval_ds["test"])
    test = classification_report(test_logits.argmax(-1), test_gold, data_set.num_labels, names)
    metrics = {
        "task": cfg.task, **{k: meta[k] for k in ("role", "pairs") if k in meta},
        "data": cfg.data, "init": str(cfg.init), "reinit": cfg.reinit, "device": settings.target,
        "static_shapes": shapes.static, "shape_mode": shapes.mode, "train_shapes": trainer.input_shapes(),
        "train_examples": len(encoded["train"]), "valid_examples": len(encoded["valid"]),
        "test_examples": len(encoded["test"]), "num_labels": data_set.num_labels, "classes": data_set.classes,
        "defaults": chosen, "unk_share": unk, "steps": trainer.step, "of_steps": train_cfg.steps,
        "stopped_early": stopped_early, "lm_weight": cfg.lm_weight, "best_epoch": best["epoch"],
        "valid_accuracy": best["valid_accuracy"], "accuracy": test["accuracy"], "macro_f1": test["macro_f1"],
        "per_class": test["per_class"], "epochs": epochs,
        **({"test_margin": choice_margin(test_logits, test_gold)} if cfg.task == "multiple-choice" else {}),
        "train_loss": {"first": trainer.history[0]["loss"],
                       "last": float(np.mean([h["loss"] for h in trainer.history[-10:]]))},
    }
    return common.finish(out, metrics, trainer.history)
