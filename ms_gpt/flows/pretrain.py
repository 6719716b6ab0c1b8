"""``ms-gpt pretrain`` and ``ms-gpt generate``: a GPT from scratch on a corpus, then decoding."""

from __future__ import annotations

from pathlib import Path

from ms_gpt import atomic

TOKENIZERS = ("auto", "whitespace", "char", "jieba", "bpe")
_ZH = ("builtin:peoples-daily", "builtin:reviews-zh")


def build_tokenizer(kind: str, corpus: str, lines, vocab_size: int):
    from ms_gpt import text

    if kind not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {kind!r}; available: {', '.join(TOKENIZERS)}")
    if kind == "auto":
        kind = "jieba" if corpus in _ZH else "whitespace"
    if kind == "bpe":
        return text.BPETokenizer.train(lines, vocab_size)
    cls = {"whitespace": text.WhitespaceTokenizer, "char": text.CharTokenizer, "jieba": text.JiebaTokenizer}[kind]
    return cls.build(lines, max_size=vocab_size)


def plot_losses(history, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], label="train")
    val = [(h["step"], h["val_loss"]) for h in history if "val_loss" in h]
    if val:
        ax.plot(*zip(*val), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    with atomic.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


AMP_CHOICES = ("auto", "on", "off")


def pretrain(corpus: str, out: str | Path, preset: str = "tiny", steps: int = 200, tokenizer: str = "auto",
             vocab_size: int = 8000, block_size: int = 64, batch_size: int = 16, learning_rate: float = 3e-3,
             device: str | None = None, seed: int = 0, progress: bool = True, amp: str = "auto",
             until: int | None = None, resume: bool = False, vocab_corpus: str | None = None,
             distributed: bool = False) -> dict:
    """Pretrain on ``corpus`` into ``out``. ``until``: stop (with a checkpoint) after that step;
    ``resume``: continue the run saved in ``out`` (same settings) where it stopped; ``vocab_corpus``:
    more text the vocabulary is built over (not trained on), e.g. the fine-tuning task's training
    texts, so its words are not ``<unk>``. ``distributed``: data-parallel over the workers msrun
    started (``batch_size`` per worker; only rank 0 writes)."""
    from ms_gpt import convert, text
    from ms_gpt import device as dev
    from ms_gpt.config import GPTConfig
    from ms_gpt.data import block_dataset, encode_lines, load_corpus, train_val_split
    from ms_gpt.flows.progress import step_bar
    from ms_gpt.model import GPT
    from ms_gpt.training import CKPT_STATE, TrainConfig, Trainer

    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {', '.join(AMP_CHOICES)}, got {amp!r}")
    settings = dev.setup(device, mode="pynative", seed=seed)
    from ms_gpt import distributed as dist_mod

    dist = dist_mod.init_data_parallel() if distributed else dist_mod.DistInfo()
    out = Path(out)
    if resume and not (out / CKPT_STATE).is_file():
        raise FileNotFoundError(f"nothing to resume in {out}: {CKPT_STATE} not found")
    lines = load_corpus(corpus)
    train_lines, val_lines = train_val_split(lines, 0.05, seed=seed)
    if resume:
        tok = text.load(out / "tokenizer")
    else:
        vocab_lines = train_lines + (load_corpus(vocab_corpus) if vocab_corpus else [])
        tok = build_tokenizer(tokenizer, corpus, vocab_lines, vocab_size)  # deterministic: the same on every rank
        if dist.is_writer:
            tok.save(out / "tokenizer")
    use_amp = settings.target == "Ascend" if amp == "auto" else amp == "on"
    base = GPTConfig.preset(preset)
    config = base.replace(vocab_size=tok.vocab_size, pad_token_id=tok.pad_id,
                          n_positions=max(base.n_positions, block_size),
                          compute_dtype="float16" if use_amp else base.compute_dtype)
    train_ds = block_dataset(encode_lines(tok, train_lines), block_size, batch_size, seed=seed,
                             num_shards=dist.size, shard_id=dist.rank)
    val_ds = block_dataset(encode_lines(tok, val_lines), block_size, min(batch_size, 8), shuffle=False)
    model = GPT(config, dropout_seed=seed)
    cfg = TrainConfig(steps=steps, learning_rate=learning_rate, warmup_steps=min(20, steps // 10),
                      eval_every=max(1, steps // 4), ckpt_every=max(1, steps // 2), amp=use_amp)
    trainer = Trainer(model, cfg, out, dist=dist)
    if resume:
        trainer.resume()
    before = trainer.evaluate(val_ds)
    with step_bar(progress, steps, "pretrain", initial=trainer.step) as report:
        result = trainer.fit(train_ds, val_ds, until=until, progress=report)
    if "val_loss" not in result:
        result.update(trainer.evaluate(val_ds))
    losses = [h["loss"] for h in trainer.history]
    metrics = {
        "corpus": corpus, "preset": preset, "device": settings.target, "amp": use_amp,
        "steps": trainer.step, "of_steps": steps, "skipped_steps": trainer.skipped,
        "tokenizer": tok.kind, "vocab_size": tok.vocab_size, "vocab_corpus": vocab_corpus, "parameters": sum(int(p.size) for p in model.trainable_params()),
        "train_loss": {"first": losses[0], "last": float(sum(losses[-10:]) / len(losses[-10:]))},
        "val_loss_before": before["val_loss"], "val_ppl_before": before["val_ppl"],
        "val_loss": result["val_loss"], "val_ppl": result["val_ppl"],
        "tokens_per_s": round(result.get("tokens_per_s", 0.0), 1),
    }
    if dist.size > 1:  # tokens_per_s above is one worker's; the global batch is batch_size * workers
        metrics["distributed"] = {"workers": dist.size, "batch_per_worker": batch_size,
                                  "global_batch": batch_size * dist.size,
                                  "tokens_per_s_all_workers": round(metrics["tokens_per_s"] * dist.size, 1)}
    if dist.is_writer:
        convert.save_ms_checkpoint(model, out)
        atomic.write_json(out / "metrics.json", metrics)
        plot_losses(trainer.history, out / "loss.png")
    return metrics


def generate_text(ckpt: str | Path, prompt: str, strategy: str = "greedy", use_cache: bool = True,
                  max_new_tokens: int = 32, device: str | None = None, seed: int = 0, **kwargs) -> str:
    from ms_gpt import convert, text
    from ms_gpt import device as dev
    from ms_gpt.generation import generate

    dev.setup(device, mode="pynative", seed=seed)
    ckpt = Path(ckpt)
    if not (ckpt / "tokenizer").is_dir():
        raise FileNotFoundError(f"{ckpt}/tokenizer not found: --ckpt must be a folder written by ms-gpt pretrain")
    model = convert.load_ms_checkpoint(ckpt)
    tok = text.load(ckpt / "tokenizer")
    prompt_ids = tok.encode(prompt, add_bos=True)
    chat = (ckpt / "sft.json").is_file()  # tuned by ms-gpt sft: answer in its format, print the response
    if chat:
        prompt_ids.append(tok.sep_id)
    suppress = tuple(i for i in (tok.pad_id, tok.bos_id, tok.unk_id, tok.sep_id) if i is not None)
    new = generate(model, prompt_ids, strategy=strategy, use_cache=use_cache, max_new_tokens=max_new_tokens,
                   eos_id=tok.eos_id, seed=seed, suppress_ids=suppress, **kwargs)
    if chat:
        return tok.decode(new)
    joiner = " " if tok.kind == "whitespace" else ""
    return joiner.join(s for s in (tok.decode(prompt_ids), tok.decode(new)) if s)
