"""Corpora and mindspore.dataset pipelines: sources, errors, split, static vs dynamic shapes."""
import numpy as np
import pytest

from ms_gpt.data import (IGNORE, Shapes, block_dataset, demo_en, encode_lines, load_corpus, sentence_dataset,
                         strip_pos_tags, train_val_split)
from ms_gpt.text import WhitespaceTokenizer


def test_strip_pos_tags():
    line = "19980101-01-001-002/m  中共中央/nt  [中央/n  人民/n  广播/vn  电台/n]nt  ，/w  江/nr  泽民/nr"
    assert strip_pos_tags(line) == "中共中央中央人民广播电台，江泽民"


def test_peoples_daily_is_the_real_corpus():
    lines = load_corpus("builtin:peoples-daily")
    assert len(lines) > 19000
    assert lines[0] == "迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）"
    assert not any("/" in l for l in lines[:2000])


def test_demo_en_is_seeded_and_regular():
    a, b = demo_en(), load_corpus("builtin:demo-en")
    assert a == b and len(a) == 3000 and all(l.endswith(" .") for l in a)


def test_local_file_and_folder(tmp_path):
    (tmp_path / "a.txt").write_text("one line\n\n  two line  \n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("three\n", encoding="utf-8")
    assert load_corpus(str(tmp_path / "a.txt")) == ["one line", "two line"]
    assert load_corpus(str(tmp_path)) == ["one line", "two line", "three"]


@pytest.mark.parametrize("src,exc,match", [
    ("builtin:wiki", ValueError, r"unknown built-in corpus 'wiki'; available: builtin:peoples-daily, builtin:reviews-zh, builtin:chitchat, builtin:demo-en"),
    ("/no/such/corpus.txt", FileNotFoundError, r"corpus '/no/such/corpus.txt' not found"),
    ("", ValueError, r"corpus source must be 'builtin:NAME' or a path, got ''"),
])
def test_bad_sources(src, exc, match):
    with pytest.raises(exc, match=match):
        load_corpus(src)


def test_empty_corpus(tmp_path):
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"is empty \(no non-blank lines in 1 file\(s\)\)"):
        load_corpus(str(tmp_path / "empty.txt"))
    folder = tmp_path / "notxt"
    folder.mkdir()
    (folder / "x.md").write_text("not a txt")
    with pytest.raises(ValueError, match=r"has no .txt files"):
        load_corpus(str(folder))


def test_split_is_seeded_and_disjoint():
    lines = [f"l{i}" for i in range(100)]
    train, val = train_val_split(lines, 0.1, seed=3)
    assert (train, val) == train_val_split(lines, 0.1, seed=3)
    assert len(val) == 10 and sorted(train + val) == sorted(lines)
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\), got 1.0"):
        train_val_split(lines, 1.0)


@pytest.fixture(scope="module")
def encoded():
    lines = demo_en()[:60]
    tok = WhitespaceTokenizer.build(lines)
    return tok, encode_lines(tok, lines)


def shapes(ds):
    return [tuple(b[0].shape) for b in ds.create_tuple_iterator(output_numpy=True)]


def test_dynamic_batches_pad_to_their_own_longest_line(encoded):
    tok, enc = encoded
    got = shapes(sentence_dataset(enc, Shapes(32), batch_size=8, pad_id=tok.pad_id))
    assert len({s[1] for s in got}) > 1 and all(s[1] <= 32 for s in got)


def test_static_batches_have_one_shape_per_bucket_and_lose_nothing(encoded):
    tok, enc = encoded
    ds = sentence_dataset(enc, Shapes(32, static=True, buckets=(12, 16, 32)), batch_size=8, pad_id=tok.pad_id)
    batches = list(ds.create_tuple_iterator(output_numpy=True))
    assert {b[0].shape for b in batches} <= {(8, 12), (8, 16), (8, 32)}
    real_labels = sum(int((b[1] != IGNORE).sum()) for b in batches)
    assert real_labels == sum(min(len(e), 33) - 1 for e in enc)  # every next-token target kept once
    for ids, labels in batches:  # padding positions carry pad ids and ignored labels
        assert np.all(labels[ids == tok.pad_id] == IGNORE)


def test_static_without_buckets_is_max_len(encoded):
    tok, enc = encoded
    assert set(shapes(sentence_dataset(enc, Shapes(20, static=True), 8, tok.pad_id))) == {(8, 20)}


def test_labels_are_next_tokens(encoded):
    tok, enc = encoded
    ids, labels = next(sentence_dataset(enc[:1], Shapes(40, static=True), 1, tok.pad_id, shuffle=False)
                       .create_tuple_iterator(output_numpy=True))
    n = len(enc[0]) - 1
    assert ids[0, :n].tolist() == enc[0][:-1] and labels[0, :n].tolist() == enc[0][1:]


def test_blocks_are_contiguous_and_static(encoded):
    tok, enc = encoded
    ds = block_dataset(enc, block_size=16, batch_size=4, shuffle=False)
    stream = [t for e in enc for t in e]
    ids, labels = next(ds.create_tuple_iterator(output_numpy=True))
    assert ids.shape == (4, 16) and ids[0].tolist() == stream[:16] and labels[0].tolist() == stream[1:17]
    assert set(shapes(ds)) == {(4, 16)}
    with pytest.raises(ValueError, match=r"fewer than one batch of 4"):
        block_dataset(enc[:1], block_size=16, batch_size=4)
    with pytest.raises(ValueError, match=r"block_size must be a positive integer, got 0"):
        block_dataset(enc, block_size=0, batch_size=4)
    with pytest.raises(ValueError, match=r"the largest bucket must equal max_len=32, got buckets \(8, 16\)"):
        Shapes(32, static=True, buckets=(8, 16))
