"""Decoding for ms_gpt's GPT: greedy, beam search and sampling, with a key/value cache.

Every strategy runs incrementally on the cache by default (``use_cache=True``): the prompt is
encoded once, then each step feeds only the newest token(s). ``use_cache=False`` recomputes the
whole sequence each step (the tutorial's way), for comparison. Generation stops at ``eos_id`` (or
one of ``stop_ids``) or after ``max_new_tokens``. Logits are post-processed on the host in NumPy.

Texts longer than the position table slide: when the sequence outgrows ``n_positions`` the model
reads only its last ``window`` tokens (3/4 of the table), so ``max_new_tokens`` has no upper limit. With
the cache that means re-encoding those tokens once every ``n_positions - window`` new tokens.
"""

from __future__ import annotations

import dataclasses
import weakref

import mindspore
import numpy as np

from ms_gpt.config import STRATEGIES, GenerationConfig  # noqa: F401  (part of this module's API)
from ms_gpt.model.cache import KVCache

_COMPILED_STEPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def compiled_step(model):
    """``mindspore.jit`` of one cached decoding step, ``model(ids, cache)`` -> (logits, cache fields,
    hidden states): compiled once per model (and batch size), since the cache's shapes never change.
    The whole output is returned: dropping a part inside the graph makes MindSpore warn on every compile."""
    fn = _COMPILED_STEPS.get(model)
    if fn is None:
        def decode(input_ids, keys, values, pad, length):
            return model(input_ids, (keys, values, pad, length))

        fn = _COMPILED_STEPS[model] = mindspore.jit(decode)
    return fn


def sliding_window(n_positions: int) -> int:
    """Tokens kept when a sequence outgrows the position table: 3/4 of it (at least 1)."""
    return max(1, (3 * n_positions) // 4)


class _Runner:
    """Next-token logits for a batch of equal-length sequences, cached or recomputed.

    Cached: the prompt runs once through ``model(ids, KVCache.empty(...))`` (PyNative) and every new
    token through one compiled graph of the same forward, whose shapes never change, so a token costs
    the same at any context length. The model reads ``ids[:, self.begin:]``; when that outgrows the
    position table, ``begin`` moves so that the last ``window`` tokens remain (the cache is rebuilt
    from them), the same way in both modes.
    """

    def __init__(self, model, use_cache: bool):
        self.model, self.use_cache, self.cache = model, use_cache, None
        self.limit = model.config.n_positions
        self.window = sliding_window(self.limit)
        self.begin = 0  # where the context the model reads starts in the sequences

    def start(self, ids: np.ndarray) -> np.ndarray:
        """``ids``: the prompt [b, length <= n_positions]."""
        self.begin = 0
        return self._encode(ids)

    def _encode(self, ids):
        if self.use_cache:
            empty = KVCache.empty(self.model.config, batch=ids.shape[0])
            out = self.model(mindspore.Tensor(ids.astype(np.int32)), empty)
            self.cache = out.cache
            return out.logits.asnumpy()[:, -1].astype(np.float64)
        return self._full(ids)

    def next(self, ids: np.ndarray) -> np.ndarray:
        """``ids``: the whole sequences so far [b, length + 1]."""
        if ids.shape[1] - self.begin > self.limit:  # past the position table: keep the last `window` tokens
            self.begin = ids.shape[1] - self.window
            return self._encode(ids[:, self.begin:])
        if self.use_cache:
            logits, cache, _ = compiled_step(self.model)(
                mindspore.Tensor(ids[:, -1:].astype(np.int32)), *self.cache.as_inputs())
            self.cache = KVCache(*cache)
            return logits.asnumpy()[:, -1].astype(np.float64)
        return self._full(ids[:, self.begin:])

    def _full(self, ids):
        return self.model(mindspore.Tensor(ids.astype(np.int32))).asnumpy()[:, -1].astype(np.float64)

    def reorder(self, rows: np.ndarray) -> None:
        if self.use_cache:
            self.cache = self.cache.reorder(rows)


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def apply_repetition_penalty(logits: np.ndarray, seqs: np.ndarray, penalty: float) -> np.ndarray:
    """Divide positive / multiply negative logits of tokens already present (Keskar et al., 2019)."""
    if penalty == 1.0:
        return logits
    out = logits.copy()
    for row, seq in enumerate(seqs):
        seen = np.unique(seq)
        vals = out[row, seen]
        out[row, seen] = np.where(vals > 0, vals / penalty, vals * penalty)
    return out


def banned_ngram_tokens(seq, n: int) -> set:
    """Tokens that would complete an n-gram already present in ``seq``."""
    if n <= 0 or len(seq) < n:
        return set()
    prefix = tuple(seq[len(seq) - n + 1:]) if n > 1 else ()
    return {seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i:i + n - 1]) == prefix}


