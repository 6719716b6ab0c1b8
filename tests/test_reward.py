"""Reward models (ms-gpt reward): the pairwise loss, the preference data, a tiny run that learns an easy
preference, and the errors."""
import dataclasses
import json
import math
import shutil
import subprocess

import mindspore
import numpy as np
import pytest

from ms_gpt import GPTConfig
from ms_gpt.data.preferences import as_choice_task, load_preferences, reviews_zh_pairs
from ms_gpt.data.tasks import DataError, reviews_zh_splits
from ms_gpt.environment import device
from ms_gpt.run_folder import checkpoint

SUBJECTS = ["the cat", "the dog", "my sister", "the farmer", "a young girl", "the baker", "our teacher", "his friend"]


def test_the_two_choice_loss_is_the_pairwise_loss_and_starts_near_ln2():
    from ms_gpt.finetuning import make_objective
    from ms_gpt.model import GPTForSequenceClassification

    device.setup("CPU", mode="pynative", seed=0)
    mindspore.set_seed(0)
    model = GPTForSequenceClassification(GPTConfig.preset("tiny", vocab_size=50, pad_token_id=0), 2,
                                         task="multiple-choice", with_lm=False, classifier_dropout=0.0)
    model.set_train(False)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 50, (6, 2, 9)).astype(np.int32)
    ids[:, 1, 7:] = 0  # the rejected responses are shorter: padding
    labels = np.zeros(6, np.int32)  # the chosen response is choice 0
    loss = float(make_objective(0.0)(model, mindspore.Tensor(ids), None, mindspore.Tensor(labels)).asnumpy())
    r = model(mindspore.Tensor(ids))[0].asnumpy().astype(np.float64)  # [6, 2]: r(chosen), r(rejected)
    reference = np.mean(np.log1p(np.exp(-(r[:, 0] - r[:, 1]))))  # -log σ(r_c - r_r)
    assert loss == pytest.approx(reference, abs=1e-6) and abs(r[:, 0] - r[:, 1]).max() > 0.01
    # ms-gpt reward's head starts at zero: every response scores alike, the loss is ln 2
    from ms_gpt.finetuning import build_classifier
    from ms_gpt.flows.configs import RewardConfig
    from ms_gpt.model import GPT

    cfg = RewardConfig(init="x", data="y", out="z")
    clf = build_classifier(GPT(model.config), "multiple-choice", 2, cfg, seed=0, zero_head=True)
    clf.set_train(False)
    start = float(make_objective(0.0)(clf, mindspore.Tensor(ids), None, mindspore.Tensor(labels)).asnumpy())
    assert start == pytest.approx(math.log(2), abs=1e-6)


def test_the_all_pairs_loss_compares_every_chosen_with_every_rejected_response():
    from ms_gpt.data.batching import IGNORE
    from ms_gpt.finetuning import all_pairs_loss

    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 2))
    labels = np.array([0, 1, 0, IGNORE, 0])  # row 1's chosen is choice 1; row 3 is padding
    real = [0, 1, 2, 4]
    chosen = {i: logits[i, labels[i]] for i in real}
    rejected = {i: logits[i, 1 - labels[i]] for i in real}
    reference = np.mean([np.log1p(np.exp(-(chosen[i] - rejected[j]))) for i in real for j in real])  # 16 terms
    got = float(all_pairs_loss(mindspore.Tensor(logits, mindspore.float32), mindspore.Tensor(labels)).asnumpy())
    assert got == pytest.approx(reference, abs=1e-6)
    # with one real row it is that row's own pairwise loss
    one = np.array([0, IGNORE, IGNORE, IGNORE, IGNORE])
    got = float(all_pairs_loss(mindspore.Tensor(logits, mindspore.float32), mindspore.Tensor(one)).asnumpy())
    assert got == pytest.approx(np.log1p(np.exp(-(logits[0, 0] - logits[0, 1]))), abs=1e-6)


def test_the_pairing_setting_is_checked():
    from ms_gpt.flows.configs import RewardConfig

    with pytest.raises(ValueError, match="pairs must be one of given, all, got 'every'"):
        RewardConfig(init="x", data="y", out="z", pairs="every").validate()
    RewardConfig(init="x", data="y", out="z", pairs="all").validate()


