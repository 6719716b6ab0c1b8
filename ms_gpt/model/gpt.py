"""Decoder layers, the decoder stack, the GPT language model and GPT-1's classification head."""

from __future__ import annotations

import mindspore
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, initializer

from ms_gpt.config import GPTConfig
from ms_gpt.model.dropout import KeyedDropout, seed_dropout
from ms_gpt.model.layers import (LayerNorm, Linear, MultiHeadAttention, PoswiseFeedForwardNet,
                                 get_attn_pad_mask, get_attn_subsequent_mask, get_sin_enc_table)


class DecoderLayer(nn.Cell):
    """Masked self-attention then the FFN, each with a residual and a LayerNorm.

    post-LN (GPT-1, tutorial): x = LN1(x + attn(x)); x = LN2(x + ffn(x))
    pre-LN:                    x = x + attn(LN1(x)); x = x + ffn(LN2(x))
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.pre_ln = config.norm == "pre"
        self.self_attn = MultiHeadAttention(config)
        self.ln_1 = LayerNorm(config.d_model, config.layer_norm_eps)
        self.feed_forward = PoswiseFeedForwardNet(config)
        self.ln_2 = LayerNorm(config.d_model, config.layer_norm_eps)

    def _finish(self, x, a):
        """The residuals, LayerNorms and FFN around an attention output ``a``."""
        if self.pre_ln:
            x = x + a
            return x + self.feed_forward(self.ln_2(x))
        x = self.ln_1(x + a)
        return self.ln_2(x + self.feed_forward(x))

    def _attn_input(self, x):
        return self.ln_1(x) if self.pre_ln else x

    def construct(self, x, attn_mask):
        h = self._attn_input(x)
        a, weights = self.self_attn(h, h, h, attn_mask)
        return self._finish(x, a), weights

    def step(self, x, past_k, past_v, attn_mask):
        """:meth:`construct` for new positions over a key/value cache (incremental decoding)."""
        a, k, v = self.self_attn.attend_cached(self._attn_input(x), past_k, past_v, attn_mask)
        return self._finish(x, a), k, v

    def step_static(self, x, cache_k, cache_v, write, attn_mask):
        """:meth:`step` for one position over a fixed-size cache (see MultiHeadAttention.attend_static)."""
        a, k, v = self.self_attn.attend_static(self._attn_input(x), cache_k, cache_v, write, attn_mask)
        return self._finish(x, a), k, v


class Decoder(nn.Cell):
    """Token + position embeddings, then ``n_layer`` DecoderLayers under padding + causal masks."""

    def __init__(self, config: GPTConfig):
        super().__init__()
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
        self.layers = nn.CellList([DecoderLayer(config) for _ in range(config.n_layer)])
        self.final_norm = LayerNorm(config.d_model, config.layer_norm_eps) if config.final_norm else None
        self.pad_id = config.pad_token_id

    def position_ids(self, input_ids):
        """0, 1, 2… counted over real tokens, so left padding does not shift positions."""
        b, l = input_ids.shape
        if self.pad_id is None:
            return ops.broadcast_to(ops.arange(l, dtype=mindspore.int32).reshape(1, l), (b, l))
        real = ops.not_equal(input_ids, self.pad_id).astype(mindspore.int32)
        return ops.relu(ops.cumsum(real, axis=1) - 1)

    def attn_mask(self, input_ids):
        """[b, l, l] bool: True where attention is not allowed (later positions or padding keys)."""
        causal = get_attn_subsequent_mask(input_ids)
        if self.pad_id is None:
            return causal
        return ops.logical_or(causal, get_attn_pad_mask(input_ids, input_ids, self.pad_id))

    def construct(self, input_ids):
        # input_ids: [b, l] int -> hidden [b, l, d], attention weights per layer [b, h, l, l]
        x = ops.gather(self.tok_emb, input_ids, 0) + ops.gather(self.pos_emb, self.position_ids(input_ids), 0)
        x = self.dropout(x)
        mask = self.attn_mask(input_ids)
        attns = ()
        for layer in self.layers:
            x, w = layer(x, mask)
            attns = attns + (w,)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x, attns

    def step(self, input_ids, past, start_pos: int):
        """Hidden states of ``input_ids`` [b, n] placed at positions start_pos.. after a cache.

        ``past``: None or a tuple of (k, v) per layer, each [b, h, start_pos, d_k]; returns the hidden
        states [b, n, d] and the extended cache. Prompts here carry no padding.
        """
        b, n = input_ids.shape
        pos = ops.broadcast_to(ops.arange(start_pos, start_pos + n, dtype=mindspore.int32).reshape(1, n), (b, n))
        x = self.dropout(ops.gather(self.tok_emb, input_ids, 0) + ops.gather(self.pos_emb, pos, 0))
        # new position i (absolute start_pos + i) may see every cached position and new ones <= i
        mask = ops.triu(ops.ones((n, start_pos + n), mindspore.int32), diagonal=start_pos + 1).astype(mindspore.bool_)
        mask = ops.broadcast_to(mask.reshape(1, n, start_pos + n), (b, n, start_pos + n))
        new_past = []
        for i, layer in enumerate(self.layers):
            pk, pv = (None, None) if past is None else past[i]
            x, k, v = layer.step(x, pk, pv, mask)
            new_past.append((k, v))
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x, tuple(new_past)


    def step_static(self, input_ids, cache, pos):
        """One token per row ``input_ids`` [b, 1] at position ``pos`` (int32 scalar tensor) over a
        fixed-size cache: a tuple of (k, v) per layer, each [b, h, T, d_k]. Static shapes: compile once."""
        b = input_ids.shape[0]
        t = cache[0][0].shape[2]
        slots = ops.arange(0, t, dtype=mindspore.int32)
        write = ops.equal(slots, pos).reshape(1, 1, t, 1)
        mask = ops.broadcast_to(ops.greater(slots, pos).reshape(1, 1, t), (b, 1, t))
        positions = ops.broadcast_to(pos.reshape(1, 1), (b, 1))
        x = self.dropout(ops.gather(self.tok_emb, input_ids, 0) + ops.gather(self.pos_emb, positions, 0))
        new_cache = ()
        for i, layer in enumerate(self.layers):
            x, k, v = layer.step_static(x, cache[i][0], cache[i][1], write, mask)
            new_cache = new_cache + ((k, v),)
        if self.final_norm is not None:
            x = self.final_norm(x)
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
    """Dropout keys come from ``seed``, else MindSpore's global seed (set by ``ms_gpt.device.setup``), else 0."""
    if seed is None:
        seed = mindspore.get_seed()
    return 0 if seed is None else int(seed)


