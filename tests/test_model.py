"""The from-scratch cells: structure, masks, causality, padding, graph mode, precision, bad input."""
import math

import mindspore
import numpy as np
import pytest
from mindspore import Tensor

from ms_gpt import GPTConfig
from ms_gpt.model import (GPT, GPTForSequenceClassification, count_parameters, get_attn_pad_mask,
                          get_attn_subsequent_mask, get_sin_enc_table)


@pytest.fixture(autouse=True)
def pynative():
    mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
    mindspore.set_seed(0)
    yield
    mindspore.set_context(mode=mindspore.PYNATIVE_MODE)


def ids(rows, dtype=mindspore.int32):
    return Tensor(np.array(rows), dtype)


def tiny(**kw):
    m = GPT(GPTConfig.preset("tiny", **kw))
    m.set_train(False)
    return m


def test_gpt1_preset_has_openai_gpt_parameter_count():
    assert count_parameters(GPT(GPTConfig.preset("gpt1"))) == 116_534_784


def test_tutorial_preset_structure():
    cfg = GPTConfig.preset("tutorial")
    assert (cfg.n_layer, cfg.d_model, cfg.n_head, cfg.d_ff, cfg.activation, cfg.tie_word_embeddings) == (
        6, 512, 8, 2048, "relu", False)


@pytest.mark.parametrize("changes,match", [
    (dict(d_model=30, n_head=4), r"d_model \(30\) must be divisible by n_head \(4\)"),
    (dict(n_layer=0), r"n_layer must be a positive integer, got 0"),
    (dict(pad_token_id=64), r"pad_token_id must be None or an id in \[0, 64\), got 64"),
    (dict(activation="swish"), r"activation must be one of gelu, relu, gelu_tanh, got 'swish'"),
    (dict(attn_dropout=1.0), r"attn_dropout must be in \[0, 1\), got 1.0"),
    (dict(compute_dtype="int8"), r"compute_dtype must be one of float32, float16, bfloat16"),
])
def test_config_validation(changes, match):
    with pytest.raises(ValueError, match=match):
        GPTConfig.preset("tiny", **changes)


def test_config_presets_and_dict_roundtrip():
    with pytest.raises(ValueError, match=r"unknown preset 'huge'; available: tiny, small, tutorial, gpt1"):
        GPTConfig.preset("huge")
    cfg = GPTConfig.preset("tiny", n_layer=3)
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown GPTConfig fields \['n_embd'\]"):
        GPTConfig.from_dict({**cfg.to_dict(), "n_embd": 3})


