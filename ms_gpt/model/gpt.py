"""Decoder layers, the decoder stack, the GPT language model and GPT-1's classification head."""

from __future__ import annotations

from typing import NamedTuple

import mindspore
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, initializer

from ms_gpt import backend as backends
from ms_gpt.config import FINETUNE_TASKS, POOLS, GPTConfig
from ms_gpt.model.cache import KVCache
from ms_gpt.model.dropout import KeyedDropout, is_rng_state, seed_dropout
from ms_gpt.model.layers import (
    LayerNorm,
    Linear,
    MultiHeadAttention,
    PoswiseFeedForwardNet,
    get_attn_subsequent_mask,
    get_sin_enc_table,
)


class DecoderLayer(nn.Cell):
    """Masked self-attention then the FFN, each with a residual and a LayerNorm.

    post-LN (GPT-1, tutorial): x = LN1(x + attn(x)); x = LN2(x + ffn(x))
    pre-LN:                    x = x + attn(LN1(x)); x = x + ffn(LN2(x))
    """

    def __init__(self, config: GPTConfig, backend=None):
        super().__init__()
        backend = backends.get(backend)
        self.pre_ln = config.norm == "pre"
        self.self_attn = MultiHeadAttention(config, backend)
        self.ln_1 = LayerNorm(config.d_model, config.layer_norm_eps, backend)
        self.feed_forward = PoswiseFeedForwardNet(config, backend)
        self.ln_2 = LayerNorm(config.d_model, config.layer_norm_eps, backend)

    def construct(self, x, attn_mask, kv_cache=None, place=None):
        """x [b, l, d] -> x [b, l, d], attention weights, keys/values (see MultiHeadAttention)."""
        h = self.ln_1(x) if self.pre_ln else x
        a, weights, kv = self.self_attn.self_attention(h, attn_mask, kv_cache, place)
        if self.pre_ln:
            x = x + a
            x = x + self.feed_forward(self.ln_2(x))
        else:
            x = self.ln_1(x + a)
            x = self.ln_2(x + self.feed_forward(x))
        return x, weights, kv


