"""Environment report and diagnosis of the version breakages this tutorial's users hit.

The report is a plain :class:`Environment` snapshot; every check is a pure function of it, so the
tests can inject a fake environment for each breakage. Versions come from package metadata, never
from ``__version__`` (mindnlp 0.5.1 reports ``0.5.0rc2`` there). Collecting the snapshot imports
mindspore only to list device targets, and nothing imports mindnlp or torch.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Iterable

REPORTED = (
    "mindspore",
    "mindnlp",
    "transformers",
    "tokenizers",
    "huggingface-hub",
    "numpy",
    "pyarrow",
    "datasets",
    "ftfy",
    "spacy",
    "jieba",
    "accelerate",
    "safetensors",
    "torch",
)

# The tested sets. Core pins only; the full closures are docker/requirements-x86_64.txt and
# requirements-ascend.txt (a test keeps these equal to the lock files).
_TESTED_PINS = {
    "mindspore": "2.7.0",
    "mindnlp": "0.5.1",
    "transformers": "4.56.2",
    "tokenizers": "0.22.1",
    "huggingface-hub": "0.35.3",
    "numpy": "1.26.4",
    "pyarrow": "21.0.0",
    "datasets": "4.3.0",
    "ftfy": "6.3.1",
    "jieba": "0.42.1",
}
SUPPORTED_SETS = {
    "cpu-gpu-x86_64": {"python": ("3.10", "3.11"), "machine": ("x86_64", "AMD64"), "pins": _TESTED_PINS},
    "ascend-aarch64": {"python": ("3.10", "3.11"), "machine": ("aarch64", "arm64"), "pins": _TESTED_PINS},
}

SETUP_FIX = "bash scripts/setup.sh (installs docker/requirements-x86_64.txt with pip --no-deps into .venv)"


@dataclass
class Environment:
    python: str
    machine: str
    packages: dict  # name -> version or None (not installed)
    requires: dict = field(default_factory=dict)  # name -> list of requirement strings
    targets: list = field(default_factory=list)
    target_error: str = ""
    cann: str | None = None
    hf_endpoint: str | None = None
    real_torch_loaded: bool = False
    mindnlp_loaded: bool = False


@dataclass
class Diagnosis:
    code: str
    severity: str  # "error" (the environment is broken) or "warning"
    message: str
    fix: str


# --------------------------------------------------------------------------- collection


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _requires(name: str) -> list:
    try:
        return list(metadata.requires(name) or [])
    except metadata.PackageNotFoundError:
        return []


def read_cann_version(root: str | os.PathLike = "/usr/local/Ascend") -> str | None:
    """The CANN toolkit version under ``root`` (None when there is no Ascend install)."""
    root = Path(root)
    if not root.exists():
        return None
    for rel in (
        "ascend-toolkit/latest/version.cfg",
        "ascend-toolkit/latest/toolkit/version.info",
        "ascend-toolkit/latest/compiler/version.info",
        "ascend-toolkit/latest/runtime/version.info",
        "cann/version.cfg",
    ):
        f = root / rel
        if f.is_file():
            m = re.search(r"(?:^|\n)\s*(?:toolkit_installed_)?version\s*=\s*\[?([0-9A-Za-z.\-:]+)", f.read_text(errors="replace"))
            if m:
                return m.group(1).split(":")[0]
    return "unknown (found %s but no version file)" % root


def collect(cann_root: str = "/usr/local/Ascend", probe_targets: bool = True) -> Environment:
    """Snapshot the running interpreter's environment."""
    from ms_gpt.environment.compat import is_real_torch

    packages = {name: _version(name) for name in REPORTED}
    requires = {name: _requires(name) for name in ("mindnlp", "transformers", "datasets") if packages.get(name)}
    targets, target_error = [], ""
    if probe_targets and packages["mindspore"]:
        try:
            from ms_gpt.environment.device import available_targets

            targets = available_targets()
        except Exception as exc:  # a broken mindspore is exactly what doctor must survive
            target_error = f"{type(exc).__name__}: {exc}"
    return Environment(
        python=platform.python_version(),
        machine=platform.machine(),
        packages=packages,
        requires=requires,
        targets=targets,
        target_error=target_error,
        cann=read_cann_version(cann_root),
        hf_endpoint=os.environ.get("HF_ENDPOINT"),
        real_torch_loaded=is_real_torch(sys.modules.get("torch")),
        mindnlp_loaded="mindnlp" in sys.modules,
    )


# --------------------------------------------------------------------------- checks


