"""Container images and the tutorial notebook: the notebook runs headless in tiny mode, the Dockerfiles
lint clean and install exactly the repository's pinned files (the CPU image offline, from the
wheelhouse), the launcher's commands carry each target's device flags and each engine's, and - where a
container engine is usable (scripts/test.sh installs podman on Debian as root) - scripts/environment/container_check.sh
builds the CPU image on a debootstrap base and runs the notebook and JupyterLab inside it."""
import json
import os
import re
import shutil
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
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "notebook" / "build_notebook.py"), "--check"],
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
    # through the Python API: the KV cache gives the same tokens; attention maps drawn; the mini ChatGPT half
    assert summary["cache_same_tokens"] is True
    assert summary["attention"]["layers"] == 2 and summary["attention"]["heads"] == 4
    assert abs(summary["attention"]["row_sums"] - 1) < 1e-5
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert summary["sft_loss"]["after"] < summary["sft_loss"]["before"] - 1  # measured: 6.4 -> 4.1
    assert summary["chat_turns"] == 4
    assert 0.4 <= summary["reward_accuracy"] <= 1.0 and summary["ppo_steps"] == 8
    for part in ("pretrain/metrics.json", "finetune/metrics.json", "imdb/metrics.json", "imdb/best/config.json",
                 "chat/metrics.json", "reward/best/classifier.json", "ppo/metrics.json", "attention.png"):
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
    assert re.search(r"pip install (--no-index )?--no-deps --no-build-isolation \.", text)
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


def test_cpu_image_installs_offline_from_the_wheelhouse():
    """Every pip install in the CPU image reads only the wheelhouse, which is bind-mounted for that one step
    (never COPYed into a layer), kept out of git and inside the build context."""
    ins = instructions(dockerfile("cpu"))
    pip_steps = [step for w, a in ins if w == "RUN" for step in a.split("&&") if "pip install" in step]
    assert len(pip_steps) == 5 and all("--no-index" in step for step in pip_steps), pip_steps
    mounted = [a for w, a in ins if w == "RUN" and "--find-links /wheels" in a]
    assert len(mounted) == 1 and mounted[0].startswith("--mount=type=bind,source=docker/wheelhouse,target=/wheels ")
    assert not any(w in ("COPY", "ADD") and "wheelhouse" in a for w, a in ins)
    assert "docker/wheelhouse/" in (ROOT / ".gitignore").read_text().splitlines()
    ignored = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert not any(p in ("docker", "docker/", "docker/wheelhouse", "docker/wheelhouse/") for p in ignored)
    # A base that already holds the apt packages (the debootstrap one) skips apt-get (no network in the build).
    apt = next(a for w, a in ins if w == "RUN" and "apt-get" in a)
    assert apt.startswith("if dpkg -s libgomp1 g++ >/dev/null 2>&1; then")


def test_dockerfiles_pin_their_bases_and_python_3_11():
    cpu, gpu, ascend = (instructions(dockerfile(t)) for t in TARGETS)
    # An exact tag by default, never :latest or :3.11; another base only when asked (build_local_base.sh's).
    assert ("ARG", "BASE_IMAGE=python:3.11.14-slim-bookworm") in cpu and ("FROM", "${BASE_IMAGE}") in cpu
    assert cpu.index(("ARG", "BASE_IMAGE=python:3.11.14-slim-bookworm")) == 0
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
    proc = launch("--engine", "docker", "--target", target, "--dry-run", "--token", "t0k", "--port", "9999",
                  "--devices", "0,3")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert f"docker build -f docker/Dockerfile.{target} -t ms-gpt:{target} ." in lines
    # The CPU image builds offline: its wheelhouse is filled first.
    assert ("bash scripts/environment/fill_wheelhouse.sh" in lines) == (target == "cpu")
    run = next(l for l in lines if l.startswith("docker run "))
    assert "-p 127.0.0.1:9999:8888" in run and "-e JUPYTER_TOKEN=t0k" in run
    assert f"--name ms-gpt-{target}-9999" in run and " -it " not in run  # no TTY here: no -it
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


