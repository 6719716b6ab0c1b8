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
from ms_gpt.prompting import Conversation, open_checkpoint

COMMANDS = {"/reset": "forget the conversation", "/quit": "end the chat"}


def open_chat(ckpt: str | Path, gen: GenerationConfig) -> Conversation:
    """A conversation with the checkpoint folder ``ckpt`` (:class:`ms_gpt.prompting.Conversation`)."""
    return Conversation(*open_checkpoint(Path(ckpt)), gen)


def chat(cfg: ChatConfig, stdin=None, stdout=None) -> str | None:
    """One answer to ``cfg.prompt``, or (no prompt) a conversation over ``stdin`` until ``/quit`` or its end."""
    cfg.generation.validate()  # before any loading: a bad setting is refused at once
    common.setup(cfg)
    session = open_chat(cfg.ckpt, dataclasses.replace(cfg.generation, seed=cfg.seed))
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
