"""How a checkpoint is prompted: the one place that turns text into a model's input and its output back
into text.

A language model's folder records its prompt form (``prompting.json``, written with its tokenizer by
``pretrain``, ``sft`` and ``ppo``; read by :func:`ms_gpt.run_folder.checkpoint.prompt_form`, which also recognises
folders from before the record):

- ``documents`` - pretrained on ``<bos> line <eos>``: a prompt is ``<bos> prompt``, the text ends at ``<eos>``;
- ``lines`` - pretrained on the plain text (``--boundaries newline``): a prompt is a line break then the
  prompt, and a line break may end the answer;
- ``dialogue`` - tuned by ``ms-gpt sft``: ``<bos> turn <sep> turn <sep> ... <sep>``, answered up to ``<eos>``.

``generate``, ``chat``, ``ppo`` and the scripts build a :class:`Prompter` and ask it; none reads run
files to guess. What a reward model reads (its ``score_input``) is :func:`score_input`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ms_gpt import recipes
from ms_gpt.config import GenerationConfig
from ms_gpt.generation import generate, warm_up
from ms_gpt.run_folder import checkpoint

FORMS = checkpoint.PROMPT_FORMS
SENTENCE_ENDS = ".!?。！？…"
CUT_MARK = " …"  # ends a text that reached max_new_tokens without a stop token


def cut_at_boundary(text: str) -> str:
    """A text that reached its length limit, cut after its last full sentence when that keeps at least a third
    of it, else before its last word (which may be partial); unchanged when it has neither."""
    text = text.rstrip()
    end = max(text.rfind(c) for c in SENTENCE_ENDS)
    if end >= 0 and end + 1 >= len(text) / 3:
        return text[:end + 1]
    space = text.rfind(" ")
    return text[:space].rstrip() if space > 0 else text


def suppressed_ids(tok) -> tuple:
    """Tokens a text never contains: <pad>, <bos>, <unk>, <sep> (those the tokenizer has)."""
    return tuple(i for i in (tok.pad_id, tok.bos_id, tok.unk_id, tok.sep_id) if i is not None)


def join_text(tok, *parts: str) -> str:
    """Texts decoded apart as one text: with a space between them for a whitespace (word) tokenizer, directly
    otherwise; empty parts left out."""
    return (" " if tok.kind == "whitespace" else "").join(p for p in parts if p)


def score_input(choice: str, meta: dict) -> str:
    """What a reward model reads, ``pair`` (``<bos> prompt <sep> response <eos>``) or ``text`` (``<bos> <sep>
    prompt+response <eos>``): ``choice``, or for ``auto`` what the model was trained on (its classifier.json)."""
    if choice != "auto":
        return choice
    return meta.get("score_input", "pair")


@dataclasses.dataclass
class Prompter:
    """A tokenizer and a prompt form (:data:`FORMS`): encoding prompts and conversations, the tokens that end
    or never appear in an answer, and the answer as text."""

    tok: object
    form: str

    def __post_init__(self):
        if self.form not in FORMS:
            raise ValueError(f"prompt form {self.form!r} is not one of {', '.join(FORMS)}")
        self.newline = self.tok.token_id("\n") if self.form == "lines" else None

    @classmethod
    def of(cls, ckpt: str | Path, tok) -> "Prompter":
        """The prompter of the checkpoint folder ``ckpt`` (its recorded form) with its tokenizer ``tok``."""
        return cls(tok, checkpoint.prompt_form(ckpt))

    @property
    def dialogue(self) -> bool:
        return self.form == "dialogue"

    def stops(self, at_line_end: bool = True) -> tuple:
        """Tokens that end an answer: ``<eos>``, and for the ``lines`` form a line break (``at_line_end``)."""
        return (self.tok.eos_id,) + ((self.newline,) if at_line_end and self.newline is not None else ())

    def generation(self, gen: GenerationConfig, at_line_end: bool = True) -> GenerationConfig:
        """``gen`` with this model's stop and suppressed tokens, and (none given) the default length in this
        tokenizer's units (:func:`ms_gpt.recipes.default_new_tokens`)."""
        length = gen.max_new_tokens or recipes.default_new_tokens(self.tok.kind)
        return dataclasses.replace(gen, eos_id=self.tok.eos_id, stop_ids=self.stops(at_line_end)[1:],
                                   suppress_ids=suppressed_ids(self.tok), max_new_tokens=length)

    def encode(self, prompt: str) -> list:
        """The token ids one prompt is given as: ``<bos> prompt`` (documents), a line break then the prompt
        (lines), ``<bos> prompt <sep>`` (dialogue, whose answer follows)."""
        tok = self.tok
        if self.newline is not None:
            return [self.newline] + tok.encode(prompt)
        ids = tok.encode(prompt, add_bos=True)
        if self.dialogue:
            ids.append(tok.sep_id)
        return ids

    def conversation(self, turns: list, budget: int) -> list:
        """A conversation (turns, oldest first, the user's last) as the model's input in at most ``budget``
        tokens, the oldest turns dropped first (the newest alone too long: its end kept)."""
        tok = self.tok
        if self.dialogue:
            from ms_gpt.data.dialogue import context_ids

            return context_ids(tok, turns, budget)
        lines = self.newline is not None
        ids: list[int] = [] if lines else [tok.bos_id]  # the slot the answer starts in
        for turn in reversed(turns):
            piece = [self.newline] + tok.encode(turn) if lines else [tok.bos_id] + tok.encode(turn) + [tok.eos_id]
            if len(piece) + len(ids) > budget:
                if not ids or ids == [tok.bos_id]:  # even the newest turn alone is too long: keep its end
                    ids = piece[len(piece) + len(ids) - budget:] + ids
                break
            ids = piece + ids
        return ids + [self.newline] if lines else ids

    def ended(self, new: list, at_line_end: bool = True) -> bool:
        """Whether new tokens end with a stop token (:meth:`stops`): the model finished its text."""
        return bool(new) and new[-1] in self.stops(at_line_end)

    def answer(self, new: list, at_line_end: bool = True, limit: int | None = None) -> str:
        """The text of new tokens, a final stop token (:meth:`stops`) left out. With ``limit`` (the
        ``max_new_tokens`` they were drawn with): a text that reached it without a stop token is cut at its
        last sentence or word boundary (:func:`cut_at_boundary`) and marked with :data:`CUT_MARK`."""
        ended = self.ended(new, at_line_end)
        text = self.tok.decode(new[:-1] if ended else new)
        if limit is not None and not ended and len(new) >= limit:
            return cut_at_boundary(text) + CUT_MARK
        return text

    def continuation(self, prompt_ids: list, new: list, at_line_end: bool = True, limit: int | None = None) -> str:
        """What ``generate`` prints: the prompt and its continuation (a dialogue model: the answer only), cut
        and marked as :meth:`answer` does when it reached ``limit``."""
        if self.dialogue:
            return self.answer(new, at_line_end, limit)
        return join_text(self.tok, self.tok.decode(prompt_ids).lstrip("\n"), self.answer(new, at_line_end, limit))


