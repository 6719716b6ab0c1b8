"""The run folder and its one owner: every file ms_gpt writes into or reads from a checkpoint folder.

A run folder (``ms-gpt pretrain --out DIR``, ``sft``, a fine-tune's ``best/``) holds:

    format.json        {"format_version": 1, "kind": "lm" | "classifier"}
    gpt_config.json    the GPTConfig (the only file that serialises it)
    model.ckpt         the weights (mindspore.save_checkpoint), dropout state included
    tokenizer/         the tokenizer the model was trained with
    run_config.json    the fully resolved run configuration (what --resume checks against)
    optimizer.ckpt     optimizer moments + global step        } while training, for --resume
    train_state.json   step, history, loss scale               }
    metrics.json       the job's results; loss.png its curve
    classifier.json    a fine-tuned classifier's head: task, labels, pooling
    sft.json           a dialogue/instruction-tuned model's prompt template
    value_head.ckpt    ms-gpt ppo: the value head beside the policy (part of the training state)
    ppo.json, ppo.png  ms-gpt ppo: where the policy came from, how it was prompted; the per-step curves

Every file is written atomically (a crash leaves the previous good file). ``convert.py`` maps Hugging
Face openai-gpt folders; this module reads both kinds when a model is loaded to be tuned.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import mindspore
import numpy as np

from ms_gpt import convert, text
from ms_gpt.config import GPTConfig, config_diff
from ms_gpt.errors import MsGptError
from ms_gpt.model import GPT, GPTForSequenceClassification
from ms_gpt.model.params import check_shapes, load_params, model_params
from ms_gpt.run_folder import atomic, ownership
from ms_gpt.run_folder.names import (BEST, CLASSIFIER, FORMAT, GPT_CONFIG, METRICS, MODEL, OPTIMIZER, PPO, PROMPTING,
                                     RUN_CONFIG, RUN_ENTRIES, SFT, TOKENIZER, TRAIN_STATE, VALUE_HEAD)
from ms_gpt.run_folder.names import LOSS_PLOT, PPO_PLOT  # noqa: F401 (the flows write them as checkpoint.LOSS_PLOT)

FORMAT_VERSION = 1
PROMPT_FORMS = ("documents", "lines", "dialogue")


class CheckpointError(MsGptError, ValueError):
    """A folder that is not the checkpoint it should be (missing files, mismatched shapes or tokenizer)."""


class NonFiniteWeights(CheckpointError):
    """Weights with NaN or inf values: never saved as a checkpoint (the folder keeps its last finite one)."""


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def load_weights(path: Path) -> dict:
    """``mindspore.load_checkpoint`` of ``path``, with an error that names the file when it is missing,
    empty or not a whole checkpoint (MindSpore's own says to check filter_prefix)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    size = path.stat().st_size
    try:
        params = mindspore.load_checkpoint(str(path))
    except (ValueError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"{path} ({size} bytes) is not a readable MindSpore checkpoint (truncated or another "
                              f"format?): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not params:
        raise CheckpointError(f"{path} ({size} bytes) holds no parameters (an empty or truncated checkpoint)")
    return params


def read_weights(path: Path) -> dict:
    return {k: v.asnumpy() for k, v in load_weights(path).items()}


def write_weights(cell, path: Path) -> Path:
    with atomic.atomic_path(path, suffix=".ckpt") as tmp:
        try:
            mindspore.save_checkpoint(cell, tmp)
        except OSError as exc:  # MindSpore's own error does not name the file
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    return Path(path)


# ---------------------------------------------------------------------------------------- the folder
def tokenizer_digest(folder: Path, rows: int) -> str | None:
    """The content digest of the first ``rows`` ids (:meth:`ms_gpt.text.Tokenizer.digest`) of ``folder``'s
    ``tokenizer/``, or None when it has none; remembered while the tokenizer's files are unchanged (every
    checkpoint save reads it)."""
    meta = Path(folder) / TOKENIZER / text.META_FILE
    if not meta.is_file():
        return None
    files = sorted(p for p in meta.parent.iterdir() if p.is_file())
    return _digest_of(str(meta.parent), rows, tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files))


@lru_cache(maxsize=8)
def _digest_of(path: str, rows: int, _stamp: tuple) -> str:
    return text.load(path).digest(rows)


def write_format(directory: Path, kind: str = "lm", rows: int | None = None, tokenizer_from: Path | None = None) -> None:
    """format.json: the format version, what the folder holds, and (``rows``: the model's token rows) the digest
    of those ids of the tokenizer the weights were saved with (``tokenizer_from``'s ``tokenizer/``, default
    ``directory``'s), so a loader can tell a foreign tokenizer of the same size."""
    record = {"format_version": FORMAT_VERSION, "kind": kind}
    digest = tokenizer_digest(directory if tokenizer_from is None else tokenizer_from, rows) if rows else None
    if digest is not None:
        record["tokenizer"] = digest
    atomic.write_json(Path(directory) / FORMAT, record)


def check_tokenizer(directory: Path, tok, rows: int) -> None:
    """``tok``'s first ``rows`` ids (the model's token rows) are those of the tokenizer ``directory``'s weights
    were saved with, by content (folders saved before the digest existed are checked by size only, by the
    callers; specials appended after the rows are the callers' to judge)."""
    recorded = read_format(directory).get("tokenizer")
    if recorded is not None and tok.vocab_size >= rows and recorded != tok.digest(rows):
        raise CheckpointError(f"{Path(directory) / TOKENIZER} is not the tokenizer the weights in {directory} were saved "
                              f"with (its content differs from the digest in {FORMAT}, even if the size matches): this "
                              "is not the tokenizer the model was trained with (use the tokenizer/ folder saved with "
                              "the checkpoint)")


def read_format(directory: Path) -> dict:
    """The folder's format record; folders from before it existed count as version 1 language models."""
    path = Path(directory) / FORMAT
    record = read_json(path) if path.is_file() else {"format_version": 1, "kind": "lm"}
    if record.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {record['format_version']} is newer than this ms_gpt reads "
                              f"({FORMAT_VERSION}); upgrade ms_gpt")
    return record


