"""``ms-gpt sft``: supervised tuning on prompt/response pairs (the mini-ChatGPT step).

Each row ``{"prompt": ..., "response": ...}`` becomes ``<bos> prompt <sep> response <eos>``; the loss
is the next-token cross-entropy on the response tokens and the closing ``<eos>`` only (the prompt is
context, not a target). The result is an ordinary ms_gpt checkpoint folder plus ``sft.json``, which
tells ``ms-gpt generate`` to wrap a prompt the same way and print only the response.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ms_gpt import atomic, checkpoint
from ms_gpt.data.batching import IGNORE, batch_rows, default_buckets
from ms_gpt.data.pipeline import LM_COLUMNS, lm_pad_values
from ms_gpt.data.tasks import DataError, iter_jsonl
from ms_gpt.flows import common
from ms_gpt.flows.configs import SFTConfig
from ms_gpt.training import Trainer

TEMPLATE = "<bos> prompt <sep> response <eos>"


def read_pairs(path: str | Path) -> list[dict]:
    """Rows with string ``prompt`` and non-empty ``response``; errors name ``path:line``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (expected a JSONL file of {{\"prompt\": ..., \"response\": ...}})")
    rows = []
    for n, row in iter_jsonl(path):
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("prompt", "response")):
            shown = json.dumps(row, ensure_ascii=False)[:80]
            raise DataError(f"{path}:{n}: a row needs string fields 'prompt' and 'response', got {shown}")
        if not row["response"].strip():
            raise DataError(f"{path}:{n}: empty 'response' (nothing to learn)")
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no prompt/response rows")
    return rows


def encode_pair(tok, prompt: str, response: str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, labels) for one pair: labels are the next tokens, ``IGNORE`` while they are still
    the prompt or ``<sep>``. A long prompt loses its start, a long response its end (``max_len`` inputs)."""
    p, r = tok.encode(prompt), tok.encode(response)
    r = r[: max(1, max_len - 2)]  # keep <bos>, <sep> and at least one response token
    p = p[max(0, len(p) - (max_len - 2 - len(r))):] if len(p) + len(r) + 2 > max_len else p
    seq = [tok.bos_id] + p + [tok.sep_id] + r + [tok.eos_id]  # max_len + 1 tokens at most
    ids, labels = np.array(seq[:-1], np.int32), np.array(seq[1:], np.int32)
    labels[: len(p) + 1] = IGNORE  # positions bos..last prompt token predict prompt tokens / <sep>
    return ids, labels


def sft(cfg: SFTConfig) -> dict:
    cfg.validate()
    settings = common.setup(cfg)
    pairs = read_pairs(cfg.data)  # the inputs first: a bad one stops the run before --out is touched
    gpt, tok = checkpoint.load_for_tuning(cfg.init, need_sep=True, seed=cfg.seed)
    with common.run_folder(cfg.out, overwrite=cfg.overwrite, init=cfg.init) as out:
        return _sft(cfg, settings, out, pairs, gpt, tok)


def _sft(cfg: SFTConfig, settings, out: Path, pairs, gpt, tok) -> dict:
    max_len = cfg.batching.max_len or gpt.config.n_positions
    if max_len > gpt.config.n_positions:
        raise ValueError(f"max_len={max_len} exceeds the model's position table (n_positions={gpt.config.n_positions})")
    if max_len < 4:
        raise ValueError(f"max_len must be >= 4 (<bos>, a prompt token, <sep>, a response token), got {max_len}")
    rows = [encode_pair(tok, p["prompt"], p["response"], max_len) for p in pairs]
    shapes = common.shapes_for(cfg.batching, settings, max_len, default_buckets(max_len))
    dataset = batch_rows(rows, LM_COLUMNS, lm_pad_values(tok.pad_id), min(cfg.batching.batch_size, len(rows)), shapes,
                         shuffle=True)
    per_epoch = dataset.get_dataset_size()
    train_cfg = common.epoch_schedule(cfg.train, cfg.epochs, per_epoch, cfg.warmup_fraction, ckpt_every=None)
    out.mkdir(parents=True, exist_ok=True)
    common.record_run(out, common.resolved(cfg, train_cfg, shapes))
    trainer = Trainer(gpt, train_cfg, out, jit=settings.compiled)
    before = trainer.evaluate(dataset)["val_loss"]
    with common.step_bar(cfg.progress, train_cfg.steps, "sft") as report:
        trainer.fit(dataset, None, progress=report)
    after = trainer.evaluate(dataset)["val_loss"]
    checkpoint.save_model(gpt, out, tokenizer=tok)
    atomic.write_json(out / checkpoint.SFT, {"template": TEMPLATE, "init": str(cfg.init), "data": str(cfg.data)})
    metrics = {"init": str(cfg.init), "data": str(cfg.data), "pairs": len(pairs), "steps": train_cfg.steps,
               "device": settings.target, "static_shapes": shapes.static, "shape_mode": shapes.mode,
               "train_shapes": trainer.input_shapes(),
               "response_loss": {"before": before, "after": after},
               "train_loss": {"first": trainer.history[0]["loss"], "last": trainer.history[-1]["loss"]}}
    return common.finish(out, metrics)