class Decoder(nn.Cell):
    """Token + position embeddings, then ``n_layer`` DecoderLayers under padding + causal masks."""

    def __init__(self, config: GPTConfig, backend=None):
        super().__init__()
        backend = backends.get(backend)
        self.config = config
        self.tok_emb = Parameter(initializer(Normal(config.initializer_range), (config.vocab_size, config.d_model),
                                             mindspore.float32), name="tok_emb")
        if config.positions == "learned":
            self.pos_emb = Parameter(initializer(Normal(config.initializer_range), (config.n_positions, config.d_model),
                                                 mindspore.float32), name="pos_emb")
        else:
            self.pos_emb = Parameter(Tensor(get_sin_enc_table(config.n_positions, config.d_model)),
                                     name="pos_emb", requires_grad=False)
        self.dropout = KeyedDropout(p=config.embd_dropout)
        self.layers = nn.CellList([DecoderLayer(config, backend) for _ in range(config.n_layer)])
        self.final_norm = LayerNorm(config.d_model, config.layer_norm_eps, backend) if config.final_norm else None
        self.pad_id = config.pad_token_id

    def is_pad(self, input_ids):
        """[b, l] bool: True at padding tokens (all False when the model has no pad id)."""
        if self.pad_id is None:
            return ops.zeros(input_ids.shape, mindspore.bool_)
        return ops.equal(input_ids, self.pad_id)

    def layer_inputs(self, input_ids, cache=None):
        """What the layers read for ``input_ids`` [b, n]: (x [b, n, d] = token + position embeddings after the
        dropout, mask [b, n, l_k] bool (True = may not attend; l_k = n, or the cache's T slots), place [T, n]
        bool (new token i goes to the slot where column i is True; None without a cache), keys_pad [b, l_k]
        (True at padding, the cache's updated flags when cached))."""
        b, n = input_ids.shape
        pad = self.is_pad(input_ids)  # [b, n]
        real = ops.logical_not(pad).astype(mindspore.int32)
        if cache is None:
            seen_before = ops.zeros((b, 1), mindspore.int32)
            keys_pad = pad  # [b, l_k = n]
            mask = get_attn_subsequent_mask(input_ids)  # [b, n, n]
            place = None
        else:
            # a KVCache, or the same four fields as a plain tuple (how a compiled graph passes it)
            _, _, cached_pad, length = cache
            # slot numbers 0..T-1 (cumsum, not arange: T is not a compile-time constant of a mutable cache)
            slots = ops.cumsum(ops.ones_like(cached_pad[0]).astype(mindspore.int32), 0) - 1  # [T]
            new_slots = length + ops.arange(0, n, dtype=mindspore.int32)  # [n]
            place = ops.equal(slots.expand_dims(1), new_slots.expand_dims(0))  # [T, n]: new token i -> its slot
            filled_real = ops.logical_and(ops.less(slots, length).expand_dims(0), ops.logical_not(cached_pad))
            seen_before = filled_real.astype(mindspore.int32).sum(axis=1, keepdims=True)  # [b, 1] real tokens so far
            if n == 1:  # decoding: the new token's pad flag broadcasts over the slots
                placed_pad = pad
            else:  # a prompt: each token's flag goes to its slot
                placed_pad = ops.matmul(pad.astype(mindspore.float32), place.astype(mindspore.float32).T) > 0.5
            keys_pad = ops.where(place.any(axis=1).expand_dims(0), placed_pad, cached_pad)  # [b, T]
            later = ops.greater(slots.expand_dims(0), new_slots.expand_dims(1))  # [n, T]: slots after each token
            mask = ops.broadcast_to(later.expand_dims(0), (b,) + later.shape)  # [b, n, T]
        mask = ops.logical_or(mask, ops.broadcast_to(keys_pad.expand_dims(1), mask.shape))
        positions = ops.relu(seen_before + ops.cumsum(real, axis=1) - 1)  # [b, n]
        x = ops.gather(self.tok_emb, input_ids, 0) + ops.gather(self.pos_emb, positions, 0)
        x = self.dropout(x)
        return x, mask, place, keys_pad

    def construct(self, input_ids, cache=None, attentions=False):
        """input_ids [b, n] -> (hidden [b, n, d], the updated cache or None); with ``attentions`` (a Python
        constant: the compiled graphs never set it) a third item, each layer's attention weights
        ([b, h, n, n] without a cache, [b, h, n, T] with one).

        Without a cache the n tokens attend to each other (causal + padding masks). With a cache they
        are placed in its next n slots and attend to every filled, non-padding slot up to their own.
        Positions count real tokens only, so left padding does not shift them.
        """
        x, mask, place, keys_pad = self.layer_inputs(input_ids, cache)
        keys, values, weights = (), (), ()
        for i, layer in enumerate(self.layers):
            kv = None if cache is None else (cache[0][i], cache[1][i])
            x, w, (k, v) = layer(x, mask, kv, place)
            keys, values, weights = keys + (k,), values + (v,), weights + (w,)
        if self.final_norm is not None:
            x = self.final_norm(x)
        # the updated cache, as a KVCache's fields
        new_cache = None if cache is None else (keys, values, keys_pad, cache[3] + input_ids.shape[1])
        if attentions:
            return x, new_cache, weights
        return x, new_cache


def check_input_ids(input_ids, config: GPTConfig) -> None:
    """Clear errors for inputs the model cannot take (PyNative and eager calls; not inside jit)."""
    if not isinstance(input_ids, Tensor):
        raise TypeError(f"input_ids must be a mindspore.Tensor of int32/int64 ids, got {type(input_ids).__name__}")
    if input_ids.dtype not in (mindspore.int32, mindspore.int64):
        raise TypeError(f"input_ids must have dtype int32 or int64, got {input_ids.dtype}")
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must have rank 2 [batch, seq], got shape {tuple(input_ids.shape)}")
    if input_ids.shape[1] > config.n_positions:
        raise ValueError(
            f"sequence length {input_ids.shape[1]} exceeds the position table (n_positions={config.n_positions})")
    if input_ids.shape[1] == 0 or input_ids.shape[0] == 0:
        raise ValueError(f"input_ids must not be empty, got shape {tuple(input_ids.shape)}")
    ids = input_ids.asnumpy()
    bad = ids[(ids < 0) | (ids >= config.vocab_size)]
    if bad.size:
        raise ValueError(f"token id {int(bad[0])} is outside the vocabulary [0, {config.vocab_size})")


def _default_seed(seed: int | None) -> int:
    """Dropout keys come from ``seed``, else MindSpore's global seed (set by
    ``ms_gpt.environment.device.setup``), else 0."""
    if seed is None:
        seed = mindspore.get_seed()
    return 0 if seed is None else int(seed)


class _ChecksInputIds(nn.Cell):
    """Top-level Python calls (not calls inside a compiled graph, which go straight to ``construct``)
    check their inputs first (``validate_inputs``) and may name the parts of their output."""

    validate_inputs = True

    def check_inputs(self, input_ids, *rest) -> None:
        check_input_ids(input_ids, self.config)

    def name_output(self, out, *args):
        return out

    def __call__(self, *args, **kwargs):
        if self.validate_inputs and args:
            self.check_inputs(*args)
        return self.name_output(super().__call__(*args, **kwargs), *args)