def write_gpt_config(directory: Path, config: GPTConfig) -> None:
    atomic.write_json(Path(directory) / GPT_CONFIG, config.to_dict())


def read_gpt_config(directory: Path) -> GPTConfig:
    path = Path(directory) / GPT_CONFIG
    if not path.is_file():
        raise CheckpointError(f"{directory}: {GPT_CONFIG} not found (expected a folder written by ms_gpt)")
    try:
        return GPTConfig.from_dict(read_json(path))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def is_checkpoint(directory: Path) -> bool:
    return (Path(directory) / GPT_CONFIG).is_file() and (Path(directory) / MODEL).is_file()


def save_model(model, directory: str | Path, tokenizer=None, kind: str = "lm") -> Path:
    """Weights, GPTConfig, format record (and the tokenizer when given) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_weights(model, directory / MODEL)
    write_gpt_config(directory, model.config)
    if tokenizer is not None:
        save_tokenizer(tokenizer, directory)
    write_format(directory, kind, model.config.vocab_size)  # last: it records the tokenizer/'s digest
    return directory


def load_model(directory: str | Path):
    """The GPT saved by :func:`save_model`, in eval mode."""
    directory = Path(directory)
    try:
        recover(directory)  # a training checkpoint killed mid-save: finish it (not possible read-only)
    except OSError:
        pass
    kind = read_format(directory).get("kind", "lm")
    if kind != "lm":
        what = {"classifier": "a fine-tuned classifier (load it with checkpoint.load_classifier)",
                "training": "the training state of a fine-tuning run (its best/ folder has the result)"}
        raise CheckpointError(f"{directory} holds {what.get(kind, repr(kind))} (format.json), not a language model")
    config = read_gpt_config(directory)
    if not (directory / MODEL).is_file():
        raise CheckpointError(f"{directory}: {MODEL} not found (expected a folder written by ms_gpt)")
    params = read_weights(directory / MODEL)
    check_shapes(config, params, str(directory / GPT_CONFIG))  # before GPT(config) allocates what it says
    model = GPT(config)
    load_params(model, params)
    model.set_train(False)
    return model


def save_tokenizer(tokenizer, directory: Path) -> Path:
    return tokenizer.save(Path(directory) / TOKENIZER)


def save_prompt_form(directory: Path, form: str) -> None:
    """Record how the model saved in ``directory`` is prompted (:data:`PROMPT_FORMS`; see
    :mod:`ms_gpt.prompting`): written with the model's tokenizer by every job that trains a language model."""
    if form not in PROMPT_FORMS:
        raise ValueError(f"prompt form {form!r} is not one of {', '.join(PROMPT_FORMS)}")
    atomic.write_json(Path(directory) / PROMPTING, {"form": form})


