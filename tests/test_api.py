"""The Python API (ms_gpt.api): run a job from its config and get its metrics back; load a run folder and
generate (every strategy), chat with history, read attention weights, classify, score."""
import dataclasses
import json

import numpy as np
import pytest

from ms_gpt import api
from ms_gpt.config import DataConfig, TrainConfig
from ms_gpt.flows.configs import FinetuneConfig, GenerateConfig, PretrainConfig, RewardConfig, SFTConfig


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "pre"
    train = TrainConfig(steps=30, learning_rate=3e-3, warmup_steps=None, eval_every=None, ckpt_every=None, amp=None)
    metrics = api.run(PretrainConfig(out=str(out), tokenizer="char", train=train, progress=False))
    return out, metrics


def test_run_returns_the_jobs_metrics_and_refuses_what_is_not_a_job(lm):
    out, metrics = lm
    assert metrics == json.loads((out / "metrics.json").read_text())
    assert metrics["train_loss"]["last"] < metrics["train_loss"]["first"]
    with pytest.raises(TypeError, match="TrainConfig is not a job's config; give one of SmokeConfig"):
        api.run(TrainConfig())


def test_pretraining_runs_in_graph_mode_and_hands_the_process_back_op_by_op(lm):
    """pretrain's default mode is graph; when the job ends MindSpore is in PyNative again, so a cell of the run's
    model can be called directly in the same process (under graph mode that call fails on the CPU kernels)."""
    import mindspore
    import numpy as np

    from ms_gpt.run_folder import checkpoint

    out, _ = lm
    assert json.loads((out / "run_config.json").read_text())["mode"] == "graph"
    _assert_op_by_op()
    model = checkpoint.load_model(out)
    hidden, cache = model.decoder(mindspore.Tensor(np.array([[1, 2, 3, 4]]), mindspore.int32))
    assert cache is None and hidden.shape[:2] == (1, 4)


def _assert_op_by_op():
    import mindspore

    assert mindspore.get_context("mode") == mindspore.PYNATIVE_MODE


