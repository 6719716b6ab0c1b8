"""One small tokenizer interface: encode, decode, save, load, special ids.

Every kind has the four special tokens ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>`` and exposes their
ids as ``pad_id``, ``bos_id``, ``eos_id``, ``unk_id``. Vocabularies built here put them at 0..3; a
pretrained BPE vocabulary keeps its own ids and gets the missing specials appended.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from pathlib import Path

from ms_gpt.run_folder import atomic

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
SEP = "<sep>"  # GPT-1's delimiter between the parts of a fine-tuning input (added when a task needs it)
META_FILE = "tokenizer.json"


KINDS: dict = {}  # kind name -> Tokenizer subclass, filled as each kind's class is defined


class Tokenizer(ABC):
    kind: str = ""
    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.kind:
            KINDS[cls.kind] = cls

    @classmethod
    def learn(cls, texts, vocab_size: int) -> "Tokenizer":
        """A vocabulary of at most ``vocab_size`` tokens learned from ``texts`` (each kind says how)."""
        raise NotImplementedError

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def _encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def _decode(self, ids: list[int]) -> str: ...

    @abstractmethod
    def _state(self, directory: Path) -> dict:
        """Write any extra files into ``directory`` and return the JSON-able state."""

    @abstractmethod
    def token_id(self, token: str) -> int | None:
        """The id of ``token`` as one vocabulary entry, or None."""

    @abstractmethod
    def _append(self, token: str) -> int: ...

    @abstractmethod
    def _content(self, size: int) -> list:
        """What decides the meaning of ids 0..size-1 (those tokens in id order; a BPE's merges too), JSON-able."""

    def digest(self, size: int | None = None) -> str:
        """SHA-256 of the kind and the vocabulary's content (its first ``size`` ids; default all): two
        tokenizers of the same size that give ids other meanings differ here. A checkpoint records the digest
        of its model's rows beside the weights; specials appended later (``add_special``) leave it alone."""
        size = self.vocab_size if size is None else min(size, self.vocab_size)
        payload = json.dumps([self.kind, self._content(size)], ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def add_special(self, token: str) -> int:
        """Append a special token the vocabulary lacks (GPT-1 adds its delimiter this way when
        fine-tuning; the model's embedding then grows by a row). Returns the token's id."""
        if not isinstance(token, str) or not token.strip() or token != token.strip():
            raise ValueError(f"a special token is a non-empty string without surrounding spaces, got {token!r}")
        found = self.token_id(token)
        return found if found is not None else self._append(token)

    @property
    def sep_id(self) -> int | None:
        return self.token_id(SEP)

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a str, got {type(text).__name__}")
        return [self.bos_id] * add_bos + self._encode(text) + [self.eos_id] * add_eos

    def decode(self, ids, skip_special: bool = True) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary [0, {self.vocab_size})")
        if skip_special:
            ids = [i for i in ids if i not in (self.pad_id, self.bos_id, self.eos_id)]
        return self._decode(ids)

    def save(self, directory: str | Path) -> Path:
        """Write ``tokenizer.json`` (and the kind's own files) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = self._state(directory)
        atomic.write_json(directory / META_FILE, {"kind": self.kind, **state})
        return directory


def load(directory: str | Path) -> Tokenizer:
    """The tokenizer saved in ``directory`` by :meth:`Tokenizer.save`, whatever its kind."""
    meta_file = Path(directory) / META_FILE
    if not meta_file.is_file():
        raise FileNotFoundError(f"{meta_file} not found: not a folder written by Tokenizer.save()")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:  # e.g. truncated by a copy that did not finish
        raise ValueError(f"{meta_file}: not valid JSON ({exc.msg} at line {exc.lineno}); the tokenizer folder is "
                         "damaged: copy it again from the run that wrote it") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_file}: expected a JSON object written by Tokenizer.save(), got {type(meta).__name__}")
    kind = meta.pop("kind", None)
    if kind not in KINDS:
        raise ValueError(f"{meta_file}: unknown tokenizer kind {kind!r}; known: {', '.join(KINDS)}")
    return KINDS[kind]._from_state(meta, Path(directory))


def build(kind: str, texts, vocab_size: int) -> Tokenizer:
    """A new tokenizer of ``kind`` learned from ``texts`` (at most ``vocab_size`` tokens)."""
    if kind not in KINDS:
        raise ValueError(f"unknown tokenizer {kind!r}; available: {', '.join(KINDS)}")
    return KINDS[kind].learn(texts, vocab_size)
