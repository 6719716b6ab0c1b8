"""Dialogue data (builtin:chitchat, multi-turn exchanges), ms-gpt sft's defaults by data and model size,
and ms-gpt chat's input in each checkpoint form."""
import dataclasses
import json
import subprocess

import pytest

from ms_gpt import recipes
from ms_gpt.data.batching import IGNORE
from ms_gpt.data.dialogue import (Exchange, context_ids, encode_exchange, exchanges, load_dialogue, read_pairs,
                                  split_conversations)
from ms_gpt.data.tasks import DataError
from ms_gpt.text import SEP, WhitespaceTokenizer


def tok():
    t = WhitespaceTokenizer.build(["hi there how are you fine thanks and you good bye"])
    t.add_special(SEP)
    return t


def test_exchanges_and_the_split_by_conversation():
    convs = [["a", "b", "c"], ["d", "e"], ["f"], ["g", "h", "i", "j", "k", "l"]]
    ex = exchanges(convs, max_context_turns=2)
    assert ex[:3] == [Exchange(("a",), "b"), Exchange(("a", "b"), "c"), Exchange(("d",), "e")]
    assert ex[-1] == Exchange(("j", "k"), "l") and len(ex) == 2 + 1 + 0 + 5
    train, valid = split_conversations(list(range(100)), 0.05, seed=3)
    assert len(valid) == 5 and sorted(train + valid) == list(range(100))
    assert split_conversations(list(range(100)), 0.05, seed=3) == (train, valid)  # seeded
    assert split_conversations(list(range(100)), 0.05, seed=4)[1] != valid


def test_chitchat_as_sft_data():
    train, valid = load_dialogue("builtin:chitchat", seed=0)
    assert len(train) + len(valid) == 138725 - 7168  # every turn but each conversation's first
    assert 0.03 < len(valid) / (len(train) + len(valid)) < 0.07
    assert all(1 <= len(e.context) <= recipes_max_context() for e in train[:2000])
    from ms_gpt.data.corpus import chitchat_conversations

    convs_train, convs_valid = split_conversations(chitchat_conversations(), seed=0)
    assert len(valid) == sum(len(c) - 1 for c in convs_valid)  # whole conversations on each side
    assert valid[0] == exchanges(convs_valid[:1])[0]
    with pytest.raises(ValueError, match=r"unknown dialogue corpus 'builtin:movies'; built in: builtin:chitchat"):
        load_dialogue("builtin:movies")


def recipes_max_context():
    from ms_gpt.data.dialogue import MAX_CONTEXT_TURNS

    return MAX_CONTEXT_TURNS


def test_a_multi_turn_exchange_masks_the_context_and_drops_the_oldest_turns():
    t = tok()
    e = t.encode
    x, y = encode_exchange(t, ("hi there", "how are you"), "fine thanks", 32)
    assert x.tolist() == [t.bos_id] + e("hi there") + [t.sep_id] + e("how are you") + [t.sep_id] + e("fine thanks")
    assert y.tolist() == [IGNORE] * 7 + e("fine thanks") + [t.eos_id]
    x, _ = encode_exchange(t, ("hi there", "how are you"), "fine thanks", 8)  # room for 4 context tokens
    assert x.tolist() == [t.bos_id] + e("how are you") + [t.sep_id] + e("fine thanks")  # the older turn dropped
    x, _ = encode_exchange(t, ("hi there", "how are you"), "fine thanks", 9)  # 5: the older turn keeps its end
    assert x.tolist() == [t.bos_id] + e("there") + [t.sep_id] + e("how are you") + [t.sep_id] + e("fine thanks")
    x, _ = encode_exchange(t, ("good bye", "hi", "how are you"), "fine", 10)  # newest turns whole, oldest cut
    assert x.tolist() == [t.bos_id] + e("bye") + [t.sep_id] + e("hi") + [t.sep_id] + e("how are you") + \
        [t.sep_id] + e("fine")
    assert context_ids(t, ("hi there", "how are you"), 32) == \
        [t.bos_id] + e("hi there") + [t.sep_id] + e("how are you") + [t.sep_id]
    with pytest.raises(ValueError, match=r"max_len must be >= 4"):
        encode_exchange(t, ("hi",), "fine", 3)
    # a response longer than the room is cut, and its cut is not taught as the place to stop
    x, y = encode_exchange(t, ("hi",), "fine thanks how are you", 5)  # room for 3 of its 5 words
    assert x.tolist() == [t.bos_id, t.sep_id] + e("fine thanks how")
    assert y.tolist() == [IGNORE] + e("fine thanks how") + [IGNORE]
    _, y = encode_exchange(t, ("hi",), "fine thanks how", 5)  # fits exactly: it ends there
    assert y.tolist() == [IGNORE] + e("fine thanks how") + [t.eos_id]


