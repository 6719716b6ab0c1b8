"""Hugging Face ``openai-gpt`` weights <-> ms_gpt cells (ms_gpt's own folders: :mod:`ms_gpt.run_folder.checkpoint`).

GPT-1's Hugging Face layout (``OpenAIGPTLMHeadModel``/``OpenAIGPTModel``):

    transformer.tokens_embed.weight          [vocab, d]     -> decoder.tok_emb
    transformer.positions_embed.weight       [n_pos, d]     -> decoder.pos_emb
    transformer.h.{i}.attn.c_attn.weight     [d, 3d] Conv1D -> self_attn.W_Q/W_K/W_V.weight (split, transposed)
    transformer.h.{i}.attn.c_attn.bias       [3d]           -> self_attn.W_Q/W_K/W_V.bias (split)
    transformer.h.{i}.attn.c_proj.*          [d, d] Conv1D  -> self_attn.linear.*
    transformer.h.{i}.ln_1.*, ln_2.*                        -> ln_1.*, ln_2.*
    transformer.h.{i}.mlp.c_fc.*             [d, 4d] Conv1D -> feed_forward.fc1.*
    transformer.h.{i}.mlp.c_proj.*           [4d, d] Conv1D -> feed_forward.fc2.*
    lm_head.weight                           tied to tokens_embed (not stored separately)

Conv1D computes ``x @ W + b`` with W stored [in, out]; ms_gpt's ``Linear`` stores W [out, in].
``h.{i}.attn.bias`` (the causal-mask buffer of older checkpoints) is not a weight and is skipped.
Special tokens added with ``resize_token_embeddings`` make the embedding longer than 40478 rows; the
embedding's real shape decides ``vocab_size``.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np

from ms_gpt.config import GPTConfig
from ms_gpt.errors import MsGptError
from ms_gpt.model import GPT
from ms_gpt.model.params import check_shapes, load_params, model_params
from ms_gpt.run_folder import atomic

_AFN = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
_AFN_BACK = {"gelu": "gelu", "relu": "relu", "gelu_tanh": "gelu_new"}


class ConversionError(MsGptError, ValueError):
    """A checkpoint that is not an openai-gpt checkpoint ms_gpt can map."""


# --------------------------------------------------------------------------- reading HF files


class _TorchStorage:
    def __init__(self, dtype):
        self.dtype = dtype


_TORCH_DTYPES = {
    "FloatStorage": np.float32, "HalfStorage": np.float16, "DoubleStorage": np.float64,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_, "BFloat16Storage": "bfloat16",
}


def _load_torch_bin(path: Path) -> dict:
    """Read a ``pytorch_model.bin`` (torch zip serialization) into numpy arrays, without torch."""
    if not zipfile.is_zipfile(path):
        raise ConversionError(f"{path} is not a torch zip checkpoint (legacy tar/pickle formats are not supported)")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise ConversionError(f"{path}: no data.pkl inside")
        prefix = pkl[: -len("data.pkl")]

        def storage(key, dtype):
            raw = zf.read(f"{prefix}data/{key}")
            if dtype == "bfloat16":
                u16 = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
                return u16.view(np.float32)
            return np.frombuffer(raw, dtype=dtype)

        def rebuild(store, offset, size, stride, *_):
            flat = store
            if not size:
                return flat[offset:offset + 1].reshape(()).copy()
            item = flat.itemsize
            return np.lib.stride_tricks.as_strided(flat[offset:], shape=tuple(size),
                                                   strides=tuple(s * item for s in stride)).copy()

        class Unpickler(pickle.Unpickler):
            def find_class(self, module, name):
                if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
                    return rebuild
                if module == "torch" and name in _TORCH_DTYPES:
                    return _TorchStorage(_TORCH_DTYPES[name])
                if module == "collections" and name == "OrderedDict":
                    import collections
                    return collections.OrderedDict
                raise pickle.UnpicklingError(f"{path}: refusing to load {module}.{name} (only tensors are allowed)")

            def persistent_load(self, pid):
                _, kind, key, _location, _numel = pid
                dtype = kind.dtype if isinstance(kind, _TorchStorage) else _TORCH_DTYPES.get(getattr(kind, "__name__", ""), np.float32)
                return storage(key, dtype)

        return dict(Unpickler(zf.open(pkl)).load())


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConversionError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_hf_state_dict(hf_dir: str | Path) -> dict:
    """numpy arrays of an HF model folder: model.safetensors (or sharded), else pytorch_model.bin."""
    hf_dir = Path(hf_dir)
    if not hf_dir.is_dir():
        raise ConversionError(f"{hf_dir}: not a folder (expected a Hugging Face model folder with config.json)")
    from safetensors.numpy import load_file

    def load(path: Path) -> dict:
        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own SafetensorError (not a ValueError) on bad bytes
            raise ConversionError(f"{path}: not a readable safetensors file ({exc})") from None

    single = hf_dir / "model.safetensors"
    if single.is_file():
        return load(single)
    index = hf_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ConversionError(f"{index}: no \"weight_map\" object (not a safetensors index)")
        out = {}
        for f in sorted(set(weight_map.values())):
            out.update(load(hf_dir / f))
        return out
    bin_file = hf_dir / "pytorch_model.bin"
    if bin_file.is_file():
        return {k: np.asarray(v, dtype=np.float32) if v.dtype.kind == "f" else v
                for k, v in _load_torch_bin(bin_file).items()}
    raise ConversionError(
        f"{hf_dir}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin found")


# --------------------------------------------------------------------------- mapping


def config_from_hf(hf_config: dict, vocab_rows: int | None = None) -> GPTConfig:
    """GPTConfig for an openai-gpt ``config.json`` (``vocab_rows``: the embedding's real length)."""
    model_type = hf_config.get("model_type")
    if model_type not in (None, "openai-gpt"):
        raise ConversionError(f"config.json has model_type {model_type!r}; only 'openai-gpt' can be converted")
    afn = hf_config.get("afn", "gelu")
    if afn not in _AFN:
        raise ConversionError(f"config.json afn {afn!r} is not supported; supported: {', '.join(_AFN)}")
    d = hf_config.get("n_embd", 768)
    vocab = vocab_rows or hf_config.get("vocab_size", 40478)
    pad = hf_config.get("pad_token_id")
    return GPTConfig(
        vocab_size=vocab, n_positions=hf_config.get("n_positions", 512), d_model=d,
        n_layer=hf_config.get("n_layer", 12), n_head=hf_config.get("n_head", 12), d_ff=4 * d,
        activation=_AFN[afn], positions="learned", norm="post", tie_word_embeddings=True,
        embd_dropout=hf_config.get("embd_pdrop", 0.1), attn_dropout=hf_config.get("attn_pdrop", 0.1),
        resid_dropout=hf_config.get("resid_pdrop", 0.1), layer_norm_eps=hf_config.get("layer_norm_epsilon", 1e-5),
        initializer_range=hf_config.get("initializer_range", 0.02),
        pad_token_id=pad if isinstance(pad, int) and 0 <= pad < vocab else None,
    )


def hf_to_ms_params(state: dict, config: GPTConfig) -> dict:
    """ms_gpt parameter name -> numpy array, from an HF openai-gpt state dict."""
    prefix = "transformer." if any(k.startswith("transformer.") for k in state) else ""

    def get(name):
        key = prefix + name
        if key not in state:
            raise ConversionError(f"weight {key!r} is missing from the checkpoint")
        return np.asarray(state[key], dtype=np.float32)

    d = config.d_model
    out = {"decoder.tok_emb": get("tokens_embed.weight"), "decoder.pos_emb": get("positions_embed.weight")}
    for i in range(config.n_layer):
        h, m = f"h.{i}.", f"decoder.layers.{i}."
        w, b = get(h + "attn.c_attn.weight"), get(h + "attn.c_attn.bias")  # [d, 3d], [3d]
        if w.shape != (d, 3 * d):
            raise ConversionError(f"{prefix}{h}attn.c_attn.weight has shape {w.shape}, expected {(d, 3 * d)}")
        for j, name in enumerate(("W_Q", "W_K", "W_V")):
            out[m + f"self_attn.{name}.weight"] = w[:, j * d:(j + 1) * d].T.copy()
            out[m + f"self_attn.{name}.bias"] = b[j * d:(j + 1) * d].copy()
        for hf, ms in (("attn.c_proj", "self_attn.linear"), ("mlp.c_fc", "feed_forward.fc1"),
                       ("mlp.c_proj", "feed_forward.fc2")):
            out[m + ms + ".weight"] = get(h + hf + ".weight").T.copy()
            out[m + ms + ".bias"] = get(h + hf + ".bias")
        for ln in ("ln_1", "ln_2"):
            out[m + ln + ".weight"] = get(h + ln + ".weight")
            out[m + ln + ".bias"] = get(h + ln + ".bias")
    extra = sorted(k for k in state if k.startswith(prefix + f"h.{config.n_layer}."))
    if extra:
        raise ConversionError(f"checkpoint has more layers than config.json's n_layer={config.n_layer}: {extra[0]}")
    return out


def ms_to_hf_state(params: dict, config: GPTConfig) -> dict:
    """The reverse of :func:`hf_to_ms_params` (keys of ``OpenAIGPTLMHeadModel``)."""
    if config.norm != "post" or config.positions != "learned" or not config.tie_word_embeddings \
            or config.final_norm or config.d_ff != 4 * config.d_model or config.activation not in _AFN_BACK:
        raise ConversionError(
            "only GPT-1-shaped models export to openai-gpt: post-LN, learned positions, tied head, "
            f"no final norm, d_ff = 4 * d_model; this one has norm={config.norm!r}, positions={config.positions!r}, "
            f"tie_word_embeddings={config.tie_word_embeddings}, final_norm={config.final_norm}, d_ff={config.d_ff}")
    out = {"transformer.tokens_embed.weight": params["decoder.tok_emb"],
           "transformer.positions_embed.weight": params["decoder.pos_emb"]}
    for i in range(config.n_layer):
        h, m = f"transformer.h.{i}.", f"decoder.layers.{i}."
        out[h + "attn.c_attn.weight"] = np.concatenate(
            [params[m + f"self_attn.{n}.weight"].T for n in ("W_Q", "W_K", "W_V")], axis=1)
        out[h + "attn.c_attn.bias"] = np.concatenate([params[m + f"self_attn.{n}.bias"] for n in ("W_Q", "W_K", "W_V")])
        for hf, ms in (("attn.c_proj", "self_attn.linear"), ("mlp.c_fc", "feed_forward.fc1"),
                       ("mlp.c_proj", "feed_forward.fc2")):
            out[h + hf + ".weight"] = params[m + ms + ".weight"].T
            out[h + hf + ".bias"] = params[m + ms + ".bias"]
        for ln in ("ln_1", "ln_2"):
            out[h + ln + ".weight"] = params[m + ln + ".weight"]
            out[h + ln + ".bias"] = params[m + ln + ".bias"]
    out["lm_head.weight"] = params["decoder.tok_emb"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def hf_config_from(config: GPTConfig) -> dict:
    return {
        "architectures": ["OpenAIGPTLMHeadModel"], "model_type": "openai-gpt", "afn": _AFN_BACK[config.activation],
        "vocab_size": config.vocab_size, "n_positions": config.n_positions, "n_embd": config.d_model,
        "n_layer": config.n_layer, "n_head": config.n_head, "embd_pdrop": config.embd_dropout,
        "attn_pdrop": config.attn_dropout, "resid_pdrop": config.resid_dropout,
        "layer_norm_epsilon": config.layer_norm_eps, "initializer_range": config.initializer_range,
        "pad_token_id": config.pad_token_id, "tie_word_embeddings": True,
    }


# --------------------------------------------------------------------------- model-level API


def load_hf_openai_gpt(hf_dir: str | Path, backend=None, **overrides):
    """A :class:`ms_gpt.model.GPT` with the weights of a Hugging Face openai-gpt folder (``backend``: see
    :mod:`ms_gpt.backend`; ``overrides``: config fields to change, such as ``pad_token_id``)."""
    hf_dir = Path(hf_dir)
    cfg_file = hf_dir / "config.json"
    if not cfg_file.is_file():
        raise ConversionError(f"{hf_dir}: config.json not found (expected a Hugging Face openai-gpt folder)")
    hf_config = _read_json(cfg_file)
    config_from_hf(hf_config)  # a BERT or GPT-2 config is refused before its weights are read
    state = read_hf_state_dict(hf_dir)
    prefix = "transformer." if any(k.startswith("transformer.") for k in state) else ""
    emb = state.get(prefix + "tokens_embed.weight")
    if emb is None:
        raise ConversionError(f"{hf_dir}: no {prefix}tokens_embed.weight in the checkpoint")
    config = config_from_hf(hf_config, vocab_rows=emb.shape[0])
    if overrides:
        config = config.replace(**overrides)
    params = hf_to_ms_params(state, config)
    check_shapes(config, params, str(Path(hf_dir) / "config.json"))  # before GPT(config) allocates what it says
    model = GPT(config, backend=backend)
    load_params(model, params)
    model.set_train(False)
    return model


def export_hf_openai_gpt(model, out_dir: str | Path) -> Path:
    """Write ``config.json`` + ``model.safetensors`` that transformers' OpenAIGPTLMHeadModel loads, each
    atomically; other files in ``out_dir`` are left alone (``ms-gpt convert`` decides whether it may write
    there: :mod:`ms_gpt.run_folder.ownership`)."""
    from safetensors.numpy import save_file

    state = ms_to_hf_state(model_params(model), model.config)
    out_dir = Path(out_dir)
    with atomic.atomic_path(out_dir / "model.safetensors", suffix=".safetensors") as tmp:
        save_file(state, tmp, metadata={"format": "pt"})
    atomic.write_text(out_dir / "config.json", json.dumps(hf_config_from(model.config), indent=2))
    return out_dir