def _vt(version: str | None) -> tuple:
    """Comparable (major, minor, patch) from a version string; () when absent."""
    if not version:
        return ()
    nums = re.findall(r"\d+", version)[:3]
    return tuple(int(n) for n in nums) + (0,) * (3 - len(nums))


def _requirement_problems(env: Environment) -> Iterable[Diagnosis]:
    """Declared requirements of key packages that the installed versions violate."""
    from packaging.requirements import InvalidRequirement, Requirement

    for owner, reqs in env.requires.items():
        for raw in reqs:
            try:
                req = Requirement(raw)
            except InvalidRequirement:
                continue
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            name = req.name.lower().replace("_", "-")
            have = env.packages.get(name)
            if have is None or not req.specifier or req.specifier.contains(have, prereleases=True):
                continue
            want = SUPPORTED_SETS["cpu-gpu-x86_64"]["pins"].get(name)
            fix = f"pip install --no-deps {name}=={want}" if want else f"pip install --no-deps '{req}'"
            yield Diagnosis(
                code="requirement-conflict",
                severity="error",
                message=f"{owner} {env.packages[owner]} requires {req}, but you have {name} {have}",
                fix=fix + f"; or the whole tested set: {SETUP_FIX}",
            )


def diagnose(env: Environment) -> list[Diagnosis]:
    """Every known breakage present in ``env``."""
    p = env.packages
    out: list[Diagnosis] = []

    if env.python.rsplit(".", 1)[0] not in ("3.10", "3.11"):
        out.append(Diagnosis(
            "python-version", "error",
            f"Python {env.python}: mindspore 2.7.0 + mindnlp 0.5.1 are supported on Python 3.10 and 3.11 only",
            "create the environment with python3.11 (or python3.10): " + SETUP_FIX,
        ))
    if not p.get("mindspore"):
        out.append(Diagnosis("mindspore-missing", "error", "mindspore is not installed",
                             "pip install --no-deps mindspore==2.7.0; or " + SETUP_FIX))
    if env.target_error:
        out.append(Diagnosis("mindspore-broken", "error",
                             f"mindspore is installed but cannot list devices: {env.target_error}",
                             "reinstall the tested set: " + SETUP_FIX))
    if not p.get("mindnlp"):
        out.append(Diagnosis("mindnlp-missing", "error", "mindnlp is not installed",
                             "pip install --no-deps mindnlp==0.5.1; or " + SETUP_FIX))

    ms, nlp = _vt(p.get("mindspore")), _vt(p.get("mindnlp"))
    if nlp and nlp[:2] == (0, 4) and ms >= (2, 6, 0):
        out.append(Diagnosis(
            "mindnlp-0.4-with-mindspore-2.6+", "error",
            f"mindnlp {p['mindnlp']} cannot be imported with mindspore {p['mindspore']}: "
            "\"module 'mindspore.common' has no attribute '_stub_tensor'\" (mindspore 2.6 replaced the "
            "stub tensor with TensorPy); PyPI has no mindspore older than 2.7.0 for Python 3.10/3.11",
            "pip install --no-deps mindnlp==0.5.1 mindspore==2.7.0 (0.5.x is the line that imports)",
        ))
    if nlp and nlp[:2] == (0, 5) and ms >= (2, 8, 0):
        out.append(Diagnosis(
            "mindnlp-0.5-with-mindspore-2.8+", "error",
            f"mindnlp {p['mindnlp']} with mindspore {p['mindspore']} fails at import: "
            "\"Generator.__init__() missing 2 required positional arguments: 'seed' and 'offset'\" "
            "(mindnlp 0.5.1 declares mindspore<=2.7.0)",
            "pip install --no-deps mindspore==2.7.0",
        ))
    if ms and ms < (2, 8, 0) and _vt(p.get("numpy")) >= (2, 0, 0):
        out.append(Diagnosis(
            "numpy-2-with-mindspore-2.7", "error",
            f"numpy {p['numpy']} with mindspore {p['mindspore']}: mindspore 2.7 is built against numpy<2",
            "pip install --no-deps numpy==1.26.4",
        ))
    if _vt(p.get("transformers")) >= (5, 0, 0):
        out.append(Diagnosis(
            "transformers-5", "error",
            f"transformers {p['transformers']}: mindnlp 0.5.1 patches transformers 4.x; 5.x fails "
            "(e.g. KeyError in torch.finfo)",
            "pip install --no-deps transformers==4.56.2 tokenizers==0.22.1 huggingface-hub==0.35.3",
        ))
    if _vt(p.get("pyarrow")) >= (26, 0, 0) and p.get("numpy") and _vt(p["numpy"]) < (2, 0, 0):
        out.append(Diagnosis(
            "pyarrow-26-with-numpy-1", "error",
            f"pyarrow {p['pyarrow']} with numpy {p['numpy']}: \"pyarrow requires NumPy 2.0 or newer\", "
            "so `datasets` cannot be imported",
            "pip install --no-deps pyarrow==21.0.0 datasets==4.3.0",
        ))
    if env.real_torch_loaded and not env.mindnlp_loaded:
        out.append(Diagnosis(
            "real-torch-before-mindnlp", "error",
            "real PyTorch is imported in this process and mindnlp is not: mindnlp 0.5.x must be imported "
            "first (it maps `import torch` to mindtorch); transformers then fails in flex_attention",
            "import mindnlp (ms_gpt.environment.compat.import_mindnlp()) before anything imports torch, or restart "
            "the kernel and do so; run real-PyTorch code in a separate process",
        ))
    if p.get("transformers") and not p.get("ftfy"):
        out.append(Diagnosis(
            "ftfy-missing", "error",
            "ftfy is not installed (it is part of the tested set). transformers' slow OpenAIGPTTokenizer "
            "uses SpaCy + ftfy only when both are installed and otherwise silently falls back to BERT's "
            "BasicTokenizer, so environments that differ in ftfy/spacy give different openai-gpt token ids",
            "pip install --no-deps ftfy==6.3.1 wcwidth==0.9.4",
        ))
    if p.get("transformers") and p.get("ftfy") and p.get("spacy"):
        out.append(Diagnosis(
            "openai-tokenizer-spacy-mode", "error",
            f"spacy {p['spacy']} and ftfy are both installed, so the slow OpenAIGPTTokenizer pre-tokenizes "
            "with SpaCy + ftfy; the tested sets have no spacy and use BERT's BasicTokenizer (as the fast "
            "tokenizer does): openai-gpt token ids differ from the tested environments",
            "pip uninstall spacy (the tested set), or use the fast tokenizer everywhere "
            "(AutoTokenizer / OpenAIGPTTokenizerFast), whose ids do not depend on ftfy or spacy",
        ))
    if p.get("torch") and not env.real_torch_loaded:
        out.append(Diagnosis(
            "real-torch-installed", "warning",
            f"real PyTorch {p['torch']} is installed beside mindnlp: harmless if mindnlp is imported first",
            "import mindnlp before torch (ms_gpt.environment.compat.import_mindnlp()); keep PyTorch work in a "
            "subprocess",
        ))
    out.extend(_requirement_problems(env))
    if env.cann is not None and "Ascend" not in env.targets and env.packages.get("mindspore"):
        out.append(Diagnosis(
            "ascend-not-usable", "warning",
            f"CANN {env.cann} is installed but mindspore cannot use the Ascend backend",
            "source /usr/local/Ascend/ascend-toolkit/set_env.sh in this shell; install the aarch64 "
            "mindspore 2.7.0 wheel (requirements-ascend.txt) matching the CANN 8.2 line",
        ))
    return out


