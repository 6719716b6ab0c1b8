"""The from-scratch GPT cell set (MindSpore ``nn.Cell``), with the tutorial's names."""

from ms_gpt.model.cache import KVCache
from ms_gpt.model.dropout import KeyedDropout, seed_dropout
from ms_gpt.model.gpt import (GPT, Decoder, DecoderLayer, GPTForSequenceClassification, GPTOutput,
                              check_input_ids, count_parameters)
from ms_gpt.model.layers import (LayerNorm, Linear, MultiHeadAttention, PoswiseFeedForwardNet,
                                 ScaledDotProductAttention, get_attn_pad_mask, get_attn_subsequent_mask,
                                 get_sin_enc_table)

__all__ = [
    "GPT", "GPTOutput", "KVCache", "Decoder", "DecoderLayer", "GPTForSequenceClassification", "MultiHeadAttention",
    "PoswiseFeedForwardNet", "ScaledDotProductAttention", "LayerNorm", "Linear", "get_attn_pad_mask",
    "get_attn_subsequent_mask", "get_sin_enc_table", "check_input_ids", "count_parameters",
    "KeyedDropout", "seed_dropout",
]
