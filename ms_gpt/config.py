"""Configuration: one dataclass per concern, and the command-line flags generated from them.

- ``GPTConfig``: the model, with presets (below).
- ``TrainConfig``: the optimiser, schedule, clipping, mixed precision, eval/checkpoint cadence.
- ``DataConfig``: how samples are batched (batch size, length, buckets, the static-shape policy).
- ``GenerationConfig``: decoding (strategy, length, beams, penalties, sampling).

Each flow composes these in its own config (``ms_gpt.flows.configs``); :func:`add_flags` turns a
config's fields (type, default, help) into ``argparse`` flags and :func:`from_args` builds the config
from ``--config run.json`` plus the flags given, so no option is spelled twice. A field whose default
is ``None`` is decided by the flow ("auto"); the resolved config is saved in the run folder.

This module is pure Python (no MindSpore): ``ms-gpt --help`` builds every flag from it.

GPTConfig presets:
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

import argparse
import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ms_gpt.checks import require_positive_ints
from ms_gpt.recipes import NEW_TOKENS_HELP

IGNORE = -100  # the label the losses and metrics skip (mindspore.ops.cross_entropy's ignore_index)

ACTIVATIONS = ("gelu", "relu", "gelu_tanh")
POSITIONS = ("learned", "sinusoidal")
NORMS = ("post", "pre")
COMPUTE_DTYPES = ("float32", "float16", "bfloat16")
# Upper bounds of a GPTConfig's sizes, far beyond any model ms_gpt trains or loads (GPT-1: 40,478 x 768, 512
# positions, 12 layers; GPT-3 175B: 96 layers of 12,288): a config beyond them is an edit or a corruption, refused
# before anything is allocated.
MAX_SIZES = {"vocab_size": 4_000_000, "n_positions": 1 << 20, "d_model": 1 << 16, "n_layer": 1024, "n_head": 1024,
             "d_ff": 1 << 18}


def opt(default=None, help: str = "", *, factory=None, flag: str | None = None, choices=None, positive: bool = False,
        required: bool = False, cli: bool = True, none: str = "auto", bounds: str | None = None,
        most: int | None = None, off: str | None = None):
    """A dataclass field with what its command-line flag needs and what it may hold: ``help``, ``choices``,
    ``positive`` (ints > 0), ``bounds`` (a number's range, one of :data:`BOUNDS`), ``most`` (the largest value
    allowed), ``required`` (no usable default), ``flag`` (another flag name), ``cli=False`` (not a flag), ``none``
    (what a None default means, shown in the help), ``off`` (a switch that is on by default: what its ``--no-``
    flag does, the flag's help). :func:`check_fields` enforces ``choices``, ``positive``, ``bounds`` and ``most``:
    the configs' one validator."""
    if bounds is not None and bounds not in BOUNDS:
        raise ValueError(f"bounds {bounds!r} is not one of {', '.join(BOUNDS)}")
    meta = {"help": help, "flag": flag, "choices": choices, "positive": positive, "required": required, "cli": cli,
            "none": none, "bounds": bounds, "most": most, "off": off}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# The ranges a field may declare (opt(bounds=...)), as the error message writes them.
BOUNDS = {"> 0": lambda v: v > 0, ">= 0": lambda v: v >= 0, ">= 1": lambda v: v >= 1,
          "in [0, 1)": lambda v: 0 <= v < 1, "in [0, 1]": lambda v: 0 <= v <= 1, "in (0, 1]": lambda v: 0 < v <= 1,
          "in (0, 1)": lambda v: 0 < v < 1, "a finite number": math.isfinite,
          "an integer >= 0": lambda v: _integer(v) and v >= 0}


def check_fields(cfg, prefix: str = "") -> None:
    """Enforce the field metadata of the dataclass ``cfg`` and of the dataclasses it holds: a value in its
    ``choices``, a ``positive`` integer, a number within its ``bounds`` and at most its ``most``. None (auto,
    resolved later) passes. The first bad field is a ValueError naming it (after ``prefix``), what it must be,
    and the value given."""
    for path, f, _ in _leaves(type(cfg)):
        value = cfg
        for name in path:
            value = getattr(value, name)
        if value is None:
            continue
        name, meta = prefix + path[-1], f.metadata
        if meta.get("choices") and value not in meta["choices"]:
            raise ValueError(f"{name} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")
        if meta.get("positive"):
            require_positive_ints(**{name: value})
        if meta.get("most") is not None and value > meta["most"]:
            raise ValueError(f"{name} must be at most {meta['most']:,}, got {value:,}"
                             + (" (an edited or damaged config?)" if prefix else ""))
        rule = meta.get("bounds")
        if rule and (isinstance(value, bool) or not isinstance(value, (int, float)) or not BOUNDS[rule](value)):
            raise ValueError(f"{name} must be {rule}, got {value!r}")


class Validated:
    """A config's one validator: :meth:`validate` enforces its fields' metadata (:func:`check_fields`, the
    nested configs' included), then :meth:`check_relations`, the rules that relate fields (divisibility, an
    order) which no single field's metadata can say."""

    PREFIX = ""  # what errors put before a field's name

    def validate(self) -> None:
        check_fields(self, self.PREFIX)
        for f in dataclasses.fields(self):
            inner = getattr(self, f.name)
            if isinstance(inner, Validated):
                inner.check_relations()
        self.check_relations()

    def check_relations(self) -> None:
        """Rules between fields; none unless a config adds them."""


@dataclass
class GPTConfig(Validated):
    vocab_size: int = opt(40478, "token ids the embedding covers", positive=True, most=MAX_SIZES["vocab_size"])
    n_positions: int = opt(512, "longest sequence the position table covers", positive=True,
                           most=MAX_SIZES["n_positions"])
    d_model: int = opt(768, "width of the residual stream", positive=True, most=MAX_SIZES["d_model"])
    n_layer: int = opt(12, "decoder layers", positive=True, most=MAX_SIZES["n_layer"])
    n_head: int = opt(12, "attention heads (d_model must be divisible by it)", positive=True, most=MAX_SIZES["n_head"])
    d_ff: int = opt(3072, "width of the feed-forward layer", positive=True, most=MAX_SIZES["d_ff"])
    activation: str = opt("gelu", "gelu (exact erf, GPT-1), relu (tutorial), gelu_tanh", choices=ACTIVATIONS)
    positions: str = opt("learned", "learned (GPT-1, tutorial) or sinusoidal (fixed table)", choices=POSITIONS)
    norm: str = opt("post", "post-LN: x = LN(x + f(x)) (GPT-1, tutorial); pre-LN: x = x + f(LN(x))", choices=NORMS)
    final_norm: bool = opt(False, "a LayerNorm after the last layer (usual with pre-LN)")
    tie_word_embeddings: bool = opt(True, "the LM head shares the token embedding (GPT-1)")
    embd_dropout: float = opt(0.1, "dropout of the embeddings", bounds="in [0, 1)")
    attn_dropout: float = opt(0.1, "dropout of the attention weights", bounds="in [0, 1)")
    resid_dropout: float = opt(0.1, "dropout of the residual branches", bounds="in [0, 1)")
    layer_norm_eps: float = opt(1e-5, "LayerNorm's epsilon", bounds="> 0")
    pad_token_id: int | None = opt(None, "the padding id (None: no padding in the inputs)")
    initializer_range: float = opt(0.02, "standard deviation of the initial weights", bounds=">= 0")
    compute_dtype: str = opt("float32", "matmul dtype; LayerNorm and softmax always run in float32",
                             choices=COMPUTE_DTYPES)

    PREFIX = "GPTConfig."  # errors name the model config's fields so

    def __post_init__(self):
        self.validate()

    @property
    def d_k(self) -> int:
        return self.d_model // self.n_head

    def check_relations(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(
                f"GPTConfig.d_model ({self.d_model}) must be divisible by n_head ({self.n_head}); "
                f"e.g. n_head in {[h for h in range(1, min(self.d_model, 64) + 1) if self.d_model % h == 0][-4:]}"
            )
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


SCHEDULES = ("cosine", "linear", "constant")
# TrainConfig fields a --resume may change (recorded in train_state.json's "changes"): a run that diverged
# continues from its last finite checkpoint at a lower learning rate.
RESUMABLE = ("learning_rate", "schedule", "min_lr_ratio")
# The most tokens one generate/chat call may ask for: a long story on a character model is a few thousand; 10^8
# would run for days printing nothing.
MAX_NEW_TOKENS = 10_000
STRATEGIES = ("greedy", "beam", "sample")
FINETUNE_TASKS = ("classification", "entailment", "similarity", "multiple-choice")
# What a fine-tuned head reads: the last real token's state (GPT-1's extract token), the mean of the real
# tokens' states, or their element-wise maximum.
POOLS = ("last", "mean", "max")


@dataclass
class TrainConfig(Validated):
    steps: int = opt(200, "optimizer steps", positive=True)
    learning_rate: float = opt(3e-4, "peak learning rate", bounds="> 0")
    warmup_steps: int | None = opt(20, "linear warmup steps", bounds="an integer >= 0")
    schedule: str = opt("cosine", "decay after warmup", choices=SCHEDULES)
    min_lr_ratio: float = opt(0.1, "the learning rate decays to this share of the peak", bounds="in [0, 1]")
    weight_decay: float = opt(0.01, "AdamW weight decay (matrices only)", bounds=">= 0")
    beta1: float = opt(0.9, "AdamW β1 (first-moment decay)", bounds="in [0, 1)")
    beta2: float = opt(0.999, "AdamW β2 (second-moment decay)", bounds="in [0, 1)")
    bias_correction: bool = opt(False, "Adam's bias correction of the moments (PyTorch's AdamW); without it "
                                       "MindSpore's AdamWeightDecay update, whose first steps are several times larger",
                                off="Adam without bias correction (MindSpore's AdamWeightDecay update, whose first "
                                    "steps are several times larger)")
    grad_clip: float = opt(1.0, "clip gradients to this global norm", bounds="> 0")
    eval_every: int | None = opt(50, "validate every N steps", positive=True)
    ckpt_every: int | None = opt(100, "checkpoint every N steps", positive=True)
    # Mixed precision: the model computes in float16 (GPTConfig.compute_dtype), the weights and the
    # optimizer stay float32, and the loss is scaled dynamically. None: on for Ascend, off elsewhere.
    amp: bool | None = opt(False, "float16 compute with dynamic loss scaling (auto: on for Ascend, off elsewhere)")
    loss_scale: float = opt(2.0 ** 16, "initial dynamic loss scale (with --amp)", bounds=">= 1")
    loss_scale_window: int = opt(1000, "steps without overflow before the loss scale doubles", positive=True)

    def validate(self) -> None:
        unresolved = [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is None]
        if unresolved:
            raise ValueError(f"TrainConfig fields {unresolved} are still 'auto' (None): the flow resolves them")
        super().validate()

    def check_relations(self) -> None:
        if self.amp is not None and not isinstance(self.amp, bool):
            raise ValueError(f"amp must be True or False, got {self.amp!r}")
        if self.warmup_steps is not None and self.steps is not None and not self.warmup_steps < self.steps:
            raise ValueError(f"warmup_steps must be an integer in [0, steps={self.steps}), got {self.warmup_steps!r}")


@dataclass
class DataConfig(Validated):
    batch_size: int = opt(16, "sequences per batch", positive=True)
    max_len: int | None = opt(None, "tokens per sequence", positive=True, none="the model's n_positions, at most 512")
    buckets: tuple | None = opt(None, "static length buckets, e.g. 32,64,128 (the last = the maximum length); "
                                      "none: one length", none="max_len/4, max_len/2, max_len")
    static_shapes: bool | None = opt(None, "pad to a few fixed shapes (auto: on for Ascend or $MS_GPT_STATIC_SHAPES)")


@dataclass
class GenerationConfig(Validated):
    strategy: str = opt("greedy", "decoding strategy", choices=STRATEGIES)
    max_new_tokens: int | None = opt(None, "tokens to generate at most, up to 10,000 (past the position table the "
                                           "model reads the last 3/4 of it); a text that reaches it without ending "
                                           "is cut after its last full sentence or word and ends with ' …'",
                                     positive=True, most=MAX_NEW_TOKENS, none=NEW_TOKENS_HELP)
    eos_id: int | None = opt(None, cli=False)
    stop_ids: tuple = opt((), cli=False)  # more tokens that end the text (e.g. a newline)
    use_cache: bool = opt(True, "decode over the key/value cache", flag="--no-cache",
                          off="recompute the whole sequence for every new token instead of decoding over the "
                              "key/value cache (slower; the same tokens)")
    num_beams: int = opt(4, "beam width (beam search)", positive=True)
    length_penalty: float = opt(1.0, "beam score = sum log p / length ** this")
    repetition_penalty: float = opt(1.0, "> 1 discourages tokens already in the sequence (CTRL-style)", bounds="> 0")
    no_repeat_ngram_size: int = opt(0, "never repeat an n-gram of this size (0: off)", bounds="an integer >= 0")
    temperature: float = opt(1.0, "sampling temperature", bounds="> 0")
    top_k: int = opt(0, "sample from the k most likely tokens (0: off)", bounds="an integer >= 0")
    top_p: float = opt(1.0, "sample from the smallest set reaching this probability (1: off)", bounds="in (0, 1]")
    seed: int = opt(0, cli=False)
    truncate_prompt: bool = opt(False, "keep the last n_positions tokens of a too-long prompt instead of failing")
    suppress_ids: tuple = opt((), cli=False)  # never generate these (e.g. <pad>, <bos>, <unk>)


# ------------------------------------------------------------------------------ dataclasses <-> flags
_TRISTATE = {"auto": None, "on": True, "off": False}


def _leaves(cls, prefix: tuple = ()):
    """(path, field, type) of every field, nested dataclasses flattened depth-first."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            yield from _leaves(kind, prefix + (f.name,))
        else:
            yield prefix + (f.name,), f, kind


def _base(kind):
    """int for ``int | None``; the first non-None member of a union."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if args else kind


def _optional(kind) -> bool:
    return type(None) in typing.get_args(kind)


def parse_lengths(text: str):
    """``"128,256,512"`` -> (128, 256, 512); ``none``/``off`` -> () (no buckets)."""
    if text.strip().lower() in ("", "none", "off"):
        return ()
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated lengths like 128,256,512, got {text!r}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _optional_value(convert):
    def parse(text: str):
        return None if text.strip().lower() in ("none", "auto") else convert(text)

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def flag_name(path: tuple, f, kind, default, renames: dict) -> str:
    """The field's flag: renamed by the flow, named by the field, or ``--name`` (``--no-name`` for a switch
    that is on by default)."""
    explicit = renames.get(".".join(path)) or f.metadata.get("flag")
    if explicit:
        return explicit
    name = path[-1].replace("_", "-")
    return f"--no-{name}" if kind is bool and default is True else f"--{name}"


def _flagged(cls, renames: dict, hidden):
    """(path, field, type, default, flag) of every field that has a flag."""
    defaults = cls()
    for path, f, kind in _leaves(cls):
        if not f.metadata.get("cli", True) or ".".join(path) in hidden:
            continue
        default = defaults
        for p in path:
            default = getattr(default, p)
        yield path, f, kind, default, flag_name(path, f, kind, default, renames)


def add_flags(parser: argparse.ArgumentParser, cls, renames: dict | None = None, hidden=(),
              require: bool = False) -> None:
    """One flag per field of ``cls`` (nested dataclasses flattened): type, choices and help from the
    field, the default shown in the help. Flags default to 'not given' (so ``--config`` values stand
    unless a flag overrides them). ``renames``: dotted path -> flag; ``hidden``: dotted paths without a
    flag (values the flow derives); ``require``: the required fields are required flags (no ``--config``
    given that could hold them), shown without brackets in the usage."""
    parser.add_argument("--config", metavar="RUN.json", default=argparse.SUPPRESS,
                        help="load the whole run from a JSON file (e.g. a run folder's run_config.json); "
                             "flags given as well override it")
    for path, f, kind, default, flag in _flagged(cls, renames or {}, hidden):
        dotted, meta, base = ".".join(path), f.metadata, _base(kind)
        shown = (getattr(cls, "NONE_HELP", {}).get(dotted) or meta.get("none", "auto")) if default is None else default
        if base is tuple and default:
            shown = ",".join(map(str, default))
        quiet = meta.get("required") or (base is bool and not _optional(kind))
        help_text = getattr(cls, "HELP", {}).get(dotted, meta.get("help", ""))  # a flow may word a shared field
        help_text += "" if quiet else f" (default: {shown})"
        if base is bool and default is True and not _optional(kind):
            help_text = meta.get("off") or f"turn off: {help_text}"  # the --no- flag's own action
        help_text = help_text.replace("%", "%%")  # argparse formats help with %
        common = dict(dest=dotted, default=argparse.SUPPRESS, help=help_text)
        if require and meta.get("required"):
            common["required"] = True
        if base is bool and _optional(kind):
            parser.add_argument(flag, choices=tuple(_TRISTATE), type=str.lower, **common)
        elif base is bool:
            parser.add_argument(flag, action="store_false" if default else "store_true", **common)
        else:
            convert = {int: _positive_int if meta.get("positive") else int, float: float, str: str,
                       tuple: parse_lengths}.get(base, str)
            if _optional(kind) and base is not tuple:
                convert = _optional_value(convert)
            parser.add_argument(flag, type=convert, choices=meta.get("choices"), metavar=flag.strip("-").upper()
                                if not meta.get("choices") else None, **common)


def _set(target: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        target = target.setdefault(p, {})
    target[leaf] = value


def upgrade(cls, data: dict) -> dict:
    """A config record written before some of ``cls``'s fields moved or were renamed (``cls.MOVED``: old name ->
    dotted new path), in today's shape; other records unchanged. A nested config the old record did not have
    starts from today's defaults (which are what the old code did: a moved field keeps its behaviour)."""
    moved = getattr(cls, "MOVED", {})
    if not any(old in data for old in moved):
        return data
    data, defaults = json.loads(json.dumps(data)), to_dict(cls())
    for old, new in moved.items():
        if old in data:
            value, parent, default = data.pop(old), data, defaults
            *parents, leaf = new.split(".")
            for p in parents:
                default = default[p]
                parent = parent.setdefault(p, dict(default))
            parent[leaf] = value
    return data


def build(cls, data: dict, where: str = "config"):
    """``cls`` from a (nested) dict, upgraded from an older record's field names (:func:`upgrade`); unknown keys
    are an error naming them and the known ones."""
    data = upgrade(cls, data)
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
    values = {}
    for name, value in data.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            if not isinstance(value, dict):
                raise ValueError(f"{where}: {name} must be an object of {kind.__name__} fields, got {value!r}")
            base = getattr(cls(), name)
            values[name] = build(kind, {**dataclasses.asdict(base), **value}, f"{where}.{name}")
        elif _base(kind) is tuple and isinstance(value, list):
            values[name] = tuple(value)
        else:
            values[name] = value
    return dataclasses.replace(cls(), **values)


def config_diff(saved: dict, now: dict, free=(), prefix: str = "") -> dict:
    """``{dotted field: (saved, now)}`` for every setting of two config records that differs, nested
    records compared field by field; ``free`` lists dotted fields that may differ."""
    diff = {}
    for key in sorted(set(saved) | set(now)):
        name = prefix + key
        if name in free:
            continue
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diff.update(config_diff(a, b, free, name + "."))
        elif a != b:
            diff[name] = (a, b)
    return diff


def to_dict(cfg) -> dict:
    """The config as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_settings(cls, settings: dict, renames: dict | None = None, hidden=()):
    """``cls`` from keyword settings named as its flags are (``block_size`` for ``--block-size``) or as its
    fields are (``progress=False`` for ``--no-progress``), checked as the flags are (:func:`from_args`); an
    unknown name is refused with the accepted ones."""
    names = {}
    for path, _, _, _, flag in _flagged(cls, renames or {}, hidden):
        dotted, flag = ".".join(path), flag.lstrip("-").replace("-", "_")
        names[flag.removeprefix("no_") if flag.startswith("no_") and flag[3:] == path[-1] else flag] = dotted
        names.setdefault(path[-1], dotted)
    unknown = sorted(set(settings) - set(names))
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)} for {cls.__name__}; accepted: "
                         f"{', '.join(sorted(names))}")
    return from_args(cls, argparse.Namespace(**{names[k]: v for k, v in settings.items()}))


def from_args(cls, args: argparse.Namespace):
    """``cls`` from ``--config FILE`` (when given) overridden by the flags given; required fields checked."""
    data: dict = {}
    config_file = getattr(args, "config", None)
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ValueError(f"--config {config_file}: file not found")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"--config {config_file}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise ValueError(f"--config {config_file}: expected a JSON object of {cls.__name__} fields")
        data = upgrade(cls, data)
    for dotted, value in vars(args).items():
        if dotted in ("command", "config") or dotted.startswith("_"):
            continue
        if isinstance(value, str) and value in _TRISTATE and _is_tristate(cls, dotted):
            value = _TRISTATE[value]
        _set(data, dotted, value)
    cfg = build(cls, data, where=f"--config {config_file}" if config_file else cls.__name__)
    for path, f, _ in _leaves(cls):
        value = cfg
        for p in path:
            value = getattr(value, p)
        if f.metadata.get("required") and value is None:
            raise ValueError(f"--{path[-1].replace('_', '-')} is required (give it as a flag or in --config)")
    return cfg


def _is_tristate(cls, dotted: str) -> bool:
    for path, _, kind in _leaves(cls):
        if ".".join(path) == dotted:
            return _base(kind) is bool and _optional(kind)
    return False
