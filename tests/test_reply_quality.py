"""The chat preference set (builtin:chitchat-pairs) and the chat evaluation's figures and judge
(ms_gpt.reply_quality): no MindSpore needed."""
import random

import pytest

from ms_gpt.reply_quality import OnTopicJudge, distinct_n, has_repeated_ngram, judge_bounds, reply_figures, words
from ms_gpt.data import preferences
from ms_gpt.data.dialogue import load_dialogue


def synthetic_conversations(n=80, turns=6):
    return [[f"conv{c} turn{t} " + " ".join(f"w{c}x{t}x{k}" for k in range(1 + (c + t) % 5)) for t in range(turns)]
            for c in range(n)]


def test_chitchat_pairs_split_by_conversation_and_never_reject_a_reply_with_itself(monkeypatch):
    import ms_gpt.data.corpus as corpus

    monkeypatch.setattr(corpus, "chitchat_conversations", synthetic_conversations)
    splits = preferences.chitchat_pairs(seed=0)
    owner = lambda text: text.split()[0]  # noqa: E731  (the conversation a synthetic turn belongs to)
    seen = {s: {owner(r["chosen"]) for r in rows} | {owner(r["prompt"]) for r in rows} for s, rows in splits.items()}
    assert not (seen["train"] & seen["valid"]) and not (seen["train"] & seen["test"])
    assert not (seen["valid"] & seen["test"])
    assert sum(len(v) for v in seen.values()) == 80 and len(seen["valid"]) == 2 and len(seen["test"]) == 2
    for split, rows in splits.items():
        assert len(rows) == 5 * len(seen[split])  # every turn after the first, once
        for r in rows:
            assert r["rejected"] != r["chosen"] and owner(r["prompt"]) == owner(r["chosen"])
            if r["kind"] == "other":  # another conversation of the same split
                assert owner(r["rejected"]) != owner(r["chosen"]) and owner(r["rejected"]) in seen[split]
            else:  # the reply's opening words, again and again
                assert r["kind"] == "loop" and has_repeated_ngram(r["rejected"], 2)
                assert r["rejected"].startswith(" ".join(r["chosen"].split()[:2]))
    train = splits["train"]
    assert 0.15 < sum(r["kind"] == "loop" for r in train) / len(train) < 0.35  # LOOP_SHARE 0.25
    assert preferences.looping("hi", random.Random(0)) is None
    assert preferences.looping("how are you", random.Random(0)).split()[:3] in (["how", "are", "how"],
                                                                               ["how", "are", "you"])


def test_the_builtin_chat_pairs_load_as_a_reward_task():
    splits = preferences.load_preferences("builtin:chitchat-pairs", seed=0)
    assert {k: len(v) for k, v in splits.items()} == {"train": 126035, "valid": 2950, "test": 2572}
    assert all(r["chosen"] != r["rejected"] for rows in splits.values() for r in rows)
    task = preferences.as_choice_task(splits, "builtin:chitchat-pairs")
    assert task.splits["test"][0]["choices"] == [splits["test"][0]["chosen"], splits["test"][0]["rejected"]]


def test_reply_figures_count_what_they_say():
    assert words("Hi, how are you?") == ["hi", ",", "how", "are", "you", "?"]
    assert has_repeated_ngram("that would be about that would be about") and not has_repeated_ngram("a b c d e")
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)

    class Always:
        def on_topic(self, contexts, replies):
            return [r.startswith("yes") for r in replies]

    figures = reply_figures([["q"]] * 4, ["yes it is", "yes yes yes yes yes yes", "no", "no way"],
                            [True, False, True, True], Always())
    assert figures == {"replies": 4, "on_topic": 0.5, "ended": 0.75, "repeated_3gram": 0.25,
                       "distinct_2": 0.5, "mean_words": 3.0}  # 4 distinct of 8 bigrams


def test_the_judge_tells_real_replies_from_other_conversations():
    """Trained on 5,000 training exchanges (each real reply against a random one), on 1,000 held-out ones."""
    train, valid = load_dialogue("builtin:chitchat", seed=0)
    judge = OnTopicJudge(train, seed=0, limit=5000)
    bounds = judge_bounds(random.Random(0).sample(valid, 1000), judge)
    assert bounds == {"real": pytest.approx(0.62, abs=0.02), "random": pytest.approx(0.437, abs=0.02)}
