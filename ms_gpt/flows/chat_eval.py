"""``ms-gpt chat-eval``: a dialogue model's replies to held-out lines, judged by figures that are not a reward
model's (:mod:`ms_gpt.reply_quality`).

The contexts are lines of ``builtin:chitchat``'s test conversations (:func:`ms_gpt.data.dialogue.chitchat_splits`),
each answered as ``ms-gpt chat`` answers a first message (its default decoding unless flags say otherwise).
Beside :func:`ms_gpt.reply_quality.reply_figures` and the judge's ceiling and floor it measures, against the
reference model (by default: for a PPO model the chat model it was tuned from; an SFT model is its own):

- ``ref_ppl``: the reference's perplexity of the replies (per token, the closing ``<eos>`` included; a reply
  longer than the position table on the tokens that fit after its line);
- ``kl_to_reference``: KL(π ‖ π_ref) in nats per reply, estimated as PPO measures it: one reply per context
  sampled from the model at temperature 1 (up to the tokens the table has room for after a line), the mean
  of Σ log π - log π_ref over its tokens.

The result (stdout, JSON) has a few replies beside the real ones; a markdown table goes to stderr.
"""

from __future__ import annotations

import dataclasses
import random
import sys
from pathlib import Path

import numpy as np

from ms_gpt.config import GenerationConfig
from ms_gpt.data.dialogue import chitchat_splits, exchanges
from ms_gpt.flows import common
from ms_gpt.flows.configs import ChatEvalConfig
from ms_gpt.generation import left_pad, sample
from ms_gpt.prompting import context_budget, open_checkpoint, respond, suppressed_ids
from ms_gpt.reply_quality import OnTopicJudge, judge_bounds, reply_figures
from ms_gpt.rl.rollouts import logit_bias, response_log_probs
from ms_gpt.run_folder import checkpoint

BATCH = 32  # replies scored (or sampled) together
SHOWN = 5


def default_reference(ckpt: Path) -> str:
    """The chat model a PPO folder was tuned from (its ppo.json's policy); an SFT model is its own reference."""
    if (ckpt / checkpoint.PPO).is_file():
        return checkpoint.read_json(ckpt / checkpoint.PPO)["policy"]
    return str(ckpt)


def _sum_log_probs(model, ids, prompt_len: int, mask, bias) -> np.ndarray:
    """Σ log p under ``model`` of the response tokens of ``ids`` [b, P + T] (prompts left-padded to ``prompt_len``,
    responses after them; ``mask`` [b, T] 1 on response tokens), as PPO scores its rollouts."""
    import mindspore

    _, _, logp = response_log_probs(model, mindspore.Tensor(ids.astype(np.int32)), prompt_len, mindspore.Tensor(bias))
    return (logp.asnumpy().astype(np.float64) * mask).sum(1)


def _log_probs(model, rows, bias) -> list:
    """Σ log p of each (prompt ids, response ids) row's response tokens under ``model``, in batches."""
    out = []
    for start in range(0, len(rows), BATCH):
        part = rows[start:start + BATCH]
        length = max(len(p) for p, _ in part)
        width = max(len(r) for _, r in part)
        ids = np.full((len(part), length + width), model.config.pad_token_id, np.int32)
        ids[:, :length] = left_pad([p for p, _ in part], length, model.config.pad_token_id)
        mask = np.zeros((len(part), width), np.float64)
        for i, (_, r) in enumerate(part):
            ids[i, length:length + len(r)] = r
            mask[i, :len(r)] = 1
        out += list(_sum_log_probs(model, ids, length, mask, bias))
    return out


