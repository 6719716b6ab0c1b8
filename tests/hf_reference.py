"""The Hugging Face / real-PyTorch side of the parity tests. Runs in .venv-ref, never in .venv
(there `import torch` is mindnlp's mindtorch). Usage:

    python hf_reference.py make OUT_DIR      # random OpenAIGPTLMHeadModel -> OUT_DIR/{hf,hf_bin}, reference.npz
    python hf_reference.py logits MODEL_DIR BATCH.npz OUT.npz   # transformers' logits for a saved model
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import OpenAIGPTConfig, OpenAIGPTLMHeadModel

VOCAB, N_SPECIAL = 99, 3
# Right-padded batch (pad id 0) with its attention mask, and a prompt for greedy decoding.
BATCH = np.array([[5, 17, 42, 8, 91, 3, 0, 0], [11, 2, 64, 64, 30, 7, 19, 100]], dtype=np.int64)
MASK = (BATCH != 0).astype(np.int64)
PROMPT = np.array([[7, 23, 56, 4]], dtype=np.int64)


def logits_of(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()


def make(out):
    torch.manual_seed(0)
    cfg = OpenAIGPTConfig(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=4, afn="gelu")
    model = OpenAIGPTLMHeadModel(cfg)
    model.resize_token_embeddings(VOCAB + N_SPECIAL)  # special tokens added as fine-tuning does
    with torch.no_grad():  # non-trivial LayerNorms and biases, so a mapping mistake cannot hide
        for name, p in model.named_parameters():
            if "ln_" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    model.eval()
    model.save_pretrained(out / "hf", safe_serialization=True)
    model.save_pretrained(out / "hf_bin", safe_serialization=False)
    gen = model.generate(torch.tensor(PROMPT), attention_mask=torch.ones_like(torch.tensor(PROMPT)),
                         max_new_tokens=20, do_sample=False, num_beams=1, pad_token_id=0)
    np.savez(out / "reference.npz", batch=BATCH, mask=MASK, logits=logits_of(model, BATCH, MASK),
             prompt=PROMPT, greedy=gen.numpy())
    print(json.dumps({"torch": torch.__version__, "vocab": model.config.vocab_size}))


def logits(model_dir, batch_file, out_file):
    model = OpenAIGPTLMHeadModel.from_pretrained(model_dir)
    model.eval()
    data = np.load(batch_file)
    np.savez(out_file, logits=logits_of(model, data["batch"], data["mask"]))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(Path(sys.argv[2]))
    else:
        logits(sys.argv[2], sys.argv[3], sys.argv[4])
