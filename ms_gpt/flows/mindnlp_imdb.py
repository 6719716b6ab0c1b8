"""``ms-gpt finetune-imdb``: the MindSpore LLM course's GPT-1 IMDb fine-tune, on mindnlp 0.5.1.

The course's steps, kept: ``OpenAIGPTTokenizer`` with ``<bos>``/``<eos>``/``<pad>`` added,
``OpenAIGPTForSequenceClassification`` (2 labels) with ``pad_token_id`` set and the embedding resized,
``process_dataset`` building ``mindspore.dataset`` batches (fixed-length padding + ``batch`` under the
static-shape policy, i.e. on Ascend; ``padded_batch`` elsewhere), a 10% subset split 0.7 / 0.3, and the
Hugging Face ``Trainer`` (3 epochs, lr 2e-5, evaluate and save each epoch, best model at the end).

What this version changes, and why:

- the text is encoded as ``<bos> text <eos>`` so the classifier reads the extract token (the course adds
  the two tokens and never uses them; ``course_tokens=True`` restores its exact encoding);
- the subset and the split are seeded and label-stratified, and the test split is evaluated at the end;
- mindnlp 0.5.1's Trainer is Hugging Face's and takes map-style samples, not a MindSpore dataset. The
  batches ``process_dataset`` made are bridged to it unchanged: :class:`BatchedDataset` holds them, the
  Trainer's loader takes one at a time (``per_device_*_batch_size=1``) and :func:`collate_batch` hands
  it over as tensors. So the shapes and padding the Trainer sees are exactly the pipeline's;
- ``buckets`` pads each batch to the smallest of a few lengths: static shapes with far less padding;
- accuracy is computed with numpy (``evaluate.load('accuracy')`` needs the hub).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from ms_gpt.config import config_diff, to_dict, upgrade
from ms_gpt.data import imdb
from ms_gpt.data.imdb_pipeline import (  # noqa: F401
    IGNORE,
    BatchedDataset,
    check_buckets,
    collate_batch,
    encode,
    process_dataset,
)
from ms_gpt.environment import compat
from ms_gpt.flows import common
from ms_gpt.flows.configs import ImdbConfig
from ms_gpt.hf_openai_gpt import check_model_length, load_classifier, load_tokenizer, resolve_model
from ms_gpt.run_folder import atomic, checkpoint, names, ownership

CKPT_DIR, BEST_DIR = names.HF_CHECKPOINTS, names.BEST


def accuracy_metrics(eval_pred) -> dict:
    """Accuracy over real rows (filler rows carry label -100), computed with numpy."""
    logits, labels = eval_pred
    logits = np.asarray(logits[0] if isinstance(logits, tuple) else logits)
    labels = np.asarray(labels).reshape(-1)
    keep = labels != IGNORE
    return {"accuracy": float((logits.reshape(len(labels), -1)[keep].argmax(-1) == labels[keep]).mean())}


# -------------------------------------------------------------------------------------------- run
def load_data(data_dir, cfg: ImdbConfig, log=print) -> dict:
    raw = imdb.load_local(data_dir) if data_dir else imdb.load_hub("imdb", log=log)
    train_all = imdb.subset(raw["train"], cfg.subset, cfg.seed)
    train, val = imdb.train_val_split(train_all, cfg.val_fraction, cfg.seed)
    test = imdb.subset(raw["test"], cfg.subset, cfg.seed + 2)
    return {"train": train, "validation": val, "test": test}


def _check_resume(out: Path, cfg: ImdbConfig, log=print):
    """The checkpoint to resume from (None for a fresh run) and the run record to save."""
    ckpts = out / CKPT_DIR
    have = last_checkpoint(ckpts) is not None
    current = to_dict(cfg)
    if not cfg.resume:
        if have:
            raise ValueError(f"{out} already holds a run ({ckpts}); continue it with --resume or choose a new --out")
        return None, current
    saved = checkpoint.read_run_config(out)
    if not have or saved is None:
        raise ValueError(f"--resume: {out} has no saved run ({checkpoint.RUN_CONFIG} and {CKPT_DIR}/checkpoint-*)")
    diff = config_diff(upgrade(ImdbConfig, saved), current, free=ImdbConfig.RESUME_FREE)
    if diff:
        was = ", ".join(f"{k}={a!r}" for k, (a, _) in diff.items())
        raise ValueError(f"--resume with different settings than the saved run: {', '.join(diff)} (saved: {was})")
    return str(last_checkpoint(ckpts, log=log)), current


COMPLETE_MARK = "trainer_state.json"  # the Trainer writes it last when it saves a checkpoint


def last_checkpoint(ckpts: Path, log=None) -> Path | None:
    """The Trainer's newest complete ``checkpoint-STEP`` folder in ``ckpts`` (highest step), or None.

    A folder without ``trainer_state.json`` was cut off mid-save (a crash): with ``log`` given it is
    renamed ``checkpoint-STEP.incomplete`` so that neither the resume nor the Trainer's rotation uses it."""
    found = []
    for p in Path(ckpts).glob("checkpoint-*"):
        step = p.name.split("-", 1)[1]
        if not (p.is_dir() and step.isdigit()):
            continue
        if (p / COMPLETE_MARK).is_file():
            found.append((int(step), p))
        elif log is not None:
            p.rename(p.with_name(p.name + ".incomplete"))
            log(f"[imdb] {p} has no {COMPLETE_MARK} (cut off mid-save): set aside as {p.name}.incomplete")
    return max(found)[1] if found else None


def command(cfg: ImdbConfig) -> dict:
    """``ms-gpt finetune-imdb``: :func:`finetune_imdb` with its progress on stderr (stdout: the result)."""
    return finetune_imdb(cfg, log=lambda m: print(m, file=sys.stderr))


