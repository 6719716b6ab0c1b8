"""``ms-gpt pretrain``: a GPT from scratch on a corpus (GPT-1 style contiguous blocks)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ms_gpt import recipes, text
from ms_gpt.config import GPTConfig
from ms_gpt.data import block_dataset, encode_lines, load_corpus
from ms_gpt.data.corpus import split_corpus
from ms_gpt.environment import distributed
from ms_gpt.flows import common
from ms_gpt.flows.configs import PretrainConfig
from ms_gpt.model import GPT, count_parameters
from ms_gpt.run_folder import checkpoint
from ms_gpt.training import Trainer

_ZH = ("builtin:peoples-daily", "builtin:reviews-zh")
# settings that may change between a run and its --resume (the learning rate and schedule too: a run that
# diverged continues from its last finite checkpoint at a lower --learning-rate)


def tokenizer_kind(cfg: PretrainConfig) -> str:
    """``auto``: jieba words for the Chinese built-ins, whitespace words otherwise."""
    if cfg.tokenizer != "auto":
        return cfg.tokenizer
    return "jieba" if cfg.corpus in _ZH else "whitespace"


def boundaries(cfg: PretrainConfig, kind: str) -> str:
    """``auto``: ``newline`` for a char tokenizer (the text as it is, nanoGPT's way), ``eos`` otherwise."""
    if cfg.boundaries == "auto":
        return "newline" if kind == "char" else "eos"
    if cfg.boundaries == "newline" and kind != "char":
        raise ValueError(f"--boundaries newline needs --tokenizer char (a {kind} tokenizer has no newline token); "
                         f"use --boundaries eos or auto")
    return cfg.boundaries


def stream_lines(lines, mode: str) -> list[str]:
    """The texts to tokenize: in ``newline`` mode each line keeps its line break."""
    return [line + "\n" for line in lines] if mode == "newline" else list(lines)


def encode_stream(tok, lines, mode: str) -> list:
    """Token ids per line: ``<bos> line <eos>`` (eos mode) or ``line \\n`` (newline mode)."""
    eos = mode == "eos"
    return encode_lines(tok, stream_lines(lines, mode), add_bos=eos, add_eos=eos)


def resolve_train(cfg: PretrainConfig, target: str):
    """The TrainConfig with pretraining's automatic values filled in: warmup over 10 % of the steps, at most
    100 (nanoGPT's), validation 4 times and a checkpoint twice per run, mixed precision on Ascend."""
    t, steps = cfg.train, cfg.train.steps
    return dataclasses.replace(
        t, warmup_steps=min(100, steps // 10) if t.warmup_steps is None else t.warmup_steps,
        eval_every=max(1, steps // 4) if t.eval_every is None else t.eval_every,
        ckpt_every=max(1, steps // 2) if t.ckpt_every is None else t.ckpt_every,
        amp=target == "Ascend" if t.amp is None else t.amp)


def position_table(out: Path, block: int, resume: bool) -> int:
    """The model's position table: the block it trains, so that no position is left untrained; a resumed run
    keeps its saved model's (runs from before 2026-12-06 trained 64-token blocks in a larger table)."""
    if resume and (out / checkpoint.GPT_CONFIG).is_file():
        return checkpoint.read_gpt_config(out).n_positions
    return block


def pretrain(cfg: PretrainConfig) -> dict:
    """Pretrain on ``cfg.corpus`` into ``cfg.out``. ``until``: stop (with a checkpoint) after that step;
    ``resume``: continue the run saved in ``out`` (same settings) where it stopped; ``vocab_corpus``: more
    text the vocabulary is built over (not trained on), so a later task's words are not ``<unk>``;
    ``distributed``: data-parallel over the workers msrun started (``batch_size`` per worker; only rank 0
    writes)."""
    cfg.validate()
    with common.execution(cfg, static_shapes=cfg.data.static_shapes) as settings:
        dist = distributed.init_data_parallel() if cfg.distributed else distributed.DistInfo()
        # the inputs first: a bad corpus stops the run before --out is touched (--overwrite keeps the old run)
        train_lines, val_lines = split_corpus(load_corpus(cfg.corpus), cfg.val_corpus, cfg.seed)
        kind = tokenizer_kind(cfg)
        mode = boundaries(cfg, kind)
        inputs = {"--corpus": cfg.corpus, "--val-corpus": cfg.val_corpus, "--vocab-corpus": cfg.vocab_corpus}
        with common.run_folder(cfg.out, "pretrain", resume=cfg.resume, overwrite=cfg.overwrite, inputs=inputs,
                               writer=dist.is_writer, resumable=True) as out:
            return _pretrain(cfg, settings, dist, out, train_lines, val_lines, kind, mode)


def _pretrain(cfg: PretrainConfig, settings, dist, out: Path, train_lines, val_lines, kind, mode) -> dict:
    if cfg.resume and not (out / checkpoint.TRAIN_STATE).is_file():
        raise FileNotFoundError(f"nothing to resume in {out}: {checkpoint.TRAIN_STATE} not found")
    train_cfg = resolve_train(cfg, settings.target)
    base = GPTConfig.preset(cfg.preset)
    block, batch, steps = cfg.data.max_len or base.n_positions, cfg.data.batch_size, train_cfg.steps
    if cfg.resume:
        tok = checkpoint.load_tokenizer(out)
    else:  # deterministic: the same vocabulary on every rank
        extra = load_corpus(cfg.vocab_corpus) if cfg.vocab_corpus else []
        tok = text.build(kind, stream_lines(train_lines + extra, mode), cfg.vocab_size)
    dropout = 0.0 if cfg.dropout is None else cfg.dropout
    config = base.replace(vocab_size=tok.vocab_size, pad_token_id=tok.pad_id,
                          n_positions=position_table(out, block, cfg.resume),
                          compute_dtype="float16" if train_cfg.amp else base.compute_dtype,
                          embd_dropout=dropout, attn_dropout=dropout, resid_dropout=dropout)
    # Blocks have one shape by construction (static on every device): training [batch, block], validation
    # [min(batch, 8), block].
    train_ds = block_dataset(encode_stream(tok, train_lines, mode), block, batch, seed=cfg.seed,
                             num_shards=dist.size, shard_id=dist.rank)
    val_ds = block_dataset(encode_stream(tok, val_lines, mode), block, min(batch, 8), shuffle=False)
    model = GPT(config, dropout_seed=cfg.seed)
    n_params = count_parameters(model)
    if train_cfg.learning_rate is None:
        embedding = config.vocab_size * config.d_model
        train_cfg = dataclasses.replace(train_cfg, learning_rate=recipes.pretrain_learning_rate(n_params, embedding))
    done = common.finished(out, min(cfg.until or steps, steps)) if cfg.resume else None  # a no-op resume
    if dist.is_writer:
        out.mkdir(parents=True, exist_ok=True)
        run = dataclasses.replace(cfg, train=train_cfg, boundaries=mode, dropout=dropout,
                                  data=dataclasses.replace(cfg.data, max_len=block,
                                                           static_shapes=settings.static_shapes))
        common.record_run(out, run, free=cfg.RESUME_FREE, resume=cfg.resume, write=done is None)
    if done is not None:
        return done
    if dist.is_writer:
        if not cfg.resume:
            checkpoint.save_tokenizer(tok, out)
            checkpoint.save_prompt_form(out, "lines" if mode == "newline" else "documents")
    trainer = Trainer(model, train_cfg, out, jit=settings.compiled, dist=dist)
    if cfg.resume:
        trainer.resume()
    before = trainer.evaluate(val_ds)
    with common.step_bar(cfg.progress, steps, "pretrain", initial=trainer.step) as report:
        result = trainer.fit(train_ds, val_ds, until=cfg.until, progress=distributed.with_fault_injection(report, dist))
    if "val_loss" not in result:
        result.update(trainer.evaluate(val_ds))
    losses = [h["loss"] for h in trainer.history]
    metrics = {
        "corpus": cfg.corpus, "preset": cfg.preset, "device": settings.target, "amp": train_cfg.amp,
        "static_shapes": settings.static_shapes, "train_shapes": trainer.input_shapes(),
        "steps": trainer.step, "of_steps": steps, "skipped_steps": trainer.skipped,
        "block_size": block, "n_positions": config.n_positions, "tokenizer": tok.kind, "boundaries": mode,
        "dropout": dropout, "vocab_size": tok.vocab_size, "vocab_corpus": cfg.vocab_corpus,
        "parameters": n_params, "learning_rate": train_cfg.learning_rate,
        "train_loss": {"first": losses[0], "last": float(sum(losses[-10:]) / len(losses[-10:]))},
        "val_loss_before": before["val_loss"], "val_ppl_before": before["val_ppl"],
        "val_loss": result["val_loss"], "val_ppl": result["val_ppl"],
        "tokens_per_s": round(result.get("tokens_per_s", 0.0), 1),
    }
    if dist.size > 1:  # tokens_per_s above is one worker's; the global batch is batch_size * workers
        metrics["distributed"] = {"workers": dist.size, "batch_per_worker": batch, "global_batch": batch * dist.size,
                                  "tokens_per_s_all_workers": round(metrics["tokens_per_s"] * dist.size, 1)}
    if dist.is_writer:  # the weights are the trainer's last checkpoint (saved at the final step)
        common.finish(out, metrics, trainer.history)
    return metrics
