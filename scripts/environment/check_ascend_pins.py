#!/usr/bin/env python3
"""Prove that requirements-ascend.txt (and the notebook layer the Ascend image adds) installs on Linux
aarch64, without an aarch64 machine.

For each Python version, pip resolves the pinned file for ``manylinux*_aarch64`` with
``--dry-run --no-deps --only-binary=:all:`` (package metadata only, no wheel downloads where PyPI
serves it) and writes a JSON report. The check then requires that every pin was found at exactly its
version, that each chosen file is an aarch64 or platform-independent wheel (the two pure-Python
sdists excepted), and that mindspore came as PyPI's aarch64 ``cpXY-none-any`` wheel.

    python scripts/environment/check_ascend_pins.py [--requirements FILE ...] [--python-version 3.11 ...]

Prints one JSON object; exit 0 when every check passes, 1 otherwise, 2 when pip itself failed.
Needs PyPI (never the Hugging Face hub).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64")
# Published only as pure-Python source distributions: platform-independent by construction.
SOURCE_ONLY = ("jieba", "snownlp")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path, python_version: str) -> dict:
    """``{name: version}`` for the lines whose environment marker holds on ``python_version``."""
    from packaging.requirements import Requirement

    pins = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        spec = list(req.specifier)
        if len(spec) != 1 or spec[0].operator != "==":
            raise ValueError(f"{path}:{lineno}: {line!r} is not an exact == pin")
        short = ".".join(python_version.split(".")[:2])
        full = python_version if python_version.count(".") == 2 else python_version + ".0"
        env = {"python_version": short, "python_full_version": full,
               "platform_machine": "aarch64", "sys_platform": "linux", "platform_system": "Linux"}
        if req.marker is None or req.marker.evaluate(env):
            pins[canonical(req.name)] = spec[0].version
    return pins


def wheel_problem(name: str, filename: str, python_version: str) -> str | None:
    """Why ``filename`` cannot be installed on aarch64 CPython ``python_version`` (None if it can)."""
    cp = "cp" + "".join(python_version.split(".")[:2])
    if name in SOURCE_ONLY:
        return None if filename.endswith((".tar.gz", ".zip", "-none-any.whl")) else f"unexpected file {filename}"
    if not filename.endswith(".whl"):
        return f"{filename} is a source distribution; an aarch64 wheel is required"
    tags = filename[:-4].split("-")[-3:]  # python tag, abi tag, platform tag
    pytag, _abi, plat = tags
    if name == "mindspore" and not (pytag == cp and plat == "any"):
        return f"{filename}: expected PyPI's aarch64 mindspore wheel ({cp}-none-any)"
    if plat != "any" and "aarch64" not in plat:
        return f"{filename} is built for {plat}, not aarch64"
    if pytag.startswith("cp") and pytag != cp and "abi3" not in filename:
        return f"{filename} is built for {pytag}, not {cp}"
    return None


def check(requirements, python_version: str) -> dict:
    """``requirements``: one file or several installed together (e.g. the Ascend pins + the notebook layer)."""
    files = [requirements] if isinstance(requirements, (str, Path)) else list(requirements)
    pins = {}
    for f in files:
        for name, version in read_pins(Path(f), python_version).items():
            if pins.get(name, version) != version:
                return {"python": python_version, "ok": False, "packages": 0, "mindspore_file": None,
                        "problems": [f"{name}: {pins[name]} in one file, {version} in {f}"]}
            pins[name] = version
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        # Markers were evaluated above for the target Python; pip would evaluate them for the
        # interpreter running it, so it gets the already-filtered plain pins.
        pinned = Path(tmp) / "pins.txt"
        pinned.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
               "--no-deps", "--disable-pip-version-check", "--only-binary=:all:",
               "--no-binary=" + ",".join(SOURCE_ONLY), "--python-version", python_version,
               "--implementation", "cp", "--target", str(Path(tmp) / "target"),
               "--report", str(report_path), "-r", str(pinned)]
        for plat in PLATFORMS:
            cmd += ["--platform", plat]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            err = [l for l in proc.stderr.splitlines() if "is ignored" not in l]
            return {"python": python_version, "ok": False, "pip_failed": True,
                    "problems": err[-8:] or [f"pip exited {proc.returncode}"]}
        report = json.loads(report_path.read_text())
    chosen = {canonical(item["metadata"]["name"]): (item["metadata"]["version"],
              item["download_info"]["url"].rsplit("/", 1)[-1]) for item in report["install"]}
    problems = []
    for name, version in sorted(pins.items()):
        if name not in chosen:
            problems.append(f"{name}=={version}: not resolved for aarch64")
            continue
        got, filename = chosen[name]
        if got != version:
            problems.append(f"{name}: pinned {version}, pip chose {got}")
        why = wheel_problem(name, filename, python_version)
        if why:
            problems.append(why)
    return {"python": python_version, "ok": not problems, "packages": len(pins),
            "mindspore_file": chosen.get("mindspore", (None, None))[1], "problems": problems}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requirements", type=Path, action="append",
                    help="pinned file (repeatable: files installed together; default requirements-ascend.txt)")
    ap.add_argument("--python-version", action="append", dest="versions",
                    help="target CPython X.Y (repeatable; default 3.10 and 3.11)")
    args = ap.parse_args(argv)
    files = args.requirements or [ROOT / "requirements-ascend.txt"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        print(json.dumps({"ok": False, "problems": [f"{f} not found" for f in missing]}))
        return 1
    results = [check(files, v) for v in (args.versions or ["3.10", "3.11"])]
    ok = all(r["ok"] for r in results)
    print(json.dumps({"ok": ok, "requirements": [str(f) for f in files], "platforms": PLATFORMS,
                      "results": results}, indent=2))
    if any(r.get("pip_failed") for r in results):
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
