"""``ms-gpt generate``: text from a checkpoint folder (pretrained, or tuned by ``ms-gpt sft``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ms_gpt import checkpoint
from ms_gpt.config import GenerationConfig
from ms_gpt.flows import common
from ms_gpt.flows.configs import GenerateConfig
from ms_gpt.generation import generate


def newline_trained(ckpt: Path) -> bool:
    """Whether ``ckpt`` was pretrained on the plain text (``--boundaries newline``), per its run_config.json
    (a PPO-tuned model: per the ppo.json its policy's setting was copied into)."""
    ppo = Path(ckpt) / checkpoint.PPO
    record = checkpoint.read_json(ppo) if ppo.is_file() else checkpoint.read_run_config(ckpt) or {}
    return record.get("boundaries") == "newline"


def prompt_ids(tok, prompt: str, chat: bool, newline: int | None) -> list:
    """The token ids a model is prompted with: ``<bos> prompt`` (a line of an eos-trained model), a line
    break then the prompt (``newline``: the newline token of a newline-trained one), and ``<sep>`` after
    it for a chat model (``chat``: written by ms-gpt sft), whose answer follows."""
    ids = [newline] + tok.encode(prompt) if newline is not None else tok.encode(prompt, add_bos=True)
    if chat:
        ids.append(tok.sep_id)
    return ids


def open_checkpoint(ckpt: Path):
    """``(model, tokenizer)`` of a folder written by ms-gpt pretrain or sft, the tokenizer checked against
    the model (:func:`ms_gpt.checkpoint.load_init`)."""
    if not (Path(ckpt) / checkpoint.TOKENIZER).is_dir():
        raise FileNotFoundError(f"{ckpt}/tokenizer not found: --ckpt must be a folder written by ms-gpt pretrain "
                                "or sft")
    return checkpoint.load_init(ckpt)


def join_text(tok, *parts: str) -> str:
    """Texts decoded apart as one text: with a space between them for a whitespace (word) tokenizer, directly
    otherwise; empty parts left out."""
    return (" " if tok.kind == "whitespace" else "").join(p for p in parts if p)


def suppressed_ids(tok) -> tuple:
    """Tokens a text never contains: <pad>, <bos>, <unk>, <sep> (those the tokenizer has)."""
    return tuple(i for i in (tok.pad_id, tok.bos_id, tok.unk_id, tok.sep_id) if i is not None)


class Writer:
    """A checkpoint folder's model and tokenizer, loaded once, continuing prompts the way it was trained:
    ``<bos> prompt`` (a line of an eos-trained model), a line break then the prompt (a newline-trained
    one), or ``<bos> prompt <sep>`` and only the answer (a chat checkpoint from ``ms-gpt sft``)."""

    def __init__(self, ckpt: str | Path):
        self.ckpt = Path(ckpt)
        self.model, self.tok = open_checkpoint(self.ckpt)
        self.chat = (self.ckpt / checkpoint.SFT).is_file()
        self.newline = self.tok.token_id("\n") if newline_trained(self.ckpt) and not self.chat else None

    def __call__(self, prompt: str, gen: GenerationConfig, stop_at_newline: bool = False) -> str:
        tok = self.tok
        ids = prompt_ids(tok, prompt, self.chat, self.newline)
        stops = (self.newline,) if stop_at_newline and self.newline is not None else ()
        gen = dataclasses.replace(gen, eos_id=tok.eos_id, suppress_ids=suppressed_ids(tok), stop_ids=stops)
        new = generate(self.model, ids, gen)
        if stops and new and new[-1] in stops:
            new = new[:-1]
        if self.chat:
            return tok.decode(new)
        return join_text(tok, tok.decode(ids).lstrip("\n"), tok.decode(new))


def generate_text(cfg: GenerateConfig) -> str:
    """The prompt and its continuation (a chat checkpoint: the answer only)."""
    cfg.generation.validate()  # before any loading: a bad setting is refused at once
    common.setup(cfg)
    writer = Writer(cfg.ckpt)
    return writer(cfg.prompt, dataclasses.replace(cfg.generation, seed=cfg.seed), cfg.stop_at_newline)
