"""Decoding for ms_gpt's GPT: one batched sampler (greedy and sampling) and beam search beside it, over a
key/value cache.

:func:`sample` is the one sampler: several prompts, left-padded to one length, continued greedily or by
sampling, each row stopping at its own stop token, with the log-probability of every token drawn.
``generate``, ``chat`` and PPO's rollouts all call it (:func:`generate` with one prompt); :func:`generate`
with ``strategy="beam"`` runs :func:`beam_search`.

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
from contextlib import contextmanager
from dataclasses import dataclass

import mindspore
import numpy as np

from ms_gpt import recipes
from ms_gpt.config import STRATEGIES, GenerationConfig  # noqa: F401  (part of this module's API)
from ms_gpt.model.cache import KVCache
from ms_gpt.model.decode_step import decode_step

_COMPILED_STEPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def compiled_step(model):
    """``mindspore.jit`` of one cached step over ``ids`` [b, n] (:func:`ms_gpt.model.decode_step.decode_step`:
    ``model(ids, cache)``, or the backend's whole-layer cells) -> (logits, cache fields, hidden states): compiled
    once per model, batch size and n (1 when decoding), since the cache's shapes never change. The whole output is
    returned: dropping a part inside the graph makes MindSpore warn on every compile."""
    fn = _COMPILED_STEPS.get(model)
    if fn is None:
        fn = _COMPILED_STEPS[model] = mindspore.jit(decode_step(model))
    return fn


# A prompt fills the cache through the compiled step in chunks of these lengths, longest first (a prompt of 88
# tokens: 64 + 16 + 4 + 4): each length is one graph, compiled once per model and batch size, so a prompt of any
# length compiles nothing new after the first few, and each chunk reads the weights once.
PREFILL_CHUNKS = (64, 16, 4, 1)


@contextmanager
def inference(model):
    """``model`` in inference mode (no dropout) for the block, then back in the mode it was in."""
    was_training = model.training
    model.set_train(False)
    try:
        yield model
    finally:
        model.set_train(was_training)


def warm_up(model, batch: int = 1, size: int | None = None, lengths=PREFILL_CHUNKS) -> None:
    """Compile the cached step for ``lengths`` new tokens (default: every prompt chunk length, and 1 for decoding)
    at batch ``batch`` over a cache of ``size`` slots (default ``n_positions``) now, so that no later prompt waits
    for a compile: what an interactive chat does before its first reply."""
    size = model.config.n_positions if size is None else size
    with inference(model):
        for n in lengths:
            if n <= size:
                cache = KVCache.empty(model.config, batch=batch, size=size)
                logits, _, _ = compiled_step(model)(mindspore.Tensor(np.ones((batch, n), np.int32)), *cache.as_inputs())
                logits.asnumpy()


def sliding_window(n_positions: int) -> int:
    """Tokens kept when a sequence outgrows the position table: 3/4 of it (at least 1)."""
    return max(1, (3 * n_positions) // 4)


class _Runner:
    """Next-token logits for a batch of equal-length sequences, cached or recomputed.

    Cached: the prompt fills an empty cache in chunks (``PREFILL_CHUNKS``) and every new token follows, each
    through the compiled step of the same forward (:func:`compiled_step`), whose cache shapes never change, so a
    token costs the same at any context length. The model reads ``ids[:, self.begin:]``; when that outgrows the
    position table, ``begin`` moves so that the last ``window`` tokens remain (the cache is rebuilt
    from them), the same way in both modes.
    """

    def __init__(self, model, use_cache: bool, size: int | None = None):
        """``size``: the cache's slots (default ``n_positions``; fewer when the whole text is known to fit)."""
        self.model, self.use_cache, self.cache, self.size = model, use_cache, None, size
        self.limit = model.config.n_positions
        self.window = sliding_window(self.limit)
        self.begin = 0  # where the context the model reads starts in the sequences

    def start(self, ids: np.ndarray) -> np.ndarray:
        """``ids``: the prompt [b, length <= n_positions]."""
        self.begin = 0
        return self._encode(ids)

    def _encode(self, ids):
        if not self.use_cache:
            return self._full(ids)
        self.cache = KVCache.empty(self.model.config, batch=ids.shape[0], size=self.size)
        step, start = compiled_step(self.model), 0
        for chunk in PREFILL_CHUNKS:  # the prompt in chunks of a few fixed lengths: one graph each, any length
            while ids.shape[1] - start >= chunk:
                logits, cache, _ = step(mindspore.Tensor(ids[:, start:start + chunk].astype(np.int32)),
                                        *self.cache.as_inputs())
                self.cache, start = self.cache.updated(cache), start + chunk
                last = logits[:, -1].asnumpy()  # waiting for each chunk: queued back to back they ran ~4x slower
        return last.astype(np.float64)

    def next(self, ids: np.ndarray) -> np.ndarray:
        """``ids``: the whole sequences so far [b, length + 1]."""
        if ids.shape[1] - self.begin > (self.size or self.limit):  # past the table: keep the last `window` tokens
            self.begin = ids.shape[1] - self.window
            return self._encode(ids[:, self.begin:])
        if self.use_cache:
            logits, cache, _ = compiled_step(self.model)(
                mindspore.Tensor(ids[:, -1:].astype(np.int32)), *self.cache.as_inputs())
            self.cache = self.cache.updated(cache)
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
    return ids


def _config(config, overrides):
    """The settings a call decodes with; no ``max_new_tokens``: the default for an unknown tokenizer (words;
    :meth:`ms_gpt.prompting.Prompter.generation` fills in its tokenizer's own)."""
    cfg = config or GenerationConfig()
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    cfg.validate()
    if cfg.max_new_tokens is None:
        cfg = dataclasses.replace(cfg, max_new_tokens=recipes.default_new_tokens(None))
    return cfg


def generate(model, prompt, config: GenerationConfig | None = None, **overrides) -> list:
    """New token ids (without the prompt) for one prompt (a list of ids): :func:`sample` of that one
    prompt, or :func:`beam_search` for ``strategy="beam"``."""
    cfg = _config(config, overrides)
    ids = _check_prompt(model, prompt, cfg)
    if cfg.strategy == "beam":
        with inference(model):
            return beam_search(model, np.array([ids], dtype=np.int64), cfg)
    return sample(model, [ids], cfg).responses[0]


@dataclass
class Samples:
    """What :func:`sample` drew: the whole batch in fixed shapes."""

    ids: np.ndarray  # [b, P + T] int32: left-padded prompts, then the new tokens (<pad> after a row's stop)
    mask: np.ndarray  # [b, T] float32: 1 on new tokens (the stop token included)
    logprobs: np.ndarray  # [b, T] float64: each new token's log-probability in the distribution it was drawn from
    prompt_len: int  # P

    @property
    def responses(self) -> list:
        """Each row's new token ids (the stop token included)."""
        new = self.ids[:, self.prompt_len:]
        return [row[: int(m.sum())].tolist() for row, m in zip(new, self.mask)]


def left_pad(prompts, length: int, pad_id) -> np.ndarray:
    """[b, length] int32: each prompt right-aligned, ``pad_id`` before it."""
    if pad_id is None and len({len(p) for p in prompts}) > 1:
        raise ValueError("prompts of different lengths need a pad id to left-pad them (the model has none)")
    out = np.full((len(prompts), length), 0 if pad_id is None else pad_id, np.int32)
    for row, p in enumerate(prompts):
        if not 0 < len(p) <= length:
            raise ValueError(f"prompt {row} has {len(p)} tokens; expected 1 to {length}")
        out[row, length - len(p):] = p
    return out


def sample(model, prompts, config: GenerationConfig | None = None, *, prompt_len: int | None = None,
           pad_id: int | None = None, rng: np.random.Generator | None = None, cache_size: int | None = None,
           **overrides) -> Samples:
    """The one sampler. Continue every prompt (a list of token ids) by up to ``max_new_tokens`` tokens:
    ``strategy="greedy"`` takes the most likely token, ``"sample"`` draws at ``temperature`` from the
    ``top_k`` / ``top_p`` set. Each step the logits pass, in order, ``repetition_penalty``,
    ``suppress_ids`` (never drawn) and ``no_repeat_ngram_size``; a row ends at ``eos_id`` or one of
    ``stop_ids`` (kept as its last token) and is ``<pad>`` after it; all rows end together at the last step.

    The prompts are left-padded to ``prompt_len`` (default: the longest) with ``pad_id`` (default: the
    model's); positions count real tokens only, so padding does not shift them. ``rng``: the draws' source
    (default ``numpy.random.default_rng(seed)``; one uniform per row and step). ``cache_size``: the KV cache's
    slots (default ``n_positions``; a caller that decodes many batches of one shape - PPO - passes
    ``prompt_len + max_new_tokens`` so every step runs one small compiled graph). With the cache each new
    token is one compiled step; past the position table the model reads the last 3/4 of it.
    """
    cfg = _config(config, overrides)
    if cfg.strategy not in ("greedy", "sample"):
        raise ValueError(f"the sampler draws greedily or by sampling, not {cfg.strategy!r} (see beam_search)")
    if not prompts:
        raise ValueError("no prompts to continue")
    if pad_id is None:
        pad_id = model.config.pad_token_id
    prompt_len = max(len(p) for p in prompts) if prompt_len is None else prompt_len
    if cache_size is not None and prompt_len + cfg.max_new_tokens > cache_size:
        raise ValueError(f"prompt length {prompt_len} + {cfg.max_new_tokens} new tokens = "
                         f"{prompt_len + cfg.max_new_tokens} exceeds the cache's {cache_size} slots")
    rng = np.random.default_rng(cfg.seed) if rng is None else rng
    ids = left_pad(prompts, prompt_len, pad_id)
    b, steps = ids.shape[0], cfg.max_new_tokens
    starts = np.array([prompt_len - len(p) for p in prompts])
    new = np.full((b, steps), 0 if pad_id is None else pad_id, np.int32)
    mask = np.zeros((b, steps), np.float32)
    logprobs = np.zeros((b, steps), np.float64)
    done = np.zeros(b, bool)
    stops = set(cfg.stop_ids) | ({cfg.eos_id} if cfg.eos_id is not None else set())
    with inference(model):
        runner = _Runner(model, cfg.use_cache, cache_size)
        logits = runner.start(ids)
        for t in range(steps):
            scores = _processed(logits, ids, new[:, :t], starts, cfg)
            if cfg.strategy == "greedy":
                token = scores.argmax(-1)
                logp = _log_softmax(scores)
            else:
                probs = np.stack([_distribution(row / cfg.temperature, cfg.top_k, cfg.top_p) for row in scores])
                u = rng.random(b)  # one uniform per row, drawn as numpy's Generator.choice(p=...) draws it
                token = np.array([_draw(probs[row], u[row]) for row in range(b)])
                with np.errstate(divide="ignore"):
                    logp = np.log(probs)
            token = np.where(done, new[:, t], token).astype(np.int32)
            logprobs[:, t] = np.where(done, 0.0, logp[np.arange(b), token])
            new[:, t] = token
            mask[:, t] = ~done
            done = done | np.isin(token, list(stops))
            if done.all() or t == steps - 1:
                break
            logits = runner.next(np.concatenate([ids, new[:, :t + 1]], axis=1))
    return Samples(np.concatenate([ids, new], axis=1), mask, logprobs, prompt_len)


def _processed(logits, prompts, new, starts, cfg):
    """The logits after the repetition penalty, the suppressed ids and the banned n-grams, each row judged by
    its own tokens (``prompts`` [b, P] left-padded from ``starts``, then ``new`` [b, t])."""
    if cfg.repetition_penalty != 1.0 or cfg.no_repeat_ngram_size:
        seqs = [prompts[row, starts[row]:].tolist() + new[row].tolist() for row in range(len(starts))]
        logits = apply_repetition_penalty(logits, seqs, cfg.repetition_penalty)
    out = _suppress(logits, cfg)
    if cfg.no_repeat_ngram_size:
        for row, seq in enumerate(seqs):
            for t in banned_ngram_tokens(seq, cfg.no_repeat_ngram_size):
                out[row, t] = -np.inf
    return out


def _suppress(logits, cfg):
    if cfg.suppress_ids:
        logits = logits.copy()
        logits[:, list(cfg.suppress_ids)] = -np.inf
    return logits


def _distribution(logits, top_k, top_p):
    """[V] probabilities of one row at its temperature: only the ``top_k`` most likely tokens (0: all), then
    only the smallest set reaching ``top_p`` of the probability (nucleus sampling; 1: all)."""
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
    return probs


def _draw(probs, u: float) -> int:
    """The token whose cumulative probability first exceeds ``u`` in [0, 1) (inverse-CDF sampling)."""
    cdf = probs.cumsum()
    cdf /= cdf[-1]
    return int(cdf.searchsorted(u, side="right"))


def beam_search(model, ids, cfg: GenerationConfig) -> list:
    """The best of ``cfg.num_beams`` beams for one prompt ``ids`` [1, length]: new token ids. Scores are summed
    log-probabilities over length ** ``length_penalty``; a beam ends at ``eos_id`` or one of ``stop_ids``."""
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
