"""Decoding: every strategy, cached == uncached, stopping, penalties, bad input."""
import mindspore
import numpy as np
import pytest

from ms_gpt import GPTConfig
from ms_gpt.generation import apply_repetition_penalty, banned_ngram_tokens, generate
from ms_gpt.model import GPT, GPTOutput, KVCache

PROMPT = [5, 9, 13, 2]


@pytest.fixture(scope="module")
def model():
    from ms_gpt.environment import device

    device.setup("CPU", mode="pynative", seed=0)  # blocking launch: the per-op cost dominates decoding
    m = GPT(GPTConfig.preset("tiny", pad_token_id=None, n_positions=48))
    for p in m.trainable_params():  # larger weights: peaked, non-trivial distributions
        p.set_data(p * 8.0)
    m.set_train(False)
    return m


def full_logits(model, ids):
    return model(mindspore.Tensor(np.array([ids], np.int32))).asnumpy()[0, -1]


def test_cache_gives_the_same_logits_as_recomputing(model):
    """A prompt, then one token at a time, through the KV cache == the whole sequence without it."""
    ids = np.array([PROMPT + [7, 8, 1]], np.int32)
    out = model(mindspore.Tensor(ids[:, :4]), KVCache.empty(model.config, batch=1))
    assert isinstance(out, GPTOutput) and out.cache.filled() == 4 and out.cache.size == 48
    assert out.hidden_states.shape == (1, 4, model.config.d_model)
    steps, cache = [out.logits.asnumpy()], out.cache
    for t in range(4, 7):
        out = model(mindspore.Tensor(ids[:, t:t + 1]), cache)
        steps.append(out.logits.asnumpy())
        cache = out.cache
    np.testing.assert_allclose(np.concatenate(steps, 1), model(mindspore.Tensor(ids)).asnumpy(), rtol=1e-5, atol=1e-4)
    small = KVCache.empty(model.config, batch=1, size=8)
    with pytest.raises(ValueError, match=r"position 8 is beyond the cache's 8 slots \(n_positions=48\)"):
        model(mindspore.Tensor(np.ones((1, 9), np.int32)), small)
    with pytest.raises(ValueError, match=r"cache size must be an integer in \[1, n_positions=48\], got 49"):
        KVCache.empty(model.config, batch=1, size=49)


def test_cache_with_left_padding_matches_recomputing():
    """Left-padded rows in one batch: positions count real tokens and padding slots are never attended,
    with the cache as without it."""
    m = GPT(GPTConfig.preset("tiny", n_positions=16))  # pad id 0
    m.set_train(False)
    ids = np.array([[0, 0, 5, 9, 13, 2, 7], [4, 6, 5, 9, 13, 2, 7]], np.int32)
    want = m(mindspore.Tensor(ids)).asnumpy()
    out = m(mindspore.Tensor(ids[:, :5]), KVCache.empty(m.config, batch=2))
    got, cache = [out.logits.asnumpy()], out.cache
    for t in (5, 6):
        out = m(mindspore.Tensor(ids[:, t:t + 1]), cache)
        got.append(out.logits.asnumpy())
        cache = out.cache
    got = np.concatenate(got, 1)
    np.testing.assert_allclose(got[0, 2:], want[0, 2:], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-5)
    alone = m(mindspore.Tensor(ids[:1, 2:])).asnumpy()  # the padded row == the same row without padding
    np.testing.assert_allclose(got[0, 2:], alone[0], rtol=1e-5, atol=1e-5)


def test_compiled_step_matches_the_pynative_step(model):
    """generate's compiled decoding graph (ms_gpt.model.decode_step) gives what a PyNative call of the model over the
    same cache gives."""
    from ms_gpt.generation import compiled_step

    ids = np.array([[5, 9, 2, 7, 11, 3, 8, 1]], np.int32)
    cache = model(mindspore.Tensor(ids[:, :3]), KVCache.empty(model.config, batch=1)).cache
    compiled = cache
    for pos in range(3, ids.shape[1]):
        token = mindspore.Tensor(ids[:, pos:pos + 1])
        want = model(token, cache)
        logits, new, _ = compiled_step(model)(token, *compiled.as_inputs())
        compiled, cache = compiled.updated(new), want.cache
        # float32 rounding apart: with the CPU kernels the step is one DecodeLayer kernel per layer
        np.testing.assert_allclose(logits.asnumpy(), want.logits.asnumpy(), rtol=1e-5, atol=2e-5)
        assert compiled.filled() == pos + 1