class _ChecksInputIds(nn.Cell):
    """Runs :func:`check_input_ids` on the first argument of every top-level call (``validate_inputs``)."""

    validate_inputs = True

    def check_inputs(self, input_ids) -> None:
        check_input_ids(input_ids, self.config)

    def __call__(self, *args, **kwargs):
        if self.validate_inputs and args:
            self.check_inputs(args[0])
        return super().__call__(*args, **kwargs)


class GPT(_ChecksInputIds):
    """The GPT language model: Decoder + LM head. ``model(input_ids)`` -> logits [b, l, vocab]."""

    def __init__(self, config: GPTConfig, output_attentions: bool = False, dropout_seed: int | None = None):
        super().__init__()
        if config.compute_dtype == "bfloat16" and mindspore.get_context("device_target") == "CPU":
            raise ValueError("compute_dtype='bfloat16' needs Ascend (MindSpore's CPU MatMul has no bfloat16 "
                             "kernel); on CPU use 'float32' or 'float16'")
        self.config = config
        self.decoder = Decoder(config)
        self.projection = None if config.tie_word_embeddings else Linear(
            config.d_model, config.vocab_size, bias=False, std=config.initializer_range,
            compute_dtype=config.compute_dtype)
        self.output_attentions = output_attentions
        self.matmul_t = ops.MatMul(transpose_b=True)
        seed_dropout(self, _default_seed(dropout_seed))

    def lm_logits(self, hidden):
        if self.projection is None:  # tied: logits = h E^T, as one 2-D GEMM with E transposed in-kernel
            lead = hidden.shape[:-1]
            logits = self.matmul_t(hidden.reshape(-1, hidden.shape[-1]), self.decoder.tok_emb)
            return logits.reshape(lead + (self.config.vocab_size,))
        return self.projection(hidden)

    def step(self, input_ids, past=None, start_pos: int = 0):
        """Logits [b, n, vocab] for new tokens after a key/value cache, and the extended cache."""
        n = input_ids.shape[1]
        if start_pos + n > self.config.n_positions:
            raise ValueError(f"position {start_pos + n - 1} is beyond the position table "
                             f"(n_positions={self.config.n_positions})")
        hidden, new_past = self.decoder.step(input_ids, past, start_pos)
        return self.lm_logits(hidden), new_past

    def step_static(self, input_ids, cache, pos):
        """Logits [b, 1, vocab] for one token per row at position ``pos`` over a fixed-size cache
        (made by :meth:`pad_cache`), and the updated cache. Meant for ``mindspore.jit``."""
        hidden, new_cache = self.decoder.step_static(input_ids, cache, pos)
        return self.lm_logits(hidden), new_cache

    def pad_cache(self, past, size: int | None = None):
        """A :meth:`step` cache [b, h, t, d_k] per layer, zero-padded to ``size`` (default n_positions) slots."""
        size = self.config.n_positions if size is None else size
        t = past[0][0].shape[2]
        if t > size:
            raise ValueError(f"the cache already holds {t} positions, more than size={size}")
        return tuple((ops.pad(k, (0, 0, 0, size - t)), ops.pad(v, (0, 0, 0, size - t))) for k, v in past)

    def construct(self, input_ids):
        hidden, attns = self.decoder(input_ids)
        logits = self.lm_logits(hidden)  # [b, l, vocab]
        if self.output_attentions:
            return logits, attns
        return logits


