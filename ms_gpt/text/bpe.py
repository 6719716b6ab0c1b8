"""BPE from openai-gpt style ``vocab.json`` + ``merges.txt``, run by Hugging Face ``tokenizers``.

GPT-1's scheme: BERT-style normalisation (lowercase, cleaned text) and pre-tokenisation (whitespace
and punctuation), word-final pieces marked ``</w>``; the same pipeline as transformers'
``OpenAIGPTTokenizerFast``. A pretrained vocabulary keeps its ids (so openai-gpt weights stay
valid); special tokens it lacks are appended after it, as GPT-1 fine-tuning does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterable

from ms_gpt.run_folder import atomic
from ms_gpt.text.base import SPECIALS, UNK, Tokenizer

SUFFIX = "</w>"


def _pipeline(vocab: dict, merges: list, extra_specials=()):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, normalizers, pre_tokenizers

    tok = HFTokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=UNK, end_of_word_suffix=SUFFIX))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.BPEDecoder(suffix=SUFFIX)
    tok.add_special_tokens(list(SPECIALS) + list(extra_specials))
    return tok


def read_merges(path: Path) -> list:
    merges = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or (n == 1 and line.startswith("#version")):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{n}: a merge is two symbols separated by a space, got {line!r}")
        merges.append((parts[0], parts[1]))
    return merges


class BPETokenizer(Tokenizer):
    kind = "bpe"

    def __init__(self, vocab: dict, merges: list, extra_specials=()):
        vocab = dict(vocab)
        for tok in SPECIALS:  # append what a pretrained vocabulary lacks
            vocab.setdefault(tok, len(vocab))
        missing = [t for t in extra_specials if t not in vocab]
        if missing:
            raise ValueError(f"extra special tokens {missing} are not in the vocabulary")
        self.vocab, self.merges, self.extra_specials = vocab, list(merges), list(extra_specials)
        self._tok = _pipeline(vocab, self.merges, self.extra_specials)
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = (vocab[t] for t in SPECIALS)

    @classmethod
    def from_files(cls, vocab_file: str | Path, merges_file: str | Path) -> "BPETokenizer":
        for f in (vocab_file, merges_file):
            if not Path(f).is_file():
                raise FileNotFoundError(f"{f} not found (an openai-gpt style vocab.json + merges.txt pair is needed)")
        return cls(json.loads(Path(vocab_file).read_text(encoding="utf-8")), read_merges(Path(merges_file)))

    @classmethod
    def learn(cls, texts, vocab_size: int) -> "BPETokenizer":
        return cls.train(texts, vocab_size)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> "BPETokenizer":
        """Learn a GPT-1 style BPE on ``texts`` (offline), specials at ids 0..3."""
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import models, normalizers, pre_tokenizers, trainers

        if not isinstance(vocab_size, int) or vocab_size <= len(SPECIALS):
            raise ValueError(f"vocab_size must be an integer > {len(SPECIALS)}, got {vocab_size!r}")
        texts = list(texts)
        if not any(t.strip() for t in texts):
            raise ValueError("cannot train a BPE vocabulary on an empty corpus")
        tok = HFTokenizer(models.BPE(unk_token=UNK, end_of_word_suffix=SUFFIX))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.train_from_iterator(texts, trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=list(SPECIALS), end_of_word_suffix=SUFFIX, show_progress=False))
        state = json.loads(tok.to_str())["model"]
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
        # The trainer numbers the initial alphabet in hash order, which changes from process to process;
        # renumber (specials, the alphabet sorted, then merge results in merge order) so ids repeat.
        merged = list(dict.fromkeys(a + b for a, b in merges))
        made = set(merged)
        order = list(SPECIALS) + sorted(t for t in state["vocab"] if t not in made and t not in SPECIALS) + merged
        if sorted(order) != sorted(state["vocab"]):  # pragma: no cover - a tokenizers change we do not know
            raise RuntimeError("BPE training gave a vocabulary that is not alphabet + merges")
        alphabet = len(order) - len(merged)
        if len(order) > vocab_size:  # the specials and every character of the corpus are always kept
            print(f"ms-gpt: warning: BPE vocabulary of {len(order)} tokens, not --vocab-size {vocab_size}: the 4 "
                  f"specials and the corpus' {alphabet - len(SPECIALS)} distinct characters are the least a BPE "
                  f"vocabulary holds (give --vocab-size > {alphabet} for merges)", file=sys.stderr)
        return cls({t: i for i, t in enumerate(order)}, merges)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def token_id(self, token):
        return self.vocab.get(token)

    def _append(self, token):
        self.vocab[token] = self.vocab_size
        self.extra_specials.append(token)
        self._tok = _pipeline(self.vocab, self.merges, self.extra_specials)
        return self.vocab[token]

    def _encode(self, text):
        return self._tok.encode(text, add_special_tokens=False).ids

    def _content(self, size):
        return [sorted(self.vocab, key=self.vocab.get)[:size], [list(m) for m in self.merges]]

    def _decode(self, ids):
        return self._tok.decode(ids, skip_special_tokens=False)

    def _state(self, directory: Path) -> dict:
        atomic.write_text(directory / "vocab.json", json.dumps(self.vocab, ensure_ascii=False))
        atomic.write_text(directory / "merges.txt",
                          "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in self.merges))
        return {"vocab_file": "vocab.json", "merges_file": "merges.txt", "extra_specials": self.extra_specials}

    @classmethod
    def _from_state(cls, state: dict, directory: Path):
        tok = cls.from_files(directory / state["vocab_file"], directory / state["merges_file"])
        if state.get("extra_specials"):
            tok = cls(tok.vocab, tok.merges, state["extra_specials"])
        return tok
