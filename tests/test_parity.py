"""Parity with Hugging Face openai-gpt on real PyTorch (minGPT's test_huggingface_import idea).

The PyTorch side runs in .venv-ref (scripts/test.sh creates it): in .venv, `import torch` is
mindnlp's mindtorch. mindnlp's own OpenAIGPTLMHeadModel runs in a child process of .venv.
"""
import json
import subprocess
import sys
from pathlib import Path

import mindspore
import numpy as np
import pytest

from ms_gpt import convert

ROOT = Path(__file__).resolve().parent.parent
REF_PY = ROOT / ".venv-ref" / "bin" / "python"
REF_SCRIPT = ROOT / "tests" / "hf_reference.py"
TOL = 1e-4


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    if not REF_PY.exists():
        pytest.fail("no reference venv: run `bash scripts/setup.sh --venv .venv-ref "
                    "--lock docker/requirements-torch-ref.txt --no-project` (scripts/test.sh does)")
    out = tmp_path_factory.mktemp("hf")
    proc = subprocess.run([str(REF_PY), str(REF_SCRIPT), "make", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["torch"].startswith("2.13.0")
    data = dict(np.load(out / "reference.npz"))
    data["dir"] = out
    return data


def ms_logits(model, batch):
    return model(mindspore.Tensor(batch.astype(np.int32))).asnumpy()


def real_diff(a, b, mask):
    return float(np.abs(a - b)[mask.astype(bool)].max())


@pytest.mark.parametrize("folder,backend", [("hf", "mindspore"), ("hf", "cpu-kernels"), ("hf_bin", None)])
def test_logits_match_transformers(ref, folder, backend):
    model = convert.load_hf_openai_gpt(ref["dir"] / folder, backend=backend)
    assert backend is None or model.backend.name == backend
    assert model.config.vocab_size == 102  # 99 + 3 added special tokens, from the embedding's shape
    assert real_diff(ms_logits(model, ref["batch"]), ref["logits"], ref["mask"]) <= TOL


def greedy(model, prompt, n):
    ids = prompt.astype(np.int32)
    for _ in range(n):
        nxt = ms_logits(model, ids)[:, -1].argmax(-1).astype(np.int32)
        ids = np.concatenate([ids, nxt[:, None]], axis=1)
    return ids


def test_greedy_generation_matches_transformers(ref):
    model = convert.load_hf_openai_gpt(ref["dir"] / "hf")
    ours = greedy(model, ref["prompt"], 20)
    assert ours.shape == ref["greedy"].shape == (1, 24)
    np.testing.assert_array_equal(ours, ref["greedy"])


def test_export_back_to_transformers(ref, tmp_path):
    model = convert.load_hf_openai_gpt(ref["dir"] / "hf")
    exported = convert.export_hf_openai_gpt(model, tmp_path / "exported")
    np.savez(tmp_path / "batch.npz", batch=ref["batch"], mask=ref["mask"])
    proc = subprocess.run([str(REF_PY), str(REF_SCRIPT), "logits", str(exported), str(tmp_path / "batch.npz"),
                           str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = np.load(tmp_path / "out.npz")["logits"]
    assert real_diff(theirs, ms_logits(model, ref["batch"]), ref["mask"]) <= TOL
    assert real_diff(theirs, ref["logits"], ref["mask"]) <= TOL


MINDNLP_LOGITS = r"""
import sys, numpy as np
from ms_gpt.environment import compat
compat.import_mindnlp()
import torch
from transformers import OpenAIGPTLMHeadModel
model = OpenAIGPTLMHeadModel.from_pretrained(sys.argv[1]).eval()
data = np.load(sys.argv[2])
with torch.no_grad():
    out = model(input_ids=torch.tensor(data["batch"]), attention_mask=torch.tensor(data["mask"])).logits
np.savez(sys.argv[3], logits=out.numpy())
"""


def test_logits_match_mindnlp_openai_gpt(ref, tmp_path):
    np.savez(tmp_path / "batch.npz", batch=ref["batch"], mask=ref["mask"])
    proc = subprocess.run([sys.executable, "-c", MINDNLP_LOGITS, str(ref["dir"] / "hf"), str(tmp_path / "batch.npz"),
                           str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = convert.load_hf_openai_gpt(ref["dir"] / "hf")
    theirs = np.load(tmp_path / "out.npz")["logits"]
    assert real_diff(theirs, ms_logits(model, ref["batch"]), ref["mask"]) <= TOL


def test_ms_checkpoint_roundtrip_and_convert_cli(ref, tmp_path, venv_bin):
    ms_dir, hf_dir = tmp_path / "ms", tmp_path / "hf_again"
    proc = subprocess.run([str(venv_bin / "ms-gpt"), "convert", "--from-hf", str(ref["dir"] / "hf"), "--out", str(ms_dir)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["config"]["vocab_size"] == 102
    from ms_gpt.run_folder import checkpoint

    model = checkpoint.load_model(ms_dir)
    assert real_diff(ms_logits(model, ref["batch"]), ref["logits"], ref["mask"]) <= TOL
    proc = subprocess.run([str(venv_bin / "ms-gpt"), "convert", "--to-hf", str(ms_dir), "--out", str(hf_dir)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from safetensors.numpy import load_file

    original, again = load_file(str(ref["dir"] / "hf" / "model.safetensors")), load_file(str(hf_dir / "model.safetensors"))
    for key, value in original.items():
        np.testing.assert_array_equal(again[key], value, err_msg=key)


def test_conversion_errors(ref, tmp_path):
    with pytest.raises(convert.ConversionError, match=r"config.json not found"):
        convert.load_hf_openai_gpt(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (tmp_path / "model.safetensors").write_bytes((ref["dir"] / "hf" / "model.safetensors").read_bytes())
    with pytest.raises(convert.ConversionError, match=r"model_type 'gpt2'; only 'openai-gpt'"):
        convert.load_hf_openai_gpt(tmp_path)
    cfg = json.loads((ref["dir"] / "hf" / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "n_layer": 1}))
    with pytest.raises(convert.ConversionError, match=r"more layers than config.json's n_layer=1"):
        convert.load_hf_openai_gpt(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "n_layer": 3}))
    with pytest.raises(convert.ConversionError, match=r"weight 'transformer.h.2.attn.c_attn.weight' is missing"):
        convert.load_hf_openai_gpt(tmp_path)
    from ms_gpt.run_folder import checkpoint

    with pytest.raises(checkpoint.CheckpointError, match=r"gpt_config.json not found"):
        checkpoint.load_model(tmp_path)


def test_only_gpt1_shaped_models_export(tmp_path):
    from ms_gpt import GPTConfig
    from ms_gpt.model import GPT

    with pytest.raises(convert.ConversionError, match=r"only GPT-1-shaped models export.*norm='pre'"):
        convert.export_hf_openai_gpt(GPT(GPTConfig.preset("tiny", norm="pre")), tmp_path / "x")
    assert not (tmp_path / "x").exists()
