"""Tokenizers: round trips, <unk>, vocabulary limits, save/load, jieba determinism, BPE parity."""
import json
import subprocess
import sys

import pytest

from ms_gpt import text
from ms_gpt.text import BPETokenizer, CharTokenizer, JiebaTokenizer, WhitespaceTokenizer

EN = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog"]
ZH = ["我爱北京天安门", "北京是中国的首都", "我爱中国"]


def test_whitespace_vocabulary_order_limits_and_unk():
    tok = WhitespaceTokenizer.build(EN)
    assert tok.id_to_token[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert tok.id_to_token[4:7] == ["the", "a", "cat"]  # by frequency, ties alphabetical
    ids = tok.encode("the zebra sat", add_bos=True, add_eos=True)
    assert ids == [1, tok.token_to_id["the"], 3, tok.token_to_id["sat"], 2]  # unknown word -> <unk>, no KeyError
    assert tok.decode(ids) == "the <unk> sat"
    assert WhitespaceTokenizer.build(EN, min_freq=2).id_to_token[4:] == ["the", "a", "cat", "dog", "on", "sat"]
    assert WhitespaceTokenizer.build(EN, max_size=6).vocab_size == 6


@pytest.mark.parametrize("kwargs,match", [
    (dict(min_freq=0), r"min_freq must be an integer >= 1, got 0"),
    (dict(max_size=4), r"max_size must be None or an integer > 4 \(the special tokens\), got 4"),
])
def test_vocabulary_bad_limits(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WhitespaceTokenizer.build(EN, **kwargs)


def test_empty_corpus_is_a_clear_error():
    with pytest.raises(ValueError, match=r"cannot build a whitespace vocabulary from an empty corpus \(2 texts, no tokens\)"):
        WhitespaceTokenizer.build(["", "   "])
    with pytest.raises(ValueError, match="empty corpus"):
        BPETokenizer.train(["  "], vocab_size=50)


def test_char_round_trip_including_spaces():
    tok = CharTokenizer.build(ZH + EN)
    for t in ZH + EN:
        assert tok.decode(tok.encode(t)) == t
    assert tok.encode("猫") == [tok.unk_id]


def test_jieba_words_are_dictionary_words_and_deterministic():
    tok = JiebaTokenizer.build(ZH)
    assert tok.split("我爱北京天安门") == ["我", "爱", "北京", "天安门"]
    assert tok.split("北京是中国的首都") == ["北京", "是", "中国", "的", "首都"]
    for t in ZH:
        assert tok.decode(tok.encode(t)) == t
    assert tok.split("我爱北京 ok") == ["我", "爱", "北京", " ", "ok"]


def test_decode_rejects_ids_outside_the_vocabulary():
    tok = WhitespaceTokenizer.build(EN)
    with pytest.raises(ValueError, match=rf"token id {tok.vocab_size} is outside the vocabulary \[0, {tok.vocab_size}\)"):
        tok.decode([4, tok.vocab_size])
    with pytest.raises(TypeError, match=r"encode\(\) takes a str, got list"):
        tok.encode(["the"])


@pytest.mark.parametrize("make", [
    lambda: WhitespaceTokenizer.build(EN),
    lambda: CharTokenizer.build(EN),
    lambda: JiebaTokenizer.build(ZH),
    lambda: BPETokenizer.train(EN * 5, vocab_size=60),
])
def test_save_and_load_every_kind(make, tmp_path):
    tok = make()
    tok.save(tmp_path)
    again = text.load(tmp_path)
    assert type(again) is type(tok) and again.vocab_size == tok.vocab_size
    sample = (ZH if isinstance(tok, JiebaTokenizer) else EN)[1] + " zebra"
    assert again.encode(sample) == tok.encode(sample)
    assert (again.pad_id, again.bos_id, again.eos_id, again.unk_id) == (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tokenizer.json not found"):
        text.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text(json.dumps({"kind": "sentencepiece"}))
    with pytest.raises(ValueError, match=r"unknown tokenizer kind 'sentencepiece'; known: whitespace, char, jieba, bpe"):
        text.load(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"vocab.json not found"):
        BPETokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt")


def test_bpe_trained_round_trip_and_specials():
    tok = BPETokenizer.train(EN * 5, vocab_size=60)
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    assert tok.decode(tok.encode("The cat sat on the mat", add_eos=True)) == "the cat sat on the mat"


def test_bpe_pretrained_vocab_keeps_ids_and_appends_specials(tmp_path):
    vocab = {"t": 0, "h": 1, "e</w>": 2, "th": 3, "the</w>": 4}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\nt h\nth e</w>\n")
    tok = BPETokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert tok.encode("the") == [4]
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (5, 6, 7, 8) and tok.vocab_size == 9
    (tmp_path / "merges.txt").write_text("#version: 0.2\nt h e\n")
    with pytest.raises(ValueError, match=r"merges.txt:2: a merge is two symbols separated by a space, got 't h e'"):
        BPETokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt")


def test_bpe_ids_match_transformers_openai_gpt_tokenizer(tmp_path):
    """Same vocab.json + merges.txt -> the same ids as transformers' OpenAIGPTTokenizerFast and the
    slow OpenAIGPTTokenizer of the tested set (child process: transformers without mindnlp)."""
    corpus = ["The quick brown fox jumps over the lazy dog.", "Hello, world! It's a fox's day."] * 10
    tok = BPETokenizer.train(corpus, vocab_size=90)
    tok.save(tmp_path)
    sample = "The lazy dog's world, hello!"
    code = f"""
import json
from transformers import OpenAIGPTTokenizer, OpenAIGPTTokenizerFast
args = dict(vocab_file={str(tmp_path / 'vocab.json')!r}, merges_file={str(tmp_path / 'merges.txt')!r})
fast, slow = OpenAIGPTTokenizerFast(**args), OpenAIGPTTokenizer(**args)
print(json.dumps([fast.encode({sample!r}), slow.encode({sample!r})]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fast_ids, slow_ids = json.loads(proc.stdout.strip().splitlines()[-1])
    assert tok.encode(sample) == fast_ids == slow_ids


def test_bpe_training_gives_the_same_ids_in_every_process():
    """The tokenizers trainer numbers the alphabet in a per-process hash order; ids must not depend on it."""
    code = ("import json; from ms_gpt.text.bpe import BPETokenizer; "
            "t = BPETokenizer.train(['the cat sat on the mat, twice.', 'a dog; a log!'] * 3, 60); "
            "print(json.dumps([t.vocab, t.merges]))")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]
    vocab, merges = json.loads(runs[0])
    assert [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])[:4]] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert vocab["".join(merges[0])] == len(vocab) - len({a + b for a, b in merges})  # merges follow the alphabet