@pytest.mark.parametrize("backend", ["mindspore", "cpu-kernels"])
def test_a_long_prompt_fills_the_cache_in_chunks_as_the_whole_model_reads_it(backend):
    """A 70-token prompt goes into the cache as chunks of 64, 4, 1 and 1 tokens (PREFILL_CHUNKS), each through the
    compiled step: the first new token's logits are the full model's, and greedy decoding matches recomputing."""
    from ms_gpt.generation import PREFILL_CHUNKS, _Runner

    assert PREFILL_CHUNKS == (64, 16, 4, 1)
    m = GPT(GPTConfig.preset("tiny", pad_token_id=None, n_positions=96), backend=backend)
    for p in m.trainable_params():
        p.set_data(p * 8.0)
    m.set_train(False)
    prompt = np.random.RandomState(5).randint(0, 64, 70).tolist()
    first = _Runner(m, use_cache=True).start(np.array([prompt]))
    np.testing.assert_allclose(first[0], full_logits(m, prompt), rtol=1e-5, atol=1e-4)
    cached = generate(m, prompt, max_new_tokens=12, use_cache=True)
    assert cached == generate(m, prompt, max_new_tokens=12, use_cache=False) and len(cached) == 12


def test_greedy_is_argmax_of_the_full_model(model):
    out = generate(model, PROMPT, strategy="greedy", max_new_tokens=12)
    seq = list(PROMPT)
    for _ in range(12):
        seq.append(int(full_logits(model, seq).argmax()))
    assert out == seq[len(PROMPT):]


@pytest.mark.parametrize("kwargs", [
    dict(strategy="greedy"),
    dict(strategy="beam", num_beams=3, repetition_penalty=1.3),
    dict(strategy="sample", temperature=0.9, top_k=20, top_p=0.9, seed=7),
    dict(strategy="greedy", no_repeat_ngram_size=2),
])
def test_cached_equals_uncached(model, kwargs):
    a = generate(model, PROMPT, max_new_tokens=16, use_cache=True, **kwargs)
    b = generate(model, PROMPT, max_new_tokens=16, use_cache=False, **kwargs)
    assert a == b and len(a) == 16
    other = GPT(model.config, backend="mindspore" if model.backend.name == "cpu-kernels" else "cpu-kernels")
    mindspore.load_param_into_net(other, {p.name: p for p in model.get_parameters()})
    other.set_train(False)
    c = generate(other, PROMPT, max_new_tokens=16, use_cache=True, **kwargs)
    d = generate(other, PROMPT, max_new_tokens=16, use_cache=False, **kwargs)
    assert c == d == a  # the same tokens with either backend (ms_gpt.backend)


def test_stops_at_eos(model):
    first = generate(model, PROMPT, max_new_tokens=8)
    eos = first[-1]
    stop = first.index(eos) + 1
    assert generate(model, PROMPT, max_new_tokens=8, eos_id=eos) == first[:stop]
    assert generate(model, PROMPT, strategy="beam", num_beams=1, max_new_tokens=8, eos_id=eos) == first[:stop]


def test_sampling_is_seeded_and_degenerates_to_greedy(model):
    greedy = generate(model, PROMPT, max_new_tokens=10)
    s1 = generate(model, PROMPT, strategy="sample", temperature=3.0, seed=1, max_new_tokens=10)
    assert s1 == generate(model, PROMPT, strategy="sample", temperature=3.0, seed=1, max_new_tokens=10)
    assert s1 != generate(model, PROMPT, strategy="sample", temperature=3.0, seed=2, max_new_tokens=10)
    assert generate(model, PROMPT, strategy="sample", top_k=1, seed=3, max_new_tokens=10) == greedy
    assert generate(model, PROMPT, strategy="sample", top_p=1e-6, seed=3, max_new_tokens=10) == greedy


