"""The MindNLP IMDb flow (``ms-gpt finetune-imdb``), offline: a tiny random openai-gpt the test writes,
a synthetic aclImdb tree, and every data layout and bad input the flow accepts or refuses.

Runs that import mindnlp happen in child processes (``import mindnlp`` rebinds MindSpore's Tensor
operators); everything else runs here, and every bad input fails before that import."""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ms_gpt import cli, testing
from ms_gpt.data import imdb
from ms_gpt.flows import mindnlp_imdb as mi
from ms_gpt.hf_openai_gpt import SPECIAL_TOKENS

HERE = Path(__file__).resolve().parent
CHILD_ENV = {**os.environ, "GLOG_v": "3"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """An easy synthetic IMDb (1,000 train / 200 test reviews) and a tiny random openai-gpt (128 positions)."""
    root = tmp_path_factory.mktemp("imdb")
    return {"root": root, **testing.write_offline_demo(root)}  # what scripts/data/make_imdb_demo.py writes


@pytest.fixture(scope="module")
def tokenizer(env):
    from transformers import OpenAIGPTTokenizer

    tok = OpenAIGPTTokenizer.from_pretrained(str(env["model"]))
    assert tok.pad_token_id is None and tok.bos_token_id is None  # as openai-gpt: only <unk>
    tok.add_special_tokens(SPECIAL_TOKENS)
    return tok


def run_cli(*args, env=None, timeout=600):
    proc = subprocess.run([str(Path(sys.executable).parent / "ms-gpt"), "finetune-imdb", "--device", "CPU", *args],
                          capture_output=True, text=True, timeout=timeout, env=env or CHILD_ENV)
    return proc


def fail(argv, capsys) -> str:
    """Run the CLI in this process on input it must refuse before importing mindnlp; return stderr."""
    assert cli.main(["finetune-imdb", "--device", "CPU", *argv]) == 2
    assert "mindnlp" not in sys.modules
    return capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- data
def test_synthetic_reviews_are_seeded_balanced_and_imdb_like():
    a = testing.synthetic_reviews(400, 3)
    assert a == testing.synthetic_reviews(400, 3) and a != testing.synthetic_reviews(400, 4)
    assert sum(y for _, y in a) == 200
    lengths = [len(t.split()) for t, _ in testing.synthetic_reviews(2000, 0, median_words=230, sigma=0.75)]
    assert 200 <= np.median(lengths) <= 260 and np.mean(np.array(lengths) > 512) > 0.08  # a long tail


def test_acl_tree_parquet_csv_and_saved_dataset_read_the_same(env, tmp_path):
    acl = imdb.load_local(env["data"])
    assert imdb.load_local(env["data"] / "aclImdb") == acl  # the folder itself or its parent
    assert len(acl["train"]) == 1000 and len(acl["test"]) == 200
    assert sorted(acl["train"]) == sorted(env["train"])

    import datasets
    import pandas as pd

    for split in imdb.SPLITS:
        frame = pd.DataFrame(acl[split], columns=["text", "label"])
        frame.to_parquet(tmp_path / f"{split}.parquet")
        (tmp_path / "csv").mkdir(exist_ok=True)
        frame.to_csv(tmp_path / "csv" / f"{split}.csv", index=False)
        (tmp_path / "hub" / "plain_text").mkdir(parents=True, exist_ok=True)
        frame.to_parquet(tmp_path / "hub" / "plain_text" / f"{split}-00000-of-00001.parquet")
    datasets.DatasetDict({s: datasets.Dataset.from_pandas(pd.DataFrame(acl[s], columns=["text", "label"]))
                          for s in imdb.SPLITS}).save_to_disk(str(tmp_path / "saved"))
    for d in (tmp_path, tmp_path / "csv", tmp_path / "hub", tmp_path / "saved"):
        assert imdb.load_local(d) == acl, d


def test_course_subset_and_split_sizes_are_seeded_and_stratified():
    rows = [(f"r{i}", int(i >= 12500)) for i in range(25000)]  # IMDb's train split: 12,500 per label
    sub = imdb.subset(rows, 0.1, seed=0)
    assert len(sub) == 2500 and sum(y for _, y in sub) == 1250  # not the first 10% (all negative)
    train, val = imdb.train_val_split(sub, 0.3, seed=0)
    assert (len(train), len(val)) == (1750, 750)  # the course's 1750 / 750
    assert sum(y for _, y in val) == 375 and not {t for t, _ in train} & {t for t, _ in val}
    assert imdb.subset(rows, 0.1, seed=0) == sub and imdb.subset(rows, 0.1, seed=1) != sub
    assert len(imdb.subset(rows, 1.0, seed=0)) == 25000


def test_data_errors_name_the_problem(env, tmp_path, capsys):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    err = fail(["--model", str(env["model"]), "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "o")],
               capsys)
    assert "holds no IMDb data it recognises (it has: train)" in err
    assert "aclImdb/{train,test}/{pos,neg}/*.txt" in err and "dataset_dict.json" in err and "text,label" in err

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.csv").write_text("text,label\ngood film,1\nodd one,2\n")
    (bad / "test.csv").write_text("text,label\nfine,0\n")
    err = fail(["--model", str(env["model"]), "--data-dir", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert f"{bad / 'train.csv'}: row 1: label 2 is not 0 (negative) or 1 (positive)" in err
    (bad / "train.csv").write_text("review,sentiment\nx,1\n")
    err = fail(["--model", str(env["model"]), "--data-dir", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert "no column(s) ['text', 'label']; the columns are ['review', 'sentiment']" in err
    with pytest.raises(imdb.DataError, match=r"row 0: label -1 is not 0"):  # e.g. IMDb's unsupervised split
        imdb.check_rows([("x", -1)], "unsup")
    with pytest.raises(imdb.DataError, match=r"subset fraction must be in \(0, 1\], got 0"):
        imdb.subset([("x", 1)], 0, 0)


def test_hub_fails_fast_with_the_endpoint_and_the_local_way(env, tmp_path):
    """No --data-dir and no hub: a clear error within seconds, never a hang."""
    env_vars = {k: v for k, v in CHILD_ENV.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env_vars["HF_ENDPOINT"] = "http://127.0.0.1:9"  # the discard port: nothing listens
    proc = run_cli("--model", str(env["model"]), "--out", str(tmp_path / "o"), env=env_vars, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "[imdb] loading 'imdb' from the hub at http://127.0.0.1:9" in proc.stderr
    assert "the Hugging Face hub at http://127.0.0.1:9 cannot be reached" in proc.stderr
    assert "pass --data-dir DIR" in proc.stderr and "aclImdb" in proc.stderr

    proc = run_cli("--model", "openai-gpt", "--data-dir", str(env["data"]), "--out", str(tmp_path / "o"),
                   env=env_vars, timeout=120)
    assert proc.returncode == 2
    assert "loading model 'openai-gpt' from the hub at http://127.0.0.1:9" in proc.stderr
    assert "cannot be reached" in proc.stderr and "pass --model DIR" in proc.stderr

    with pytest.raises(imdb.DataError, match="HF_HUB_OFFLINE is set, so the hub .* --data-dir"):
        imdb.check_hub("https://huggingface.co", env={"HF_HUB_OFFLINE": "1"})
    with pytest.raises(imdb.DataError, match="HF_ENDPOINT='ftp://x' is not an http"):
        imdb.check_hub("ftp://x", env={})
    assert imdb.hub_endpoint({}) == "https://huggingface.co"
    assert imdb.hub_endpoint({"HF_ENDPOINT": "https://hf-mirror.com/"}) == "https://hf-mirror.com"


# ----------------------------------------------------------------------------------- process_dataset
def batches_of(tokenizer, rows, **kw):
    return mi.BatchedDataset(mi.process_dataset(rows, tokenizer, **kw)).batches


def test_static_batches_pad_to_max_length_and_keep_every_row_for_eval(tokenizer, env):
    rows = env["test"][:21]
    train = batches_of(tokenizer, rows, max_seq_len=64, batch_size=4, static_shapes=True)
    assert len(train) == 5 and {b["input_ids"].shape for b in train} == {(4, 64)}  # 21 rows: 1 dropped
    evals = batches_of(tokenizer, rows, max_seq_len=64, batch_size=4, static_shapes=True, fill_remainder=True)
    assert len(evals) == 6 and {b["input_ids"].shape for b in evals} == {(4, 64)}
    last = evals[-1]
    assert last["labels"].tolist() == [rows[20][1], mi.IGNORE, mi.IGNORE, mi.IGNORE]
    assert (last["input_ids"][1:] == tokenizer.pad_token_id).all() and last["attention_mask"][1:].sum() == 0
    # Row 0 is <bos> text <eos>, then the tokenizer's padding='max_length'.
    ids = mi.encode(tokenizer, rows[0][0], 64)
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert evals[0]["input_ids"][0].tolist() == ids + [tokenizer.pad_token_id] * (64 - len(ids))
    assert evals[0]["attention_mask"][0].tolist() == [1] * len(ids) + [0] * (64 - len(ids))
    assert [int(b["labels"][i]) for b in evals for i in range(4)][:21] == [y for _, y in rows]


def test_dynamic_batches_pad_to_their_longest_row(tokenizer, env):
    rows = env["test"][:10]
    got = batches_of(tokenizer, rows, max_seq_len=64, batch_size=4, static_shapes=False)
    assert [b["input_ids"].shape[0] for b in got] == [4, 4, 2]  # nothing dropped, no filler
    for i, b in enumerate(got):
        lens = [len(mi.encode(tokenizer, t, 64)) for t, _ in rows[4 * i:4 * i + 4]]
        assert b["input_ids"].shape[1] == max(lens)
        assert b["attention_mask"].sum(1).tolist() == lens
        assert all((b["input_ids"][r, n:] == tokenizer.pad_token_id).all() for r, n in enumerate(lens))


def test_buckets_use_few_static_shapes_and_far_less_padding(tokenizer, env):
    rows = env["train"][:200]
    kw = dict(max_seq_len=64, batch_size=8, fill_remainder=True)
    bucketed = mi.BatchedDataset(mi.process_dataset(rows, tokenizer, buckets=(16, 32, 64), **kw))
    fixed = mi.BatchedDataset(mi.process_dataset(rows, tokenizer, static_shapes=True, **kw))
    assert bucketed.shapes() == [(8, 16), (8, 32), (8, 64)] and fixed.shapes() == [(8, 64)]
    for b in bucketed.batches:  # each row sits in the smallest bucket that holds it
        n = b["attention_mask"].sum(1)[b["labels"] != mi.IGNORE]
        width = b["input_ids"].shape[1]
        assert (n <= width).all() and (n > {16: 0, 32: 16, 64: 32}[width]).all()
    cb, cf = bucketed.token_counts(), fixed.token_counts()
    assert cb["rows"] == cf["rows"] == 200 and cb["real_tokens"] == cf["real_tokens"]
    assert cf["total_tokens"] - cf["real_tokens"] >= 2 * (cb["total_tokens"] - cb["real_tokens"])


def test_course_tokens_static_policy_and_bad_arguments(tokenizer, env, monkeypatch):
    text = env["test"][0][0]
    assert mi.encode(tokenizer, text, 64, course_tokens=True) == tokenizer(text, truncation=True, max_length=64)["input_ids"]
    assert tokenizer.bos_token_id not in mi.encode(tokenizer, text, 64, course_tokens=True)
    rows = env["test"][:9]
    monkeypatch.setenv("MS_GPT_STATIC_SHAPES", "1")  # the Ascend policy, forced on this CPU
    assert {b["input_ids"].shape for b in batches_of(tokenizer, rows, max_seq_len=48, batch_size=3)} == {(3, 48)}
    monkeypatch.setenv("MS_GPT_STATIC_SHAPES", "0")
    assert len({b["input_ids"].shape for b in batches_of(tokenizer, rows, max_seq_len=48, batch_size=3)}) > 1
    with pytest.raises(ValueError, match=r"largest bucket must equal max_seq_len=64, got buckets \(16, 32\)"):
        mi.process_dataset(rows, tokenizer, max_seq_len=64, buckets=(16, 32))
    with pytest.raises(ValueError, match=r"strictly increasing positive lengths, got \(32, 16, 64\)"):
        mi.process_dataset(rows, tokenizer, max_seq_len=64, buckets=(32, 16, 64))
    with pytest.raises(ValueError, match="buckets are a static-shape mode"):
        mi.process_dataset(rows, tokenizer, max_seq_len=64, buckets=(32, 64), static_shapes=False)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        mi.process_dataset(rows, tokenizer, batch_size=0)
    from ms_gpt.config import parse_lengths

    with pytest.raises(argparse.ArgumentTypeError, match="expected comma-separated lengths like 128,256,512, got '1,x'"):
        parse_lengths("1,x")
    assert parse_lengths("16,32") == (16, 32) and parse_lengths("none") == ()


def test_accuracy_skips_filler_rows():
    logits = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [5.0, 0.0]])
    assert mi.accuracy_metrics((logits, np.array([1, 1, 1, mi.IGNORE]))) == {"accuracy": pytest.approx(2 / 3)}


# -------------------------------------------------------------------------------------- model / run
def test_model_and_run_errors(env, tmp_path, capsys):
    data = ["--data-dir", str(env["data"])]
    nofiles = tmp_path / "hf"
    nofiles.mkdir()
    (nofiles / "config.json").write_text((env["model"] / "config.json").read_text())
    err = fail(["--model", str(nofiles), *data, "--out", str(tmp_path / "o")], capsys)
    assert "missing vocab.json, merges.txt, model.safetensors or pytorch_model.bin" in err
    err = fail(["--model", str(tmp_path / "nowhere"), *data, "--out", str(tmp_path / "o")], capsys)
    assert "not a folder; give a hub name (e.g. openai-gpt)" in err
    err = fail(["--model", str(env["model"]), *data, "--out", str(tmp_path / "o"), "--max-seq-len", "200"], capsys)
    assert "max_seq_len 200 is longer than the model's 128 positions" in err
    err = fail(["--model", str(env["model"]), *data, "--out", str(tmp_path / "o"), "--buckets", "16,32"], capsys)
    assert "the largest bucket must equal max_seq_len=512" in err
    err = fail(["--model", str(env["model"]), *data, "--out", str(tmp_path / "o"), "--resume"], capsys)
    assert "--resume: " in err and "has no saved run" in err
    err = fail(["--model", str(env["model"]), *data, "--out", str(tmp_path / "o"), "--subset", "1.5"], capsys)
    assert "subset must be in (0, 1], got 1.5" in err
    err = fail(["--model", str(env["model"]), *data, "--out", str(tmp_path / "o"), "--epochs", "2",
                "--until-epoch", "3"], capsys)
    assert "until_epoch (3) is after the last epoch (2)" in err


def tiny_ms_gpt_checkpoint(out: Path, texts, kind="bpe") -> Path:
    """What ``ms-gpt pretrain --tokenizer bpe`` leaves: model.ckpt + gpt_config.json + tokenizer/ (GPT-1 shaped)."""
    from ms_gpt import GPTConfig
    from ms_gpt.model import GPT
    from ms_gpt.run_folder import checkpoint
    from ms_gpt.text.bpe import BPETokenizer
    from ms_gpt.text.vocab import WhitespaceTokenizer

    tok = BPETokenizer.train(texts, 300) if kind == "bpe" else WhitespaceTokenizer.build(texts)
    model = GPT(GPTConfig.preset("tiny", vocab_size=tok.vocab_size, n_positions=64, d_ff=128))
    checkpoint.save_model(model, out, tokenizer=tok)
    return out


def test_ms_gpt_checkpoint_goes_through_the_same_flow(env, tmp_path, capsys):
    texts = [t for t, _ in env["train"][:300]]
    words = tiny_ms_gpt_checkpoint(tmp_path / "words", texts, kind="whitespace")
    err = fail(["--model", str(words), "--data-dir", str(env["data"]), "--out", str(tmp_path / "o")], capsys)
    assert "its tokenizer is 'whitespace'; this flow uses openai-gpt's BPE tokenizer" in err

    ckpt = tiny_ms_gpt_checkpoint(tmp_path / "bpe", texts)
    out = tmp_path / "run"
    proc = run_cli("--model", str(ckpt), "--data-dir", str(env["data"]), "--out", str(out), "--subset", "0.2",
                   "--epochs", "1", "--max-seq-len", "64", "--batch-size", "8", "--learning-rate", "3e-3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"is an ms_gpt checkpoint: exporting it to {out / 'init_hf'}" in proc.stderr
    assert {"config.json", "model.safetensors", "vocab.json", "merges.txt"} <= {p.name for p in (out / "init_hf").iterdir()}
    m = json.loads((out / "metrics.json").read_text())
    assert m["data"] == {"train": 140, "validation": 60, "test": 40} and 0 <= m["test_accuracy"] <= 1


@pytest.mark.parametrize("mode", ["dynamic", "buckets"])
def test_trainer_consumes_exactly_the_pipeline_batches(env, tmp_path, mode):
    proc = subprocess.run([sys.executable, str(HERE / "imdb_bridge_probe.py"), str(env["model"]), str(env["data"]),
                           str(tmp_path / "o"), mode], capture_output=True, text=True, timeout=600, env=CHILD_ENV)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    r = json.loads(lines[-1][len("RESULT"):])
    assert r["train_same"] and r["eval_same"], r
    assert r["train_order_differs"]  # the batches are the pipeline's; the Trainer only shuffles their order
    assert r["n_train"][0] == r["n_train"][1] > 10
    if mode == "buckets":
        assert r["shapes"]["train"] == r["shapes"]["test"] == [[8, 16], [8, 32], [8, 64]]
    else:
        assert len(r["shapes"]["train"]) > 3


def test_cli_learns_writes_metrics_and_resumes_exactly(env, tmp_path):
    """One epoch is enough on the easy set; a run stopped after epoch 1 and resumed equals an unbroken run."""
    args = ["--model", str(env["model"]), "--data-dir", str(env["data"]), "--subset", "1", "--epochs", "2",
            "--max-seq-len", "64", "--batch-size", "8", "--learning-rate", "1e-3", "--buckets", "16,32,64"]
    full = run_cli(*args, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr[-3000:]
    m = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert json.loads(full.stdout.strip().splitlines()[-1])["test_accuracy"] == m["test_accuracy"]
    assert m["data"] == {"train": 700, "validation": 300, "test": 200}
    assert m["static_shapes"] is True and m["shapes"]["train"] == [[8, 16], [8, 32], [8, 64]]
    assert m["eval_history"][0]["eval_accuracy"] >= 0.9  # after one epoch; chance is 0.5
    assert m["test_accuracy"] >= 0.9 and m["eval_accuracy"] == max(e["eval_accuracy"] for e in m["eval_history"])
    assert m["train_loss"][1]["loss"] < m["train_loss"][0]["loss"] < 0.7
    best = tmp_path / "full" / "best"
    assert {"config.json", "model.safetensors", "vocab.json", "merges.txt"} <= {p.name for p in best.iterdir()}
    assert json.loads((best / "config.json").read_text())["pad_token_id"] is not None

    part = run_cli(*args, "--out", str(tmp_path / "part"), "--until-epoch", "1")
    assert part.returncode == 0, part.stderr[-3000:]
    mp = json.loads((tmp_path / "part" / "metrics.json").read_text())
    assert mp["stopped_after_epoch"] == 1 and "test_accuracy" not in mp and not (tmp_path / "part" / "best").exists()
    again = run_cli(*args, "--out", str(tmp_path / "part"))
    assert again.returncode == 2 and "already holds a run" in again.stderr and "--resume" in again.stderr
    other = run_cli(*[a if a != "1e-3" else "2e-3" for a in args], "--out", str(tmp_path / "part"), "--resume")
    assert other.returncode == 2 and "different settings than the saved run: learning_rate" in other.stderr
    cut = tmp_path / "part" / "checkpoints" / "checkpoint-9999"  # a save a crash interrupted
    cut.mkdir()
    (cut / "model.safetensors").write_bytes(b"partial")
    resumed = run_cli(*args, "--out", str(tmp_path / "part"), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "checkpoint-9999 has no trainer_state.json (cut off mid-save)" in resumed.stderr
    assert (tmp_path / "part" / "checkpoints" / "checkpoint-9999.incomplete").is_dir()
    mr = json.loads((tmp_path / "part" / "metrics.json").read_text())
    assert mr["resumed_from"].endswith(f"checkpoint-{mp['global_step']}")
    for key in ("eval_history", "train_loss", "test_accuracy", "eval_accuracy", "global_step"):
        assert mr[key] == m[key], key