class GPTOutput(NamedTuple):
    logits: Tensor  # [b, n, vocab]
    cache: KVCache  # the cache with the n new tokens written in
    hidden_states: Tensor  # [b, n, d]: the last layer's (after the final norm when there is one)


class GPT(_ChecksInputIds):
    """The GPT language model: Decoder + LM head.

    ``model(input_ids)`` -> logits [b, l, vocab] (training, scoring, recomputing decoding);
    ``model(input_ids, cache)`` -> :class:`GPTOutput` (incremental decoding over a :class:`KVCache`).
    Both run the same layers: one forward path. Inside a compiled graph the cached call gives the
    same fields as plain tuples (MindSpore's graphs pass tuples, not named types).

    ``backend``: what computes the layers, the loss and the optimizer step (a name in
    :data:`ms_gpt.backend.NAMES`; default: the process's, see :mod:`ms_gpt.backend`), kept as
    ``model.backend``.
    """

    def __init__(self, config: GPTConfig, dropout_seed: int | None = None, backend=None):
        super().__init__()
        self.backend = backends.get(backend)
        self.config = config
        self.decoder = Decoder(config, self.backend)
        self.projection = None if config.tie_word_embeddings else Linear(
            config.d_model, config.vocab_size, bias=False, std=config.initializer_range,
            compute_dtype=config.compute_dtype, backend=self.backend)
        # tied: logits = h E^T in float32, as one 2-D GEMM with E transposed in-kernel
        self.tied_head = self.backend.linear(bias=False, compute_dtype="float32")
        self.cross_entropy = self.backend.lm_loss()
        seed_dropout(self, _default_seed(dropout_seed))

    def lm_logits(self, hidden):
        if self.projection is None:
            logits = self.tied_head(hidden.reshape(-1, hidden.shape[-1]), self.decoder.tok_emb)
            return logits.reshape(hidden.shape[:-1] + (self.config.vocab_size,))
        return self.projection(hidden)

    def lm_loss(self, logits, labels):
        """Mean next-token cross-entropy of ``logits`` [..., vocab] against ``labels`` [...] over the labels
        that are not ``IGNORE`` (computed by the model's backend)."""
        return self.cross_entropy(logits, labels)

    def check_inputs(self, input_ids, cache=None) -> None:
        check_input_ids(input_ids, self.config)
        if cache is not None:
            cache = KVCache(*cache)  # a KVCache or its four fields as a tuple
            end = cache.filled() + input_ids.shape[1]
            if end > cache.size:
                raise ValueError(f"position {end - 1} is beyond the cache's {cache.size} slots (n_positions="
                                 f"{self.config.n_positions}); start a new cache or shorten the sequence")

    def name_output(self, out, input_ids, cache=None):
        if cache is None:
            return out
        logits, new_cache, hidden = out
        return GPTOutput(logits, KVCache(*new_cache), hidden)

    def attentions(self, input_ids) -> tuple:
        """Each layer's attention weights for ``input_ids`` [b, n] ([b, h, n, n] per layer, row i: how token i
        spreads its attention over tokens 0..i), from the same layers as :meth:`construct` (a direct call, not
        for compiled graphs)."""
        check_input_ids(input_ids, self.config)
        return self.decoder(input_ids, None, True)[2]

    def construct(self, input_ids, cache=None):
        hidden, cache = self.decoder(input_ids, cache)
        logits = self.lm_logits(hidden)  # [b, l, vocab]
        if cache is None:
            return logits
        return logits, cache, hidden  # GPTOutput's fields




