"""Fine-tuning's library: GPT-1's objective (the head's loss plus λ times the LM loss, or a reward model's
all-pairs loss), the classifier built on a pretrained trunk, its compiled predictor and metrics, the defaults
by model size, the ``<unk>`` guard and early stopping. ``ms-gpt finetune`` and ``ms-gpt reward``
(:mod:`ms_gpt.flows.finetune`) run them."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import mindspore
import numpy as np
from mindspore import ops

from ms_gpt import recipes
from ms_gpt.config import IGNORE
from ms_gpt.errors import MsGptError
from ms_gpt.model import GPTForSequenceClassification, count_parameters
from ms_gpt.model.params import load_params, model_params

if TYPE_CHECKING:  # the command's settings (ms_gpt.flows.configs); not imported at run time
    from ms_gpt.flows.configs import FinetuneConfig


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


def build_classifier(gpt, task: str, num_labels: int, cfg: FinetuneConfig, seed: int, zero_head: bool = False):
    """GPTForSequenceClassification on ``gpt``'s architecture, with its weights unless ``cfg.reinit`` (the
    trunk's dropout set to ``cfg.dropout`` when given); ``zero_head``: the head starts at 0 (a reward model
    then scores every response alike: its loss starts at ln 2)."""
    config = gpt.config
    if cfg.dropout is not None:
        config = config.replace(embd_dropout=cfg.dropout, attn_dropout=cfg.dropout, resid_dropout=cfg.dropout)
    clf = GPTForSequenceClassification(config, num_labels, dropout_seed=seed, task=task,
                                       classifier_dropout=cfg.classifier_dropout, with_lm=cfg.lm_weight > 0,
                                       pool=cfg.pool)
    if not cfg.reinit:
        load_params(clf.gpt, {f"gpt.{k}": v for k, v in model_params(gpt).items()})
    if zero_head:
        for param in clf.classifier.get_parameters():
            param.set_data(mindspore.Tensor(np.zeros(param.shape, np.float32), param.dtype))
    return clf


class TooManyUnknown(MsGptError, ValueError):
    """A split has more ``<unk>`` tokens than ``max_unk`` allows."""


def resolve_defaults(cfg: FinetuneConfig, gpt) -> tuple[FinetuneConfig, dict]:
    """``cfg`` with its by-model-size defaults (``None`` fields) filled in, and what was chosen (for the log
    and metrics.json). The epochs and the patience depend on the training split's length too: they stay
    ``None`` here and :func:`resolve_epochs` fills them in once the batches are counted."""
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
        cfg, lm_weight=pick(cfg.lm_weight, recipe.lm_weight),
        warmup_fraction=pick(cfg.warmup_fraction, recipe.warmup_fraction), pool=pick(cfg.pool, recipe.pool),
        train=train,
        batching=dataclasses.replace(cfg.batching, max_len=max_len))
    chosen = {"parameters": n_params, "size": recipe.size, "learning_rate": train.learning_rate,
              "lm_weight": resolved.lm_weight, "epochs": cfg.epochs, "warmup_fraction": resolved.warmup_fraction,
              "max_len": max_len, "pool": resolved.pool, "patience": cfg.patience,
              "dropout": gpt.config.resid_dropout if cfg.dropout is None else cfg.dropout,
              "by_size": sorted(n for n, v in (("learning_rate", cfg.train.learning_rate), ("lm_weight", cfg.lm_weight),
                                               ("epochs", cfg.epochs), ("warmup_fraction", cfg.warmup_fraction),
                                               ("max_len", cfg.batching.max_len), ("pool", cfg.pool),
                                               ("patience", cfg.patience)) if v is None)}
    return resolved, chosen


def resolve_epochs(cfg: FinetuneConfig, chosen: dict, steps_per_epoch: int) -> tuple[FinetuneConfig, dict]:
    """``cfg`` and ``chosen`` (from :func:`resolve_defaults`) with the epochs and the patience filled in for a
    training split of ``steps_per_epoch`` batches (:func:`ms_gpt.recipes.epoch_plan`)."""
    epochs, patience = recipes.epoch_plan(recipes.finetune_recipe(chosen["parameters"]), steps_per_epoch)
    resolved = dataclasses.replace(cfg, epochs=epochs if cfg.epochs is None else cfg.epochs,
                                   patience=patience if cfg.patience is None else cfg.patience)
    return resolved, {**chosen, "epochs": resolved.epochs, "patience": resolved.patience,
                      "steps_per_epoch": steps_per_epoch}


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