FINETUNE_TASKS = ("classification", "entailment", "similarity", "multiple-choice")


class GPTForSequenceClassification(_ChecksInputIds):
    """GPT-1's fine-tuning model: a linear head on the hidden state of the last real token (the
    extract token), plus the LM logits for the auxiliary language-modelling objective.

    ``input_ids`` is [b, l], or [b, n, l] for tasks that read several sequences per example:
    - classification / entailment: n = 1 -> class logits [b, num_labels]
    - similarity: n = 2 (both orders); the two extract states are added before the head
    - multiple-choice: n = num_labels choices; the head scores each, logits [b, n] (softmax across)
    ``pool="mean"`` feeds the head the average of the real tokens' states instead of the extract token's.
    Returns ``(logits, lm_logits [b*n, l, vocab])``; ``lm_logits`` is None when ``with_lm`` is False
    (an auxiliary weight of 0 need not pay for the vocabulary projection).
    """

    def __init__(self, config: GPTConfig, num_labels: int, dropout_seed: int | None = None,
                 task: str = "classification", classifier_dropout: float = 0.1, with_lm: bool = True,
                 pool: str = "last"):
        super().__init__()
        if not isinstance(num_labels, int) or num_labels < 2:
            raise ValueError(f"num_labels must be an integer >= 2, got {num_labels!r}")
        if task not in FINETUNE_TASKS:
            raise ValueError(f"task must be one of {', '.join(FINETUNE_TASKS)}, got {task!r}")
        if not isinstance(classifier_dropout, (int, float)) or not 0.0 <= classifier_dropout < 1.0:
            raise ValueError(f"classifier_dropout must be in [0, 1), got {classifier_dropout!r}")
        if pool not in ("last", "mean"):
            raise ValueError(f"pool must be 'last' (GPT-1's extract token) or 'mean' (average of real tokens), got {pool!r}")
        self.config, self.num_labels, self.task, self.with_lm, self.pool = config, num_labels, task, with_lm, pool
        self.n_seqs = {"similarity": 2, "multiple-choice": num_labels}.get(task, 1)
        self.gpt = GPT(config)
        self.gpt.validate_inputs = False  # checked once here
        out = 1 if task == "multiple-choice" else num_labels
        self.classifier = Linear(config.d_model, out, std=config.initializer_range, compute_dtype=config.compute_dtype)
        self.dropout = KeyedDropout(p=classifier_dropout)
        seed_dropout(self, _default_seed(dropout_seed))

    def check_inputs(self, input_ids) -> None:
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
        if self.pool == "mean" and self.config.pad_token_id is not None:
            real = ops.not_equal(flat, self.config.pad_token_id).astype(hidden.dtype).expand_dims(-1)  # [b*n, l, 1]
            extract = (hidden * real).sum(axis=1) / ops.maximum(real.sum(axis=1), 1.0)
        elif self.pool == "mean":
            extract = hidden.mean(axis=1)
        else:
            idx = self.last_token_index(flat)  # [b*n]
            rows = ops.arange(b * n, dtype=mindspore.int32)
            extract = ops.gather_nd(hidden, ops.stack((rows, idx), axis=1))  # [b*n, d]
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
    from ms_gpt.model.dropout import is_rng_state

    params = cell.trainable_params() if trainable_only else cell.get_parameters()
    return int(sum(np.prod(p.shape) for p in params if not is_rng_state(p.name)))
