"""Tokenizers behind one interface (encode, decode, save, load, special ids).

Kinds: ``whitespace`` (the tutorial's word vocabulary, with ``<unk>``), ``char``, ``jieba``
(Chinese words) and ``bpe`` (openai-gpt style vocab.json + merges.txt, via Hugging Face tokenizers).
"""

from ms_gpt.text.base import BOS, EOS, KINDS, META_FILE, PAD, SEP, SPECIALS, UNK, Tokenizer, build, load
from ms_gpt.text.vocab import CharTokenizer, JiebaTokenizer, VocabTokenizer, WhitespaceTokenizer  # noqa: I001
from ms_gpt.text.bpe import BPETokenizer  # after vocab: the registry lists word kinds first

__all__ = ["Tokenizer", "VocabTokenizer", "WhitespaceTokenizer", "CharTokenizer", "JiebaTokenizer",
           "BPETokenizer", "KINDS", "META_FILE", "build", "load", "SPECIALS", "PAD", "BOS", "EOS", "UNK", "SEP"]
