"""``ms-gpt chat``: talk to a checkpoint, the tutorial's last step ("how are you ?" answered). The tutorial
decodes by beam search with a repetition penalty; that looped on the small chat models, so the default is
sampling that does not (:data:`ms_gpt.recipes.CHAT_DECODING`, with the measurement); ``--strategy beam`` works.

The conversation so far is the model's input, in the form the checkpoint was trained on:

- a dialogue checkpoint (``ms-gpt sft``): ``<bos> turn1 <sep> turn2 <sep> ... <sep>``, answered up to ``<eos>``;
- a language model pretrained on the text itself (``--boundaries newline``): one turn a line, answered
  with the next line;
- a language model pretrained on ``<bos> line <eos>``: ``<bos> turn <eos>`` per turn, then ``<bos>``.

Turns that do not fit (the answer keeps room for ``max_new_tokens``, and never less than half the
position table) are dropped oldest first. A reply ends at ``<eos>``; one that reaches ``max_new_tokens`` first
is cut after its last full sentence or word and ends with " …". Interactive: ``/reset`` forgets the
conversation, ``/quit`` (or end of input) ends it.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from ms_gpt.config import GenerationConfig
from ms_gpt.flows import common
from ms_gpt.flows.configs import ChatConfig
from ms_gpt.prompting import CUT_MARK, open_checkpoint, respond

COMMANDS = {"/reset": "forget the conversation", "/quit": "end the chat"}


class Chat:
    """A checkpoint and the conversation held with it (user and model turns, oldest first)."""

    def __init__(self, ckpt: str | Path, gen: GenerationConfig):
        self.ckpt = Path(ckpt)
        self.model, self.prompter = open_checkpoint(self.ckpt)
        self.tok, self.form = self.prompter.tok, self.prompter.form
        self.gen = self.prompter.generation(gen)
        self.history: list[str] = []
        self.ended = True  # whether the last reply ended with <eos> (not at max_new_tokens)

    def reset(self) -> None:
        self.history.clear()

    def reply(self, text: str) -> str:
        """The model's answer to ``text`` (both then join the conversation)."""
        if not text.strip():
            raise ValueError("empty message: type something to say (or /quit)")
        self.history.append(text.strip())
        reply = respond(self.model, self.prompter, self.history, self.gen)
        self.ended = reply.ended
        self.history.append(reply.text.removesuffix(CUT_MARK.strip()).rstrip())  # the model said no " …"
        return reply.text


def chat(cfg: ChatConfig, stdin=None, stdout=None) -> str | None:
    """One answer to ``cfg.prompt``, or (no prompt) a conversation over ``stdin`` until ``/quit`` or its end."""
    cfg.generation.validate()  # before any loading: a bad setting is refused at once
    common.setup(cfg)
    session = Chat(cfg.ckpt, dataclasses.replace(cfg.generation, seed=cfg.seed))
    if cfg.prompt is not None:
        return session.reply(cfg.prompt)
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    interactive = stdin.isatty()
    if interactive:
        print(f"ms-gpt chat with {cfg.ckpt} ({session.form} form, {cfg.generation.strategy}); "
              + ", ".join(f"{c}: {h}" for c, h in COMMANDS.items()), file=stdout, flush=True)
    while True:
        if interactive:
            print("you> ", end="", file=stdout, flush=True)
        line = stdin.readline()
        if not line or line.strip() == "/quit":
            return None
        line = line.strip()
        if line == "/reset":
            session.reset()
            print("(conversation reset)", file=stdout, flush=True)
            continue
        if not line:
            continue
        print(f"bot> {session.reply(line)}", file=stdout, flush=True)