def finetune_imdb(cfg: ImdbConfig, log=print) -> dict:
    """The course's flow into ``cfg.out``, holding the folder's lock (one writer per run folder)."""
    cfg.validate()
    inputs = {"--model": cfg.model, "--data-dir": cfg.data_dir}
    with ownership.claim(cfg.out, "finetune-imdb", inputs, mark=True), \
            common.execution(cfg, static_shapes=cfg.static_shapes) as settings:
        return _finetune_imdb(cfg, settings, log)


def _finetune_imdb(cfg: ImdbConfig, settings, log) -> dict:
    out = Path(cfg.out)
    user_endpoint = os.environ.get("HF_ENDPOINT")  # import mindnlp sets a mirror when this is unset
    static = settings.static_shapes or cfg.buckets is not None
    data = load_data(cfg.data_dir, cfg, log=log)  # before any model work: bad data fails fast
    last_ckpt, run_record = _check_resume(out, cfg, log=log)
    out.mkdir(parents=True, exist_ok=True)
    model_path = resolve_model(cfg.model, out, log=log)
    check_model_length(model_path, cfg.max_seq_len)
    # `import mindnlp` points an unset HF_ENDPOINT at a mirror, and huggingface_hub reads it once on import:
    # pin the endpoint this run announced (the user's, else huggingface.co) before that happens.
    os.environ["HF_ENDPOINT"] = imdb.hub_endpoint({"HF_ENDPOINT": user_endpoint} if user_endpoint else {})
    compat.import_mindnlp()  # only now: every bad input above fails before this slow import

    import torch  # mindtorch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(model_path)
    clf = load_classifier(model_path, tokenizer)
    if cfg.max_seq_len > clf.config.n_positions:
        raise ValueError(f"max_seq_len {cfg.max_seq_len} is longer than the model's {clf.config.n_positions} "
                         "positions; use --max-seq-len <= that")

    shared = dict(tokenizer=tokenizer, max_seq_len=cfg.max_seq_len, static_shapes=static, buckets=cfg.buckets,
                  course_tokens=cfg.course_tokens, seed=cfg.seed)
    train_ds = BatchedDataset(process_dataset(data["train"], batch_size=cfg.batch_size, shuffle=True, **shared))
    eval_bs = cfg.eval_batch_size or cfg.batch_size
    val_ds = BatchedDataset(process_dataset(data["validation"], batch_size=eval_bs, fill_remainder=True, **shared))
    test_ds = BatchedDataset(process_dataset(data["test"], batch_size=eval_bs, fill_remainder=True, **shared))
    log(f"[imdb] train {len(data['train'])} / validation {len(data['validation'])} / test {len(data['test'])} "
        f"reviews; {'static' if static else 'dynamic'} shapes {train_ds.shapes()[:6]}")

    class StopAfterEpoch(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            if cfg.until_epoch is not None and state.epoch >= cfg.until_epoch - 1e-9:
                control.should_training_stop = True

    args = TrainingArguments(
        output_dir=str(out / CKPT_DIR), num_train_epochs=cfg.epochs, learning_rate=cfg.learning_rate,
        per_device_train_batch_size=1, per_device_eval_batch_size=1,  # items are whole batches
        eval_strategy="epoch", save_strategy="epoch", logging_strategy="epoch", load_best_model_at_end=True,
        metric_for_best_model="accuracy", greater_is_better=True, save_total_limit=2,
        weight_decay=cfg.weight_decay, warmup_ratio=cfg.warmup_ratio, max_grad_norm=cfg.grad_clip,
        remove_unused_columns=False, report_to=[], seed=cfg.seed, data_seed=cfg.seed, disable_tqdm=True,
        save_safetensors=True,
    )
    trainer = Trainer(model=clf, args=args, train_dataset=train_ds, eval_dataset=val_ds, data_collator=collate_batch,
                      compute_metrics=accuracy_metrics, callbacks=[StopAfterEpoch()])
    checkpoint.write_run_config(out, run_record)
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=last_ckpt)
    train_s = time.perf_counter() - t0
    history = trainer.state.log_history
    evals = [{"epoch": h["epoch"], "eval_accuracy": h["eval_accuracy"], "eval_loss": h.get("eval_loss")}
             for h in history if "eval_accuracy" in h]
    losses = [{"epoch": h["epoch"], "loss": h["loss"]} for h in history if "loss" in h]
    done_epochs = int(round(trainer.state.epoch or 0))
    metrics = {
        "job": "finetune-imdb", "model": cfg.model, "device": settings.target, "static_shapes": static,
        "config": run_record, "data": {k: len(v) for k, v in data.items()},
        "shapes": {"train": train_ds.shapes(), "validation": val_ds.shapes(), "test": test_ds.shapes()},
        "train_tokens": train_ds.token_counts(), "epochs_done": done_epochs, "global_step": trainer.state.global_step,
        "resumed_from": last_ckpt, "train_loss": losses, "eval_history": evals,
        "train_seconds": round(train_s, 2),
    }
    if done_epochs < cfg.epochs:  # stopped early on purpose (until_epoch): no best model or test score yet
        metrics["stopped_after_epoch"] = done_epochs
        return common.finish(out, metrics)
    val = trainer.evaluate(val_ds)
    test = trainer.evaluate(test_ds, metric_key_prefix="test")
    with atomic.atomic_dir(out / BEST_DIR) as tmp:
        trainer.model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    metrics.update(eval_accuracy=val["eval_accuracy"], eval_loss=val["eval_loss"], test_accuracy=test["test_accuracy"],
                   test_loss=test["test_loss"], best_checkpoint=trainer.state.best_model_checkpoint)
    return common.finish(out, metrics)
