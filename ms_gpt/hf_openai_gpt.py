"""openai-gpt under mindnlp for the MindNLP flow (``ms-gpt finetune-imdb``): the model named by ``--model`` (a
hub name, a local Hugging Face folder, or an ms_gpt checkpoint exported through :mod:`ms_gpt.convert`), its
tokenizer with the flow's special tokens and the two-label sequence classifier (``transformers`` is
mindnlp's: import ``mindnlp`` first, see :mod:`ms_gpt.environment.compat`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ms_gpt import convert
from ms_gpt.data import imdb
from ms_gpt.errors import MsGptError
from ms_gpt.run_folder import checkpoint, names
from ms_gpt.text.bpe import BPETokenizer

SPECIAL_TOKENS = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"}
HUB_MODEL = "openai-gpt"
INIT_DIR = names.HF_INIT  # where an ms_gpt checkpoint given as --model is exported to, in the run folder
# What a local Hugging Face model folder needs for this flow.
HF_TOKENIZER_FILES = ("vocab.json", "merges.txt")
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class ModelError(MsGptError, ValueError):
    """``--model`` does not name a usable openai-gpt model."""


def check_hf_dir(p: Path) -> None:
    missing = [f for f in ("config.json",) + HF_TOKENIZER_FILES if not (p / f).is_file()]
    if not any((p / w).is_file() for w in HF_WEIGHT_FILES):
        missing.append(" or ".join(HF_WEIGHT_FILES))
    if missing:
        raise ModelError(f"--model {p}: missing {', '.join(missing)}; a local openai-gpt folder needs config.json, "
                         f"weights ({' or '.join(HF_WEIGHT_FILES)}) and the tokenizer files "
                         f"{' + '.join(HF_TOKENIZER_FILES)} (save_pretrained of the model and its tokenizer)")


def export_ms_checkpoint(ckpt_dir: Path, out_dir: Path) -> Path:
    """An ms_gpt checkpoint folder (BPE tokenizer) as a Hugging Face openai-gpt folder, via ``convert``."""
    tok_dir = ckpt_dir / "tokenizer"
    if not tok_dir.is_dir():
        raise ModelError(f"--model {ckpt_dir}: no tokenizer/ folder beside the checkpoint")
    tok = checkpoint.load_tokenizer(ckpt_dir)
    if not isinstance(tok, BPETokenizer):
        raise ModelError(f"--model {ckpt_dir}: its tokenizer is {tok.kind!r}; this flow uses openai-gpt's BPE "
                         "tokenizer, so pretrain with --tokenizer bpe to bring a checkpoint here")
    model = checkpoint.load_model(ckpt_dir)
    if model.config.vocab_size != tok.vocab_size:
        raise ModelError(f"--model {ckpt_dir}: {model.config.vocab_size} token rows but {tok.vocab_size} tokens")
    try:
        convert.export_hf_openai_gpt(model, out_dir)
    except convert.ConversionError as exc:
        raise ModelError(f"--model {ckpt_dir}: {exc}") from None
    tok._state(out_dir)  # vocab.json + merges.txt, the files OpenAIGPTTokenizer reads
    (out_dir / "tokenizer.json").unlink(missing_ok=True)
    return out_dir


def resolve_model(model: str, work_dir: Path, log=print) -> str:
    """A local folder OpenAIGPT*.from_pretrained can read, or the hub name (after a reachability check)."""
    p = Path(model).expanduser()
    if p.is_dir():
        if checkpoint.is_checkpoint(p):
            log(f"[imdb] --model {p} is an ms_gpt checkpoint: exporting it to {work_dir / INIT_DIR}")
            return str(export_ms_checkpoint(p, work_dir / INIT_DIR))
        check_hf_dir(p)
        return str(p)
    if p.exists() or os.sep in model or model.startswith("."):
        raise ModelError(f"--model {model}: not a folder; give a hub name (e.g. {HUB_MODEL}), a local Hugging Face "
                         "openai-gpt folder, or an ms_gpt checkpoint folder")
    endpoint = imdb.hub_endpoint()
    log(f"[imdb] loading model {model!r} from the hub at {endpoint}")
    try:
        imdb.check_hub(endpoint)
    except imdb.DataError as exc:
        raise ModelError(str(exc).replace("download IMDb elsewhere and pass --data-dir DIR",
                                          "save the model with save_pretrained elsewhere and pass --model DIR")
                         .split("; expected one of")[0]) from None
    return model


def load_tokenizer(model_path: str):
    """``OpenAIGPTTokenizer`` with ``<bos>``, ``<eos>`` and ``<pad>`` added (after ``import mindnlp``)."""
    from transformers import OpenAIGPTTokenizer

    tokenizer = OpenAIGPTTokenizer.from_pretrained(model_path)
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    return tokenizer


def load_classifier(model_path: str, tokenizer):
    """``OpenAIGPTForSequenceClassification`` (2 labels), embeddings resized to ``tokenizer``, pad id set."""
    from transformers import OpenAIGPTForSequenceClassification

    clf = OpenAIGPTForSequenceClassification.from_pretrained(model_path, num_labels=2)
    clf.resize_token_embeddings(len(tokenizer))
    clf.config.pad_token_id = tokenizer.pad_token_id
    return clf


def check_model_length(model_path: str, max_seq_len: int) -> None:
    """A local model's ``n_positions`` must cover ``max_seq_len`` (checked before anything heavy loads)."""
    cfg_file = Path(model_path) / "config.json"
    if not cfg_file.is_file():
        return  # a hub name: checked after loading
    n_positions = json.loads(cfg_file.read_text()).get("n_positions")
    if n_positions is not None and max_seq_len > n_positions:
        raise ValueError(f"max_seq_len {max_seq_len} is longer than the model's {n_positions} positions "
                         f"({cfg_file}); use --max-seq-len <= {n_positions}")
