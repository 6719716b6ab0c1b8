"""IMDb movie reviews (label 1 = positive, 0 = negative) from the Hugging Face hub or from local files.

Local layouts accepted by :func:`load_local` (``DIR`` is what ``--data-dir`` names):

- an ``aclImdb`` tree, as Stanford distributes it: ``DIR/{train,test}/{pos,neg}/*.txt`` (``DIR`` may
  also be the folder that holds ``aclImdb/``);
- a ``datasets`` ``save_to_disk`` folder (``dataset_dict.json`` with ``train`` and ``test`` splits);
- parquet or CSV files with ``text`` and ``label`` columns: ``DIR/train.parquet`` + ``DIR/test.parquet``
  (or ``.csv``), or the hub's own ``plain_text/train-*.parquet`` + ``test-*.parquet``.

Every split comes back as a list of ``(text, label)`` with labels checked to be 0 or 1. The course's
subset and validation split are :func:`subset` and :func:`train_val_split`: seeded, so a run repeats.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from pathlib import Path

import numpy as np

from ms_gpt.errors import DataError  # noqa: F401  (re-exported)

SPLITS = ("train", "test")
LABELS = {"neg": 0, "pos": 1}
DEFAULT_ENDPOINT = "https://huggingface.co"
LAYOUT_HELP = (
    "expected one of:\n"
    "  DIR/aclImdb/{train,test}/{pos,neg}/*.txt   (or DIR/{train,test}/{pos,neg}/*.txt): the Stanford aclImdb tree\n"
    "  DIR/dataset_dict.json + DIR/{train,test}/  : a datasets.DatasetDict.save_to_disk() folder\n"
    "  DIR/train.parquet + DIR/test.parquet       : (or .csv, or the hub's plain_text/{train,test}-*.parquet)\n"
    "                                               with columns text,label (label 0 = negative, 1 = positive)"
)



Rows = list  # list[tuple[str, int]]


def check_rows(rows, where: str) -> Rows:
    """``[(str, 0|1), ...]``; a label outside {0, 1} or a non-text row is an error naming its place."""
    out = []
    for i, (text, label) in enumerate(rows):
        if not isinstance(text, str):
            raise DataError(f"{where}: row {i}: text must be a string, got {type(text).__name__}")
        try:
            value = int(label)
        except (TypeError, ValueError):
            value = None
        if value not in (0, 1) or (isinstance(label, float) and label != value):
            raise DataError(f"{where}: row {i}: label {label!r} is not 0 (negative) or 1 (positive)")
        out.append((text, value))
    if not out:
        raise DataError(f"{where}: no rows")
    return out


# ---------------------------------------------------------------------------------------------- local
def _acl_root(d: Path) -> Path | None:
    for cand in (d, d / "aclImdb"):
        if all((cand / s / lab).is_dir() for s in SPLITS for lab in LABELS):
            return cand
    return None


def _read_acl(root: Path) -> dict:
    splits = {}
    for split in SPLITS:
        rows = []
        for name, label in sorted(LABELS.items()):
            folder = root / split / name
            files = sorted(folder.glob("*.txt"))
            if not files:
                raise DataError(f"{folder} has no .txt reviews")
            rows += [(f.read_text(encoding="utf-8", errors="replace").replace("<br />", " "), label) for f in files]
        splits[split] = check_rows(rows, str(root / split))
    return splits


def _table_files(d: Path, split: str) -> list[Path]:
    for pattern in (f"{split}.parquet", f"{split}.csv", f"{split}-*.parquet", f"plain_text/{split}-*.parquet",
                    f"*/{split}-*.parquet"):
        found = sorted(d.glob(pattern))
        if found:
            return found
    return []


def _read_tables(files: list[Path]) -> Rows:
    import pandas as pd

    rows = []
    for f in files:
        frame = pd.read_csv(f) if f.suffix == ".csv" else pd.read_parquet(f)
        missing = [c for c in ("text", "label") if c not in frame.columns]
        if missing:
            raise DataError(f"{f}: no column(s) {missing}; the columns are {list(frame.columns)} (need text, label)")
        rows += check_rows(list(zip(frame["text"].tolist(), frame["label"].tolist())), str(f))
    return rows


def _read_saved(d: Path) -> dict:
    import datasets

    saved = datasets.load_from_disk(str(d))
    if not isinstance(saved, datasets.DatasetDict) or any(s not in saved for s in SPLITS):
        raise DataError(f"{d}: a save_to_disk dataset with splits {list(getattr(saved, 'keys', lambda: [])())}; "
                        f"need {list(SPLITS)}")
    out = {}
    for s in SPLITS:
        cols = saved[s].column_names
        if "text" not in cols or "label" not in cols:
            raise DataError(f"{d}/{s}: columns {cols}; need text, label")
        out[s] = check_rows(list(zip(saved[s]["text"], saved[s]["label"])), f"{d}/{s}")
    return out


def load_local(data_dir: str | Path) -> dict:
    """``{"train": rows, "test": rows}`` from a local folder (layouts in the module docstring)."""
    d = Path(data_dir)
    if not d.is_dir():
        raise DataError(f"--data-dir {d} is not a folder; {LAYOUT_HELP}")
    root = _acl_root(d)
    if root is not None:
        return _read_acl(root)
    if (d / "dataset_dict.json").is_file():
        return _read_saved(d)
    tables = {s: _table_files(d, s) for s in SPLITS}
    if all(tables.values()):
        return {s: _read_tables(tables[s]) for s in SPLITS}
    found = sorted(str(p.relative_to(d)) for p in list(d.iterdir())[:12])
    raise DataError(f"--data-dir {d} holds no IMDb data it recognises (it has: {', '.join(found) or 'nothing'}); "
                    f"{LAYOUT_HELP}")


# ------------------------------------------------------------------------------------------------ hub
def hub_endpoint(env=None) -> str:
    """The endpoint ``datasets`` will use: ``HF_ENDPOINT`` when set, else huggingface.co."""
    env = os.environ if env is None else env
    return (env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _offline(env) -> str | None:
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if str(env.get(var, "")).strip().lower() in ("1", "true", "yes", "on"):
            return var
    return None


def check_hub(endpoint: str, timeout: float = 5.0, env=None) -> None:
    """Fail fast (one TCP connect, ``timeout`` seconds at most) when the hub cannot be reached."""
    env = os.environ if env is None else env
    hint = "download IMDb elsewhere and pass --data-dir DIR; " + LAYOUT_HELP
    var = _offline(env)
    if var:
        raise DataError(f"{var} is set, so the hub ({endpoint}) is not used; {hint}")
    url = urllib.parse.urlparse(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise DataError(f"HF_ENDPOINT={endpoint!r} is not an http(s) URL; {hint}")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise DataError(f"the Hugging Face hub at {endpoint} cannot be reached ({exc.__class__.__name__}: {exc}); "
                        f"{hint}") from None


def load_hub(name: str = "imdb", endpoint: str | None = None, log=print) -> dict:
    """``load_dataset(name)`` from ``endpoint`` (default: :func:`hub_endpoint`), after :func:`check_hub`."""
    endpoint = endpoint or hub_endpoint()
    log(f"[imdb] loading {name!r} from the hub at {endpoint} (set HF_ENDPOINT to use a mirror)")
    check_hub(endpoint)
    os.environ["HF_ENDPOINT"] = endpoint
    import datasets

    loaded = datasets.load_dataset(name)
    return {s: check_rows(list(zip(loaded[s]["text"], loaded[s]["label"])), f"hub {name}/{s}") for s in SPLITS}


# ----------------------------------------------------------------------------------------- sampling
def _cut_per_label(rows: Rows, fraction: float, rng) -> tuple[list, list]:
    """Row indices split per label: a seeded ``fraction`` of each label (rounded) and the rest."""
    taken, rest = [], []
    for label in (0, 1):
        idx = [i for i, (_, y) in enumerate(rows) if y == label]
        idx = [idx[i] for i in rng.permutation(len(idx))]
        k = int(round(len(idx) * fraction))
        taken += idx[:k]
        rest += idx[k:]
    return taken, rest


def _shuffled(rows: Rows, idx: list, rng) -> Rows:
    return [rows[idx[i]] for i in rng.permutation(len(idx))]


def subset(rows: Rows, fraction: float, seed: int) -> Rows:
    """A seeded, label-stratified ``fraction`` of ``rows`` (1.0 = all, in a seeded order)."""
    if not 0 < fraction <= 1:
        raise DataError(f"subset fraction must be in (0, 1], got {fraction!r}")
    rng = np.random.default_rng(seed)
    out = _shuffled(rows, _cut_per_label(rows, fraction, rng)[0], rng)
    if not out:
        raise DataError(f"a {fraction} subset of {len(rows)} rows is empty; use a larger --subset")
    return out


def train_val_split(rows: Rows, val_fraction: float, seed: int) -> tuple[Rows, Rows]:
    """Seeded, label-stratified (1 - val_fraction) / val_fraction split (the course: 0.7 / 0.3)."""
    if not 0 < val_fraction < 1:
        raise DataError(f"validation fraction must be in (0, 1), got {val_fraction!r}")
    rng = np.random.default_rng(seed + 1)
    val_idx, train_idx = _cut_per_label(rows, val_fraction, rng)
    if not train_idx or not val_idx:
        raise DataError(f"{len(rows)} rows give an empty train or validation split at val_fraction={val_fraction}")
    train = _shuffled(rows, train_idx, rng)
    return train, _shuffled(rows, val_idx, rng)
