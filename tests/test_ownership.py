"""No command deletes what it does not own: ``--out`` is a new or empty folder or one of the same
command's own, never ``/``, home, the current folder or an input; the clean-up of interrupted writes
touches only ms_gpt's own leftovers; ``convert`` follows the same rule (Reliability II, item 1)."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from ms_gpt import cli
from ms_gpt.data import demo_en
from ms_gpt.run_folder import ownership
from ms_gpt.testing import write_random_openai_gpt


def ms_gpt(venv_bin, *args):
    return subprocess.run([str(venv_bin / "ms-gpt"), *map(str, args)], capture_output=True, text=True, timeout=600)


def pretrain_args(out, *extra):
    return ("pretrain", "--out", out, "--steps", 2, "--block-size", 16, "--batch-size", 8, "--no-progress", *extra)


@pytest.fixture(scope="module")
def run(tmp_path_factory, venv_bin):
    """A finished tiny pretraining run (2 steps)."""
    out = tmp_path_factory.mktemp("own") / "run"
    proc = ms_gpt(venv_bin, *pretrain_args(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def gpt1(tmp_path_factory):
    """An ms_gpt folder of a GPT-1-shaped model (what --to-hf exports), converted from a random openai-gpt."""
    root = tmp_path_factory.mktemp("gpt1")
    write_random_openai_gpt(root / "hf", demo_en()[:200], vocab_size=120)
    assert cli.main(["convert", "--from-hf", str(root / "hf"), "--out", str(root / "ms")]) == 0
    return root / "ms"


def user_files(folder: Path) -> dict:
    """A user's files, including names that look like leftovers of an interrupted write."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "precious.txt").write_text("mine")
    (folder / ".draft.tmp.txt").write_text("draft")
    (folder / ".pending-photos").mkdir()
    (folder / ".pending-photos" / "a.jpg").write_text("jpg")
    return {Path(n): (folder / n).read_text() for n in ("precious.txt", ".draft.tmp.txt", ".pending-photos/a.jpg")}


def files_of(folder: Path, names) -> dict:
    return {Path(n): (folder / n).read_text() for n in names}


def test_a_users_folder_is_refused_and_its_files_survive(tmp_path, venv_bin):
    out = tmp_path / "f"
    before = user_files(out)
    proc = ms_gpt(venv_bin, *pretrain_args(out))
    assert proc.returncode == 2
    assert proc.stderr == (f"ms-gpt pretrain: --out {out} is not empty and not an ms_gpt run folder (it holds "
                           ".draft.tmp.txt, .pending-photos, precious.txt); ms-gpt pretrain writes only into a new or "
                           "empty folder or one of its own: choose another folder\n")
    assert files_of(out, before) == before and sorted(os.listdir(out)) == [".draft.tmp.txt", ".pending-photos",
                                                                           "precious.txt"]
    # --overwrite does not make a folder ms_gpt's
    assert ms_gpt(venv_bin, *pretrain_args(out, "--overwrite")).returncode == 2
    assert files_of(out, before) == before


