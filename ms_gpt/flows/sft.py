"""``ms-gpt sft``: supervised tuning on dialogue (the mini-ChatGPT step).

Each exchange becomes ``<bos> turn1 <sep> ... <sep> response <eos>`` (a prompt/response pair is the
one-turn case, ``<bos> prompt <sep> response <eos>``); the loss is the next-token cross-entropy on the
response tokens and the closing ``<eos>`` only (the earlier turns are context, not targets). See
:mod:`ms_gpt.data.dialogue` for the sources (``builtin:chitchat``, JSONL). The result is an ordinary ms_gpt
checkpoint folder plus ``sft.json``, which tells ``ms-gpt generate`` and ``ms-gpt chat`` to wrap a prompt
the same way and print only the response.
"""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path

from ms_gpt import recipes
from ms_gpt.data.batching import batch_rows, default_buckets
from ms_gpt.data.dialogue import encode_exchange, load_dialogue
from ms_gpt.data.pipeline import LM_COLUMNS, lm_pad_values
from ms_gpt.flows import common
from ms_gpt.flows.configs import ChatConfig, SFTConfig
from ms_gpt.model import count_parameters
from ms_gpt.prompting import Prompter, respond
from ms_gpt.run_folder import atomic, checkpoint
from ms_gpt.training import Trainer

TEMPLATE = "<bos> turn <sep> ... <sep> response <eos>"
SHOWN_REPLIES = 5  # contexts whose replies before and after tuning sft prints (and keeps in metrics.json)


def encode_pair(tok, prompt: str, response: str, max_len: int):
    """(input_ids, labels) of a one-turn exchange (see :func:`ms_gpt.data.dialogue.encode_exchange`)."""
    return encode_exchange(tok, (prompt,), response, max_len)