def prompt_form(directory: str | Path) -> str:
    """How the model in ``directory`` is prompted: its recorded :data:`PROMPTING`, else, for a folder written
    before ms_gpt recorded it, what its files say: ``dialogue`` with an ``sft.json``, ``lines`` when it was
    pretrained on the plain text (``boundaries: newline`` in its ``run_config.json``, or for a PPO-tuned model
    in its ``ppo.json``), else ``documents`` (``<bos> text <eos>``; a Hugging Face folder too)."""
    directory = Path(directory)
    if (directory / PROMPTING).is_file():
        record = read_json(directory / PROMPTING)
        form = record.get("form") if isinstance(record, dict) else None
        if form not in PROMPT_FORMS:
            raise CheckpointError(f"{directory / PROMPTING}: form {form!r} is not one of {', '.join(PROMPT_FORMS)}")
        return form
    if (directory / SFT).is_file():
        return "dialogue"
    record = read_json(directory / PPO) if (directory / PPO).is_file() else read_run_config(directory) or {}
    return "lines" if record.get("boundaries") == "newline" else "documents"


def load_tokenizer(directory: str | Path):
    path = Path(directory) / TOKENIZER
    if not path.is_dir():
        raise CheckpointError(f"{path} not found: a checkpoint folder needs the tokenizer it was trained with "
                              "(ms-gpt pretrain writes it)")
    return text.load(path)


def write_metrics(directory: Path, metrics: dict) -> Path:
    return atomic.write_json(Path(directory) / METRICS, metrics)


def write_run_config(directory: Path, resolved: dict) -> Path:
    return atomic.write_json(Path(directory) / RUN_CONFIG, resolved)


def read_run_config(directory: Path) -> dict | None:
    path = Path(directory) / RUN_CONFIG
    return read_json(path) if path.is_file() else None


def describe_run(directory: str | Path) -> tuple[str, bool] | None:
    """What an earlier job left in ``directory``, and whether it stopped before its last step (``("an
    unfinished run (stopped at step 10 of 40)", True)``), or None when it holds no run."""
    directory = Path(directory)
    state_file = directory / TRAIN_STATE
    if state_file.is_file():
        try:
            state = read_json(state_file)
            step, steps = state.get("step"), state.get("train_config", {}).get("steps")
        except CheckpointError:
            return f"a run with an unreadable {TRAIN_STATE}", False
        if steps and step is not None and step < steps:
            return f"an unfinished run (stopped at step {step} of {steps})", True
        return f"a finished run ({step} steps)", False
    held = [name for name in RUN_ENTRIES if (directory / name).exists()]
    return (f"an earlier run's {', '.join(held)}", False) if held else None


def clear_run(directory: str | Path) -> None:
    """Remove what an earlier job wrote into ``directory`` (:data:`RUN_ENTRIES`; the state file first, so
    that an interrupted clear never looks resumable). Other files are left alone; the leftovers of
    interrupted writes are :func:`remove_leftovers`' to delete."""
    directory = Path(directory)
    for name in RUN_ENTRIES:
        path = directory / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


# ------------------------------------------------------------------------------------- tuning inputs
def grow_vocab(model, vocab_size: int, seed: int = 0, **config_changes):
    """A GPT like ``model`` with ``vocab_size`` token rows: the existing rows copied, the new ones (tokens
    appended to the vocabulary, e.g. fine-tuning's ``<sep>``) drawn from N(0, initializer_range).
    ``config_changes`` that leave the weights' shapes alone (e.g. ``pad_token_id``) go into the same copy;
    ``model`` itself comes back when nothing changes."""
    old = model.config.vocab_size
    if vocab_size < old:
        raise ValueError(f"cannot shrink the vocabulary from {old} to {vocab_size} rows")
    config = model.config.replace(vocab_size=vocab_size, **config_changes)
    if config == model.config:
        return model
    rng = np.random.default_rng(seed)
    params = model_params(model)
    for name in ("decoder.tok_emb", "projection.weight"):
        if name in params:
            extra = rng.normal(0.0, model.config.initializer_range, (vocab_size - old, params[name].shape[1]))
            params[name] = np.concatenate([params[name], extra.astype(np.float32)])
    bigger = GPT(config)
    load_params(bigger, params)
    return bigger


