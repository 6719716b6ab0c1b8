"""Results a learner can see: pretraining defaults and flags, the plain-text (newline) stream of a char
model, long samples past the position table, sample-quality figures, the nanoGPT comparison's data, and
the built-in English corpus."""
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

LINES = ["the cat sat on the mat.", "a dog ran by the sea.", "we like red apples.", "the sun is warm today."] * 60


@pytest.fixture(scope="module")
def char_run(tmp_path_factory, venv_bin):
    """A tiny char-level model pretrained on a small text with no boundary flag (auto: newline)."""
    root = tmp_path_factory.mktemp("char")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(LINES) + "\n")
    out = root / "run"
    proc = subprocess.run([str(venv_bin / "ms-gpt"), "pretrain", "--corpus", str(corpus), "--out", str(out),
                           "--tokenizer", "char", "--block-size", "32", "--batch-size", "8", "--steps", "120",
                           "--no-progress"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads(proc.stdout.strip().splitlines()[-1])


def test_char_runs_train_on_the_text_itself(char_run):
    """auto boundaries = newline for a char tokenizer: the stream is the text with its line breaks, no
    <bos>/<eos>; dropout defaults to 0 and nanoGPT's optimizer settings are the defaults."""
    from ms_gpt.flows.pretrain import encode_stream
    from ms_gpt.run_folder import checkpoint

    out, m = char_run
    assert (m["boundaries"], m["dropout"], m["tokenizer"]) == ("newline", 0.0, "char")
    record = json.loads((out / "run_config.json").read_text())
    assert (record["boundaries"], record["dropout"]) == ("newline", 0.0)
    t = record["train"]
    assert (t["weight_decay"], t["beta1"], t["beta2"], t["warmup_steps"], t["bias_correction"]) == \
        (0.1, 0.9, 0.99, 12, False)  # warmup: 10 % of 120 steps (at most 100)
    assert t["learning_rate"] == m["learning_rate"] == 3e-3 and m["parameters"] < 5_000_000  # small: 3e-3
    cfg = json.loads((out / "gpt_config.json").read_text())
    assert cfg["embd_dropout"] == cfg["attn_dropout"] == cfg["resid_dropout"] == 0.0
    tok = checkpoint.load_tokenizer(out)
    nl = tok.token_id("\n")
    assert nl is not None
    stream = [i for ids in encode_stream(tok, LINES[:2], "newline") for i in ids]
    assert tok.decode(stream) == LINES[0] + "\n" + LINES[1] + "\n"
    assert tok.bos_id not in stream and tok.eos_id not in stream
    assert m["val_loss"] < 0.5 * m["val_loss_before"]


def generate(venv_bin, out, *extra):
    proc = subprocess.run([str(venv_bin / "ms-gpt"), "generate", "--ckpt", str(out), "--prompt", "the", *extra],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout[:-1] if proc.stdout.endswith("\n") else proc.stdout


def test_generate_writes_past_the_position_table_and_can_stop_at_a_line_break(char_run, venv_bin):
    out, _ = char_run
    n_positions = json.loads((out / "gpt_config.json").read_text())["n_positions"]
    long = generate(venv_bin, out, "--max-new-tokens", "300", "--strategy", "sample", "--top-k", "5")
    assert n_positions < 300 and long.startswith("the") and len(long) == 3 + 300  # one character per token
    assert long.count("\n") >= 5  # it writes lines, as the text has them
    one_line = generate(venv_bin, out, "--max-new-tokens", "300", "--stop-at-newline")
    assert one_line.startswith("the") and "\n" not in one_line and len(one_line) < 60
    assert one_line in {line for line in LINES} or len(one_line) > 3


def test_pretrain_flags_reach_the_model_and_optimizer(tmp_path):
    from ms_gpt.config import DataConfig, TrainConfig
    from ms_gpt.flows.configs import PretrainConfig
    from ms_gpt.flows.pretrain import pretrain
    from ms_gpt.run_folder import checkpoint
    from ms_gpt.training import make_optimizer

    corpus, val = tmp_path / "c.txt", tmp_path / "v.txt"
    corpus.write_text("\n".join(LINES))
    val.write_text("a cat sat by the sea.\n")
    train = TrainConfig(steps=4, learning_rate=1e-3, warmup_steps=None, weight_decay=0.05, beta1=0.8, beta2=0.95,
                        bias_correction=True, eval_every=None, ckpt_every=None, amp=None)
    m = pretrain(PretrainConfig(out=str(tmp_path / "o"), corpus=str(corpus), val_corpus=str(val), dropout=0.2,
                                boundaries="eos", tokenizer="char", data=DataConfig(batch_size=2, max_len=8),
                                train=train, progress=False))
    assert m["boundaries"] == "eos" and m["dropout"] == 0.2
    gpt_cfg = checkpoint.read_gpt_config(tmp_path / "o")
    assert (gpt_cfg.embd_dropout, gpt_cfg.attn_dropout, gpt_cfg.resid_dropout) == (0.2, 0.2, 0.2)
    record = json.loads((tmp_path / "o" / "run_config.json").read_text())
    assert record["val_corpus"] == str(val) and record["train"]["beta2"] == 0.95
    model, _ = checkpoint.load_init(tmp_path / "o")
    opt = make_optimizer(model, record_train(record))
    assert (opt.b1, opt.b2, opt.bias_correction) == (pytest.approx(0.8), pytest.approx(0.95), True)
    assert max(opt.decays) == pytest.approx(0.05)
    assert m["val_loss"] > 0  # validated on v.txt: 21 characters + <bos>/<eos> = 2 blocks of 8 + 1
    # the same file is less than one validation block of 32 (tiny's table, the default block): refused with the numbers
    with pytest.raises(ValueError, match=r"the corpus has 23 tokens: 0 blocks of 32"):
        pretrain(PretrainConfig(out=str(tmp_path / "p"), corpus=str(corpus), val_corpus=str(val), tokenizer="char",
                                boundaries="eos", train=train, progress=False))


def record_train(record):
    from ms_gpt.config import TrainConfig

    return TrainConfig(**record["train"])


@pytest.mark.parametrize("kw,match", [
    (dict(boundaries="newline", tokenizer="whitespace"),
     r"--boundaries newline needs --tokenizer char \(a whitespace tokenizer has no newline token\)"),
    (dict(dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
])
def test_pretrain_refuses_bad_settings(tmp_path, kw, match):
    from ms_gpt.flows.configs import PretrainConfig
    from ms_gpt.flows.pretrain import pretrain

    with pytest.raises(ValueError, match=match):
        pretrain(PretrainConfig(out=str(tmp_path / "o"), progress=False, **kw))


@pytest.mark.parametrize("field,value,match", [
    ("beta2", 1.0, r"beta2 must be in \[0, 1\), got 1.0"),
    ("beta1", -0.1, r"beta1 must be in \[0, 1\), got -0.1"),
    ("weight_decay", -1, r"weight_decay must be >= 0, got -1"),
])
def test_train_config_checks_the_optimizer_settings(field, value, match):
    from ms_gpt.config import TrainConfig

    with pytest.raises(ValueError, match=match):
        TrainConfig(**{field: value}).validate()


def test_sample_quality_figures():
    from ms_gpt import sample_quality as q

    assert q.char_ngrams("ab c\nd") == ["ab", "bc", "cd"]
    assert q.distinct_n(["abab"], 2) == pytest.approx(2 / 3)  # ab, ba, ab
    assert q.coverage(["abcx"], ["xab bc"], 2) == pytest.approx(2 / 3)  # ab, bc found; cx not
    r = q.report(["abab", "x<unk>y"], ["abba"])
    assert r["with_unk"] == 1 and r["samples"] == 2 and r["characters"] == 11


def test_sample_report_script(char_run, venv_bin, root):
    out, _ = char_run
    proc = subprocess.run([str(venv_bin / "python"), str(root / "scripts" / "studies" / "sample_report.py"), "--ckpt", str(out),
                           "--samples", "3", "--max-new-tokens", "40"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    saved = json.loads((out / "samples.json").read_text())
    assert figures["samples"] == 3 and len(saved["samples_text"]) == 3
    # random characters of this text would hit its ~45 distinct 2-grams about 1 time in 12; after 120 steps
    # the tiny model's samples are mostly the text's 2-grams
    assert figures["with_unk"] == 0 and figures["bigram_coverage"] >= 0.5 and 0 < figures["distinct_2"] <= 1
    from ms_gpt.data.corpus import held_out_lines
    from ms_gpt.run_folder import checkpoint

    held_out = held_out_lines(checkpoint.read_run_config(out))
    assert saved["samples_text"][0]["prompt"] == held_out[0][:2]


def test_nanogpt_comparison_feeds_both_the_same_characters(tmp_path, root):
    """compare_nanogpt.py's train.bin decodes to exactly the characters ms_gpt's newline stream holds."""
    sys.path.insert(0, str(root / "scripts" / "studies"))
    try:
        import compare_nanogpt as cmp
    finally:
        sys.path.pop(0)
    from ms_gpt import text
    from ms_gpt.flows.pretrain import encode_stream

    train, val = cmp.split_lines(LINES[:20])
    assert (len(train), len(val)) == (18, 2)
    cmp.write_nanogpt_data(tmp_path, train, val)
    meta = pickle.loads((tmp_path / "meta.pkl").read_bytes())
    ids = np.fromfile(tmp_path / "train.bin", dtype=np.uint16)
    nano_text = "".join(meta["itos"][int(i)] for i in ids)
    tok = text.build("char", [line + "\n" for line in train], 8000)
    ours = tok.decode([i for ids in encode_stream(tok, train, "newline") for i in ids])
    assert nano_text == ours == "".join(line + "\n" for line in train)
    assert cmp.EVAL_LINE.findall("step 250: train loss 2.4624, val loss 2.4912") == [("250", "2.4624", "2.4912")]


def test_chitchat_is_a_builtin_english_corpus():
    from ms_gpt.data import load_corpus
    from ms_gpt.data.corpus import chitchat_conversations

    lines = load_corpus("builtin:chitchat")
    convs = chitchat_conversations()
    assert len(convs) == 7168 and len(lines) == sum(len(c) for c in convs) == 138725
    assert lines[0] == "Hello How are you doing today?"
    assert all(line == line.strip() and "\n" not in line and line for line in lines[:1000])


def test_pretraining_learning_rate_defaults_by_model_size(venv_bin):
    """3e-3 suits the small presets; larger models get nanoGPT's 1e-3 (10M) and GPT-1's 2.5e-4 (117M)."""
    from ms_gpt import recipes
    from ms_gpt.config import GPTConfig
    from ms_gpt.model import GPT, count_parameters

    assert [recipes.pretrain_learning_rate(n) for n in (800_000, 4_999_999, 5_000_000, 49_999_999, 50_000_000,
                                                           116_500_000)] == [3e-3, 3e-3, 1e-3, 1e-3, 2.5e-4, 2.5e-4]
    with pytest.raises(ValueError, match=r"n_params must be a positive integer, got 0"):
        recipes.pretrain_learning_rate(0)
    # a large vocabulary: People's Daily as characters (4,623 x 128 of 1,401,472) trains at 1e-3
    assert recipes.pretrain_learning_rate(1_401_472, 4_623 * 128) == 1e-3
    assert recipes.pretrain_learning_rate(1_401_472, 98 * 128) == 3e-3  # chitchat's 98 characters
    assert recipes.pretrain_learning_rate(60_000_000, 40_478 * 768) == 2.5e-4  # only the small tier changes
    with pytest.raises(ValueError, match=r"embedding_params must be an integer in \[0, n_params=10\], got 11"):
        recipes.pretrain_learning_rate(10, 11)
    # the presets land where intended: small (with an 8,000-token vocabulary) below 5M, tutorial between
    sizes = {name: count_parameters(GPT(GPTConfig.preset(name))) for name in ("small", "tutorial")}
    assert sizes["small"] < 5_000_000 <= sizes["tutorial"] < 50_000_000, sizes
    help_text = subprocess.run([str(venv_bin / "ms-gpt"), "pretrain", "--help"], capture_output=True, text=True,
                               timeout=120).stdout
    assert "by model size: 3e-3 below 5M parameters (1e-3 when the token embedding is over 25 % of them" in \
        " ".join(help_text.split())
