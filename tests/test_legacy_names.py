"""Checkpoints written before the backend seam (issue 33) keep loading: every parameter a run folder holds
(model.ckpt, optimizer.ckpt) is keyed by name and shape, and exact resume needs each dropout site's key.
``legacy/parameter_names_f38030d.json`` was written by the code of f38030d; the same models built now must
name, shape and key their parameters identically, on either backend."""

import json
from pathlib import Path

import pytest

from ms_gpt import backend
from ms_gpt.config import GPTConfig
from ms_gpt.environment import device
from ms_gpt.model import GPT, GPTForSequenceClassification
from ms_gpt.optim import AdamW

RECORD = json.loads((Path(__file__).parent / "legacy" / "parameter_names_f38030d.json").read_text())


def described(cell, skip=()):
    return sorted([p.name, list(p.shape)] + ([p.asnumpy().tolist()] if p.name.endswith("rng_state") else [])
                  for p in cell.get_parameters() if not p.name.startswith(skip))


@pytest.mark.parametrize("name", backend.NAMES)
def test_parameters_are_named_shaped_and_keyed_as_before(name):
    device.setup("CPU", mode="pynative", seed=0)
    models = {
        "gpt_tiny": GPT(GPTConfig.preset("tiny"), backend=name),
        "gpt_tiny_untied_pre": GPT(GPTConfig.preset("tiny", tie_word_embeddings=False, norm="pre", final_norm=True,
                                                    attn_dropout=0.1), backend=name),
        "classifier_tiny": GPTForSequenceClassification(GPTConfig.preset("tiny"), 2, backend=name),
    }
    for key, model in models.items():
        assert described(model) == RECORD[key], key
    optimizer = AdamW(GPT(GPTConfig.preset("tiny"), backend=name).trainable_params(), [1e-3], backend=name)
    assert described(optimizer, skip=("decoder", "projection")) == RECORD["adamw_tiny"]
