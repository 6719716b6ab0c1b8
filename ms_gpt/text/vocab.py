"""Tokenizers with an explicit token list: whitespace words (the tutorial's vocabulary, plus
``<unk>`` so an unknown word never raises KeyError), characters, and jieba words (Chinese)."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Iterable

from ms_gpt.text.base import SPECIALS, Tokenizer


class VocabTokenizer(Tokenizer):
    """Specials first, then tokens by descending frequency (ties in code-point order)."""

    joiner = ""

    def __init__(self, tokens: Iterable[str]):
        tokens = list(tokens)
        if tokens[: len(SPECIALS)] != list(SPECIALS):
            raise ValueError(f"a vocabulary must start with {list(SPECIALS)}, got {tokens[:4]}")
        if len(set(tokens)) != len(tokens):
            dup = next(t for t, n in collections.Counter(tokens).items() if n > 1)
            raise ValueError(f"duplicate token {dup!r} in the vocabulary")
        self.id_to_token = tokens
        self.token_to_id = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def learn(cls, texts, vocab_size: int):
        return cls.build(texts, max_size=vocab_size)

    @classmethod
    def build(cls, texts: Iterable[str], min_freq: int = 1, max_size: int | None = None, **kwargs):
        """Count ``split(text)`` over ``texts``; keep tokens seen ``min_freq`` times, at most ``max_size`` in all."""
        if not isinstance(min_freq, int) or min_freq < 1:
            raise ValueError(f"min_freq must be an integer >= 1, got {min_freq!r}")
        if max_size is not None and (not isinstance(max_size, int) or max_size <= len(SPECIALS)):
            raise ValueError(f"max_size must be None or an integer > {len(SPECIALS)} (the special tokens), got {max_size!r}")
        probe = cls(SPECIALS, **kwargs)
        counts = collections.Counter()
        n_texts = 0
        for text in texts:
            n_texts += 1
            counts.update(probe.split(text))
        if not counts:
            raise ValueError(f"cannot build a {cls.kind} vocabulary from an empty corpus ({n_texts} texts, no tokens)")
        kept = sorted((t for t, n in counts.items() if n >= min_freq and t not in SPECIALS), key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max_size - len(SPECIALS)]
        return cls(list(SPECIALS) + kept, **kwargs)

    def split(self, text: str) -> list[str]:
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        return len(self.id_to_token)

    def _encode(self, text):
        return [self.token_to_id.get(t, self.unk_id) for t in self.split(text)]

    def token_id(self, token):
        return self.token_to_id.get(token)

    def _content(self, size):
        return self.id_to_token[:size]

    def _append(self, token):
        self.id_to_token.append(token)
        self.token_to_id[token] = len(self.id_to_token) - 1
        return self.token_to_id[token]

    def _decode(self, ids):
        return self.joiner.join(self.id_to_token[i] for i in ids)

    def _state(self, directory: Path) -> dict:
        return {"tokens": self.id_to_token}

    @classmethod
    def _from_state(cls, state: dict, directory: Path):
        return cls(state["tokens"])


class WhitespaceTokenizer(VocabTokenizer):
    """The tutorial's word vocabulary: split on whitespace, join with one space."""

    kind = "whitespace"
    joiner = " "

    def split(self, text):
        return text.split()


class CharTokenizer(VocabTokenizer):
    """One token per character (spaces included), so decode(encode(t)) == t for known characters."""

    kind = "char"

    def split(self, text):
        return list(text)


class JiebaTokenizer(VocabTokenizer):
    """Chinese words from jieba's bundled dictionary (offline). ``hmm=False`` keeps segmentation a pure
    dictionary lookup: the same words for the same text on every machine and jieba version."""

    kind = "jieba"

    def __init__(self, tokens, hmm: bool = False):
        super().__init__(tokens)
        self.hmm = hmm
        self._jieba = None

    def split(self, text):
        if self._jieba is None:
            import logging
            import warnings

            with warnings.catch_warnings():  # jieba 0.42.1 imports the deprecated pkg_resources
                warnings.simplefilter("ignore", UserWarning)
                import jieba

            jieba.setLogLevel(logging.WARNING)
            self._jieba = jieba.Tokenizer()
        # Runs of whitespace stay single tokens so decode() restores the text.
        return [w for w in self._jieba.lcut(text, HMM=self.hmm) if w != ""]

    def _state(self, directory):
        return {"tokens": self.id_to_token, "hmm": self.hmm}

    @classmethod
    def _from_state(cls, state, directory):
        return cls(state["tokens"], hmm=state.get("hmm", False))


