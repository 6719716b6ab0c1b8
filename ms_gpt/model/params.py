"""A cell's weights as name -> numpy array, and back (shapes checked, dropout state kept apart)."""

from __future__ import annotations

import re

import mindspore
import numpy as np

from ms_gpt.model.dropout import is_rng_state

# Optimizer entries a weights file may carry (older ms_gpt checkpoints saved them beside the weights).
_OPTIMIZER_STATE = re.compile(r"^(global_step|learning_rate|momentum|beta[12]_power)")


class ParameterMismatch(ValueError):
    """Weights that do not fit the cell (names or shapes differ)."""


def model_params(model) -> dict:
    """The model's weights by name as numpy arrays (dropout state left out)."""
    return {p.name: p.asnumpy() for p in model.get_parameters() if not is_rng_state(p.name)}


def load_params(model, params: dict) -> None:
    """Set ``model``'s weights from ``params`` (name -> array): every weight must be there with its
    shape; dropout state is taken when it matches (so a resumed run repeats its masks)."""
    params = {k: v for k, v in params.items() if not _OPTIMIZER_STATE.match(k)}
    rng = {k: params.pop(k) for k in list(params) if is_rng_state(k)}
    own = {p.name: p for p in model.get_parameters() if not is_rng_state(p.name)}
    missing = sorted(set(own) - set(params))
    unexpected = sorted(set(params) - set(own))
    if missing or unexpected:
        raise ParameterMismatch(f"parameter names differ: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, value in params.items():
        if tuple(own[name].shape) != tuple(value.shape):
            raise ParameterMismatch(f"{name}: checkpoint shape {tuple(value.shape)} != model shape "
                                    f"{tuple(own[name].shape)}")
        own[name].set_data(mindspore.Tensor(np.ascontiguousarray(value, dtype=np.float32)))
    states = {p.name: p for p in model.get_parameters() if is_rng_state(p.name)}
    for name, value in rng.items():
        if name in states and tuple(states[name].shape) == tuple(value.shape):
            states[name].set_data(mindspore.Tensor(np.asarray(value, dtype=np.int32)))