@dataclasses.dataclass(frozen=True)
class Reply:
    """A model's answer in a conversation: its text (cut and marked when it reached the limit, see
    :meth:`Prompter.answer`), whether it ended with a stop token, and the tokens drawn."""

    text: str
    ended: bool
    ids: tuple  # the tokens drawn (a final stop token included)


def context_budget(n_positions: int, max_new_tokens: int) -> int:
    """Tokens of conversation a model reads before it answers: room is kept for ``max_new_tokens``, but never
    less than half the position table is conversation."""
    return max(n_positions // 2, n_positions - max_new_tokens)


def respond(model, prompter: Prompter, turns: list, gen: GenerationConfig) -> Reply:
    """The model's reply to a conversation (``turns``, oldest first, the user's last) decoded with ``gen``
    (already :meth:`Prompter.generation`'s), the conversation kept within :func:`context_budget`."""
    ids = prompter.conversation(turns, context_budget(model.config.n_positions, gen.max_new_tokens))
    new = generate(model, ids, gen)
    return Reply(prompter.answer(new, limit=gen.max_new_tokens).strip(), prompter.ended(new), tuple(new))


def open_checkpoint(ckpt: str | Path):
    """``(model, prompter)`` of a folder written by ms-gpt pretrain, sft or ppo, the tokenizer checked against
    the model (:func:`ms_gpt.run_folder.checkpoint.load_init`)."""
    if not (Path(ckpt) / checkpoint.TOKENIZER).is_dir():
        raise FileNotFoundError(f"{ckpt}/tokenizer not found: --ckpt must be a folder written by ms-gpt pretrain, "
                                "sft or ppo")
    model, tok = checkpoint.load_init(ckpt)
    return model, Prompter.of(ckpt, tok)


class Conversation:
    """A model and the conversation held with it (user and model turns, oldest first): what ``ms-gpt chat``
    and ``ms_gpt.api`` talk through. ``gen`` is decoding as the caller asked; the model's stops, suppressed
    tokens and default length are added here (:meth:`Prompter.generation`)."""

    def __init__(self, model, prompter: Prompter, gen: GenerationConfig):
        self.model, self.prompter = model, prompter
        self.tok, self.form = prompter.tok, prompter.form
        self.gen = prompter.generation(gen)
        self.history: list[str] = []
        self.ended = True  # whether the last reply ended with <eos> (not at max_new_tokens)
        self.warm = False  # whether the decoding graphs are compiled (on the first reply, for all the later ones)

    def reset(self) -> None:
        """Forget the conversation."""
        self.history.clear()

    def reply(self, text: str) -> str:
        """The model's answer to ``text`` (both then join the conversation)."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"empty message {text!r}: say something (a non-empty string)")
        self.history.append(text.strip())
        if not self.warm and self.gen.use_cache:
            warm_up(self.model)  # every prompt length's graph now: later replies never wait for a compile
            if self.gen.strategy == "beam":
                warm_up(self.model, batch=self.gen.num_beams, lengths=(1,))
            self.warm = True
        reply = respond(self.model, self.prompter, self.history, self.gen)
        self.ended = reply.ended
        self.history.append(reply.text.removesuffix(CUT_MARK.strip()).rstrip())  # the model said no " …"
        return reply.text


class Writer:
    """A model continuing prompts the way it was trained (:mod:`ms_gpt.prompting`): a document or a line goes
    on; a dialogue model gives only its answer. :meth:`open` loads a checkpoint folder's."""

    def __init__(self, model, prompter: Prompter):
        self.model, self.prompter = model, prompter

    @classmethod
    def open(cls, ckpt: str | Path) -> "Writer":
        return cls(*open_checkpoint(ckpt))

    def __call__(self, prompt: str, gen: GenerationConfig, stop_at_newline: bool = False) -> str:
        ids = self.prompter.encode(prompt)
        gen = self.prompter.generation(gen, at_line_end=stop_at_newline)
        new = generate(self.model, ids, gen)
        return self.prompter.continuation(ids, new, at_line_end=stop_at_newline, limit=gen.max_new_tokens)
