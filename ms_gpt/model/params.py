"""A cell's weights as name -> numpy array, and back (shapes checked, dropout state kept apart)."""

from __future__ import annotations

import re

import mindspore
import numpy as np

from ms_gpt.errors import MsGptError
from ms_gpt.model.dropout import is_rng_state

# Optimizer entries a weights file may carry (older ms_gpt checkpoints saved them beside the weights).
_OPTIMIZER_STATE = re.compile(r"^(global_step|learning_rate|momentum|beta[12]_power)")


class ParameterMismatch(MsGptError, ValueError):
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


_LAYER = re.compile(r"decoder\.layers\.(\d+)\.")


def check_shapes(config, params: dict, where: str, prefix: str = "") -> None:
    """``params`` (name -> array, as read from a file) are the weights of a GPT of ``config``: checked before
    the model is built, so a config edited to absurd sizes is refused instead of allocated. ``prefix``: the
    trunk's name prefix in a larger cell (``gpt.`` in a classifier)."""
    d = config.d_model
    expected = {
        "decoder.tok_emb": (config.vocab_size, d),
        "decoder.pos_emb": (config.n_positions, d),
        "decoder.layers.0.self_attn.W_Q.weight": (d, d),
        "decoder.layers.0.feed_forward.fc1.weight": (config.d_ff, d)}
    if not config.tie_word_embeddings:
        expected["projection.weight"] = (config.vocab_size, d)
    fields = {"decoder.tok_emb": "vocab_size, d_model", "decoder.pos_emb": "n_positions, d_model",
              "projection.weight": "vocab_size, d_model", "decoder.layers.0.feed_forward.fc1.weight": "d_ff, d_model"}
    for name, shape in expected.items():
        value = params.get(prefix + name)
        if value is None:
            raise ParameterMismatch(f"{where}: the weights have no {prefix + name}; they are not a GPT of this config")
        if tuple(value.shape) != shape:
            raise ParameterMismatch(
                f"{where}: the config says {prefix + name} is {shape} ({fields.get(name, 'd_model, d_model')}) but the "
                f"weights hold {tuple(value.shape)}; the config does not belong to these weights")
    layers = {int(m.group(1)) for k in params if k.startswith(prefix) and (m := _LAYER.match(k[len(prefix):]))}
    if layers != set(range(config.n_layer)):
        raise ParameterMismatch(f"{where}: the config says n_layer={config.n_layer} but the weights hold "
                                f"{len(layers)} layers; the config does not belong to these weights")