def test_a_job_in_graph_mode_hands_the_process_back_when_it_fails(tmp_path, lm):
    """Every training job runs in ``common.execution``: stopped by an error after the device was set up (here a
    data folder without a test split), it still leaves MindSpore in PyNative."""
    pre, _ = lm
    data = _keyword_folder(tmp_path)
    (data / "test.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="test"):
        api.run(FinetuneConfig(init=str(pre), data=str(data), out=str(tmp_path / "ft"), task="classification",
                               mode="graph", progress=False))
    _assert_op_by_op()


def test_generate_matches_the_command_for_every_strategy(lm):
    out, _ = lm
    model = api.load(out)
    assert isinstance(model, api.LanguageModel) and "2 layers, d_model 32" in repr(model)
    for settings in ({}, {"strategy": "beam", "num_beams": 3, "repetition_penalty": 1.2},
                     {"strategy": "sample", "top_k": 5, "temperature": 0.8}):
        gen = dataclasses.replace(GenerateConfig().generation, max_new_tokens=12, **settings)
        expected = api.run(GenerateConfig(ckpt=str(out), prompt="the cat", generation=gen, seed=3))
        assert model.generate("the cat", max_new_tokens=12, seed=3, **settings) == expected
        assert expected.startswith("the cat")
    # the cache is an implementation detail: the same tokens either way
    assert model.generate("the dog", max_new_tokens=10, use_cache=False) == model.generate("the dog", max_new_tokens=10)
    with pytest.raises(TypeError, match="unknown generation setting.* beams; accepted: .*num_beams"):
        model.generate("the cat", beams=3)
    with pytest.raises(ValueError, match="strategy"):
        model.generate("the cat", strategy="nucleus")


def test_attention_weights_are_the_models_own(lm):
    """Causal rows that sum to 1, and layer 0's weights recomputed from the checkpoint's weights in numpy
    (post-LN: layer 0 reads the embeddings themselves)."""
    out, _ = lm
    model = api.load(out)
    att = model.attention("the cat sees a dog")
    cfg = model.model.config
    n = len(att.tokens)
    assert model.form == "lines" and att.tokens == list("\nthe cat sees a dog")  # a character model, text as it is
    assert len(att.weights) == cfg.n_layer
    for w in att.weights:
        assert w.shape == (cfg.n_head, n, n)
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
        assert np.abs(np.triu(w, k=1)).max() < 1e-6  # no token attends to a later one
    ids = model.prompter.encode("the cat sees a dog")
    dec = model.model.decoder
    x = dec.tok_emb.asnumpy()[ids] + dec.pos_emb.asnumpy()[np.arange(n)]
    attn = dec.layers[0].self_attn

    def heads(lin):
        y = x @ lin.weight.asnumpy().T + lin.bias.asnumpy()
        return y.reshape(n, cfg.n_head, -1).transpose(1, 0, 2)

    q, k = heads(attn.W_Q), heads(attn.W_K)
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(cfg.d_k) + np.triu(np.full((n, n), -1e9), k=1)
    expected = np.exp(scores - scores.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(att.weights[0], expected, atol=1e-5)


def test_chat_keeps_its_history_and_replies_as_the_command(tmp_path, lm):
    from ms_gpt.flows.configs import ChatConfig

    pre, _ = lm
    rows = [{"prompt": f"hello {w}", "response": f"hi {w} ."} for w in ("cat", "dog", "sister", "farmer")] * 8
    data = tmp_path / "dialogue.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sft = tmp_path / "sft"
    api.run(SFTConfig(init=str(pre), data=str(data), out=str(sft), progress=False, epochs=1, mode="graph"))
    _assert_op_by_op()  # sft ran in graph mode and handed the process back: the chat below calls cells directly
    talk = api.load(sft).chat(max_new_tokens=8)
    first = talk.reply("hello cat")
    assert talk.history == ["hello cat", first.removesuffix(" …").rstrip()]
    talk.reply("hello dog")
    assert len(talk.history) == 4 and talk.history[2] == "hello dog"
    gen = dataclasses.replace(ChatConfig().generation, max_new_tokens=8)
    assert first == api.run(ChatConfig(ckpt=str(sft), prompt="hello cat", generation=gen))
    resumed = api.load(sft).chat(history=talk.history[:2], max_new_tokens=8)
    assert resumed.history == talk.history[:2]
    talk.reset()
    assert talk.history == []
    with pytest.raises(ValueError, match="empty message ''"):
        talk.reply("")


def _keyword_folder(tmp_path):
    from ms_gpt.testing import write_keyword_task

    return write_keyword_task(tmp_path / "kw", sizes=(("train", 64), ("valid", 16), ("test", 16)))


def test_classify_gives_the_heads_labels_and_probabilities(tmp_path, lm):
    pre, _ = lm
    data = _keyword_folder(tmp_path)
    metrics = api.run(FinetuneConfig(init=str(pre), data=str(data), out=str(tmp_path / "ft"), task="classification",
                                     epochs=2, progress=False, batching=DataConfig(batch_size=16), mode="graph"))
    _assert_op_by_op()
    clf = api.load(tmp_path / "ft")  # the run folder: its best/ is loaded
    assert isinstance(clf, api.Classifier) and clf.classes == metrics["classes"] == [0, 1]
    test = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()]
    got = clf.classify([r["text"] for r in test])
    for g in got:
        assert set(g["probabilities"]) == {"0", "1"} and abs(sum(g["probabilities"].values()) - 1) < 1e-5
        assert g["label"] == max(clf.classes, key=lambda c: g["probabilities"][str(c)])
    accuracy = np.mean([g["label"] == r["label"] for g, r in zip(got, test)])
    assert accuracy == pytest.approx(metrics["accuracy"], abs=1e-9)  # the same model and inputs as the run's test
    assert clf.classify([]) == []
    with pytest.raises(TypeError, match="wrap it in a list"):
        clf.classify("one text")


def test_score_is_the_reward_models(tmp_path, lm):
    from ms_gpt.rl.reward import pairwise_accuracy

    pre, _ = lm
    folder = tmp_path / "prefs"
    folder.mkdir()
    rows = [{"prompt": "the film", "chosen": f"was {g}", "rejected": f"was {b}"}
            for g, b in (("great", "awful"), ("wonderful", "boring"), ("loved", "terrible"))]
    for split, n in (("train", 8), ("valid", 2), ("test", 2)):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * n))
    metrics = api.run(RewardConfig(init=str(pre), data=str(folder), out=str(tmp_path / "rm"), epochs=2, progress=False,
                                   batching=DataConfig(batch_size=8), mode="graph"))
    _assert_op_by_op()
    rm = api.load(tmp_path / "rm")
    assert isinstance(rm, api.RewardModel)
    test = rows * 2
    chosen = rm.score([r["prompt"] for r in test], [r["chosen"] for r in test])
    rejected = rm.score([r["prompt"] for r in test], [r["rejected"] for r in test])
    won = np.array(chosen) > np.array(rejected)
    assert won.mean() == pytest.approx(metrics["accuracy"], abs=1e-9)  # the run's held-out pairwise accuracy
    assert pairwise_accuracy(rm.scorer, test)["all"] == pytest.approx(won.mean(), abs=1e-4)  # ppo's scorer
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        rm.score(["a", "b"], ["c"])


