"""``GPTConfig``: one dataclass that describes a GPT, with presets.

Presets:
- ``tiny``: for tests (2 layers, d_model 32, 4 heads).
- ``small``: the README's quick CPU pretrain (4 layers, d_model 128, 4 heads, d_ff 512, GELU, tied
  head, dropout 0.1) with pre-LayerNorm and a final LayerNorm: at this size and a few hundred steps,
  post-LN stayed at the unigram loss on People's Daily where pre-LN went below it.
- ``tutorial``: the PyTorch blog's model (6 layers, d_model 512, 8 heads, d_ff 2048, ReLU FFN,
  learned positions, a separate projection head).
- ``gpt1``: OpenAI GPT-1 / Hugging Face ``openai-gpt`` (12 layers, 768, 12 heads, 3072, GELU, vocab
  40478, 512 positions, post-LayerNorm, LM head tied to the token embedding, dropout 0.1).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ms_gpt.checks import require_positive_ints

ACTIVATIONS = ("gelu", "relu", "gelu_tanh")
POSITIONS = ("learned", "sinusoidal")
NORMS = ("post", "pre")
COMPUTE_DTYPES = ("float32", "float16", "bfloat16")


@dataclass
class GPTConfig:
    vocab_size: int = 40478
    n_positions: int = 512  # longest sequence the position table covers
    d_model: int = 768
    n_layer: int = 12
    n_head: int = 12
    d_ff: int = 3072
    activation: str = "gelu"  # gelu (exact erf, GPT-1), relu (tutorial), gelu_tanh
    positions: str = "learned"  # learned (GPT-1, tutorial) or sinusoidal (fixed table)
    norm: str = "post"  # post-LN: x = LN(x + f(x)) (GPT-1, tutorial); pre-LN: x = x + f(LN(x))
    final_norm: bool = False  # a LayerNorm after the last layer (usual with pre-LN)
    tie_word_embeddings: bool = True  # LM head shares the token embedding (GPT-1)
    embd_dropout: float = 0.1
    attn_dropout: float = 0.1
    resid_dropout: float = 0.1
    layer_norm_eps: float = 1e-5
    pad_token_id: int | None = None  # None: no padding in the inputs
    initializer_range: float = 0.02
    compute_dtype: str = "float32"  # matmul dtype; LayerNorm and softmax always run in float32

    def __post_init__(self):
        self.validate()

    @property
    def d_k(self) -> int:
        return self.d_model // self.n_head

    def validate(self) -> None:
        require_positive_ints("GPTConfig.", **{n: getattr(self, n) for n in (
            "vocab_size", "n_positions", "d_model", "n_layer", "n_head", "d_ff")})
        if self.d_model % self.n_head:
            raise ValueError(
                f"GPTConfig.d_model ({self.d_model}) must be divisible by n_head ({self.n_head}); "
                f"e.g. n_head in {[h for h in range(1, min(self.d_model, 64) + 1) if self.d_model % h == 0][-4:]}"
            )
        for name, allowed in (("activation", ACTIVATIONS), ("positions", POSITIONS), ("norm", NORMS),
                              ("compute_dtype", COMPUTE_DTYPES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"GPTConfig.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("embd_dropout", "attn_dropout", "resid_dropout"):
            p = getattr(self, name)
            if not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
                raise ValueError(f"GPTConfig.{name} must be in [0, 1), got {p!r}")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"GPTConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")
        if self.pad_token_id is not None and not (
            isinstance(self.pad_token_id, int) and 0 <= self.pad_token_id < self.vocab_size
        ):
            raise ValueError(
                f"GPTConfig.pad_token_id must be None or an id in [0, {self.vocab_size}), got {self.pad_token_id!r}"
            )

    def replace(self, **changes) -> "GPTConfig":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GPTConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown GPTConfig fields {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def preset(cls, name: str, **overrides) -> "GPTConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


PRESETS = {
    "tiny": dict(vocab_size=64, n_positions=32, d_model=32, n_layer=2, n_head=4, d_ff=64,
                 embd_dropout=0.0, attn_dropout=0.0, resid_dropout=0.0, pad_token_id=0),
    "small": dict(vocab_size=8000, n_positions=128, d_model=128, n_layer=4, n_head=4, d_ff=512,
                  activation="gelu", positions="learned", norm="pre", final_norm=True, tie_word_embeddings=True,
                  embd_dropout=0.1, attn_dropout=0.1, resid_dropout=0.1, pad_token_id=0),
    "tutorial": dict(vocab_size=1000, n_positions=256, d_model=512, n_layer=6, n_head=8, d_ff=2048,
                     activation="relu", positions="learned", norm="post", tie_word_embeddings=False,
                     pad_token_id=0),
    "gpt1": dict(vocab_size=40478, n_positions=512, d_model=768, n_layer=12, n_head=12, d_ff=3072,
                 activation="gelu", positions="learned", norm="post", tie_word_embeddings=True,
                 embd_dropout=0.1, attn_dropout=0.1, resid_dropout=0.1),
}