def load_init(init: str | Path):
    """``(GPT, tokenizer)`` from an ms_gpt folder (model.ckpt + gpt_config.json + tokenizer/) or a
    Hugging Face openai-gpt folder (config.json + weights + vocab.json/merges.txt).

    Tokens the tokenizer has beyond the model's rows must be specials it appended (as the BPE
    tokenizer does to openai-gpt's 40478); the model's embedding grows for them. Any other mismatch
    means the tokenizer is not the one the checkpoint was trained with: an error."""
    init = Path(init)
    try:
        recover(init)  # a first checkpoint a kill left committed but not yet moved into place
    except OSError:
        pass  # read-only: the folder is read as it is
    if (init / GPT_CONFIG).is_file():
        tok = load_tokenizer(init)
        check_tokenizer(init, tok, read_gpt_config(init).vocab_size)
        model = load_model(init)
    elif (init / "config.json").is_file():
        files = [init / "vocab.json", init / "merges.txt"]
        if not all(f.is_file() for f in files):
            raise CheckpointError(f"{init}: a Hugging Face openai-gpt folder needs vocab.json and merges.txt "
                                  "beside config.json for its tokenizer")
        model, tok = convert.load_hf_openai_gpt(init), text.BPETokenizer.from_files(*files)
    elif ownership.read_marker(init) or (init / RUN_CONFIG).is_file():
        raise CheckpointError(f"{init} holds an ms_gpt run that has saved no model yet (no {GPT_CONFIG} and {MODEL}): "
                              "wait for its first checkpoint (or let it finish), then use it")
    else:
        raise CheckpointError(f"{init}: neither an ms_gpt checkpoint folder ({GPT_CONFIG} + {MODEL} + {TOKENIZER}/) "
                              "nor a Hugging Face openai-gpt folder (config.json + weights + vocab.json/merges.txt)")
    rows, size = model.config.vocab_size, tok.vocab_size
    appended = [tok.token_id(t) for t in text.SPECIALS + (text.SEP,) if tok.token_id(t) is not None]
    if size < rows or set(range(rows, size)) - set(appended):
        raise CheckpointError(
            f"{init}: the checkpoint has {rows} token rows but its tokenizer has {size} tokens; this is not the "
            "tokenizer the model was trained with (use the tokenizer/ folder saved with the checkpoint)")
    pad = model.config.pad_token_id
    if pad is not None and pad != tok.pad_id:
        raise CheckpointError(f"{init}: the model was trained with <pad> = {pad} but its tokenizer's <pad> is "
                              f"{tok.pad_id}; this is not the tokenizer the model was trained with (use the "
                              "tokenizer/ folder saved with the checkpoint)")
    if size > rows:
        model = grow_vocab(model, size)
    return model, tok


def load_for_tuning(init: str | Path, need_sep: bool, seed: int = 0):
    """``(GPT, tokenizer)`` from ``init`` made ready to tune: ``<sep>`` appended (and one embedding row
    grown) when ``need_sep``, and the model's pad_token_id set to the tokenizer's (openai-gpt has none)."""
    gpt, tok = load_init(init)
    if need_sep:
        tok.add_special(text.SEP)  # no-op when present
    return grow_vocab(gpt, tok.vocab_size, seed=seed, pad_token_id=tok.pad_id), tok


# ------------------------------------------------------------------------------------- training state
# A training checkpoint is several files (weights, optimizer moments, the state file) that must all come from
# one step. They are written into a fresh ``.pending-*`` folder, which is renamed to ``.commit`` once complete:
# that rename is the one commit point. The files are then moved into the run folder one by one and ``.commit``
# removed. A kill before the rename leaves the previous step untouched (the pending folder is garbage); a kill
# after it leaves ``.commit``, which :func:`recover` finishes moving. ``train_state.json`` also records a
# SHA-256 of each weight file, so a folder mixed by hand or by an older ms_gpt is named, not resumed.
COMMIT, PENDING, COMMIT_ORDER = ".commit", ".pending-", (MODEL, OPTIMIZER, VALUE_HEAD, GPT_CONFIG, FORMAT, TRAIN_STATE)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _publish(directory: Path) -> None:
    """Move a committed step's files from ``.commit`` into ``directory`` (idempotent: a second caller, or
    one after a kill, moves what is left)."""
    commit = directory / COMMIT
    for name in COMMIT_ORDER:
        if not (commit / name).exists():
            continue  # already moved, or not part of this checkpoint (value_head.ckpt is PPO's only)
        atomic.fault_point(f"publish {name}")
        try:
            os.replace(commit / name, directory / name)
        except FileNotFoundError:
            pass  # moved meanwhile by another caller
    atomic.fsync_dir(directory)
    atomic.fault_point("remove .commit")
    shutil.rmtree(commit, ignore_errors=True)