def _check_prompt(model, prompt, cfg):
    ids = [int(t) for t in prompt]
    if not ids:
        raise ValueError("the prompt is empty: give at least one token (e.g. the tokenizer's <bos>)")
    limit = model.config.n_positions
    if len(ids) > limit:
        if not cfg.truncate_prompt:
            raise ValueError(
                f"prompt of {len(ids)} tokens exceeds the context (n_positions={limit}); shorten it, or set "
                f"truncate_prompt=True to keep its last {limit} tokens")
        ids = ids[-limit:]
    bad = [t for t in ids if not 0 <= t < model.config.vocab_size]
    if bad:
        raise ValueError(f"prompt token id {bad[0]} is outside the vocabulary [0, {model.config.vocab_size})")
    return np.array([ids], dtype=np.int64)


def generate(model, prompt, config: GenerationConfig | None = None, **overrides) -> list:
    """New token ids (without the prompt) for one prompt (a list of ids)."""
    cfg = config or GenerationConfig()
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    cfg.validate()
    was_training = model.training
    model.set_train(False)
    try:
        ids = _check_prompt(model, prompt, cfg)
        if cfg.strategy == "beam":
            return _beam(model, ids, cfg)
        return _greedy_or_sample(model, ids, cfg)
    finally:
        model.set_train(was_training)


def _suppress(logits, cfg):
    if cfg.suppress_ids:
        logits = logits.copy()
        logits[:, list(cfg.suppress_ids)] = -np.inf
    return logits


def _greedy_or_sample(model, ids, cfg):
    rng = np.random.default_rng(cfg.seed)
    runner = _Runner(model, cfg.use_cache)
    logits = runner.start(ids)
    out = []
    for step in range(cfg.max_new_tokens):
        logits = _suppress(apply_repetition_penalty(logits, ids, cfg.repetition_penalty), cfg)
        for t in banned_ngram_tokens(ids[0].tolist(), cfg.no_repeat_ngram_size):
            logits[0, t] = -np.inf
        if cfg.strategy == "greedy":
            token = int(logits[0].argmax())
        else:
            token = _sample(logits[0] / cfg.temperature, cfg.top_k, cfg.top_p, rng)
        out.append(token)
        if token == cfg.eos_id or token in cfg.stop_ids or step == cfg.max_new_tokens - 1:
            break
        ids = np.concatenate([ids, [[token]]], axis=1)
        logits = runner.next(ids)
    return out


def _sample(logits, top_k, top_p, rng):
    logits = logits.copy()
    if top_k:
        kth = np.sort(logits)[-min(top_k, logits.size)]
        logits[logits < kth] = -np.inf
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cum = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cum, top_p) + 1)]  # smallest set reaching top_p
        mask = np.zeros_like(probs, dtype=bool)
        mask[keep] = True
        probs = np.where(mask, probs, 0.0)
        probs /= probs.sum()
    return int(rng.choice(probs.size, p=probs))


def _beam(model, ids, cfg):
    k = cfg.num_beams
    runner = _Runner(model, cfg.use_cache)
    logp = _log_softmax(runner.start(ids))  # [1, V]
    seqs = ids.copy()  # [beams, length]
    scores = np.zeros(1)
    finished = []  # (normalised score, new tokens)
    prompt_len = ids.shape[1]
    for step in range(cfg.max_new_tokens):
        logp = _suppress(_log_softmax(apply_repetition_penalty(logp, seqs, cfg.repetition_penalty)), cfg)
        for row in range(seqs.shape[0]):
            for t in banned_ngram_tokens(seqs[row].tolist(), cfg.no_repeat_ngram_size):
                logp[row, t] = -np.inf
        total = scores[:, None] + logp  # [beams, V]
        flat = np.argsort(-total, axis=None, kind="stable")[: 2 * k]
        rows, toks = np.unravel_index(flat, total.shape)
        next_rows, next_toks, next_scores = [], [], []
        for r, t in zip(rows, toks):
            s = total[r, t]
            if not np.isfinite(s):
                continue
            if t == cfg.eos_id or t in cfg.stop_ids:
                new = seqs[r, prompt_len:].tolist() + [int(t)]
                finished.append((s / len(new) ** cfg.length_penalty, new))
            else:
                next_rows.append(r)
                next_toks.append(t)
                next_scores.append(s)
            if len(next_rows) == k:
                break
        if not next_rows or (len(finished) >= k and max(f[0] for f in finished) >=
                             max(next_scores) / (step + 1) ** cfg.length_penalty):
            break
        rows_arr = np.array(next_rows)
        seqs = np.concatenate([seqs[rows_arr], np.array(next_toks)[:, None]], axis=1)
        scores = np.array(next_scores)
        if step == cfg.max_new_tokens - 1:
            break
        runner.reorder(rows_arr)
        logp = _log_softmax(runner.next(seqs))
    for s, row in zip(scores, seqs):
        new = row[prompt_len:].tolist()
        if new:
            finished.append((s / len(new) ** cfg.length_penalty, new))
    return max(finished, key=lambda f: f[0])[1]