def test_overwrite_of_an_own_folder_removes_only_ms_gpts_leftovers(tmp_path, venv_bin):
    out = tmp_path / "run"
    assert ms_gpt(venv_bin, *pretrain_args(out)).returncode == 0
    before = user_files(out)  # the user's files beside the run ...
    (out / ".pending-ab12cd34").mkdir()  # ... and leftovers of a killed save (tempfile's 8-character names)
    (out / ".model.ckpt.x1y2z3w4.tmp.ckpt").write_text("half")
    (out / ".metrics.json.q9r8s7t6.tmp").write_text("half")
    proc = ms_gpt(venv_bin, *pretrain_args(out, "--overwrite"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert files_of(out, before) == before
    for gone in (".pending-ab12cd34", ".model.ckpt.x1y2z3w4.tmp.ckpt", ".metrics.json.q9r8s7t6.tmp"):
        assert not (out / gone).exists(), gone
    assert json.loads((out / ownership.MARKER).read_text()) == {"command": "pretrain"}


def test_leftovers_are_only_names_ms_gpt_creates():
    for name in (".pending-ab12cd34", ".commit", ".model.ckpt.abcdefgh.tmp.ckpt", ".metrics.json.k2j3h4g5.tmp",
                 ".tokenizer.abcd_123.tmp", ".best.old", "..ms_gpt.json.abcdefgh.tmp"):
        assert ownership.is_leftover(name), name
    for name in (".pending-photos", ".draft.tmp.txt", ".notes.txt.abcdefgh.tmp", ".pending-ab12cd345", "model.ckpt",
                 ".model.ckpt.ABCDEFGH.tmp", ".photos.old"):
        assert not ownership.is_leftover(name), name


@pytest.mark.parametrize("where,what", [("/", "the root folder"), ("~", "your home folder"),
                                        (".", "the current folder")])
def test_root_home_and_the_current_folder_are_refused(tmp_path, monkeypatch, capsys, where, what):
    monkeypatch.chdir(tmp_path)
    out = str(Path(where).expanduser()) if where == "~" else where
    assert cli.main([*map(str, pretrain_args(out))]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ms-gpt pretrain: --out {out} is {what}; ") and err.count("\n") == 1
    assert os.listdir(tmp_path) == []


def test_another_commands_folder_is_refused(run, tmp_path, venv_bin):
    (tmp_path / "pairs.jsonl").write_text(json.dumps({"prompt": "the cat", "response": "sat"}) + "\n")
    sft_out = tmp_path / "sft"
    assert ms_gpt(venv_bin, "sft", "--init", run, "--data", tmp_path / "pairs.jsonl", "--out", sft_out, "--epochs", 1,
                  "--no-progress").returncode == 0
    before = (sft_out / "model.ckpt").read_bytes()
    proc = ms_gpt(venv_bin, *pretrain_args(sft_out, "--overwrite"))
    assert proc.returncode == 2
    assert (f"--out {sft_out} holds the output of ms-gpt sft; ms-gpt pretrain writes only into a new folder or one of "
            "its own") in proc.stderr
    assert (sft_out / "model.ckpt").read_bytes() == before


def test_an_out_inside_or_around_an_input_is_refused(tmp_path):
    src = tmp_path / "rw"
    (src / "best").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(src / "best")
    for out, message in ((src / "best", "lies inside --reward"), (src, "is the --reward folder"),
                         (tmp_path, "holds --reward"), (link, "lies inside --reward")):
        with pytest.raises(ownership.NotOwned, match=message):
            ownership.check_inputs(out, {"--policy": tmp_path / "elsewhere", "--reward": src})
    ownership.check_inputs(tmp_path / "other", {"--reward": src})  # a sibling is fine


def test_a_folder_from_before_the_marker_still_resumes_and_overwrites(tmp_path, venv_bin):
    out = tmp_path / "old"
    assert ms_gpt(venv_bin, *pretrain_args(out, "--until", 1)).returncode == 0
    (out / ownership.MARKER).unlink()  # as an ms_gpt from before the marker left it
    proc = ms_gpt(venv_bin, *pretrain_args(out, "--resume"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "train_state.json").read_text())["step"] == 2
    assert json.loads((out / ownership.MARKER).read_text()) == {"command": "pretrain"}


# ---------------------------------------------------------------------------------------------- convert
def test_convert_never_replaces_what_it_does_not_own(run, gpt1, tmp_path, capsys):
    keep = tmp_path / "keep"
    before = user_files(keep)
    assert cli.main(["convert", "--to-hf", str(gpt1), "--out", str(keep)]) == 2
    assert "is not empty and not an ms_gpt run folder" in capsys.readouterr().err
    assert files_of(keep, before) == before

    gpt1_files = {p.name: p.read_bytes() for p in gpt1.iterdir() if p.is_file()}
    assert cli.main(["convert", "--to-hf", str(gpt1), "--out", str(gpt1), "--overwrite"]) == 2  # its own input
    assert capsys.readouterr().err == (f"ms-gpt convert: --out {gpt1} is the --to-hf folder: the run would overwrite "
                                       "what it reads; choose another --out\n")
    assert {p.name: p.read_bytes() for p in gpt1.iterdir() if p.is_file()} == gpt1_files
    run_files = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    hf = tmp_path / "hf"
    assert cli.main(["convert", "--to-hf", str(gpt1), "--out", str(hf)]) == 0
    capsys.readouterr()
    assert cli.main(["convert", "--from-hf", str(hf), "--out", str(run), "--overwrite"]) == 2  # a trained run
    assert "holds the output of ms-gpt pretrain; ms-gpt convert --from-hf writes only" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == run_files

    target = tmp_path / "file.bin"
    target.write_text("data")
    assert cli.main(["convert", "--to-hf", str(gpt1), "--out", str(target)]) == 2
    assert capsys.readouterr().err == (f"ms-gpt convert: {target} is a file; --out must be a folder (or a path that "
                                       "does not exist yet)\n")
    assert target.read_text() == "data" and sorted(os.listdir(tmp_path)) == ["file.bin", "hf", "keep"]


def test_convert_replaces_its_own_output_only_with_overwrite(gpt1, tmp_path, capsys):
    hf = tmp_path / "hf"
    assert cli.main(["convert", "--to-hf", str(gpt1), "--out", str(hf)]) == 0
    (hf / "README.md").write_text("notes")
    assert cli.main(["convert", "--to-hf", str(gpt1), "--out", str(hf)]) == 2
    assert "already holds a converted model (config.json, model.safetensors); replace it with --overwrite" in \
        capsys.readouterr().err
    assert cli.main(["convert", "--to-hf", str(gpt1), "--out", str(hf), "--overwrite"]) == 0
    assert (hf / "README.md").read_text() == "notes"
    back = tmp_path / "back"
    assert cli.main(["convert", "--from-hf", str(hf), "--out", str(back)]) == 0
    assert cli.main(["convert", "--from-hf", str(hf), "--out", str(back), "--overwrite"]) == 0
    assert json.loads((back / ownership.MARKER).read_text()) == {"command": "convert --from-hf"}
    capsys.readouterr()
    assert cli.main(["convert", "--to-hf", str(gpt1), "--out", str(back), "--overwrite"]) == 2  # the other direction
    assert "holds the output of ms-gpt convert --from-hf" in capsys.readouterr().err
