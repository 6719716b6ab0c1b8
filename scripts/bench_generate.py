"""Decoding speed of the from-scratch GPT, printed as JSON.

For 32/128/256 new tokens: greedy tokens/s with the KV cache and without it (the whole sequence
recomputed for every token), median of ``--repeats`` runs after a warm-up, and the speed-up; then
the cached per-token time against the context length (16 … 256), as a ratio to the shortest.

    .venv/bin/python scripts/bench_generate.py                  # tutorial preset (6 x 512), random weights
    .venv/bin/python scripts/bench_generate.py --preset tiny --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_train import run_times  # noqa: E402  (scripts/ is on sys.path when run as a script)


def build(args):
    import numpy as np

    from ms_gpt import device
    from ms_gpt.config import GPTConfig
    from ms_gpt.model import GPT

    device.setup(args.device, mode="pynative", seed=0)
    need = args.prompt_len + max(args.new_tokens) + 1
    cfg = GPTConfig.preset(args.preset, vocab_size=args.vocab_size, pad_token_id=None,
                           n_positions=max(need, max(args.contexts) + 1))
    model = GPT(cfg)
    model.set_train(False)
    prompt = np.random.RandomState(0).randint(0, args.vocab_size, args.prompt_len).tolist()
    return model, cfg, prompt


def median_time(fn, repeats: int) -> float:
    return statistics.median(run_times(fn, repeats))


def decode_speed(model, prompt, new_tokens, repeats) -> dict:
    from ms_gpt.generation import generate

    rows = []
    for n in new_tokens:
        row = {"new_tokens": n}
        outputs = {}
        for use_cache in (True, False):
            def run():
                outputs[use_cache] = generate(model, prompt, strategy="greedy", max_new_tokens=n,
                                              eos_id=None, use_cache=use_cache)
            seconds = median_time(run, repeats)
            row["cached_tokens_per_s" if use_cache else "uncached_tokens_per_s"] = round(n / seconds, 2)
        row["speedup"] = round(row["cached_tokens_per_s"] / row["uncached_tokens_per_s"], 2)
        row["same_tokens"] = outputs[True] == outputs[False]
        rows.append(row)
    return rows


STEPS_PER_SAMPLE = 20


def per_token_vs_context(model, cfg, contexts, repeats) -> dict:
    """Time of one cached step (1 new token), as ``generate`` runs it (the compiled fixed-size-cache
    graph), after a prompt of each context length: the median of blocks of ``STEPS_PER_SAMPLE`` steps
    (single steps of a few ms came out in multiples of ~4 ms on this machine)."""
    import mindspore
    import numpy as np

    from ms_gpt.generation import compiled_step
    from ms_gpt.model import KVCache

    rng = np.random.RandomState(1)
    out = []
    for c in contexts:
        ids = mindspore.Tensor(rng.randint(0, cfg.vocab_size, (1, c)).astype(np.int32))
        cache = model(ids, KVCache.empty(cfg, batch=1)).cache
        inputs = cache.as_inputs()
        nxt = mindspore.Tensor(np.array([[5]], np.int32))

        def block():  # one step is a few ms, near the clock's tick here: time STEPS_PER_SAMPLE of them
            for _ in range(STEPS_PER_SAMPLE):
                logits, _, _ = compiled_step(model)(nxt, *inputs)
                logits.asnumpy()

        block()
        seconds = median_time(block, max(repeats, 5)) / STEPS_PER_SAMPLE
        out.append({"context": c, "ms_per_token": round(seconds * 1000, 2)})
    base = out[0]["ms_per_token"]
    for row in out:
        row["ratio_to_shortest"] = round(row["ms_per_token"] / base, 3)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tutorial")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, nargs="+", default=[32, 128, 256])
    p.add_argument("--contexts", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    p.add_argument("--repeats", type=int, default=3, help="timed runs per setting (median; >= 3)")
    p.add_argument("--device", default="CPU")
    args = p.parse_args(argv)
    if args.repeats < 3:
        p.error(f"--repeats must be >= 3, got {args.repeats}")
    model, cfg, prompt = build(args)
    from ms_gpt.generation import generate

    t0 = time.perf_counter()
    generate(model, prompt, strategy="greedy", max_new_tokens=4, eos_id=None)  # warm-up
    generate(model, prompt, strategy="greedy", max_new_tokens=4, eos_id=None, use_cache=False)
    warmup_s = time.perf_counter() - t0
    decoding = decode_speed(model, prompt, args.new_tokens, args.repeats)
    context = per_token_vs_context(model, cfg, args.contexts, args.repeats)
    ratios = [r["ratio_to_shortest"] for r in context]
    import mindspore

    result = {
        "bench": "generate", "framework": "mindspore " + mindspore.__version__, "device": args.device,
        "preset": args.preset, "config": cfg.to_dict(), "prompt_len": args.prompt_len, "warmup_s": round(warmup_s, 2),
        "decoding": decoding, "per_token_vs_context": context,
        "cached_per_token_spread": round(max(ratios) / min(ratios), 3),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