def test_jsonl_pairs_with_context_and_their_errors(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"prompt": "how are you", "response": "fine", "context": ["hi", "hi there"]}) + "\n"
                 + json.dumps({"prompt": "bye", "response": "good bye"}) + "\n")
    assert read_pairs(f) == [Exchange(("hi", "hi there", "how are you"), "fine"), Exchange(("bye",), "good bye")]
    assert load_dialogue(str(f)) == (read_pairs(f), [])
    f.write_text(json.dumps({"prompt": "a", "response": "b", "context": "hi"}) + "\n")
    with pytest.raises(DataError, match=r"d.jsonl:1: 'context' must be a list of earlier turns"):
        read_pairs(f)
    with pytest.raises(FileNotFoundError, match=r"or builtin:chitchat\)"):
        read_pairs(tmp_path / "missing.jsonl")


def test_sft_defaults_by_data_and_model_size():
    from ms_gpt.flows.configs import SFTConfig
    from ms_gpt.flows.sft import plan

    cfg = SFTConfig(init="x", data="y", out="z")
    assert plan(40, cfg) == (None, 20)  # 5 steps a pass: 20 passes (the cap)
    assert plan(4000, cfg) == (None, 4)  # 500 steps a pass: 4 fit in 2,000
    assert plan(131557, cfg) == (16000, 1)  # a dialogue corpus: one pass over 2,000 steps' worth
    cfg.epochs, cfg.train_limit = 3, 100
    assert plan(131557, cfg) == (100, 3)  # given values win
    assert recipes.sft_learning_rate(300_000) == 1e-3 and recipes.sft_learning_rate(116_000_000) == 1e-4
    assert recipes.sft_learning_rate(1_833_856) == 3e-4  # the chat recipe's small word model


