"""``ms-gpt sft``: supervised tuning on prompt/response pairs (the mini-ChatGPT step).

Each row ``{"prompt": ..., "response": ...}`` becomes ``<bos> prompt <sep> response <eos>``; the loss
is the next-token cross-entropy on the response tokens and the closing ``<eos>`` only (the prompt is
context, not a target). The result is an ordinary ms_gpt checkpoint folder plus ``sft.json``, which
tells ``ms-gpt generate`` to wrap a prompt the same way and print only the response.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ms_gpt import atomic

SFT_META = "sft.json"
TEMPLATE = "<bos> prompt <sep> response <eos>"


@dataclass
class SFTConfig:
    epochs: int = 20
    batch_size: int = 8
    learning_rate: float = 1e-4
    warmup_fraction: float = 0.05
    max_len: int | None = None  # default: the model's n_positions

    def validate(self) -> None:
        from ms_gpt.checks import require_positive_ints

        require_positive_ints(epochs=self.epochs, batch_size=self.batch_size)
        if self.max_len is not None:
            require_positive_ints(max_len=self.max_len)
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction!r}")


def read_pairs(path: str | Path) -> list[dict]:
    """Rows with string ``prompt`` and non-empty ``response``; errors name ``path:line``."""
    from ms_gpt.data.tasks import DataError, iter_jsonl

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
    from ms_gpt.data.pipeline import IGNORE

    p, r = tok.encode(prompt), tok.encode(response)
    r = r[: max(1, max_len - 2)]  # keep <bos>, <sep> and at least one response token
    p = p[max(0, len(p) - (max_len - 2 - len(r))):] if len(p) + len(r) + 2 > max_len else p
    seq = [tok.bos_id] + p + [tok.sep_id] + r + [tok.eos_id]  # max_len + 1 tokens at most
    ids, labels = np.array(seq[:-1], np.int32), np.array(seq[1:], np.int32)
    labels[: len(p) + 1] = IGNORE  # positions bos..last prompt token predict prompt tokens / <sep>
    return ids, labels


def sft(init: str, data: str, out: str | Path, cfg: SFTConfig | None = None, device: str | None = None,
        seed: int = 0, progress: bool = True) -> dict:
    import mindspore

    from ms_gpt import convert
    from ms_gpt import device as dev
    from ms_gpt.data.pipeline import _Rows, _static_batches
    from ms_gpt.data.tasks import default_buckets
    from ms_gpt.flows.finetune import load_for_tuning
    from ms_gpt.flows.progress import step_bar
    from ms_gpt.training import TrainConfig, Trainer

    cfg = cfg or SFTConfig()
    cfg.validate()
    settings = dev.setup(device, mode="pynative", seed=seed)
    mindspore.dataset.config.set_seed(seed)
    out = Path(out)
    pairs = read_pairs(data)
    gpt, tok = load_for_tuning(init, need_sep=True, seed=seed)
    max_len = cfg.max_len or gpt.config.n_positions
    if max_len > gpt.config.n_positions:
        raise ValueError(f"max_len={max_len} exceeds the model's position table (n_positions={gpt.config.n_positions})")
    if max_len < 4:
        raise ValueError(f"max_len must be >= 4 (<bos>, a prompt token, <sep>, a response token), got {max_len}")
    rows = [encode_pair(tok, p["prompt"], p["response"], max_len) for p in pairs]
    batches = _static_batches(rows, default_buckets(max_len), min(cfg.batch_size, len(rows)), tok.pad_id, drop_remainder=False)
    dataset = mindspore.dataset.GeneratorDataset(_Rows(batches), column_names=["input_ids", "labels"], shuffle=True)
    per_epoch = dataset.get_dataset_size()
    steps = per_epoch * cfg.epochs
    train_cfg = TrainConfig(steps=steps, learning_rate=cfg.learning_rate, schedule="linear", min_lr_ratio=0.0,
                            warmup_steps=min(int(round(cfg.warmup_fraction * steps)), steps - 1),
                            eval_every=steps, ckpt_every=steps)
    trainer = Trainer(gpt, train_cfg, out)
    before = trainer.evaluate(dataset)["val_loss"]
    with step_bar(progress, steps, "sft") as report:
        trainer.fit(dataset, None, progress=report)
    after = trainer.evaluate(dataset)["val_loss"]
    convert.save_ms_checkpoint(gpt, out)
    tok.save(out / "tokenizer")
    atomic.write_json(out / SFT_META, {"template": TEMPLATE, "init": str(init), "data": str(data)})
    metrics = {"init": str(init), "data": str(data), "pairs": len(pairs), "steps": steps, "device": settings.target,
               "response_loss": {"before": before, "after": after},
               "train_loss": {"first": trainer.history[0]["loss"], "last": trainer.history[-1]["loss"]}}
    atomic.write_json(out / "metrics.json", metrics)
    return metrics
