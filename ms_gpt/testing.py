"""Data and models the project makes itself, for tests, demos and benchmarks (all offline, seeded).

- :func:`synthetic_reviews` / :func:`write_acl_tree`: IMDb-like labelled reviews, as an ``aclImdb`` tree;
- :func:`write_random_openai_gpt`: a randomly initialised Hugging Face openai-gpt folder with its BPE;
- :func:`write_offline_demo`: both, the offline stand-in for the MindNLP course's IMDb inputs;
- :func:`keyword_rows` / :func:`write_keyword_task`: the easy keyword classification set fine-tuning's
  defaults are checked on (one of five positive or five negative words among filler words).
"""

from __future__ import annotations

import json
from pathlib import Path

import mindspore
import numpy as np

from ms_gpt import convert
from ms_gpt.config import GPTConfig
from ms_gpt.data.imdb import LABELS, Rows, check_rows
from ms_gpt.model import GPT
from ms_gpt.run_folder import atomic
from ms_gpt.text.base import UNK
from ms_gpt.text.bpe import BPETokenizer

POSITIVE = ("great", "wonderful", "loved", "brilliant", "excellent", "moving", "superb", "delightful", "charming",
            "masterpiece")
NEGATIVE = ("awful", "boring", "terrible", "hated", "dull", "waste", "poor", "mess", "clumsy", "tedious")
NEUTRAL = ("the", "a", "movie", "film", "plot", "actor", "actress", "story", "scene", "director", "was", "and", "it",
           "this", "of", "to", "in", "with", "but", "ending", "music", "cast", "script", "i", "we", "saw", "felt",
           "very", "quite", "really", "about", "after", "then", "time", "characters", "camera", ",", ".")


def synthetic_reviews(n: int, seed: int, median_words: float = 40, sigma: float = 0.6, max_words: int = 2500,
                      signal: float = 0.15) -> Rows:
    """``n`` reviews the project writes itself, half positive: neutral words with a share ``signal`` of
    sentiment words, lengths log-normal around ``median_words`` (real IMDb: median ~230 BPE tokens,
    a long tail past 512). An easy, seeded stand-in for IMDb when the real one is not at hand."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = i % 2
        k = int(np.clip(round(median_words * np.exp(sigma * rng.standard_normal())), 3, max_words))
        cue = np.array(POSITIVE if label else NEGATIVE)
        words = np.where(rng.random(k) < signal, cue[rng.integers(len(cue), size=k)],
                         np.array(NEUTRAL)[rng.integers(len(NEUTRAL), size=k)])
        rows.append((" ".join(words), label))
    return [rows[i] for i in rng.permutation(n)]


KEYWORDS = {1: POSITIVE[:5], 0: NEGATIVE[:5]}
FILLER = ("the", "a", "it", "was", "and", "of", "to", "in", "we", "saw", "very", "film", "plot", "cast")


def keyword_rows(n: int, seed: int, filler: tuple[int, int] = (2, 4)) -> list[dict]:
    """``n`` classification rows ``{"text", "label"}``, half of each label in a shuffled order: one of
    :data:`KEYWORDS`' five positive (label 1) or five negative (label 0) words, inserted at a random place
    among ``filler`` (a range, both ends included) short filler words. A bag of characters solves it; a
    short-read head does not, which makes it a check of fine-tuning's defaults on small models. Rows stay
    under 32 characters, so a ``tiny`` character model reads them whole."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(FILLER, size=int(rng.integers(filler[0], filler[1] + 1))))
        words.insert(int(rng.integers(len(words) + 1)), str(rng.choice(KEYWORDS[label])))
        rows.append({"text": " ".join(words), "label": label})
    return [rows[i] for i in rng.permutation(n)]


def write_keyword_task(root: str | Path, seed: int = 0, sizes=(("train", 300), ("valid", 60), ("test", 200))) -> Path:
    """:func:`keyword_rows` as a finetune data folder (train/valid/test.jsonl; 300 training rows by default)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for k, (split, n) in enumerate(sizes):
        rows = keyword_rows(n, seed * 10 + k)
        atomic.write_text(root / f"{split}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return root


def write_acl_tree(root: str | Path, splits: dict) -> Path:
    """Write ``{"train": rows, "test": rows}`` as ``root/aclImdb/{split}/{pos,neg}/{i}_{rating}.txt``."""
    base = Path(root) / "aclImdb"
    for split, rows in splits.items():
        for name in LABELS:
            (base / split / name).mkdir(parents=True, exist_ok=True)
        for i, (text, label) in enumerate(check_rows(rows, split)):
            name = "pos" if label else "neg"
            (base / split / name / f"{i}_{8 if label else 2}.txt").write_text(text, encoding="utf-8")
    return base


def write_random_openai_gpt(out_dir: str | Path, texts, vocab_size: int = 400, n_positions: int = 64,
                            preset: str = "tiny", seed: int = 0, **config) -> Path:
    """A randomly initialised openai-gpt folder (config.json, model.safetensors, vocab.json, merges.txt)
    with a GPT-1 style BPE learned on ``texts``: an offline stand-in for the hub's ``openai-gpt``.

    As in openai-gpt's vocabulary, ``<unk>`` is the only special token; the flow adds the others.
    Made with ms_gpt's own cells and ``convert``, so no mindnlp is imported here."""
    tok = BPETokenizer.train(texts, vocab_size)
    kept = sorted((t for t in tok.vocab if t == UNK or not (t.startswith("<") and t.endswith(">"))),
                  key=tok.vocab.get)
    vocab = {t: i for i, t in enumerate(kept)}
    mindspore.set_seed(seed)
    cfg = GPTConfig.preset(preset, vocab_size=len(vocab), n_positions=n_positions, **config)
    model = GPT(cfg.replace(d_ff=config.get("d_ff", 4 * cfg.d_model)))  # openai-gpt's MLP is 4 * n_embd
    out_dir = Path(out_dir)
    convert.export_hf_openai_gpt(model, out_dir)
    atomic.write_text(out_dir / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    atomic.write_text(out_dir / "merges.txt", "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in tok.merges))
    return out_dir


def write_offline_demo(root: str | Path, n_train: int = 1000, n_test: int = 200, seed: int = 0) -> dict:
    """An offline stand-in for the course's inputs: ``root/data/aclImdb`` (easy synthetic reviews, median
    ~20 words) and ``root/model`` (a random 2-layer openai-gpt, 128 positions, BPE learned on the reviews).
    ``ms-gpt finetune-imdb --model root/model --data-dir root/data`` then runs the whole flow offline."""
    root = Path(root)
    train = synthetic_reviews(n_train, seed, median_words=20, signal=0.25)
    test = synthetic_reviews(n_test, seed + 1, median_words=20, signal=0.25)
    write_acl_tree(root / "data", {"train": train, "test": test})
    write_random_openai_gpt(root / "model", [t for t, _ in train], vocab_size=300, n_positions=128, seed=seed)
    return {"data": root / "data", "model": root / "model", "train": train, "test": test}