def plan(n_train: int, cfg: SFTConfig) -> tuple[int | None, int]:
    """(training exchanges to keep, epochs): ``train_limit`` / ``epochs`` when given; by default every
    exchange, or a seeded sample of :data:`recipes.SFT_STEP_BUDGET` steps' worth when one pass is longer
    (a dialogue corpus), and as many passes as fit in that budget (1 to :data:`recipes.SFT_MAX_EPOCHS`)."""
    batch = cfg.batching.batch_size
    limit = cfg.train_limit
    if limit is None and math.ceil(n_train / batch) > recipes.SFT_STEP_BUDGET:
        limit = recipes.SFT_STEP_BUDGET * batch
    kept = n_train if limit is None else min(limit, n_train)
    epochs = cfg.epochs
    if epochs is None:
        epochs = max(1, min(recipes.SFT_MAX_EPOCHS, recipes.SFT_STEP_BUDGET // math.ceil(kept / batch)))
    return (None if limit is None or limit >= n_train else limit), epochs


def sft(cfg: SFTConfig) -> dict:
    cfg.validate()
    with common.execution(cfg) as settings:
        common.say("sft", f"reading {cfg.data} and {cfg.init}")
        train_ex, valid_ex = load_dialogue(cfg.data, seed=cfg.seed)  # the inputs first: a bad one stops the run
        gpt, tok = checkpoint.load_for_tuning(cfg.init, need_sep=True, seed=cfg.seed)  # before --out is touched
        with common.run_folder(cfg.out, "sft", overwrite=cfg.overwrite,
                               inputs={"--init": cfg.init, "--data": cfg.data}) as out:
            return _sft(cfg, settings, out, train_ex, valid_ex, gpt, tok)


def sample_replies(model, tok, exchanges, gen) -> list[str]:
    """The model's replies to the contexts of ``exchanges``, decoded as ``ms-gpt chat`` decodes by default."""
    prompter = Prompter(tok, "dialogue")
    gen = prompter.generation(gen)
    return [respond(model, prompter, list(e.context), gen).text for e in exchanges]


def _sft(cfg: SFTConfig, settings, out: Path, train_ex, valid_ex, gpt, tok) -> dict:
    max_len = cfg.batching.max_len or gpt.config.n_positions
    if max_len > gpt.config.n_positions:
        raise ValueError(f"max_len={max_len} exceeds the model's position table (n_positions={gpt.config.n_positions})")
    limit, epochs = plan(len(train_ex), cfg)
    if limit is not None:  # a seeded sample, not the corpus' first rows (one conversation after another)
        train_ex = random.Random(cfg.seed).sample(train_ex, limit)
    common.say("sft", f"encoding {len(train_ex):,} training and {min(len(valid_ex), recipes.SFT_VALID_LIMIT):,} "
                      f"held-out exchanges ({TEMPLATE}, at most {max_len} tokens)")
    encode = lambda rows: [encode_exchange(tok, e.context, e.response, max_len) for e in rows]  # noqa: E731
    rows = encode(train_ex)
    shapes = common.shapes_for(cfg.batching, settings, max_len, default_buckets(max_len))
    batch = min(cfg.batching.batch_size, len(rows))
    pad = lm_pad_values(tok.pad_id)
    dataset = batch_rows(rows, LM_COLUMNS, pad, batch, shapes, shuffle=True)
    # the training loss before/after: on a seeded sample of the training exchanges (scoring them all took as
    # long as a pass over them)
    scored = random.Random(cfg.seed + 1).sample(rows, min(len(rows), recipes.SFT_VALID_LIMIT))
    train_sample = batch_rows(scored, LM_COLUMNS, pad, min(batch, len(scored)), shapes, shuffle=False)
    held_out = None
    shown = random.Random(cfg.seed).sample(valid_ex or train_ex, min(SHOWN_REPLIES, len(valid_ex or train_ex)))
    if valid_ex:
        valid_ex = random.Random(cfg.seed).sample(valid_ex, min(len(valid_ex), recipes.SFT_VALID_LIMIT))
        held_out = batch_rows(encode(valid_ex), LM_COLUMNS, pad, min(batch, len(valid_ex)), shapes, shuffle=False)
    per_epoch = dataset.get_dataset_size()
    train = cfg.train
    if train.learning_rate is None:
        train = dataclasses.replace(train, learning_rate=recipes.sft_learning_rate(count_parameters(gpt)))
    run = common.resolved(dataclasses.replace(cfg, epochs=epochs, train_limit=limit),
                          common.epoch_schedule(train, epochs, per_epoch, cfg.warmup_fraction, ckpt_every=None),
                          shapes)
    train_cfg = run.train
    common.record_run(out, run)
    # what generate/chat need, before training: a folder stopped by Ctrl-C answers with its last weights
    checkpoint.save_tokenizer(tok, out)
    checkpoint.save_prompt_form(out, "dialogue")
    atomic.write_json(out / checkpoint.SFT, {"template": TEMPLATE, "init": str(cfg.init), "data": str(cfg.data)})
    trainer = Trainer(gpt, train_cfg, out, jit=settings.compiled, resumable=False)
    common.say("sft", f"scoring the responses before tuning ({len(scored)} training"
                      + (f", {len(valid_ex)} held-out exchanges)" if held_out is not None else " exchanges)"))
    before = trainer.evaluate(train_sample)["val_loss"]
    valid_before = trainer.evaluate(held_out)["val_loss"] if held_out is not None else None
    gen = ChatConfig().generation
    common.say("sft", f"replying to {len(shown)} {'held-out' if valid_ex else 'training'} contexts before tuning "
                      f"(ms-gpt chat's decoding: {gen.strategy})")
    replies_before = sample_replies(gpt, tok, shown, gen)
    common.say("sft", f"tuning: {train_cfg.steps:,} steps ({epochs} epoch{'s' * (epochs > 1)} of {per_epoch:,} "
                      f"batches of {batch}), learning rate {train_cfg.learning_rate:g}")
    with common.step_bar(cfg.progress, train_cfg.steps, "sft") as report:
        trainer.fit(dataset, None, progress=report)
    checkpoint.save_model(gpt, out)
    common.say("sft", "scoring the responses after tuning")
    after = trainer.evaluate(train_sample)["val_loss"]
    replies = [{"context": list(e.context), "real": e.response, "before": b, "after": a}
               for e, b, a in zip(shown, replies_before, sample_replies(gpt, tok, shown, gen))]
    for r in replies:
        common.say("sft", "\n  ".join(["", f"context: {' | '.join(r['context'])}", f"real:    {r['real']}",
                                       f"before:  {r['before']}", f"after:   {r['after']}"]))
    metrics = {"init": str(cfg.init), "data": str(cfg.data), "pairs": len(rows), "epochs": epochs,
               "learning_rate": train_cfg.learning_rate,
               "steps": train_cfg.steps, "device": settings.target, "static_shapes": shapes.static,
               "shape_mode": shapes.mode, "train_shapes": trainer.input_shapes(),
               "response_loss": {"exchanges": len(scored), "before": before, "after": after},
               "train_loss": {"first": trainer.history[0]["loss"], "last": trainer.history[-1]["loss"]},
               "replies": replies}
    if held_out is not None:
        metrics["held_out"] = {"exchanges": len(valid_ex), "response_loss": {
            "before": valid_before, "after": trainer.evaluate(held_out)["val_loss"]}}
    return common.finish(out, metrics, trainer.history)
