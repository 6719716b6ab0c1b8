"""Container images and the tutorial notebook: the notebook runs headless in tiny mode, the Dockerfiles
lint clean and install exactly the repository's pinned files, and the launcher's commands carry each
target's device flags. (No Docker engine here: the images are not built.)"""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
BIN = Path(sys.executable).parent
TARGETS = ("cpu", "gpu", "ascend")
NOTEBOOK = DOCKER / "notebooks" / "ms_gpt_tutorial.ipynb"


def dockerfile(target: str) -> str:
    return (DOCKER / f"Dockerfile.{target}").read_text()


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, buf = [], ""
    for line in text.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buf += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            word, _, rest = buf.partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


# ------------------------------------------------------------------------------------------- notebook
def test_notebook_is_built_from_its_script_and_has_no_outputs():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_notebook.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(not c["outputs"] and c["execution_count"] is None for c in code)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


def test_notebook_runs_headless_in_tiny_mode(tmp_path, monkeypatch):
    """Every section runs (an error cell fails the test) and its key results are real."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("MS_GPT_NOTEBOOK_MODE", "tiny")
    monkeypatch.setenv("MS_GPT_NOTEBOOK_OUT", str(tmp_path / "out"))
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    texts = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    summary = next(json.loads(t.split("NOTEBOOK-SUMMARY ", 1)[1]) for t in texts if "NOTEBOOK-SUMMARY " in t)
    assert summary["mode"] == "tiny" and summary["logits_shape"] == [2, 6, 64]
    assert summary["pretrain_loss"]["last"] < summary["pretrain_loss"]["first"] - 1
    assert set(summary["generated"]) == {"greedy", "beam", "sample"}
    assert all(t.startswith("the old farmer") and len(t.split()) > 3 for t in summary["generated"].values())
    assert summary["finetune_accuracy"] >= 0.9  # word-salad reviews with sentiment words: easy, chance 0.5
    assert summary["imdb"]["test_accuracy"] >= 0.9 and summary["imdb"]["static_shapes"] is True
    assert any("causal mask, sequence 0" in t for t in texts)
    for part in ("pretrain/metrics.json", "finetune/metrics.json", "imdb/metrics.json", "imdb/best/config.json"):
        assert (tmp_path / "out" / part).is_file(), part


# ---------------------------------------------------------------------------------------- dockerfiles
@pytest.mark.parametrize("target", TARGETS)
def test_dockerfile_lints_clean(target):
    proc = subprocess.run([str(BIN / "hadolint"), "--failure-threshold", "info", "--no-color",
                           str(DOCKER / f"Dockerfile.{target}")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def pip_requirement_files(target: str) -> list[str]:
    runs = [args for word, args in instructions(dockerfile(target)) if word == "RUN"]
    files = []
    for cmd in runs:
        for step in cmd.split("&&"):
            if "pip install" in step:
                assert "--no-deps" in step or '"pip==' in step, step  # never a resolving install
                files += re.findall(r"-r (\S+)", step)
    return files


@pytest.mark.parametrize("target,lock", [("cpu", "docker/requirements-x86_64.txt"),
                                         ("gpu", "docker/requirements-x86_64.txt"),
                                         ("ascend", "requirements-ascend.txt")])
def test_dockerfile_installs_exactly_the_pinned_files(target, lock):
    text = dockerfile(target)
    ins = instructions(text)
    assert pip_requirement_files(target) == [lock, "docker/requirements-notebook.txt"]
    copied = " ".join(args for word, args in ins if word == "COPY")
    assert lock in copied and "docker/requirements-notebook.txt" in copied
    # The same installer as CI's setup: pip 26.3, setuptools from the lock first, then ms_gpt without deps.
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert '"pip==26.3"' in text and '"pip==26.3"' in setup
    assert re.search(r"pip install --no-deps --no-build-isolation \.", text)
    # Every pinned file it installs is a real, fully pinned file of this repository.
    for f in (lock, "docker/requirements-notebook.txt"):
        lines = [l for l in (ROOT / f).read_text().splitlines() if l.strip() and not l.startswith("#")]
        assert lines and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[^=\s]+( *;.*)?", l) for l in lines), f
    # Non-root, Jupyter on 8888, health check by `ms-gpt doctor`.
    users = [args for word, args in ins if word == "USER"]
    assert users and users[-1] not in ("root", "0") and users[-1].split(":")[0].isdigit()
    assert ("EXPOSE", "8888") in ins
    health = [args for word, args in ins if word == "HEALTHCHECK"]
    assert len(health) == 1 and '"ms-gpt", "doctor"' in health[0]
    assert any(word == "CMD" and '"jupyter", "lab"' in args for word, args in ins)


def test_dockerfiles_pin_their_bases_and_python_3_11():
    cpu, gpu, ascend = (instructions(dockerfile(t)) for t in TARGETS)
    assert ("FROM", "python:3.11.14-slim-bookworm") in cpu  # an exact tag, never :latest or :3.11
    assert ("FROM", "nvidia/cuda:11.6.2-cudnn8-runtime-ubuntu20.04") in gpu  # the wheel's CUDA 11.6 + cuDNN 8
    assert any(w == "RUN" and "uv python install 3.11.14" in a and "uv venv --seed --python 3.11.14" in a
               for w, a in gpu)
    assert any(w == "COPY" and re.search(r"--from=ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+ ", a) for w, a in gpu)
    arg = next(a for w, a in ascend if w == "ARG" and a.startswith("CANN_BASE="))
    assert "8.2" in arg and "py3.11" in arg and ("FROM", "${CANN_BASE}") in ascend
    assert any(w == "RUN" and "python3.11 -m venv /opt/venv" in a for w, a in ascend)
    # The setup script's supported Python is the images' Python.
    assert 'SUPPORTED="3.11 3.10"' in (ROOT / "scripts" / "setup.sh").read_text()


def test_ascend_image_sources_set_env_in_its_entrypoint():
    ins = instructions(dockerfile("ascend"))
    assert ("ENTRYPOINT", '["/usr/local/bin/ms-gpt-entrypoint"]') in ins
    health = next(a for w, a in ins if w == "HEALTHCHECK")
    assert '"/usr/local/bin/ms-gpt-entrypoint", "ms-gpt", "doctor", "--device", "Ascend"' in health
    entry = (DOCKER / "entrypoint-ascend.sh").read_text()
    assert "source \"$f\"" in entry and "/usr/local/Ascend/ascend-toolkit/set_env.sh" in entry
    assert entry.rstrip().endswith('exec "$@"')
    proc = subprocess.run(["bash", str(DOCKER / "entrypoint-ascend.sh"), "echo", "ran"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ran" and "set_env.sh not found" in proc.stderr


def test_dockerignore_keeps_what_the_images_copy():
    ignored = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines()
               if l.strip() and not l.startswith("#")]
    assert {".git", ".venv", ".venv-ref", "runs", "tests"} <= set(ignored)
    for target in TARGETS:
        for word, args in instructions(dockerfile(target)):
            if word == "COPY" and "--from" not in args:
                for src in args.split()[:-1]:
                    assert (ROOT / src).exists(), (target, src)
                    assert src.split("/")[0] not in ignored, (target, src)


# -------------------------------------------------------------------------------------------- launcher
def launch(*args):
    return subprocess.run(["bash", str(ROOT / "scripts" / "launch_notebook.sh"), *args], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("target", TARGETS)
def test_launcher_dry_run_prints_the_exact_commands(target):
    proc = launch("--target", target, "--dry-run", "--token", "t0k", "--port", "9999", "--devices", "0,3")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert f"docker build -f docker/Dockerfile.{target} -t ms-gpt:{target} ." in lines
    run = next(l for l in lines if l.startswith("docker run "))
    assert "-p 127.0.0.1:9999:8888" in run and "-e JUPYTER_TOKEN=t0k" in run
    assert f"-v {ROOT}:/home/msgpt/work/ms_gpt" in run and run.endswith(f" ms-gpt:{target}")
    assert "http://127.0.0.1:9999/lab?token=t0k" in proc.stdout
    ascend_flags = ["--device /dev/davinci0", "--device /dev/davinci3", "--device /dev/davinci_manager",
                    "--device /dev/devmm_svm", "--device /dev/hisi_hdc",
                    "-v /usr/local/Ascend/driver:/usr/local/Ascend/driver:ro",
                    "-v /usr/local/bin/npu-smi:/usr/local/bin/npu-smi:ro"]
    if target == "ascend":
        assert all(f in run for f in ascend_flags) and "--gpus" not in run
    elif target == "gpu":
        assert "--gpus all" in run and "davinci" not in run
    else:
        assert "--gpus" not in run and "davinci" not in run


def test_launcher_local_mode_and_bad_arguments():
    proc = launch("--local", "--dry-run", "--token", "abc")
    assert proc.returncode == 0, proc.stderr
    assert "env JUPYTER_TOKEN=abc .venv/bin/jupyter lab --ip=127.0.0.1 --port=8888 --no-browser" in proc.stdout
    assert "docker run" not in proc.stdout and "docker build" not in proc.stdout
    for args, message in ((["--target", "tpu"], "unknown target 'tpu' (accepted: cpu, gpu, ascend)"),
                          ([], "give --target cpu|gpu|ascend"),
                          (["--local", "--target", "cpu"], "give either --local or --target"),
                          (["--target", "ascend", "--devices", "a"], "--devices must be card numbers"),
                          (["--target", "cpu", "--port", "x"], "--port must be a number"),
                          (["--target", "cpu", "--port", "0"], "--port must be in 1..65535, got '0'"),
                          (["--local", "--port", "99999"], "--port must be in 1..65535, got '99999'"),
                          (["--target", "cpu", "--bogus"], "unknown option '--bogus'")):
        proc = launch(*args, "--dry-run")
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
    proc = launch("--target", "cpu", "--dry-run")
    token = re.search(r"token=([0-9a-f]+)", proc.stdout).group(1)
    assert len(token) == 32  # a fresh random token when none is given
