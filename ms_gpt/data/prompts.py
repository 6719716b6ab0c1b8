"""Prompts for PPO (``ms-gpt ppo --prompts SRC``): a text file with one prompt a line, or a built-in set.

Built-ins: ``builtin:reviews-zh-prompts`` (the first :data:`REVIEW_PROMPT_CHARS` characters of each review
in the train split of ``builtin:reviews-zh``, both labels, duplicates removed: the opening of a review the
policy is to finish; no held-out review) and ``builtin:chitchat-prompts`` (every line that was replied to in
``builtin:chitchat``'s valid conversations, :func:`ms_gpt.data.dialogue.chitchat_splits`: dialogue contexts
``ms-gpt sft`` never trained on, and none of the test conversations ``ms-gpt chat-eval`` replies to).
"""

from __future__ import annotations

from pathlib import Path

from ms_gpt.data.tasks import DataError, builtin_name

PROMPT_BUILTINS = ("reviews-zh-prompts", "chitchat-prompts")
REVIEW_PROMPT_CHARS = 4


def review_prompts(seed: int = 0, chars: int = REVIEW_PROMPT_CHARS) -> list[str]:
    from ms_gpt.data.tasks import reviews_zh_splits

    texts = (r["text"].strip() for r in reviews_zh_splits(seed)["train"])
    return list(dict.fromkeys(t[:chars] for t in texts if len(t) > chars))


def chitchat_prompts(seed: int = 0) -> list[str]:
    from ms_gpt.data.dialogue import chitchat_splits

    lines = (turn for turns in chitchat_splits(seed)["valid"] for turn in turns[:-1])
    return list(dict.fromkeys(lines))


def load_prompts(src: str, seed: int = 0) -> list[str]:
    """The prompts of ``src`` (blank lines skipped; at least one prompt, else an error naming the file)."""
    name = builtin_name(src, PROMPT_BUILTINS, "prompt set",
                        ", ".join("builtin:" + b for b in PROMPT_BUILTINS) + ", or a text file (one prompt a line)")
    if name == "reviews-zh-prompts":
        return review_prompts(seed)
    if name == "chitchat-prompts":
        return chitchat_prompts(seed)
    path = Path(src)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {src!r} not found (expected a text file, one prompt a line, or "
                                f"{', '.join('builtin:' + b for b in PROMPT_BUILTINS)})")
    raw = path.read_bytes()
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); save the prompts as UTF-8") from None
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise DataError(f"{path}: no prompts (the file is empty or blank); write one prompt a line")
    return prompts
