"""``ms-gpt generate``: text from a checkpoint folder (pretrained, or tuned by ``ms-gpt sft``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ms_gpt import checkpoint
from ms_gpt.flows import common
from ms_gpt.flows.configs import GenerateConfig
from ms_gpt.generation import generate


def generate_text(cfg: GenerateConfig) -> str:
    """The prompt and its continuation (a chat checkpoint: the answer only)."""
    common.setup(cfg)
    ckpt = Path(cfg.ckpt)
    if not (ckpt / checkpoint.TOKENIZER).is_dir():
        raise FileNotFoundError(f"{ckpt}/tokenizer not found: --ckpt must be a folder written by ms-gpt pretrain")
    model, tok = checkpoint.load_init(ckpt)  # also checks that the tokenizer is the model's
    prompt_ids = tok.encode(cfg.prompt, add_bos=True)
    chat = (ckpt / checkpoint.SFT).is_file()  # tuned by ms-gpt sft: answer in its format, print the response
    if chat:
        prompt_ids.append(tok.sep_id)
    suppress = tuple(i for i in (tok.pad_id, tok.bos_id, tok.unk_id, tok.sep_id) if i is not None)
    gen_cfg = dataclasses.replace(cfg.generation, eos_id=tok.eos_id, seed=cfg.seed, suppress_ids=suppress)
    new = generate(model, prompt_ids, gen_cfg)
    if chat:
        return tok.decode(new)
    joiner = " " if tok.kind == "whitespace" else ""
    return joiner.join(s for s in (tok.decode(prompt_ids), tok.decode(new)) if s)