def chat_eval(cfg: ChatEvalConfig) -> dict:
    cfg.validate()
    common.setup(cfg)
    ckpt = Path(cfg.ckpt)
    model, prompter = open_checkpoint(ckpt)
    if not prompter.dialogue:
        raise ValueError(f"--ckpt {ckpt} is not a dialogue model ({prompter.form} form): give a folder written by "
                         "ms-gpt sft, or by ms-gpt ppo from one")
    reference = cfg.reference or default_reference(ckpt)
    ref, ref_prompter = open_checkpoint(reference)
    if ref_prompter.tok.vocab_size != prompter.tok.vocab_size:
        raise ValueError(f"--reference {reference} has another vocabulary ({ref_prompter.tok.vocab_size} tokens, "
                         f"--ckpt {prompter.tok.vocab_size}): give the chat model --ckpt was tuned from")
    parts = chitchat_splits(cfg.seed)
    common.say("chat-eval", "training the on-topic judge on the training conversations")
    judge = OnTopicJudge(exchanges(parts["train"]), seed=cfg.seed)
    lines = exchanges(parts["test"], max_context_turns=1)  # a line and its real reply
    held = random.Random(cfg.seed).sample(lines, min(cfg.contexts, len(lines)))
    contexts = [list(e.context) for e in held]
    gen = prompter.generation(cfg.generation)
    common.say("chat-eval", f"replying to {len(held)} held-out lines ({gen.strategy}, up to {gen.max_new_tokens} "
                            "tokens)")
    replies = [respond(model, prompter, c, gen) for c in contexts]
    figures = reply_figures(contexts, [r.text for r in replies], [r.ended for r in replies], judge)
    n = model.config.n_positions
    budget = context_budget(n, gen.max_new_tokens)  # the prompts the replies were drawn from (respond's)
    prompts = [prompter.conversation(c, budget) for c in contexts]
    bias = logit_bias(model.config.vocab_size, suppressed_ids(prompter.tok))
    common.say("chat-eval", f"scoring the replies with the reference {reference}")
    # a reply longer than the table is scored on the tokens that fit after its line
    scored = [(p, list(r.ids)[:n - len(p)]) for p, r in zip(prompts, replies)]
    ref_logp = _log_probs(ref, scored, bias)
    tokens = sum(len(r) for _, r in scored)
    figures["ref_ppl"] = round(float(np.exp(-sum(ref_logp) / max(tokens, 1))), 3)
    common.say("chat-eval", "sampling one reply per line for the KL to the reference")
    draw = dataclasses.replace(prompter.generation(GenerationConfig(strategy="sample", seed=cfg.seed)),
                               max_new_tokens=min(gen.max_new_tokens, n - budget))  # every draw fits the table
    kl = []
    rng = np.random.default_rng(cfg.seed)
    for start in range(0, len(prompts), BATCH):
        part = prompts[start:start + BATCH]
        drawn = sample(model, part, draw, pad_id=prompter.tok.pad_id, rng=rng)
        mine = (drawn.logprobs * drawn.mask).sum(1)
        kl += list(mine - _sum_log_probs(ref, drawn.ids, drawn.prompt_len, drawn.mask, bias))
    figures["kl_to_reference"] = round(float(np.mean(kl)), 3) + 0.0  # never "-0"
    result = {"ckpt": str(ckpt), "reference": str(reference), "seed": cfg.seed,
              "decoding": {k: v for k, v in dataclasses.asdict(gen).items()
                           if k not in ("eos_id", "stop_ids", "suppress_ids", "seed")},
              "judge": judge_bounds(held, judge, seed=cfg.seed), **figures,
              "examples": [{"context": c[-1], "real": e.response, "reply": r.text}
                           for c, e, r in list(zip(contexts, held, replies))[:SHOWN]]}
    print(table([result]), file=sys.stderr)
    return result


COLUMNS = (("on_topic", "on topic"), ("ended", "ends with <eos>"), ("repeated_3gram", "repeated 3-gram"),
           ("distinct_2", "distinct-2"), ("mean_words", "words"), ("ref_ppl", "ref. perplexity"),
           ("kl_to_reference", "KL to ref. (nats)"))


def table(results) -> str:
    """A markdown table of chat-eval results, one row each, with the judge's ceiling and floor."""
    head = "| model | " + " | ".join(name for _, name in COLUMNS) + " | judge: real / random |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for r in results:
        cells = " | ".join(f"{r[key]:g}" for key, _ in COLUMNS)
        lines.append(f"| {r['ckpt']} | {cells} | {r['judge']['real']:g} / {r['judge']['random']:g} |")
    return "\n".join(lines)