def matching_set(env: Environment) -> tuple[str | None, dict]:
    """The supported set ``env`` matches, or ``(None, {package: (have, want)})`` for the nearest one."""
    best, best_diff = None, None
    for name, spec in SUPPORTED_SETS.items():
        diff = {k: (env.packages.get(k), v) for k, v in spec["pins"].items() if env.packages.get(k) != v}
        if env.python.rsplit(".", 1)[0] not in spec["python"]:
            diff["python"] = (env.python, " or ".join(spec["python"]))
        if env.machine not in spec["machine"]:
            diff["machine"] = (env.machine, " or ".join(spec["machine"]))
        if not diff:
            return name, {}
        if best_diff is None or len(diff) < len(best_diff):
            best, best_diff = name, diff
    return None, {"nearest": best, **(best_diff or {})}


def report(env: Environment) -> dict:
    """The verdict: ``ok`` is true when a supported set matches and no error is diagnosed."""
    diags = diagnose(env)
    matched, diff = matching_set(env)
    if matched is None:
        nearest = diff.pop("nearest")
        lines = ", ".join(f"{k} {have or 'missing'} (tested: {want})" for k, (have, want) in diff.items())
        diags.append(Diagnosis(
            "unsupported-versions", "error",
            f"not a tested set (nearest: {nearest}): {lines}",
            SETUP_FIX if nearest == "cpu-gpu-x86_64" else "pip install --no-deps -r requirements-ascend.txt",
        ))
    ok = matched is not None and not any(d.severity == "error" for d in diags)
    return {
        "ok": ok,
        "supported_set": matched,
        "python": env.python,
        "machine": env.machine,
        "versions": env.packages,
        "device_targets": env.targets,
        "cann": env.cann,
        "hf_endpoint": env.hf_endpoint,
        "cpu_kernels": _cpu_kernels(),
        "diagnoses": [asdict(d) for d in diags],
    }


