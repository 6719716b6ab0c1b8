"""How good are a chat model's replies? Figures that do not ask the reward model (pure Python + scikit-learn).

- ``on_topic``: the share of replies an independent judge takes for the context's real reply rather than a reply
  from another conversation (:class:`OnTopicJudge`, trained on the training conversations only). Reported with
  the real replies (the ceiling) and replies from other conversations (the floor) of the same contexts.
- ``ended``: the share of replies that ended with ``<eos>`` within the length limit.
- ``repeated_3gram``: the share of replies in which a word 3-gram occurs twice (a loop).
- ``distinct_2``: distinct word 2-grams over all word 2-grams of all replies (Li et al., 2016): low when every
  context gets the same few openers.
"""

from __future__ import annotations

import random
import re

_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks."""
    return _WORD.findall(text.lower())


def has_repeated_ngram(text: str, n: int = 3) -> bool:
    w = words(text)
    grams = [tuple(w[i:i + n]) for i in range(len(w) - n + 1)]
    return len(set(grams)) < len(grams)


def distinct_n(texts, n: int = 2) -> float:
    grams = [tuple(w[i:i + n]) for t in texts for w in [words(t)] for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _pair_features(last_turn: str, reply: str) -> str:
    """The judge's view of (context, reply) as one bag of tokens: each reply word, each word the two share, and
    each (context word, reply word) pair, so a linear model can learn which replies follow which lines."""
    ctx, rep = set(words(last_turn)), set(words(reply))
    out = [f"r={w}" for w in rep] + [f"s={w}" for w in ctx & rep] + [f"{c}>{r}" for c in ctx for r in rep]
    return " ".join(out)


class OnTopicJudge:
    """Tells a context's real reply from a reply drawn from another conversation: logistic regression over
    hashed features of the context's last turn and the reply (:func:`_pair_features`). Trained on a seeded
    sample of ``limit`` of ``exchanges`` (:class:`ms_gpt.data.dialogue.Exchange`), each real reply against one
    random other reply. On 1,000 held-out chitchat exchanges it calls 0.665 of the real replies on topic and
    0.365 of replies from other conversations (20,000 training exchanges; all 126,035: 0.658 and 0.321)."""

    def __init__(self, exchanges, seed: int = 0, limit: int = 20_000):
        from sklearn.feature_extraction.text import HashingVectorizer
        from sklearn.linear_model import LogisticRegression

        rng = random.Random(seed)
        rows = rng.sample(list(exchanges), min(limit, len(exchanges)))
        others = [e.response for e in rows]
        rng.shuffle(others)
        texts = [_pair_features(e.context[-1], e.response) for e in rows]
        texts += [_pair_features(e.context[-1], o) for e, o in zip(rows, others)]
        self.vec = HashingVectorizer(token_pattern=r"\S+", n_features=2 ** 20, alternate_sign=False, norm="l2",
                                     lowercase=False)
        labels = [1] * len(rows) + [0] * len(rows)
        self.clf = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit(self.vec.transform(texts), labels)

    def probability(self, contexts, replies):
        """The judge's probability that each reply is the real reply to its context (a list of turns, the last
        answered), as a numpy array."""
        x = self.vec.transform([_pair_features(c[-1], r) for c, r in zip(contexts, replies)])
        return self.clf.predict_proba(x)[:, 1]

    def on_topic(self, contexts, replies) -> list[bool]:
        """Whether each reply reads as the real reply to its context."""
        return [bool(p >= 0.5) for p in self.probability(contexts, replies)]


def reply_figures(contexts, replies, ended, judge: OnTopicJudge) -> dict:
    """The figures above for ``replies`` (texts) to ``contexts`` (lists of turns); ``ended``: whether each
    reply ended with ``<eos>``."""
    n = len(replies)
    return {"replies": n, "on_topic": round(sum(judge.on_topic(contexts, replies)) / n, 4),
            "ended": round(sum(map(bool, ended)) / n, 4),
            "repeated_3gram": round(sum(has_repeated_ngram(r) for r in replies) / n, 4),
            "distinct_2": round(distinct_n(replies, 2), 4),
            "mean_words": round(sum(len(words(r)) for r in replies) / n, 2)}


def judge_bounds(exchanges, judge: OnTopicJudge, seed: int = 0) -> dict:
    """The judge on held-out ``exchanges``: the share of real replies it calls on topic (the ceiling) and of
    replies from other conversations (the floor)."""
    contexts = [e.context for e in exchanges]
    real = [e.response for e in exchanges]
    shifted = real[1:] + real[:1]  # each context against the next exchange's reply
    rng = random.Random(seed)
    order = list(range(len(real)))
    rng.shuffle(order)
    other = [real[i] if real[i] != r else s for i, r, s in zip(order, real, shifted)]
    return {"real": round(sum(judge.on_topic(contexts, real)) / len(real), 4),
            "random": round(sum(judge.on_topic(contexts, other)) / len(real), 4)}
