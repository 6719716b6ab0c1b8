"""The Python API: what a notebook or a script reaches for, over the same calls as ``ms-gpt``.

    from ms_gpt import api
    from ms_gpt.flows.configs import PretrainConfig

    metrics = api.run(PretrainConfig(corpus="builtin:demo-en", out="runs/demo"))  # any job, its result back
    api.run(api.config("pretrain", corpus="builtin:demo-en", out="runs/demo", steps=60))  # named as the flags
    lm = api.load("runs/demo")                     # a run folder: a LanguageModel, Classifier or RewardModel
    lm.generate("the cat", strategy="beam")        # every strategy and GenerationConfig setting
    chat = api.load("runs/chat").chat()            # a conversation that keeps its history
    chat.reply("hi, how are you?")
    api.load("runs/rm").score(["a line"], ["a reply"])  # a reward model's scores
    api.load("runs/ft").classify(["some text"])    # a fine-tuned head's label and probabilities
    lm.attention("the cat sat")                    # each layer's attention weights for a prompt

``run(config)`` is what ``ms-gpt COMMAND`` runs after it has built the config from the flags (:mod:`ms_gpt.cli`).
Loading and calling a model sets up the device (``device``: Ascend, GPU, CPU, default auto) and runs op by op
(PyNative), whatever an earlier ``run`` compiled. Importing this module is cheap: MindSpore is imported on use.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

from ms_gpt.config import GenerationConfig


def config(command: str, **settings):
    """The config ``ms-gpt COMMAND`` builds from its flags, from ``settings`` named as the flags are, dashes as
    underscores (``config("pretrain", corpus="builtin:demo-en", out="runs/demo", steps=60, block_size=32)``;
    a switch by its field: ``progress=False``), checked as the flags are. Pass it to :func:`run`."""
    from ms_gpt.config import from_settings
    from ms_gpt.flows.jobs import JOBS, config_class

    if command not in JOBS:
        raise ValueError(f"unknown command {command!r}; one of {', '.join(JOBS)}")
    cls = config_class(command)
    cfg = from_settings(cls, settings, renames=cls.FLAGS, hidden=cls.DERIVED)
    cfg.validate()
    return cfg


def run(config):
    """Run the job ``config`` describes (a config class of :mod:`ms_gpt.flows.configs`: ``PretrainConfig``,
    ``FinetuneConfig``, ``SFTConfig``, ``RewardConfig``, ``PPOConfig``, ...) and return its result: the metrics
    dict a training job writes to its metrics.json, ``generate``'s text, ``chat``'s answer."""
    from ms_gpt.flows.jobs import command_of, flow_of

    return flow_of(command_of(config))(config)


def load(path: str | Path, device: str | None = None, seed: int = 0):
    """The model a run folder holds: a :class:`RewardModel` (``ms-gpt reward``'s folder or its ``best/``), a
    :class:`Classifier` (``ms-gpt finetune``'s), else a :class:`LanguageModel` (pretrain, sft, ppo, convert)."""
    from ms_gpt.run_folder import checkpoint

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{path}: no such run folder (give a folder written by ms-gpt pretrain, sft, ppo, "
                                "finetune or reward)")
    head = folder / checkpoint.CLASSIFIER
    if not head.is_file() and (folder / checkpoint.BEST / checkpoint.CLASSIFIER).is_file():
        folder, head = folder / checkpoint.BEST, folder / checkpoint.BEST / checkpoint.CLASSIFIER
    _ready(device, seed)
    if head.is_file():
        if checkpoint.read_json(head).get("role") == checkpoint.REWARD_ROLE:
            return RewardModel(folder)
        return Classifier(folder)
    return LanguageModel(folder)


_SET_UP: dict = {}


def _ready(device: str | None, seed: int) -> None:
    """Set the device up (op by op, as ``ms-gpt generate`` runs) when it is not yet, or another one was asked for."""
    from ms_gpt.environment import device as devices

    if _SET_UP.get("device", ...) != device:
        devices.setup(device, mode="jit", seed=seed)
        _SET_UP["device"] = device


class Attention(NamedTuple):
    """A prompt's tokens and each layer's attention weights: ``weights[layer][head, i, j]`` is how much token i
    attends to token j (j <= i; each row sums to 1)."""

    tokens: list
    weights: list  # per layer, a numpy array [heads, n, n]


class LanguageModel:
    """A language model's run folder (``ms-gpt pretrain``, ``sft``, ``ppo`` or ``convert --from-hf``), loaded once,
    prompted in the form it was trained on (:mod:`ms_gpt.prompting`)."""

    def __init__(self, folder: Path):
        from ms_gpt.prompting import open_checkpoint

        self.folder = Path(folder)
        self.model, self.prompter = open_checkpoint(self.folder)
        self.tokenizer, self.form = self.prompter.tok, self.prompter.form

    def __repr__(self):
        c = self.model.config
        return (f"<LanguageModel {self.folder}: {c.n_layer} layers, d_model {c.d_model}, {c.n_positions} positions, "
                f"{self.tokenizer.kind} tokenizer, {self.form} prompts>")

    def generate(self, prompt: str, stop_at_newline: bool = False, seed: int = 0, **settings) -> str:
        """``ms-gpt generate``'s text for ``prompt``: the prompt and its continuation (a dialogue model: its answer).
        ``settings`` are :class:`ms_gpt.config.GenerationConfig` fields (``strategy="greedy"|"beam"|"sample"``,
        ``max_new_tokens``, ``num_beams``, ``repetition_penalty``, ``temperature``, ``top_k``, ``top_p``,
        ``use_cache``, ...); the defaults are ``ms-gpt generate``'s."""
        from ms_gpt.prompting import Writer

        gen = _generation(GenerationConfig(), settings, seed)
        return Writer(self.model, self.prompter)(prompt, gen, stop_at_newline)

    def chat(self, history: list | None = None, seed: int = 0, **settings):
        """A conversation (:class:`ms_gpt.prompting.Conversation`: ``reply(text)``, ``history``, ``reset()``),
        decoded as ``ms-gpt chat`` decodes by default (``settings`` change it), starting from ``history`` (turns,
        oldest first, the user's first)."""
        from ms_gpt import recipes
        from ms_gpt.prompting import Conversation

        gen = _generation(GenerationConfig(**recipes.CHAT_DECODING), settings, seed)
        talk = Conversation(self.model, self.prompter, gen)
        talk.history.extend(str(t) for t in (history or []))
        return talk

    def attention(self, text: str) -> Attention:
        """Each layer's attention weights for ``text`` as the model reads it (``<bos> text`` for documents and
        dialogues, a line break then the text for line-trained models), from the model's own forward pass."""
        import mindspore
        import numpy as np

        ids = self.prompter.encode(text)[: self.model.config.n_positions]
        weights = self.model.attentions(mindspore.Tensor(np.asarray([ids], np.int32)))
        tokens = [self.tokenizer.decode([i], skip_special=False) for i in ids]
        return Attention(tokens, [w.asnumpy()[0] for w in weights])


def _generation(base: GenerationConfig, settings: dict, seed: int) -> GenerationConfig:
    """``base`` with ``settings`` (GenerationConfig fields) and ``seed``, checked as the flags are."""
    known = {f.name for f in dataclasses.fields(GenerationConfig) if f.metadata.get("cli", True)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(f"unknown generation setting(s) {', '.join(unknown)}; accepted: {', '.join(sorted(known))}")
    gen = dataclasses.replace(base, **settings, seed=seed)
    gen.validate()
    return gen


class _Head:
    """A fine-tuned head's folder (classifier.json beside the weights), loaded once."""

    def __init__(self, folder: Path):
        from ms_gpt.run_folder import checkpoint

        self.folder = Path(folder)
        self.model, self.tokenizer, self.meta = checkpoint.load_classifier(self.folder)
        self.max_len = checkpoint.trained_max_len(self.meta, self.model.config.n_positions)

    def _logits(self, seqs: list) -> "np.ndarray":  # noqa: F821  (numpy imported on use)
        """The head's outputs for rows of token sequences (each row: the task's sequences), padded to the
        trained length."""
        import mindspore
        import numpy as np

        n = len(seqs[0])
        ids = np.full((len(seqs), n, self.max_len), self.tokenizer.pad_id, np.int32)
        for i, row in enumerate(seqs):
            for j, seq in enumerate(row):
                ids[i, j, :len(seq)] = seq
        x = ids[:, 0] if n == 1 else ids
        return self.model(mindspore.Tensor(x))[0].asnumpy().astype(np.float64)


class Classifier(_Head):
    """``ms-gpt finetune``'s kept model (its ``best/``): the task head on the GPT trunk."""

    def __repr__(self):
        return f"<Classifier {self.folder}: {self.meta['task']}, classes {self.classes}, pool {self.model.pool}>"

    @property
    def classes(self) -> list:
        """The labels, in the head's order (multiple choice: the choices' indices)."""
        return list(self.meta.get("classes") or range(self.meta["num_labels"]))

    def classify(self, rows: list) -> list[dict]:
        """``{"label", "probabilities"}`` per row: a text (classification) or a dict of the task's fields
        (``premise``/``hypothesis``, ``text_a``/``text_b``, ``context``/``choices``), as in the training data."""
        import numpy as np

        from ms_gpt.data import tasks

        task = self.meta["task"]
        if isinstance(rows, (str, dict)):
            raise TypeError(f"rows must be a list of rows, got one {type(rows).__name__}; wrap it in a list")
        as_rows = [{"text": r} if isinstance(r, str) and task == "classification" else r for r in rows]
        for i, r in enumerate(as_rows):
            missing = [f for f in tasks.FIELDS[task] if not isinstance(r, dict) or f not in r]
            if missing:
                raise ValueError(f"row {i} ({r!r}) lacks {', '.join(missing)}: a {task} row has "
                                 f"{', '.join(tasks.FIELDS[task])}")
        if not as_rows:
            return []
        logits = self._logits([tasks.transform(self.tokenizer, task, r, self.max_len) for r in as_rows])
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        classes = self.classes
        return [{"label": classes[int(p.argmax())], "probabilities": {str(c): round(float(q), 6)
                                                                     for c, q in zip(classes, p)}} for p in probs]


class RewardModel(_Head):
    """``ms-gpt reward``'s kept model: a scalar score of a response to a prompt, in the form it was trained on
    (the scorer ``ms-gpt ppo`` uses)."""

    def __init__(self, folder: Path):
        super().__init__(folder)
        from ms_gpt.prompting import score_input
        from ms_gpt.rl.reward import RewardScorer

        self.scorer = RewardScorer(self.model, self.tokenizer, self.meta, score_input("auto", self.meta), jit=False)

    def __repr__(self):
        return f"<RewardModel {self.folder}: {self.scorer.score_input} input, pool {self.model.pool}>"

    def score(self, prompts: list, responses: list) -> list[float]:
        """The reward of each ``responses[i]`` to ``prompts[i]`` (higher: preferred)."""
        if isinstance(prompts, str) or isinstance(responses, str):
            raise TypeError("prompts and responses must be lists of strings; wrap a single one in a list")
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses: give one response per prompt")
        return [float(s) for s in self.scorer(list(prompts), list(responses))] if prompts else []