def _cpu_kernels() -> str:
    try:
        from ms_gpt import kernels

        return kernels.describe()
    except Exception as exc:  # noqa: BLE001 - doctor reports, never fails on this
        return f"error: {type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- stale tutorial code

# (code, pattern, what it is, what to use instead). Matched against source code and error messages.
STALE_API = (
    ("stale-truncate", r"mindspore\.dataset\.text\s+import\s+[^\n]*\bTruncate\b|cannot import name 'Truncate'",
     "mindspore.dataset.text.Truncate was removed from MindSpore",
     "truncate in the tokenizer (tokenizer(text, truncation=True, max_length=L)) or in a "
     "dataset.map with a Python function that slices the ids (x[:L])"),
    ("stale-gpttokenizer", r"\bGPTTokenizer\b",
     "GPTTokenizer (mindnlp 0.3/0.4 mindnlp.transforms) no longer exists",
     "from mindnlp.transformers import OpenAIGPTTokenizer (Hugging Face's class, patched by mindnlp)"),
    ("stale-mindnlp-transforms", r"\bmindnlp\.transforms\b",
     "mindnlp.transforms was removed in mindnlp 0.5",
     "tokenizers from mindnlp.transformers (e.g. OpenAIGPTTokenizer / AutoTokenizer)"),
    ("stale-mindnlp-engine", r"\bmindnlp\.engine\b",
     "mindnlp.engine (Trainer, callbacks) was removed in mindnlp 0.5",
     "transformers' Trainer/TrainingArguments via mindnlp.transformers (import mindnlp first); "
     "ms_gpt.environment.compat patches the optimizer gaps on CPU/GPU"),
    ("stale-mindnlp-metrics", r"\bmindnlp\.metrics\b",
     "mindnlp.metrics was removed in mindnlp 0.5",
     "compute metrics with numpy in compute_metrics (evaluate.load('accuracy') needs the hub)"),
    ("error-stub-tensor", r"module 'mindspore\.common' has no attribute '_stub_tensor'",
     "mindnlp 0.4.x with mindspore >= 2.6",
     "pip install --no-deps mindnlp==0.5.1 mindspore==2.7.0"),
    ("error-generator-seed", r"missing 2 required positional arguments: 'seed' and 'offset'",
     "mindnlp 0.5.x with mindspore >= 2.8",
     "pip install --no-deps mindspore==2.7.0"),
    ("error-tokenizers-conflict", r"requires tokenizers<0\.15",
     "an old transformers (< 4.34) beside a newer tokenizers",
     "pip install --no-deps transformers==4.56.2 tokenizers==0.22.1 huggingface-hub==0.35.3"),
    ("error-addcdiv", r"No implementation for function: addcdiv",
     "mindtorch (mindnlp 0.5.1) has no CPU/GPU addcdiv, which AdamW needs",
     "call ms_gpt.environment.compat.import_mindnlp() instead of import mindnlp (it adds addcdiv)"),
    ("error-norm-axis", r"type of 'axis' should be one of int, tuple, list, but got NoneType",
     "mindtorch's linalg_vector_norm does not accept dim=None (gradient clipping)",
     "call ms_gpt.environment.compat.import_mindnlp() instead of import mindnlp (it patches the norm)"),
    ("error-autograd-profiler", r"module 'mindtorch\.autograd' has no attribute 'profiler'",
     "mindtorch (mindnlp 0.5.1) lacks torch.autograd.profiler, which Optimizer.zero_grad() enters",
     "call ms_gpt.environment.compat.import_mindnlp() instead of import mindnlp (it provides the no-op profiler)"),
    ("error-tensor-device", r"Tensor must have device",
     "plain MindSpore code ran after `import mindnlp`, which rebinds mindspore.Tensor operators to mindtorch",
     "run mindnlp jobs and from-scratch MindSpore code in separate processes (or import mindnlp only "
     "where it is needed, after the MindSpore work)"),
    ("error-ms-dataset-in-trainer", r"'(?:Padded)?Batch(?:Dataset)?'? object is not subscriptable|"
     r"'\w*Dataset' object is not subscriptable",
     "a MindSpore (batched) dataset was given to the Hugging Face Trainer of mindnlp 0.5, which indexes samples",
     "bridge the batches: ms_gpt.data.imdb_pipeline.BatchedDataset(dataset) as train_dataset, "
     "data_collator=collate_batch and per_device_train_batch_size=1 (what ms-gpt finetune-imdb does)"),
    ("error-safe-open-backend", r"unexpected keyword argument 'backend'|'fast_safe_open' object has no attribute",
     "mindnlp 0.5.1's safetensors reader does not take safetensors 0.8's backend= (load_best_model_at_end)",
     "call ms_gpt.environment.compat.import_mindnlp() instead of import mindnlp (it adapts safe_open)"),
    ("error-safe-globals", r"module 'mindtorch\.serialization' has no attribute 'safe_globals'",
     "mindtorch lacks torch.serialization.safe_globals, which the Trainer uses to resume from a checkpoint",
     "call ms_gpt.environment.compat.import_mindnlp() instead of import mindnlp (it provides safe_globals)"),
    ("error-pyarrow-numpy", r"pyarrow requires NumPy 2\.0 or newer",
     "pyarrow >= 26 with numpy 1.x (mindspore 2.7 needs numpy<2)",
     "pip install --no-deps pyarrow==21.0.0 datasets==4.3.0"),
)


