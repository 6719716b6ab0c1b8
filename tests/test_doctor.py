"""Each known breakage is diagnosed from an injected fake environment; the real one is healthy."""
import copy
import io
import json
import subprocess

import pytest

from ms_gpt.environment import doctor

GOOD_PACKAGES = {
    "mindspore": "2.7.0", "mindnlp": "0.5.1", "transformers": "4.56.2", "tokenizers": "0.22.1",
    "huggingface-hub": "0.35.3", "numpy": "1.26.4", "pyarrow": "21.0.0", "datasets": "4.3.0",
    "ftfy": "6.3.1", "jieba": "0.42.1", "accelerate": "1.10.1", "safetensors": "0.8.0", "torch": None, "spacy": None,
}
GOOD_REQUIRES = {
    "mindnlp": ["mindspore<=2.7.0,>=2.5.0", "transformers==4.56.2"],
    "transformers": ["tokenizers<=0.23.0,>=0.22.0", "huggingface-hub<1.0,>=0.34.0", "numpy>=1.17"],
}


def fake_env(**changes):
    env = doctor.Environment(python="3.11.7", machine="x86_64", packages=copy.deepcopy(GOOD_PACKAGES),
                             requires=copy.deepcopy(GOOD_REQUIRES), targets=["CPU"])
    for key, value in changes.pop("packages", {}).items():
        env.packages[key] = value
    for key, value in changes.items():
        setattr(env, key, value)
    return env


def codes(env):
    return {d["code"]: d for d in doctor.report(env)["diagnoses"]}


def test_fake_good_environment_is_healthy():
    rep = doctor.report(fake_env())
    assert rep["ok"] is True and rep["supported_set"] == "cpu-gpu-x86_64" and rep["diagnoses"] == []


def test_aarch64_matches_the_ascend_set():
    rep = doctor.report(fake_env(machine="aarch64", targets=["Ascend", "CPU"], cann="8.2.RC1"))
    assert rep["ok"] is True and rep["supported_set"] == "ascend-aarch64"


def test_mindnlp_04_with_new_mindspore():
    d = codes(fake_env(packages={"mindnlp": "0.4.1"}, requires={}))["mindnlp-0.4-with-mindspore-2.6+"]
    assert "_stub_tensor" in d["message"] and "mindnlp 0.4.1" in d["message"]
    assert d["fix"] == "pip install --no-deps mindnlp==0.5.1 mindspore==2.7.0 (0.5.x is the line that imports)"


def test_mindnlp_05_with_mindspore_28():
    found = codes(fake_env(packages={"mindspore": "2.8.0"}))
    d = found["mindnlp-0.5-with-mindspore-2.8+"]
    assert "'seed' and 'offset'" in d["message"] and d["fix"] == "pip install --no-deps mindspore==2.7.0"
    # mindnlp's own declared requirement is reported too, naming both versions.
    conflict = found["requirement-conflict"]
    assert "mindnlp 0.5.1 requires mindspore" in conflict["message"] and "you have mindspore 2.8.0" in conflict["message"]


def test_transformers_5():
    d = codes(fake_env(packages={"transformers": "5.0.1"}, requires={}))["transformers-5"]
    assert "transformers 5.0.1" in d["message"]
    assert d["fix"].startswith("pip install --no-deps transformers==4.56.2 tokenizers==0.22.1")


def test_pyarrow_26_with_numpy_1():
    d = codes(fake_env(packages={"pyarrow": "26.0.0"}))["pyarrow-26-with-numpy-1"]
    assert "pyarrow requires NumPy 2.0 or newer" in d["message"]
    assert d["fix"] == "pip install --no-deps pyarrow==21.0.0 datasets==4.3.0"


def test_numpy_2_with_mindspore_27():
    d = codes(fake_env(packages={"numpy": "2.1.0"}))["numpy-2-with-mindspore-2.7"]
    assert d["fix"] == "pip install --no-deps numpy==1.26.4"


def test_real_torch_imported_before_mindnlp():
    d = codes(fake_env(packages={"torch": "2.13.0"}, real_torch_loaded=True))["real-torch-before-mindnlp"]
    assert "must be imported first" in d["message"] and "import mindnlp" in d["fix"]
    # Loaded after mindnlp: fine.
    assert "real-torch-before-mindnlp" not in codes(fake_env(packages={"torch": "2.13.0"},
                                                             real_torch_loaded=True, mindnlp_loaded=True))


def test_real_torch_installed_is_only_a_warning():
    found = codes(fake_env(packages={"torch": "2.13.0"}))
    assert found["real-torch-installed"]["severity"] == "warning"
    assert doctor.report(fake_env(packages={"torch": "2.13.0"}))["ok"] is True