def test_load_names_what_it_needs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        api.load(tmp_path / "missing")


def test_config_is_what_the_command_builds_from_its_flags():
    from ms_gpt.cli import build_parser
    from ms_gpt.config import from_args
    from ms_gpt.flows.jobs import config_class

    for command, argv, settings in (
            ("pretrain", ["--out", "o", "--steps", "60", "--block-size", "16", "--no-progress", "--tokenizer", "char",
                          "--amp", "off"],
             dict(out="o", steps=60, block_size=16, progress=False, tokenizer="char", amp=False)),
            ("finetune", ["--init", "i", "--data", "d", "--out", "o", "--task", "classification", "--pool", "max",
                          "--batch-size", "8", "--lm-weight", "0", "--learning-rate", "1e-3"],
             dict(init="i", data="d", out="o", task="classification", pool="max", batch_size=8, lm_weight=0.0,
                  learning_rate=1e-3)),
            ("ppo", ["--policy", "p", "--reward", "r", "--prompts", "builtin:chitchat-prompts", "--out", "o",
                     "--steps", "5", "--kl-target", "none", "--allow-unk"],
             dict(policy="p", reward="r", prompts="builtin:chitchat-prompts", out="o", steps=5, kl_target=None,
                  allow_unk=True))):
        args = build_parser([command, *argv]).parse_args([command, *argv])
        assert api.config(command, **settings) == from_args(config_class(command), args), command
    with pytest.raises(ValueError, match="unknown setting.* batch for FinetuneConfig; accepted: .*batch_size"):
        api.config("finetune", init="i", data="d", out="o", task="classification", batch=8)
    with pytest.raises(ValueError, match="task must be one of classification"):
        api.config("finetune", init="i", data="d", out="o", task="regression")
    with pytest.raises(ValueError, match="--init is required"):
        api.config("finetune", data="d", out="o", task="classification")
    with pytest.raises(ValueError, match="unknown command 'train'; one of smoke, pretrain"):
        api.config("train")


def test_importing_the_api_and_the_jobs_table_loads_no_mindspore():
    import subprocess
    import sys

    code = ("import sys, ms_gpt.api, ms_gpt.flows.jobs as j; assert 'mindspore' not in sys.modules, 'mindspore'; "
            "print(sorted(j.JOBS) == sorted(['smoke', 'pretrain', 'generate', 'chat', 'chat-eval', 'finetune', 'sft', "
            "'reward', 'ppo', 'finetune-imdb']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr
