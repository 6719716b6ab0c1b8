"""Does a sample read as the corpus' language? Three figures a learner can check (pure Python).

- ``unk``: how many samples contain the ``<unk>`` token's text (a model should never write it).
- ``distinct_2``: distinct character 2-grams / all character 2-grams over the samples (Li et al., 2016,
  on characters): low when the text loops on a few phrases.
- ``bigram_coverage``: the share of the samples' character 2-grams that occur anywhere in held-out
  text of the corpus: low when the text is a jumble of characters the language does not put together.
"""

from __future__ import annotations


def char_ngrams(text: str, n: int = 2) -> list[str]:
    """Character n-grams of ``text``, whitespace and line breaks excluded from the grams."""
    chars = [c for c in text if not c.isspace()]
    return ["".join(chars[i:i + n]) for i in range(len(chars) - n + 1)]


def distinct_n(texts, n: int = 2) -> float:
    grams = [g for t in texts for g in char_ngrams(t, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def coverage(texts, reference_texts, n: int = 2) -> float:
    """Share of the n-grams of ``texts`` that occur in ``reference_texts``."""
    known = {g for t in reference_texts for g in char_ngrams(t, n)}
    grams = [g for t in texts for g in char_ngrams(t, n)]
    return sum(g in known for g in grams) / len(grams) if grams else 0.0


def report(samples, held_out, unk_text: str = "<unk>") -> dict:
    """The three figures for ``samples`` (generated texts) against ``held_out`` (texts not trained on)."""
    samples = list(samples)
    return {"samples": len(samples), "characters": sum(len(s) for s in samples),
            "with_unk": sum(unk_text in s for s in samples), "distinct_2": round(distinct_n(samples, 2), 4),
            "bigram_coverage": round(coverage(samples, held_out, 2), 4)}