def engine_prefix(facts: str) -> list[str]:
    """scripts/environment/container_engine.sh's podman prefix for a host with these facts (cgroup fs, systemd, nofile, runc)."""
    proc = subprocess.run(["bash", "-c", f'source scripts/environment/container_engine.sh; podman_flags {facts}; printf "%s\\n" "${{ENGINE[@]}}"'],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "CONTAINERS_CONF": ""})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_podman_gets_the_flags_its_host_needs():
    conf = f"CONTAINERS_CONF={ROOT}/docker/podman/containers.conf"
    # This project's machines: cgroups v1/hybrid, no systemd, a 20000 open-files hard limit, runc installed.
    assert engine_prefix("tmpfs 0 20000 1") == ["env", conf, "podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
    # A usual modern host: cgroups v2 with systemd and a high limit: plain podman.
    assert engine_prefix("cgroup2fs 1 1048576 1") == ["podman"]
    assert engine_prefix("cgroup2fs 1 unlimited 0") == ["podman"]
    assert engine_prefix("tmpfs 1 1048576 0") == ["podman"]  # crun is all there is: leave the runtime alone
    assert "default_ulimits = []" in (ROOT / "docker" / "podman" / "containers.conf").read_text()
    # What podman's build and run add: Docker's image format (keeps HEALTHCHECK); no health timer without systemd.
    flags = lambda facts: subprocess.run(  # noqa: E731
        ["bash", "-c", f'source scripts/environment/container_engine.sh; podman_flags {facts}; '
                       'echo "${ENGINE_BUILD_FLAGS[*]}|${ENGINE_RUN_FLAGS[*]}"'],
        cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert flags("tmpfs 0 20000 1") == "--format docker|--health-interval disable"
    assert flags("cgroup2fs 1 1048576 1") == "--format docker|"


def test_launcher_with_podman_and_a_local_base():
    proc = launch("--engine", "podman", "--target", "cpu", "--dry-run", "--token", "t", "--port", "8890",
                  "--base-image", "localhost/ms-gpt-base:bookworm-py3.11")
    assert proc.returncode == 0, proc.stderr
    build = next(l for l in proc.stdout.splitlines() if " build --" in l)
    run = next(l for l in proc.stdout.splitlines() if " run --rm " in l)
    for line in (build, run):
        assert re.match(r"(env CONTAINERS_CONF=\S+ )?podman ", line), line
    assert build.endswith("build --format docker --build-arg BASE_IMAGE=localhost/ms-gpt-base:bookworm-py3.11 "
                          "-f docker/Dockerfile.cpu -t ms-gpt:cpu .")  # docker format keeps the HEALTHCHECK
    assert "-p 127.0.0.1:8890:8888" in run and "--name ms-gpt-cpu-8890" in run and run.endswith(" ms-gpt:cpu")
    gpu = launch("--engine", "podman", "--target", "gpu", "--dry-run").stdout
    assert "--device nvidia.com/gpu=all" in gpu and "--gpus" not in gpu  # podman: the CDI device, no --gpus
    proc = launch("--engine", "podman", "--target", "gpu", "--dry-run", "--base-image", "x")
    assert proc.returncode == 2 and "--base-image applies to --target cpu only" in proc.stderr
    proc = launch("--engine", "lxc", "--target", "cpu", "--dry-run")
    assert proc.returncode == 2 and "unknown engine 'lxc' (accepted: auto, docker, podman)" in proc.stderr


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
    proc = launch("--engine", "docker", "--target", "cpu", "--dry-run")
    token = re.search(r"token=([0-9a-f]+)", proc.stdout).group(1)
    assert len(token) == 32  # a fresh random token when none is given


# ------------------------------------------------------------------------------- wheelhouse, base, check
def test_wheelhouse_check_names_what_does_not_match(tmp_path):
    """--check compares file names with the pins: one per pinned name and version, nothing more."""
    pins = {"pip": "26.3"}
    for lock in ("docker/requirements-x86_64.txt", "docker/requirements-notebook.txt"):
        for line in (ROOT / lock).read_text().splitlines():
            if line.strip() and not line.startswith("#") and 'python_version < "3.11"' not in line:
                name, version = line.split(";")[0].strip().split("==")
                pins[name] = version
    for name, version in pins.items():
        suffix = ".tar.gz" if name in ("jieba", "snownlp") else "-py3-none-any.whl"
        (tmp_path / f"{name.replace('-', '_')}-{version}{suffix}").touch()
    check = ["bash", str(ROOT / "scripts" / "environment" / "fill_wheelhouse.sh"), "--check", "--dir", str(tmp_path)]
    proc = subprocess.run(check, capture_output=True, text=True)
    assert proc.returncode == 0 and "holds exactly the pins" in proc.stdout, proc.stderr
    next(tmp_path.glob("numpy-*")).unlink()
    (tmp_path / "torch-2.13.0-cp311-cp311-linux_x86_64.whl").touch()
    (tmp_path / "soupsieve-2.10-py3-none-any.whl").rename(tmp_path / "soupsieve-4.1.2-py3-none-any.whl")
    proc = subprocess.run(check, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "missing ['numpy']" in proc.stderr and "('soupsieve', '4.1.2', '2.10')" in proc.stderr
    assert "not pinned ['torch']" in proc.stderr


@pytest.mark.parametrize("script,args,message", [
    ("fill_wheelhouse.sh", ["--python", "/nonexistent/python"], "python '/nonexistent/python' not found"),
    ("fill_wheelhouse.sh", ["--bogus"], "unknown option '--bogus' (accepted: --python, --dir, --check)"),
    ("build_local_base.sh", ["--engine", "lxc"], "unknown engine 'lxc' (accepted: auto, docker, podman)"),
    ("build_local_base.sh", ["--mirror", "ftp.debian.org"], "--mirror must be an http(s):// or file:// URL"),
    ("container_check.sh", ["--engine", "rkt"], "unknown engine 'rkt' (accepted: auto, docker, podman)"),
    ("container_check.sh", ["--json"], "--json needs a file name"),
])
def test_container_scripts_refuse_bad_arguments(script, args, message):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "environment" / script), *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_wheelhouse_needs_the_images_python(tmp_path):
    other = sorted(Path.home().glob(".pyenv/versions/3.1[02]*/bin/python"))
    if not other:
        pytest.skip("no Python other than 3.11 on this machine")
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "environment" / "fill_wheelhouse.sh"), "--python", str(other[0]),
                           "--dir", str(tmp_path / "wh")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "the image needs wheels for 'CPython 3.11 linux x86_64'" in proc.stderr
    assert not (tmp_path / "wh").exists()


def engine_usable() -> str | None:
    """Why the container check cannot run here, or None when it can."""
    if shutil.which("podman"):
        return None if subprocess.run(["bash", "-c", "source scripts/environment/container_engine.sh && engine_select podman "
                                       "&& \"${ENGINE[@]}\" info"], cwd=ROOT, capture_output=True).returncode == 0 \
            else "podman is installed but 'podman info' fails"
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return None
    return "no container engine (podman, or a Docker daemon); scripts/test.sh installs podman on Debian as root"


def test_container_check_end_to_end(tmp_path):
    """Base, wheelhouse, offline build, doctor, the notebook inside (same figures as on the host), Jupyter
    with and without its token, the health check; everything stopped at the end."""
    reason = engine_usable()
    if reason:
        pytest.skip(reason)
    if not shutil.which("debootstrap"):
        pytest.skip("debootstrap is not installed (the local base needs it)")
    report = tmp_path / "check.json"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "environment" / "container_check.sh"), "--no-install", "--json", str(report)],
                          capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    r = json.loads(report.read_text())
    assert r["ok"] is True and r["image_mb"] > 1000 and r["notebook_seconds_in_container"] > 0
    assert set(r["seconds"]) == {"engine", "base", "wheelhouse", "build", "doctor", "notebook", "jupyter"}
    assert "the same figures inside and outside the container" in proc.stdout
    assert re.search(r"with the token 200, without 403, with a wrong one 403", proc.stdout)
    assert "healthy" in proc.stdout
    names = subprocess.run(["bash", "-c", "source scripts/environment/container_engine.sh && engine_select auto && "
                            "\"${ENGINE[@]}\" ps -a --format '{{.Names}}'"], cwd=ROOT, capture_output=True, text=True)
    assert "ms-gpt-check-" not in names.stdout  # nothing left running