def test_review_pairs_come_from_their_own_split():
    pairs, splits = reviews_zh_pairs(0), reviews_zh_splits(0)
    for name in ("train", "valid", "test"):
        pos = {r["text"] for r in splits[name] if r["label"] == 1}
        neg = {r["text"] for r in splits[name] if r["label"] == 0}
        assert len(pairs[name]) == min(len(pos), len(neg)) > 0
        assert all(p["chosen"] in pos and p["rejected"] in neg and p["prompt"] == "" for p in pairs[name])
        assert len({p["chosen"] for p in pairs[name]}) == len(pairs[name])  # no review used twice
    train_texts = {t for p in pairs["train"] for t in (p["chosen"], p["rejected"])}
    assert not train_texts & {t for p in pairs["test"] for t in (p["chosen"], p["rejected"])}
    assert reviews_zh_pairs(0) == pairs and reviews_zh_pairs(1)["test"] != pairs["test"]
    data = as_choice_task(pairs, "builtin:reviews-zh-pairs")
    assert data.task == "multiple-choice" and data.num_labels == 2
    assert data.splits["train"][0] == {"context": "", "choices": [pairs["train"][0]["chosen"],
                                                                  pairs["train"][0]["rejected"]], "label": 0}


def write_pairs(folder, rows_per_split=(("train", 48), ("valid", 16), ("test", 16)), bad=None):
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in rows_per_split:
        rows = [{"prompt": SUBJECTS[i % len(SUBJECTS)], "chosen": "likes an apple near the river .",
                 "rejected": "paints the blue door at night .", "kind": "night"} if i % 2 else
                {"prompt": SUBJECTS[i % len(SUBJECTS)], "chosen": "likes the green hat .",
                 "rejected": "paints a wooden box .", "kind": "box"} for i in range(n)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if bad:
        (folder / "valid.jsonl").write_text(bad)
    return folder


def test_preference_data_errors(tmp_path):
    folder = write_pairs(tmp_path / "a", bad=json.dumps({"prompt": "x", "chosen": "y"}) + "\n")
    with pytest.raises(DataError, match=r"valid.jsonl:1: a preference row needs string fields prompt, chosen, "
                                        r"rejected; missing or not a string: rejected"):
        load_preferences(str(folder))
    folder = write_pairs(tmp_path / "b", bad=json.dumps({"prompt": "x", "chosen": "y", "rejected": "y"}) + "\n")
    with pytest.raises(DataError, match=r"valid.jsonl:1: 'chosen' and 'rejected' are the same text"):
        load_preferences(str(folder))
    (tmp_path / "c").mkdir()
    with pytest.raises(FileNotFoundError, match=r"missing \['train.jsonl', 'valid.jsonl', 'test.jsonl'\]"):
        load_preferences(str(tmp_path / "c"))
    with pytest.raises(ValueError, match=r"unknown built-in preference data 'hh'; available: "
                                         r"builtin:reviews-zh-pairs"):
        load_preferences("builtin:hh")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, venv_bin):
    out = tmp_path_factory.mktemp("pre")
    proc = subprocess.run([str(venv_bin / "ms-gpt"), "pretrain", "--corpus", "builtin:demo-en", "--out", str(out),
                           "--steps", "30", "--no-progress", "--overwrite"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_a_reward_model_learns_an_easy_preference(pretrained, tmp_path, venv_bin):
    data = write_pairs(tmp_path / "pairs")
    out = tmp_path / "rm"
    proc = subprocess.run([str(venv_bin / "ms-gpt"), "reward", "--init", str(pretrained), "--data", str(data),
                           "--out", str(out), "--epochs", "4", "--batch-size", "8", "--no-progress"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    assert m["role"] == "reward-model" and m["task"] == "multiple-choice" and m["lm_weight"] == 0.5
    assert m["accuracy"] >= 0.9 and m["test_margin"]["positive_share"] == m["accuracy"]
    assert m["test_margin"]["mean"] > 0
    # the kept model through ms-gpt ppo's scorer agrees, per kind of rejected reply the rows name
    assert m["test_pairwise"]["all"] == m["accuracy"] and m["test_pairwise"]["pairs"] == 16
    assert {k: v["pairs"] for k, v in m["test_pairwise"]["kinds"].items()} == {"box": 8, "night": 8}
    assert min(v["accuracy"] for v in m["test_pairwise"]["kinds"].values()) >= 0.8
    model, tok, meta = checkpoint.load_reward(out)  # the run folder (its best/) or best/ itself
    assert meta["role"] == "reward-model" and checkpoint.load_reward(out / "best")[2] == meta
    e = tok.encode
    rows = [[tok.bos_id] + e("the cat") + [tok.sep_id] + e(r) + [tok.eos_id] for r in
            ("likes the green hat .", "paints a wooden box .")]
    scores = model(mindspore.Tensor(np.array(rows, np.int32)))[0].asnumpy()[:, 0]
    assert scores[0] > scores[1]
    # not a reward model: a classifier without the role, and generate on a reward folder
    plain = tmp_path / "plain"
    shutil.copytree(out / "best", plain)
    meta_file = plain / "classifier.json"
    meta_file.write_text(json.dumps({k: v for k, v in json.loads(meta_file.read_text()).items() if k != "role"}))
    with pytest.raises(checkpoint.CheckpointError, match=r"holds a multiple-choice classifier, not a reward model"):
        checkpoint.load_reward(plain)
    with pytest.raises(checkpoint.CheckpointError, match=r"is not a reward model: no classifier.json"):
        checkpoint.load_reward(pretrained)
    gen = subprocess.run([str(venv_bin / "ms-gpt"), "generate", "--ckpt", str(out / "best"), "--prompt", "the"],
                         capture_output=True, text=True, timeout=300)
    assert gen.returncode == 2 and "a fine-tuned classifier" in gen.stderr


def test_a_mean_pooled_reward_model_with_dropout_learns_and_records_what_it_reads(pretrained, tmp_path, venv_bin):
    """--pool mean: the head reads the average of the real tokens' states (padding ignored), recorded in the
    head's classifier.json so ms-gpt ppo scores the same way; --dropout sets the trunk's dropout while training."""
    data = write_pairs(tmp_path / "pairs")
    out = tmp_path / "rm"
    proc = subprocess.run([str(venv_bin / "ms-gpt"), "reward", "--init", str(pretrained), "--data", str(data),
                           "--out", str(out), "--epochs", "4", "--batch-size", "8", "--pool", "mean",
                           "--dropout", "0.1", "--no-progress"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    assert m["accuracy"] >= 0.9 and m["defaults"]["dropout"] == 0.1
    model, tok, meta = checkpoint.load_reward(out)
    assert model.pool == "mean" and meta["pool"] == "mean" and "average" in meta["score"]
    assert json.loads((out / "best" / "gpt_config.json").read_text())["resid_dropout"] == 0.1
    e = tok.encode
    row = [tok.bos_id] + e("the cat") + [tok.sep_id] + e("likes the green hat .") + [tok.eos_id]
    score = lambda pads: model(mindspore.Tensor(np.array([row + [tok.pad_id] * pads], np.int32)))[0].asnumpy()[0, 0]  # noqa: E731
    np.testing.assert_allclose(score(6), score(2), atol=1e-5)  # the padding does not enter the mean


def test_all_pairs_needs_one_prompt_and_learns_when_the_prompts_agree(pretrained, tmp_path, venv_bin):
    """--pairs all compares responses across pairs: refused when the pairs' prompts differ (the comparison
    would mean nothing), and with one shared (empty) prompt it learns the preference."""
    cmd = lambda data, out: [str(venv_bin / "ms-gpt"), "reward", "--init", str(pretrained), "--data", str(data),  # noqa: E731
                             "--out", str(out), "--epochs", "4", "--batch-size", "8", "--pairs", "all",
                             "--no-progress"]
    proc = subprocess.run(cmd(write_pairs(tmp_path / "prompts"), tmp_path / "no"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "every training pair needs the same prompt" in proc.stderr
    assert "8 different prompts" in proc.stderr and "use --pairs given" in proc.stderr
    folder = tmp_path / "empty"
    folder.mkdir()
    for split in ("train", "valid", "test"):
        rows = [json.loads(line) | {"prompt": ""} for line in
                (tmp_path / "prompts" / f"{split}.jsonl").read_text().splitlines()]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = subprocess.run(cmd(folder, tmp_path / "rm"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    assert m["accuracy"] >= 0.9 and m["pairs"] == "all"


def test_a_long_preference_set_trains_one_pass_over_its_first_batches():
    """builtin:chitchat-pairs' 126,035 pairs would be 10 passes of 3,939 steps by default (2 h 20 min for a tiny
    model here); a reward model then takes one pass over the first 500 batches (the recipe's measured 16,000 x 1).
    The reviews' 6,666 pairs, and any run that says --train-limit or --epochs, keep their settings."""
    from ms_gpt import recipes
    from ms_gpt.flows.configs import RewardConfig
    from ms_gpt.flows.finetune import pass_plan

    cfg = RewardConfig(init="i", data="d", out="o")
    long = pass_plan(cfg, 126_035)
    assert (long.train_limit, long.epochs) == (recipes.REWARD_PASS_STEPS * 32, 1) == (16_000, 1)
    assert pass_plan(cfg, 6_666) == cfg
    assert pass_plan(dataclasses.replace(cfg, train_limit=8_000), 126_035).epochs is None
    assert pass_plan(dataclasses.replace(cfg, epochs=2), 126_035).train_limit is None