def explain(text: str) -> list[Diagnosis]:
    """Diagnoses for stale imports in source code or for a known error message."""
    out = []
    for code, pattern, what, fix in STALE_API:
        if re.search(pattern, text):
            out.append(Diagnosis(code, "error", what, fix))
    return out


def scan_paths(paths: Iterable[str]) -> list[Diagnosis]:
    """Stale tutorial imports in .py/.ipynb files (folders are searched recursively)."""
    out = []
    for raw in paths:
        root = Path(raw)
        if not root.exists():
            raise FileNotFoundError(f"--scan {raw!r}: no such file or folder")
        files = [root] if root.is_file() else sorted(
            f for f in root.rglob("*") if f.suffix in (".py", ".ipynb") and ".venv" not in f.parts
        )
        for f in files:
            text = f.read_text(errors="replace")
            if f.suffix == ".ipynb":
                try:
                    cells = json.loads(text).get("cells", [])
                    text = "\n".join("".join(c.get("source", [])) for c in cells if c.get("cell_type") == "code")
                except ValueError:
                    pass
            for i, line in enumerate(text.splitlines(), 1):
                if "import" not in line:
                    continue
                for d in explain(line):
                    d.message = f"{f}:{i}: {d.message}"
                    out.append(d)
    return out


def format_text(rep: dict) -> str:
    lines = [f"ms-gpt doctor: {'OK' if rep['ok'] else 'PROBLEMS FOUND'}"
             + (f" (supported set: {rep['supported_set']})" if rep["supported_set"] else "")]
    lines.append(f"  python          {rep['python']} ({rep['machine']})")
    for k, v in rep["versions"].items():
        lines.append(f"  {k:<16}{v or '-'}")
    lines.append(f"  targets         {', '.join(rep['device_targets']) or '-'}")
    lines.append(f"  CANN            {rep['cann'] or '-'}")
    lines.append(f"  HF_ENDPOINT     {rep['hf_endpoint'] or '-'}")
    lines.append(f"  CPU kernels     {rep.get('cpu_kernels') or '-'}")
    for d in rep["diagnoses"]:
        lines.append(f"[{d['severity']}] {d['code']}: {d['message']}\n    fix: {d['fix']}")
    return "\n".join(lines)


def run(as_json: bool = False, scan: Iterable[str] = (), explain_text: str | None = None,
        env: Environment | None = None, out=None) -> int:
    """The ``ms-gpt doctor`` command. Returns the exit code: 0 healthy, 1 otherwise."""
    out = out or sys.stdout
    env = env or collect()
    rep = report(env)
    explained = explain(explain_text) if explain_text else []
    extra = scan_paths(scan) + explained
    if extra:
        rep["diagnoses"] += [asdict(d) for d in extra]
        rep["ok"] = False
    if explain_text and not explained:  # say so, rather than print a healthy report as if it answered
        rep["explain"] = (f"no known breakage matches {explain_text[:200]!r}; the report above is this machine's "
                          f"environment. Known: {', '.join(sorted({c for c, *_ in STALE_API}))}")
    text = json.dumps(rep, indent=2) if as_json else format_text(rep)
    if "explain" in rep and not as_json:
        text += f"\n[explain] {rep['explain']}"
    out.write(text + "\n")
    return 0 if rep["ok"] else 1