def _logprob(model, prompt, new):
    seq, total = list(prompt), 0.0
    for t in new:
        lg = full_logits(model, seq).astype(np.float64)
        total += (lg - lg.max() - np.log(np.exp(lg - lg.max()).sum()))[t]
        seq.append(t)
    return total


def test_beam_search(model):
    greedy = generate(model, PROMPT, max_new_tokens=8)
    assert generate(model, PROMPT, strategy="beam", num_beams=1, max_new_tokens=8) == greedy
    beam = generate(model, PROMPT, strategy="beam", num_beams=5, max_new_tokens=8, length_penalty=0.0)
    assert len(beam) == 8
    assert _logprob(model, PROMPT, beam) >= _logprob(model, PROMPT, greedy) - 1e-9


def test_no_repeat_ngram(model):
    out = generate(model, PROMPT, max_new_tokens=30, no_repeat_ngram_size=2)
    seq = PROMPT + out
    bigrams = list(zip(seq, seq[1:]))
    assert len(bigrams) == len(set(bigrams))


def test_penalty_helpers():
    logits = np.array([[2.0, -2.0, 1.0]])
    np.testing.assert_allclose(apply_repetition_penalty(logits, np.array([[0, 1]]), 2.0), [[1.0, -4.0, 1.0]])
    assert banned_ngram_tokens([1, 2, 3, 1, 2], 3) == {3}
    assert banned_ngram_tokens([1, 2, 3], 3) == set()


@pytest.mark.parametrize("prompt,kwargs,match", [
    ([1] * 50, dict(max_new_tokens=10), r"prompt of 50 tokens exceeds the context \(n_positions=48\); shorten it, "
                                         r"or set truncate_prompt=True to keep its last 48 tokens"),
    ([], {}, r"the prompt is empty"),
    ([3, 64], {}, r"prompt token id 64 is outside the vocabulary \[0, 64\)"),
    (PROMPT, dict(strategy="nucleus"), r"strategy must be one of greedy, beam, sample, got 'nucleus'"),
    (PROMPT, dict(temperature=0), r"temperature must be > 0, got 0"),
    (PROMPT, dict(top_p=0), r"top_p must be in \(0, 1\], got 0"),
])
def test_bad_input(model, prompt, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(model, prompt, **kwargs)


def test_left_truncation_is_opt_in(model):
    long = list(range(1, 51)) + [3] * 10
    out = generate(model, long, max_new_tokens=10, truncate_prompt=True)
    assert out == generate(model, long[-48:], max_new_tokens=10)


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_generation_slides_past_the_position_table(model, strategy):
    """100 new tokens from a 48-position model: the context slides to its last 36 tokens (3/4 of the
    table) whenever it outgrows 48, the same way with the cache as without it; a window's first token
    equals a fresh run on those 36 tokens."""
    from ms_gpt.generation import sliding_window

    assert sliding_window(48) == 36 and sliding_window(1) == 1
    kw = dict(strategy=strategy, max_new_tokens=100, num_beams=2, top_k=5)
    cached = generate(model, PROMPT, **kw)
    assert len(cached) == 100
    assert generate(model, PROMPT, use_cache=False, **kw) == cached
    if strategy == "greedy":
        seq = PROMPT + cached
        # the first slide happens when the sequence reaches 49 tokens: the 49th token is predicted from 48,
        # the 50th from the last 36 of the first 49
        assert generate(model, seq[:48], max_new_tokens=1) == [seq[48]]
        assert generate(model, seq[49 - 36:49], max_new_tokens=1) == [seq[49]]


def test_stop_ids_end_the_text(model):
    free = generate(model, PROMPT, max_new_tokens=20)
    stop = free[5]
    out = generate(model, PROMPT, max_new_tokens=20, stop_ids=(stop,))
    assert out == free[:free.index(stop) + 1]


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_suppressed_ids_are_never_generated(model, strategy):
    free = generate(model, PROMPT, strategy=strategy, max_new_tokens=12)
    banned = tuple(sorted(set(free)))[:2]
    out = generate(model, PROMPT, strategy=strategy, max_new_tokens=12, suppress_ids=banned)
    assert len(out) == 12 and not set(out) & set(banned)