def recover(directory: str | Path) -> bool:
    """Finish a training checkpoint that was committed but not fully moved into place (a kill mid-save), and
    an ``atomic_dir`` swap of the tokenizer or best/ folder. True when a checkpoint was rolled forward."""
    directory = Path(directory)
    rolled = (directory / COMMIT).is_dir()
    if rolled:
        _publish(directory)
    for name in (TOKENIZER, BEST):
        atomic.recover_dir(directory / name)
    return rolled


def remove_leftovers(directory: str | Path) -> None:
    """Delete the leftovers of interrupted ms_gpt writes in ``directory``: uncommitted ``.pending-XXXXXXXX``
    folders, ``.NAME.XXXXXXXX.tmp`` files of ms_gpt's own files (:func:`ms_gpt.run_folder.ownership.is_leftover`);
    never a user's file. Only for a writer holding the folder's lock, once the folder is accepted as its own
    and :func:`recover` has rolled a committed save forward."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for leftover in directory.iterdir():
        if not ownership.is_leftover(leftover.name) or leftover.name == COMMIT:
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def kept_checkpoint(directory: Path, resumable: bool = True) -> str:
    """What ``directory`` still holds after a run stopped without saving, for the message that says so
    (``resumable``: the job has --resume)."""
    directory = Path(directory)
    try:
        step = read_json(directory / TRAIN_STATE).get("step") if (directory / TRAIN_STATE).is_file() else None
    except CheckpointError:
        step = None
    if step is None:
        return f"{directory} has no checkpoint of this run (none was due yet); start again with a lower --learning-rate"
    then = ("continue from it with --resume and a lower --learning-rate, or start again with --overwrite" if resumable
            else "start again with --overwrite and a lower --learning-rate")
    return f"{directory} keeps the checkpoint of step {step} (its weights are finite); {then}"


def require_finite(cells, step) -> None:
    """:class:`NonFiniteWeights` naming the parameters of ``cells`` that hold NaN or inf (at ``step``), if any."""
    bad = [p.name for cell in cells for p in cell.get_parameters() if not np.isfinite(p.asnumpy()).all()]
    if bad:
        raise NonFiniteWeights(f"the weights of step {step} are not finite ({len(bad)} tensors hold NaN or inf, e.g. "
                               f"{bad[0]}); nothing was saved")


def save_train_state(directory: Path, model, optimizer, state: dict, kind: str = "lm", extra: dict | None = None) -> None:
    """model.ckpt, optimizer.ckpt (moments + global step), gpt_config.json, format.json and
    train_state.json of one step, committed together (see the note above): after a crash the folder
    holds either the previous step's files or this step's, never a mix. ``extra``: more cells to commit
    with them, by file name (one of :data:`COMMIT_ORDER`, e.g. PPO's ``value_head.ckpt``)."""
    extra = extra or {}
    unknown = sorted(set(extra) - set(COMMIT_ORDER))
    if unknown:
        raise ValueError(f"extra training-state files must be among {COMMIT_ORDER}, got {unknown}")
    directory = Path(directory)
    require_finite([model, *extra.values()], state.get("step"))  # a checkpoint is only ever finite: the kept one stays
    directory.mkdir(parents=True, exist_ok=True)
    recover(directory)
    stage = Path(tempfile.mkdtemp(prefix=PENDING, dir=directory))
    try:
        write_weights(model, stage / MODEL)
        write_weights(optimizer, stage / OPTIMIZER)
        for name, cell in extra.items():
            write_weights(cell, stage / name)
        write_gpt_config(stage, model.config)
        write_format(stage, kind, model.config.vocab_size, tokenizer_from=directory)
        files = {name: file_digest(stage / name) for name in (MODEL, OPTIMIZER, *extra)}
        atomic.write_json(stage / TRAIN_STATE, {**state, "files": files})
        atomic.fsync_dir(stage)
        atomic.fault_point("commit")
        os.rename(stage, directory / COMMIT)  # the commit point
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    atomic.fsync_dir(directory)
    _publish(directory)


def check_train_state(directory: Path, state: dict) -> None:
    """The weight files are the ones ``train_state.json`` was saved with (checkpoints written before the
    digests existed are taken as they are)."""
    for name, digest in state.get("files", {}).items():
        path = Path(directory) / name
        if not path.is_file():
            raise CheckpointError(f"{path} not found, but {TRAIN_STATE} (step {state.get('step')}) needs it")
        if file_digest(path) != digest:
            raise CheckpointError(
                f"{path} is not the file {TRAIN_STATE} (step {state.get('step')}) was saved with: the folder was "
                "changed after that checkpoint (copied over, or interrupted while an older ms_gpt wrote it); "
                "resume from an intact run folder, or start again with --overwrite")


def load_train_state(directory: Path, model, optimizer, extra: dict | None = None) -> dict:
    """The state :func:`save_train_state` wrote, with the weights and optimizer moments (and the ``extra``
    cells, by file name) put back."""
    directory = Path(directory)
    recover(directory)
    state_file = directory / TRAIN_STATE
    if not state_file.is_file():
        raise FileNotFoundError(f"nothing to resume in {directory}: {TRAIN_STATE} not found")
    if (directory / GPT_CONFIG).is_file():
        diff = config_diff(read_gpt_config(directory).to_dict(), model.config.to_dict())
        if diff:
            raise ValueError(f"{directory}: the checkpoint's model config differs from this model's (saved, now): "
                             f"{diff}")
    state = read_json(state_file)
    check_train_state(directory, state)
    mindspore.load_param_into_net(model, load_weights(directory / MODEL), strict_load=True)
    mindspore.load_param_into_net(optimizer, load_weights(directory / OPTIMIZER))
    for name, cell in (extra or {}).items():
        mindspore.load_param_into_net(cell, load_weights(directory / name), strict_load=True)
    return state


# ------------------------------------------------------------------------------------------ classifiers
def save_classifier(clf, tokenizer, meta: dict, directory: Path) -> Path:
    """A fine-tuned classifier (trunk + head) as a whole folder, replaced atomically."""
    with atomic.atomic_dir(directory) as tmp:
        write_weights(clf, tmp / MODEL)
        write_gpt_config(tmp, clf.config)
        atomic.write_json(tmp / CLASSIFIER, {"task": clf.task, "pool": clf.pool, "num_labels": clf.num_labels,
                                             **meta})
        save_tokenizer(tokenizer, tmp)
        write_format(tmp, "classifier", clf.config.vocab_size)  # after the tokenizer: its digest goes beside
    return Path(directory)


def load_classifier(directory: str | Path):
    """``(classifier, tokenizer, meta)`` saved by :func:`save_classifier`."""
    directory = Path(directory)
    if not (directory / CLASSIFIER).is_file():
        raise FileNotFoundError(f"{directory}/{CLASSIFIER} not found: not a folder written by ms-gpt finetune")
    meta = read_json(directory / CLASSIFIER)
    config, params = read_gpt_config(directory), read_weights(directory / MODEL)
    check_shapes(config, params, str(directory / GPT_CONFIG), prefix="gpt.")
    clf = GPTForSequenceClassification(config, meta["num_labels"], task=meta["task"],
                                       with_lm=False, pool=meta.get("pool", "last"))
    load_params(clf, params)
    clf.set_train(False)
    tok = load_tokenizer(directory)
    check_tokenizer(directory, tok, config.vocab_size)
    return clf, tok, meta


def trained_max_len(meta: dict, n_positions: int) -> int:
    """The sequence length a fine-tuned head (its classifier.json ``meta``) was trained at, within the position
    table: what its inputs are padded to, so one compiled graph serves every batch."""
    trained = (meta.get("run_config") or {}).get("batching", {}).get("max_len")
    return min(trained or n_positions, n_positions)


REWARD_ROLE = "reward-model"


def load_reward(directory: str | Path):
    """``(model, tokenizer, meta)`` of a reward model written by ``ms-gpt reward`` (its output folder or the
    ``best/`` folder in it). The model's output for ``<bos> prompt <sep> response <eos>`` rows ([b, l]) is
    ``(scores [b, 1], None)``."""
    directory = Path(directory)
    if not (directory / CLASSIFIER).is_file() and (directory / BEST / CLASSIFIER).is_file():
        directory = directory / BEST
    if not (directory / CLASSIFIER).is_file():
        raise CheckpointError(f"{directory} is not a reward model: no {CLASSIFIER} (ms-gpt reward writes one, in "
                              f"its --out folder's {BEST}/)")
    meta = read_json(directory / CLASSIFIER)
    if meta.get("role") != REWARD_ROLE:
        raise CheckpointError(f"{directory} holds a {meta.get('task', '?')} classifier, not a reward model "
                              "(ms-gpt reward writes one)")
    return load_classifier(directory)
