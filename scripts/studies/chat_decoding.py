"""Which decoding should ms-gpt chat use? Every setting below on the same held-out chitchat contexts, for one or
more dialogue models (folders written by ms-gpt sft), one JSON line per (model, setting).

  python scripts/studies/chat_decoding.py --ckpt runs/chat [runs/chat-bpe ...] [--contexts 60] [--settings NAME ...]

The contexts are a seeded sample of builtin:chitchat's held-out exchanges (up to 4 turns each, as ms-gpt sft
scores them); the figures are ms_gpt.reply_quality's (on topic by its judge, ended with <eos>, repeated word
3-gram, distinct-2). The figures behind ms_gpt.recipes.CHAT_DECODING came from this script.
"""

from __future__ import annotations

import argparse
import json
import random
import time

SETTINGS = {
    "beam5_rep1.2": dict(strategy="beam", num_beams=5, repetition_penalty=1.2),  # the tutorial's
    "beam5": dict(strategy="beam", num_beams=5),
    "beam5_nrng3": dict(strategy="beam", num_beams=5, no_repeat_ngram_size=3),
    "beam5_rep1.1_nrng3": dict(strategy="beam", num_beams=5, repetition_penalty=1.1, no_repeat_ngram_size=3),
    "greedy": dict(strategy="greedy"),
    "sample_t0.7_p0.9": dict(strategy="sample", temperature=0.7, top_p=0.9),
    "sample_t0.8_k40_rep1.1": dict(strategy="sample", temperature=0.8, top_k=40, repetition_penalty=1.1),
    "sample_t0.8_k40_rep1.1_nrng3": dict(strategy="sample", temperature=0.8, top_k=40, repetition_penalty=1.1,
                                         no_repeat_ngram_size=3),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", nargs="+", required=True, help="dialogue model folders (ms-gpt sft) (required)")
    p.add_argument("--contexts", type=int, default=60, help="held-out contexts to reply to (default: 60)")
    p.add_argument("--settings", nargs="+", choices=tuple(SETTINGS), default=tuple(SETTINGS),
                   help="decoding settings to compare (default: all)")
    p.add_argument("--seed", type=int, default=0, help="the contexts' sample and the judge (default: 0)")
    args = p.parse_args()
    if args.contexts < 1:
        p.error(f"--contexts must be >= 1, got {args.contexts}")

    from ms_gpt.config import GenerationConfig
    from ms_gpt.data.dialogue import load_dialogue
    from ms_gpt.environment import device
    from ms_gpt.prompting import open_checkpoint, respond
    from ms_gpt.reply_quality import OnTopicJudge, judge_bounds, reply_figures

    device.setup("CPU", mode="pynative", seed=args.seed)
    train, valid = load_dialogue("builtin:chitchat", seed=args.seed)
    judge = OnTopicJudge(train, seed=args.seed)
    held = random.Random(args.seed).sample(valid, min(args.contexts, len(valid)))
    contexts = [list(e.context) for e in held]
    print(json.dumps({"contexts": len(held), "judge": judge_bounds(held, judge, seed=args.seed)}), flush=True)
    for ckpt in args.ckpt:
        model, prompter = open_checkpoint(ckpt)
        for name in args.settings:
            gen = prompter.generation(GenerationConfig(**SETTINGS[name], seed=args.seed))
            start = time.perf_counter()
            replies = [respond(model, prompter, c, gen) for c in contexts]
            figures = reply_figures(contexts, [r.text for r in replies], [r.ended for r in replies], judge)
            print(json.dumps({"ckpt": ckpt, "setting": name, **figures,
                              "seconds": round(time.perf_counter() - start, 1),
                              "examples": [r.text for r in replies[:3]]}, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
