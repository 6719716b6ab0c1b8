"""``ms-gpt generate``: text from a checkpoint folder (pretrained, or tuned by ``ms-gpt sft`` or ``ppo``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ms_gpt.config import GenerationConfig
from ms_gpt.flows import common
from ms_gpt.flows.configs import GenerateConfig
from ms_gpt.generation import generate
from ms_gpt.prompting import open_checkpoint


class Writer:
    """A checkpoint folder's model, loaded once, continuing prompts the way it was trained
    (:mod:`ms_gpt.prompting`): a document or a line goes on; a dialogue model gives only its answer."""

    def __init__(self, ckpt: str | Path):
        self.ckpt = Path(ckpt)
        self.model, self.prompter = open_checkpoint(self.ckpt)

    def __call__(self, prompt: str, gen: GenerationConfig, stop_at_newline: bool = False) -> str:
        ids = self.prompter.encode(prompt)
        new = generate(self.model, ids, self.prompter.generation(gen, at_line_end=stop_at_newline))
        return self.prompter.continuation(ids, new, at_line_end=stop_at_newline)


def generate_text(cfg: GenerateConfig) -> str:
    """The prompt and its continuation (a chat checkpoint: the answer only)."""
    cfg.generation.validate()  # before any loading: a bad setting is refused at once
    common.setup(cfg)
    writer = Writer(cfg.ckpt)
    return writer(cfg.prompt, dataclasses.replace(cfg.generation, seed=cfg.seed), cfg.stop_at_newline)