def test_sinusoid_table_matches_the_formula():
    table = get_sin_enc_table(7, 6)
    for pos in range(7):
        for j in range(6):
            angle = pos / 10000 ** (2 * (j // 2) / 6)
            want = math.sin(angle) if j % 2 == 0 else math.cos(angle)
            assert table[pos, j] == pytest.approx(want, abs=1e-6)


def test_masks():
    seq = ids([[4, 5, 0]])
    np.testing.assert_array_equal(get_attn_pad_mask(seq, seq, 0).asnumpy()[0], [[0, 0, 1]] * 3)
    np.testing.assert_array_equal(get_attn_subsequent_mask(seq).asnumpy()[0], [[0, 1, 1], [0, 0, 1], [0, 0, 0]])


def test_causality():
    m = tiny()
    a = m(ids([[3, 4, 5, 6, 7]])).asnumpy()
    b = m(ids([[3, 4, 5, 9, 7]])).asnumpy()
    np.testing.assert_array_equal(a[0, :3], b[0, :3])
    assert np.abs(a[0, 3:] - b[0, 3:]).max() > 1e-3


@pytest.mark.parametrize("norm,positions", [("post", "learned"), ("pre", "sinusoidal")])
def test_padding_invariance_left_and_right(norm, positions):
    m = tiny(norm=norm, positions=positions, final_norm=norm == "pre")
    plain = m(ids([[3, 4, 5, 6]])).asnumpy()[0]
    batch = m(ids([[3, 4, 5, 6, 0, 0], [0, 0, 3, 4, 5, 6]])).asnumpy()
    np.testing.assert_allclose(batch[0, :4], plain, atol=1e-5)
    np.testing.assert_allclose(batch[1, 2:], plain, atol=1e-5)


def test_attention_weights_are_masked_distributions():
    from ms_gpt.model import DecoderLayer

    m = tiny()
    seq = ids([[3, 4, 5, 0]])
    mask = np.logical_or(get_attn_subsequent_mask(seq).asnumpy(), get_attn_pad_mask(seq, seq, 0).asnumpy())
    layer = m.decoder.layers[0]
    assert isinstance(layer, DecoderLayer)
    x = Tensor(np.random.RandomState(0).randn(1, 4, 32).astype(np.float32))
    _, weights, (k, v) = layer(x, Tensor(mask))
    w = weights.asnumpy()[0]  # [h, l, l]
    np.testing.assert_allclose(w[:, :3].sum(-1), 1.0, atol=1e-6)
    assert np.all(np.triu(w[0], 1) == 0) and np.all(w[:, :, 3] == 0)
    assert k.shape == v.shape == (1, 4, 4, 8)  # [b, h, l, d_k]: the keys/values attended over


def test_classifier_uses_last_real_token_for_left_and_right_padding():
    cfg = GPTConfig.preset("tiny")
    clf = GPTForSequenceClassification(cfg, num_labels=3)
    clf.set_train(False)
    batch = ids([[3, 4, 5, 0, 0], [0, 0, 3, 4, 5], [3, 4, 5, 6, 7]])
    np.testing.assert_array_equal(clf.last_token_index(batch).asnumpy(), [2, 4, 4])
    logits, lm = clf(batch)
    assert logits.shape == (3, 3) and lm.shape == (3, 5, cfg.vocab_size)
    np.testing.assert_allclose(logits.asnumpy()[0], logits.asnumpy()[1], atol=1e-5)
    with pytest.raises(ValueError, match=r"num_labels must be an integer >= 2, got 1"):
        GPTForSequenceClassification(cfg, num_labels=1)


def test_untied_head_adds_a_projection():
    tied, untied = tiny(), tiny(tie_word_embeddings=False)
    assert count_parameters(untied) - count_parameters(tied) == 64 * 32


def test_graph_mode_matches_pynative():
    m = tiny(activation="relu")
    batch = ids([[3, 4, 5, 0], [1, 2, 3, 4]])
    eager = m(batch).asnumpy()

    @mindspore.jit
    def forward(x):
        return m(x)

    np.testing.assert_allclose(forward(batch).asnumpy(), eager, atol=1e-5)
    mindspore.set_context(mode=mindspore.GRAPH_MODE)
    np.testing.assert_allclose(m(batch).asnumpy(), eager, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_mixed_precision_stays_close_to_float32(dtype):
    if dtype == "bfloat16" and mindspore.get_context("device_target") == "CPU":
        with pytest.raises(ValueError, match=r"compute_dtype='bfloat16' needs Ascend .*use 'float32' or 'float16'"):
            tiny(compute_dtype=dtype)
        return
    ref = tiny()
    low = tiny(compute_dtype=dtype)
    mindspore.load_param_into_net(low, {p.name: p for p in ref.get_parameters()})
    batch = ids([[3, 4, 5, 6, 0]])
    a, b = ref(batch).asnumpy(), low(batch).astype(mindspore.float32).asnumpy()
    assert b.dtype == np.float32 and np.isfinite(b).all()
    assert np.abs(a - b).max() < 0.05 * max(1.0, np.abs(a).max())


@pytest.mark.parametrize("bad,exc,match", [
    (ids([[3, 64]]), ValueError, r"token id 64 is outside the vocabulary \[0, 64\)"),
    (ids([[-1, 3]]), ValueError, r"token id -1 is outside the vocabulary"),
    (ids([list(range(33))]), ValueError, r"sequence length 33 exceeds the position table \(n_positions=32\)"),
    (Tensor(np.array([[1.0, 2.0]]), mindspore.float32), TypeError, r"dtype int32 or int64, got Float32"),
    (ids([1, 2, 3]), ValueError, r"rank 2 \[batch, seq\], got shape \(3,\)"),
    (np.array([[1, 2]]), TypeError, r"must be a mindspore.Tensor"),
])
def test_bad_input_errors(bad, exc, match):
    with pytest.raises(exc, match=match):
        tiny()(bad)


def _lm_loss(model, batch):
    logits = model(batch[:, :-1])  # [b, l-1, vocab]
    b, l, v = logits.shape
    return mindspore.ops.cross_entropy(logits.reshape(b * l, v), batch[:, 1:].reshape(b * l))


@pytest.mark.parametrize("use_jit", [False, True])
def test_training_steps_reduce_the_loss(use_jit):
    """Gradients flow through every cell, eagerly and in a jit-compiled train step."""
    model = GPT(GPTConfig.preset("tiny", pad_token_id=None))
    model.set_train(True)
    model.validate_inputs = False
    optimizer = mindspore.nn.Adam(model.trainable_params(), learning_rate=3e-3)

    def forward(b):
        return _lm_loss(model, b)

    grad_fn = mindspore.value_and_grad(forward, None, optimizer.parameters)

    def step(batch):
        loss, grads = grad_fn(batch)
        optimizer(grads)
        return loss

    if use_jit:
        step = mindspore.jit(step)
    batch = ids(np.random.default_rng(0).integers(1, 64, size=(4, 12)))
    losses = [float(step(batch).asnumpy()) for _ in range(30)]
    assert losses[0] == pytest.approx(math.log(64), abs=0.3)  # uniform over the vocabulary at init
    assert losses[-1] < 0.5 * losses[0]


def test_classifier_checks_its_input_too():
    clf = GPTForSequenceClassification(GPTConfig.preset("tiny"), num_labels=2)
    with pytest.raises(ValueError, match=r"token id 70 is outside the vocabulary \[0, 64\)"):
        clf(ids([[3, 70]]))


# --------------------------------------------------------------------------- keyed dropout
def test_keyed_dropout_masks_match_the_numpy_reference_and_advance_per_call():
    from ms_gpt.model.dropout import KeyedDropout, numpy_keep_mask

    d = KeyedDropout(0.25, key=12345)
    d.set_train(True)
    x = mindspore.Tensor(np.ones((6, 7, 9), np.float32))
    first, second = d(x).asnumpy(), d(x).asnumpy()
    for out, calls in ((first, 0), (second, 1)):
        keep = numpy_keep_mask((6, 7, 9), 0.25, 12345, calls)
        np.testing.assert_array_equal(out, np.where(keep, 1 / 0.75, 0.0).astype(np.float32))
    assert not np.array_equal(first, second)
    assert d.rng_state.asnumpy().tolist() == [12345, 2]
    d.set_train(False)
    np.testing.assert_array_equal(d(x).asnumpy(), x.asnumpy())  # eval: identity, state unchanged
    assert d.rng_state.asnumpy().tolist() == [12345, 2]


def test_keyed_dropout_rate_and_independence():
    from ms_gpt.model.dropout import numpy_keep_mask

    a, b = ~numpy_keep_mask((400, 500), 0.1, 7, 0), ~numpy_keep_mask((400, 500), 0.1, 7, 1)
    assert a.mean() == pytest.approx(0.1, abs=0.003)
    assert (a & b).mean() == pytest.approx(0.01, abs=0.001)  # consecutive calls independent
    assert (a[:, 1:] & a[:, :-1]).mean() == pytest.approx(0.01, abs=0.001)  # neighbours independent
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\), got 1.0"):
        from ms_gpt.model.dropout import KeyedDropout
        KeyedDropout(1.0)


def test_every_dropout_site_has_its_own_key_from_the_seed():
    from ms_gpt.model.dropout import KeyedDropout

    def keys(seed):
        m = GPT(GPTConfig.preset("tiny"), dropout_seed=seed)
        return [c.rng_state.asnumpy()[0] for _, c in m.cells_and_names() if isinstance(c, KeyedDropout)]

    k0 = keys(0)
    assert len(k0) == 1 + 2 * 3 and len(set(k0)) == len(k0)  # embedding + (attn, resid, ffn) per layer
    assert keys(0) == k0 and keys(1) != k0