class GPTForSequenceClassification(_ChecksInputIds):
    """GPT-1's fine-tuning model: a linear head on the hidden state of the last real token (the
    extract token), plus the LM logits for the auxiliary language-modelling objective.

    ``input_ids`` is [b, l], or [b, n, l] for tasks that read several sequences per example:
    - classification / entailment: n = 1 -> class logits [b, num_labels]
    - similarity: n = 2 (both orders); the two extract states are added before the head
    - multiple-choice: n = num_labels choices; the head scores each, logits [b, n] (softmax across)
    ``pool="mean"`` feeds the head the average of the real tokens' states instead of the extract token's;
    ``pool="max"`` their element-wise maximum (each feature's strongest activation anywhere in the text).
    Returns ``(logits, lm_logits [b*n, l, vocab])``; ``lm_logits`` is None when ``with_lm`` is False
    (an auxiliary weight of 0 need not pay for the vocabulary projection).
    """

    def __init__(self, config: GPTConfig, num_labels: int, dropout_seed: int | None = None,
                 task: str = "classification", classifier_dropout: float = 0.1, with_lm: bool = True,
                 pool: str = "last", backend=None):
        super().__init__()
        if not isinstance(num_labels, int) or num_labels < 2:
            raise ValueError(f"num_labels must be an integer >= 2, got {num_labels!r}")
        if task not in FINETUNE_TASKS:
            raise ValueError(f"task must be one of {', '.join(FINETUNE_TASKS)}, got {task!r}")
        if not isinstance(classifier_dropout, (int, float)) or not 0.0 <= classifier_dropout < 1.0:
            raise ValueError(f"classifier_dropout must be in [0, 1), got {classifier_dropout!r}")
        if pool not in POOLS:
            raise ValueError(f"pool must be 'last' (GPT-1's extract token), 'mean' (average of real tokens) or "
                             f"'max' (element-wise maximum over real tokens), got {pool!r}")
        self.config, self.num_labels, self.task, self.with_lm, self.pool = config, num_labels, task, with_lm, pool
        self.n_seqs = {"similarity": 2, "multiple-choice": num_labels}.get(task, 1)
        self.gpt = GPT(config, backend=backend)
        self.backend = self.gpt.backend
        self.gpt.validate_inputs = False  # checked once here
        out = 1 if task == "multiple-choice" else num_labels
        self.classifier = Linear(config.d_model, out, std=config.initializer_range, compute_dtype=config.compute_dtype,
                                 backend=self.backend)
        self.dropout = KeyedDropout(p=classifier_dropout)
        seed_dropout(self, _default_seed(dropout_seed))

    def check_inputs(self, input_ids, *rest) -> None:
        """[b, l] as for GPT, or [b, n, l] with n the sequences this task reads per example."""
        if isinstance(input_ids, Tensor) and input_ids.ndim == 3:
            if input_ids.shape[1] != self.n_seqs:
                raise ValueError(f"the {self.task} model reads {self.n_seqs} sequence(s) per example, got "
                                 f"input_ids of shape {tuple(input_ids.shape)} [batch, sequences, seq]")
            input_ids = input_ids.reshape(-1, input_ids.shape[2])
        check_input_ids(input_ids, self.config)

    def last_token_index(self, input_ids):
        """[b] index of the last non-pad token (works for left and right padding)."""
        b, l = input_ids.shape
        if self.config.pad_token_id is None:
            return ops.fill(mindspore.int32, (b,), l - 1)
        real = ops.not_equal(input_ids, self.config.pad_token_id).astype(mindspore.int32)
        pos = ops.arange(1, l + 1, dtype=mindspore.int32).reshape(1, l)
        return ops.argmax(real * pos, dim=1).astype(mindspore.int32)

    def construct(self, input_ids):
        if input_ids.ndim == 3:
            b, n, l = input_ids.shape
            flat = input_ids.reshape(b * n, l)
        else:
            b, n = input_ids.shape[0], 1
            flat = input_ids
        hidden, _ = self.gpt.decoder(flat)  # [b*n, l, d]
        if self.pool == "last":
            idx = self.last_token_index(flat)  # [b*n]
            rows = ops.arange(b * n, dtype=mindspore.int32)
            extract = ops.gather_nd(hidden, ops.stack((rows, idx), axis=1))  # [b*n, d]
        elif self.config.pad_token_id is None:  # no padding: every position is real
            extract = hidden.mean(axis=1) if self.pool == "mean" else hidden.max(axis=1)
        else:
            real = ops.not_equal(flat, self.config.pad_token_id).astype(hidden.dtype).expand_dims(-1)  # [b*n, l, 1]
            if self.pool == "mean":
                extract = (hidden * real).sum(axis=1) / ops.maximum(real.sum(axis=1), 1.0)
            else:
                extract = (hidden - (1.0 - real) * 1e4).max(axis=1)  # padded positions never win
        extract = self.dropout(extract)
        if self.task == "similarity":
            logits = self.classifier(extract.reshape(b, n, -1).sum(axis=1))  # [b, num_labels]
        else:
            logits = self.classifier(extract).reshape(b, -1)  # [b, num_labels] or [b, n choices]
        if not self.with_lm:
            return logits, None
        return logits, self.gpt.lm_logits(hidden)


def count_parameters(cell: nn.Cell, trainable_only: bool = True) -> int:
    """Number of weights (dropout state excluded)."""
    params = cell.trainable_params() if trainable_only else cell.get_parameters()
    return int(sum(np.prod(p.shape) for p in params if not is_rng_state(p.name)))