def test_ftfy_missing():
    env = fake_env(packages={"ftfy": None})
    d = codes(env)["ftfy-missing"]
    assert "falls back to BERT's BasicTokenizer" in d["message"] and "ftfy==6.3.1" in d["fix"]
    assert doctor.report(env)["ok"] is False


def test_spacy_with_ftfy_changes_the_openai_tokenizer_mode():
    found = codes(fake_env(packages={"spacy": "3.8.7"}))
    d = found["openai-tokenizer-spacy-mode"]
    assert "SpaCy + ftfy" in d["message"] and "pip uninstall spacy" in d["fix"]
    assert "openai-tokenizer-spacy-mode" not in codes(fake_env(packages={"spacy": "3.8.7", "ftfy": None}))


def test_real_openai_tokenizer_mode_is_bert_basic():
    """What the tested set really does: without spacy the slow tokenizer uses BasicTokenizer, with
    the same tokens as the fast one (transformers only, in a child process without mindnlp)."""
    import subprocess
    import sys

    code = r"""
import json, tempfile
from tokenizers import Tokenizer, models, trainers, pre_tokenizers, normalizers
texts = ["The quick brown fox jumps over the lazy dog.", "A fox is quick; a dog is lazy!"] * 20
tok = Tokenizer(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>"))
tok.normalizer = normalizers.Lowercase()
tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=80, special_tokens=["<unk>"], end_of_word_suffix="</w>"))
d = tempfile.mkdtemp(); tok.model.save(d)
from transformers import OpenAIGPTTokenizer, OpenAIGPTTokenizerFast
slow = OpenAIGPTTokenizer(d + "/vocab.json", d + "/merges.txt")
fast = OpenAIGPTTokenizerFast(d + "/vocab.json", d + "/merges.txt")
s = "The lazy fox; a quick dog!"
print(json.dumps({"spacy_mode": type(slow.nlp).__name__ != "BasicTokenizer", "same": slow.tokenize(s) == fast.tokenize(s)}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == '{"spacy_mode": false, "same": true}'


def test_tokenizers_conflict_from_declared_requirement():
    env = fake_env(packages={"transformers": "4.33.0", "tokenizers": "0.15.0"},
                   requires={"transformers": ["tokenizers!=0.11.3,<0.14,>=0.11.1"]})
    d = codes(env)["requirement-conflict"]
    assert d["message"] == "transformers 4.33.0 requires tokenizers!=0.11.3,<0.14,>=0.11.1, but you have tokenizers 0.15.0"
    assert d["fix"].startswith("pip install --no-deps tokenizers==0.22.1")


def test_python_version_refused():
    rep = doctor.report(fake_env(python="3.12.4"))
    found = {d["code"]: d for d in rep["diagnoses"]}
    assert "3.10 and 3.11 only" in found["python-version"]["message"] and rep["ok"] is False


def test_unpinned_versions_are_named():
    d = codes(fake_env(packages={"jieba": "0.42.0"}))["unsupported-versions"]
    assert "jieba 0.42.0 (tested: 0.42.1)" in d["message"]


def test_missing_mindspore_and_broken_mindspore():
    assert "mindspore-missing" in codes(fake_env(packages={"mindspore": None}))
    d = codes(fake_env(target_error="ImportError: libgomp.so.1"))["mindspore-broken"]
    assert "libgomp" in d["message"]


def test_cann_present_but_ascend_not_usable():
    d = codes(fake_env(machine="aarch64", cann="8.2.RC1", targets=["CPU"]))["ascend-not-usable"]
    assert "CANN 8.2.RC1" in d["message"] and "set_env.sh" in d["fix"]


@pytest.mark.parametrize("text,code,fix_part", [
    ("from mindspore.dataset.text import Truncate, PadEnd", "stale-truncate", "truncation=True"),
    ("ImportError: cannot import name 'Truncate' from 'mindspore.dataset.text'", "stale-truncate", "truncation=True"),
    ("from mindnlp.transforms import GPTTokenizer", "stale-gpttokenizer", "OpenAIGPTTokenizer"),
    ("import mindnlp.transforms", "stale-mindnlp-transforms", "mindnlp.transformers"),
    ("from mindnlp.engine import Trainer, Evaluator", "stale-mindnlp-engine", "Trainer"),
    ("from mindnlp.metrics import Accuracy", "stale-mindnlp-metrics", "numpy"),
    ("AttributeError: module 'mindspore.common' has no attribute '_stub_tensor'", "error-stub-tensor", "mindnlp==0.5.1"),
    ("TypeError: Generator.__init__() missing 2 required positional arguments: 'seed' and 'offset'",
     "error-generator-seed", "mindspore==2.7.0"),
    ("transformers 4.30.2 requires tokenizers<0.15,>=0.11.1 but you have tokenizers 0.15.0",
     "error-tokenizers-conflict", "transformers==4.56.2"),
    ("RuntimeError: No implementation for function: addcdiv on cpu.", "error-addcdiv", "import_mindnlp"),
    ("TypeError: the type of 'axis' should be one of int, tuple, list, but got NoneType", "error-norm-axis", "import_mindnlp"),
    ("AttributeError: module 'mindtorch.autograd' has no attribute 'profiler'", "error-autograd-profiler", "import_mindnlp"),
    ("ValueError: Tensor must have device", "error-tensor-device", "separate processes"),
    ("TypeError: 'PaddedBatchDataset' object is not subscriptable", "error-ms-dataset-in-trainer", "BatchedDataset"),
    ("TypeError: 'BatchDataset' object is not subscriptable", "error-ms-dataset-in-trainer", "collate_batch"),
    ("TypeError: fast_safe_open.__init__() got an unexpected keyword argument 'backend'", "error-safe-open-backend",
     "import_mindnlp"),
    ("AttributeError: module 'mindtorch.serialization' has no attribute 'safe_globals'", "error-safe-globals",
     "import_mindnlp"),
])
def test_explain_known_errors_and_stale_imports(text, code, fix_part):
    found = {d.code: d for d in doctor.explain(text)}
    assert code in found and fix_part in found[code].fix


def test_explain_unrelated_text_finds_nothing():
    assert doctor.explain("import numpy as np\nfrom mindnlp.transformers import OpenAIGPTTokenizer") == []


def test_scan_files_and_notebooks(tmp_path):
    (tmp_path / "old.py").write_text("import os\nfrom mindnlp.transforms import GPTTokenizer\n")
    nb = {"cells": [{"cell_type": "markdown", "source": ["from mindnlp.engine import Trainer"]},
                    {"cell_type": "code", "source": ["import mindspore\n", "from mindspore.dataset.text import Truncate\n"]}]}
    (tmp_path / "course.ipynb").write_text(json.dumps(nb))
    (tmp_path / "ok.py").write_text("from mindnlp.transformers import OpenAIGPTTokenizer\n")
    found = doctor.scan_paths([str(tmp_path)])
    where = sorted((d.code, d.message.split(": ")[0]) for d in found)
    assert where == [
        ("stale-gpttokenizer", f"{tmp_path / 'old.py'}:2"),
        ("stale-mindnlp-transforms", f"{tmp_path / 'old.py'}:2"),
        ("stale-truncate", f"{tmp_path / 'course.ipynb'}:2"),
    ]
    with pytest.raises(FileNotFoundError, match=r"--scan '/no/such/dir': no such file or folder"):
        doctor.scan_paths(["/no/such/dir"])


def test_read_cann_version(tmp_path):
    assert doctor.read_cann_version(tmp_path / "missing") is None
    cfg = tmp_path / "ascend-toolkit" / "latest"
    cfg.mkdir(parents=True)
    assert doctor.read_cann_version(tmp_path).startswith("unknown")
    (cfg / "version.cfg").write_text("# version: 1.0\nruntime_running_version=[8.2.RC1:8.2.RC1]\ntoolkit_installed_version=[8.2.RC1:8.2.RC1]\n")
    assert doctor.read_cann_version(tmp_path) == "8.2.RC1"


def test_run_text_and_exit_codes():
    out = io.StringIO()
    assert doctor.run(env=fake_env(), out=out) == 0
    assert out.getvalue().startswith("ms-gpt doctor: OK (supported set: cpu-gpu-x86_64)")
    out = io.StringIO()
    assert doctor.run(env=fake_env(packages={"transformers": "5.0.0"}, requires={}), out=out) == 1
    assert "[error] transformers-5" in out.getvalue()
    out = io.StringIO()
    assert doctor.run(env=fake_env(), explain_text="cannot import name 'Truncate'", out=out, as_json=True) == 1
    assert json.loads(out.getvalue())["diagnoses"][0]["code"] == "stale-truncate"


def test_real_environment_is_healthy():
    rep = doctor.report(doctor.collect())
    assert [d for d in rep["diagnoses"] if d["severity"] == "error"] == []
    assert rep["ok"] is True
    assert rep["versions"]["mindnlp"] == "0.5.1"  # from metadata; mindnlp.__version__ says 0.5.0rc2
    assert "CPU" in rep["device_targets"]


def test_cli_doctor_json_exit_zero(venv_bin):
    proc = subprocess.run([str(venv_bin / "ms-gpt"), "doctor", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["ok"] is True and rep["versions"]["mindspore"] == "2.7.0"
    assert set(doctor.REPORTED) <= set(rep["versions"])


def test_cli_doctor_unavailable_device_fails(venv_bin):
    from ms_gpt.environment.device import available_targets

    if "Ascend" in available_targets():
        pytest.skip("this machine has Ascend: nothing unavailable to ask for")
    proc = subprocess.run([str(venv_bin / "ms-gpt"), "doctor", "--device", "Ascend"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "set_env.sh" in proc.stderr
