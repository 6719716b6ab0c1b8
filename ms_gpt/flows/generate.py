"""``ms-gpt generate``: text from a checkpoint folder (pretrained, or tuned by ``ms-gpt sft`` or ``ppo``)."""

from __future__ import annotations

import dataclasses

from ms_gpt.flows import common
from ms_gpt.flows.configs import GenerateConfig
from ms_gpt.prompting import Writer


def generate_text(cfg: GenerateConfig) -> str:
    """The prompt and its continuation (a chat checkpoint: the answer only)."""
    cfg.generation.validate()  # before any loading: a bad setting is refused at once
    common.setup(cfg)
    writer = Writer.open(cfg.ckpt)
    return writer(cfg.prompt, dataclasses.replace(cfg.generation, seed=cfg.seed), cfg.stop_at_newline)