def test_sft_on_chitchat_reports_held_out_response_loss(tmp_path, venv_bin, monkeypatch, capsys):
    pre = tmp_path / "pre"
    run = subprocess.run([str(venv_bin / "ms-gpt"), "pretrain", "--corpus", "builtin:chitchat", "--out", str(pre),
                          "--steps", "30", "--vocab-size", "1000", "--no-progress"], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    proc = subprocess.run([str(venv_bin / "ms-gpt"), "sft", "--init", str(pre), "--data", "builtin:chitchat", "--out",
                           str(tmp_path / "sft"), "--train-limit", "100", "--epochs", "3", "--no-progress"], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    # 100 exchanges in batches of 8: 13 steps a pass, or a few more with length buckets
    assert m["pairs"] == 100 and m["epochs"] == 3 and m["steps"] % 3 == 0 and 39 <= m["steps"] <= 60
    assert m["learning_rate"] == 1e-3
    held = m["held_out"]
    assert held["exchanges"] == 512 and held["response_loss"]["after"] < held["response_loss"]["before"]
    assert m["response_loss"]["exchanges"] == 100 and m["response_loss"]["after"] < m["response_loss"]["before"]
    assert (tmp_path / "sft" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # every phase is reported on stderr, and five held-out contexts are answered before and after tuning
    phases = [line.split(": ", 1)[1].split(" ")[0] for line in proc.stderr.splitlines() if line.startswith("ms-gpt sft: ")]
    assert phases[:6] == ["reading", "encoding", "scoring", "replying", "tuning:", "scoring"], phases
    assert len(m["replies"]) == 5 and all(set(r) == {"context", "real", "before", "after"} for r in m["replies"])
    assert all(r["context"] and r["real"] for r in m["replies"]) and proc.stderr.count("\n  after:   ") == 5
    record = json.loads((tmp_path / "sft" / "run_config.json").read_text())
    assert (record["epochs"], record["train_limit"], record["train"]["learning_rate"]) == (3, 100, 1e-3)
    assert json.loads((tmp_path / "sft" / "prompting.json").read_text()) == {"form": "dialogue"}
    chat = subprocess.run([str(venv_bin / "ms-gpt"), "chat", "--ckpt", str(tmp_path / "sft"), "--prompt",
                           "how are you ?"], capture_output=True, text=True, timeout=300)
    assert chat.returncode == 0 and chat.stdout.strip(), chat.stderr[-3000:]
    five_turns_never_feed_an_untrained_position(tmp_path / "sft", pre, monkeypatch)
    chat_eval_judges_the_replies(tmp_path / "sft", capsys)


def chat_eval_judges_the_replies(sft, capsys):
    """ms-gpt chat-eval on 8 held-out lines: every figure in range; an SFT model is its own reference, so the
    sampled replies' KL to it is 0 (the sampler's log-probabilities equal a full forward's)."""
    from ms_gpt.flows.chat_eval import chat_eval, default_reference
    from ms_gpt.flows.configs import ChatEvalConfig

    r = chat_eval(ChatEvalConfig(ckpt=str(sft), contexts=8, device="CPU", mode="pynative"))
    assert r["reference"] == str(sft) and r["replies"] == 8 and len(r["examples"]) == 5
    for key in ("on_topic", "ended", "repeated_3gram", "distinct_2"):
        assert 0.0 <= r[key] <= 1.0, key
    assert r["ref_ppl"] > 1.0 and abs(r["kl_to_reference"]) < 1e-3
    assert 0.0 <= r["judge"]["random"] <= 1.0 and 0.0 <= r["judge"]["real"] <= 1.0  # ordered over many lines only
    assert r["decoding"]["strategy"] == "sample" and "| on topic |" in capsys.readouterr().err
    (sft / "ppo.json").write_text(json.dumps({"policy": "/the/chat/model"}))
    assert default_reference(sft) == "/the/chat/model"


def five_turns_never_feed_an_untrained_position(sft, pre, monkeypatch):
    """Five long turns through ms-gpt chat's default decoding: the model never reads past the positions its
    pretraining trained (the default pretrain's block is its whole table; chat keeps the context within it)."""
    from ms_gpt import generation
    from ms_gpt.environment import device
    from ms_gpt.flows.chat import open_chat
    from ms_gpt.flows.configs import ChatConfig

    fed = []  # tokens the model reads at each call: what it was prompted with, then the context decoded over
    for name in ("start", "next"):
        def spy(self, ids, _real=getattr(generation._Runner, name)):
            out = _real(self, ids)
            fed.append(ids.shape[1] - self.begin)
            return out
        monkeypatch.setattr(generation._Runner, name, spy)
    device.setup("CPU", mode="pynative", seed=0)
    turn = "so what did you do over the weekend , did you go anywhere fun with your friends or family ?"
    trained = json.loads((pre / "run_config.json").read_text())["data"]["max_len"]
    assert trained == json.loads((pre / "gpt_config.json").read_text())["n_positions"] == 32  # tiny's whole table
    session = open_chat(sft, ChatConfig().generation)
    for _ in range(5):
        session.reply(turn)
    assert len(session.history) == 10 and max(fed) <= trained
    # replies that never end (<eos> never drawn) run to the default 64 words, past the 32-position table
    fed.clear()
    session = open_chat(sft, ChatConfig().generation)
    gen = session.gen
    session.gen = dataclasses.replace(gen, eos_id=None, suppress_ids=gen.suppress_ids + (gen.eos_id,))
    replies = [session.reply(turn) for _ in range(5)]
    assert all(r.endswith(" …") for r in replies) and not session.ended, replies
    assert len(fed) == 5 * 64 and max(fed) == trained  # a call per token; the context slid within the table


def test_chat_input_in_each_checkpoint_form():
    from ms_gpt.prompting import Prompter

    t = tok()
    nl = t.add_special("<nl>")  # stands in for a char model's newline token
    e = t.encode
    history = ["hi there", "fine thanks", "how are you"]  # the oldest turn does not fit in 9 tokens
    assert Prompter(t, "dialogue").conversation(history, 9) == \
        [t.bos_id] + e("fine thanks") + [t.sep_id] + e("how are you") + [t.sep_id]
    lines = Prompter(t, "lines")
    lines.newline = nl
    assert lines.conversation(history, 9) == [nl] + e("fine thanks") + [nl] + e("how are you") + [nl]
    documents = Prompter(t, "documents")
    assert documents.conversation(history, 9) == [t.bos_id] + e("how are you") + [t.eos_id, t.bos_id]
    long = ["hi there how are you fine thanks and you good bye hi there how are you"]
    ids = documents.conversation(long, 9)
    assert len(ids) == 9 and ids[-3:] == e("you") + [t.eos_id, t.bos_id]  # its end kept
