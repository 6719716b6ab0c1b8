"""One cached decoding step of a GPT, as generation compiles it: ``(input_ids [b, n], keys, values, pad, length)
-> (logits [b, n, vocab], the cache's updated fields, hidden [b, n, d])``, n = 1 when decoding and a chunk of the
prompt when filling the cache; the keys and values come back as empty tuples when the step wrote them into the
buffers passed in (:meth:`ms_gpt.model.cache.KVCache.updated`).

It is ``model(input_ids, cache)`` - the model's one forward path - unless the model's backend offers a whole
decoder layer of a decoding step as one cell (``backend.decode_layer``: the CPU kernels do, writing the new key
and value into the cache in place). Then the step takes the decoder's inputs (embeddings, masks) and its final
norm and LM head from the model as they are, and runs each layer as that one cell with the layer's own weights.
The two agree to float32 rounding (``tests/test_kernels.py``); decoding runs in inference mode (no dropout).
"""

from __future__ import annotations


def layer_weights(layer) -> tuple:
    """A :class:`ms_gpt.model.gpt.DecoderLayer`'s weights in the order ``backend.decode_layer`` reads them."""
    attn, ffn = layer.self_attn, layer.feed_forward
    return (layer.ln_1.weight, layer.ln_1.bias, attn.W_Q.weight, attn.W_Q.bias, attn.W_K.weight, attn.W_K.bias,
            attn.W_V.weight, attn.W_V.bias, attn.linear.weight, attn.linear.bias, layer.ln_2.weight,
            layer.ln_2.bias, ffn.fc1.weight, ffn.fc1.bias, ffn.fc2.weight, ffn.fc2.bias)


def decode_step(model):
    """The function of one cached decoding step of ``model`` (for ``mindspore.jit``): see the module docstring."""
    layer_step = model.backend.decode_layer(model.config)
    if layer_step is None:
        def step(input_ids, keys, values, pad, length):
            return model(input_ids, (keys, values, pad, length))
        return step
    decoder = model.decoder

    def fused_step(input_ids, keys, values, pad, length):
        x, mask, place, keys_pad = decoder.layer_inputs(input_ids, (keys, values, pad, length))
        for i, layer in enumerate(decoder.layers):
            x = layer_step(x, layer_weights(layer), keys[i], values[i], mask, place)
        if decoder.final_norm is not None:
            x = decoder.final_norm(x)
        return model.lm_logits(x), ((), (), keys_pad, length + input_ids.shape[1]), x  # keys, values: in place
    return fused_step
