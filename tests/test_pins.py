"""The lock files, the doctor's supported sets, the aarch64 check and the setup script agree."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ms_gpt.environment import doctor

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts" / "environment"))
import check_ascend_pins  # noqa: E402

CPU_LOCK = ROOT / "docker" / "requirements-x86_64.txt"
# Python 3.10 selects every line (the marker lines are for < 3.11); read_pins refuses non-== lines.
CPU = check_ascend_pins.read_pins(CPU_LOCK, "3.10")
ASCEND = check_ascend_pins.read_pins(ROOT / "requirements-ascend.txt", "3.10")


def test_every_lock_line_is_an_exact_pin():
    assert len(CPU) > 80 and len(ASCEND) >= len(CPU)


def test_ascend_lock_has_the_same_versions_as_the_cpu_lock():
    assert {k: ASCEND[k] for k in CPU} == CPU


def test_no_real_torch_in_the_locks():
    assert "torch" not in CPU and "torch" not in ASCEND


def test_project_needs_are_pinned():
    for name in ("jieba", "snownlp", "tqdm", "matplotlib", "scikit-learn", "pytest", "ftfy", "mindspore", "mindnlp"):
        assert name in CPU, name
    assert CPU["numpy"] == "1.26.4"


@pytest.mark.parametrize("set_name,lock", [("cpu-gpu-x86_64", CPU), ("ascend-aarch64", ASCEND)])
def test_doctor_supported_sets_equal_the_locks(set_name, lock):
    for name, version in doctor.SUPPORTED_SETS[set_name]["pins"].items():
        assert lock[name] == version, name


def test_installed_environment_is_the_lock():
    from importlib import metadata

    wrong = {}
    for name, version in check_ascend_pins.read_pins(CPU_LOCK, "%d.%d" % sys.version_info[:2]).items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = None
        if have != version:
            wrong[name] = (have, version)
    assert wrong == {}


@pytest.mark.parametrize("name,filename,version,problem", [
    ("numpy", "numpy-1.26.4-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl", "3.11", None),
    ("six", "six-1.17.0-py2.py3-none-any.whl", "3.11", None),
    ("mindspore", "mindspore-2.7.0-cp311-none-any.whl", "3.11", None),
    ("jieba", "jieba-0.42.1.tar.gz", "3.11", None),
    ("numpy", "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "3.11",
     "built for manylinux_2_17_x86_64.manylinux2014_x86_64, not aarch64"),
    ("numpy", "numpy-1.26.4-cp310-cp310-manylinux_2_17_aarch64.whl", "3.11", "built for cp310, not cp311"),
    ("mindspore", "mindspore-2.7.0-cp311-cp311-manylinux1_x86_64.whl", "3.11", "expected PyPI's aarch64 mindspore wheel"),
    ("pyyaml", "PyYAML-6.0.3.tar.gz", "3.11", "source distribution; an aarch64 wheel is required"),
])
def test_aarch64_wheel_rules(name, filename, version, problem):
    got = check_ascend_pins.wheel_problem(name, filename, version)
    if problem is None:
        assert got is None
    else:
        assert problem in got


def test_read_pins_evaluates_markers_for_the_target_python(tmp_path):
    req = tmp_path / "r.txt"
    req.write_text('tomli==2.5.0 ; python_version < "3.11"\nsix==1.17.0  # comment\n')
    assert check_ascend_pins.read_pins(req, "3.10") == {"tomli": "2.5.0", "six": "1.17.0"}
    assert check_ascend_pins.read_pins(req, "3.11") == {"six": "1.17.0"}
    req.write_text("six>=1.0\n")
    with pytest.raises(ValueError, match=r"r.txt:1: 'six>=1.0' is not an exact == pin"):
        check_ascend_pins.read_pins(req, "3.11")


def _fake_python(tmp_path, version):
    fake = tmp_path / f"python{version}"
    fake.write_text(f"#!/bin/sh\necho {version}\n")
    fake.chmod(0o755)
    return fake


@pytest.mark.parametrize("version", ["3.12", "3.9"])
def test_setup_refuses_unsupported_python(tmp_path, version):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh"), "--python", str(_fake_python(tmp_path, version))],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"is Python {version}; supported versions are 3.11 and 3.10" in proc.stderr


def test_setup_rejects_unknown_option():
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh"), "--fast"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown option '--fast'" in proc.stderr


def test_setup_second_run_only_checks_the_stamp():
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip("tests are not running from the project's .venv")
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MS_GPT_PYTHON": ""})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is up to date" in proc.stdout, proc.stdout + proc.stderr
