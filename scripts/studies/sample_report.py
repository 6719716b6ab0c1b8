"""Samples from a pretrained checkpoint, and whether they read as the corpus' language.

Continues held-out lines of the run's own corpus (their first ``--prompt-chars`` characters) by sampling,
prints each sample, and scores them (``ms_gpt.sample_quality``): samples with ``<unk>``, distinct-2 (share
of distinct character 2-grams) and 2-gram coverage (share of the samples' character 2-grams found in the
held-out text). Writes CKPT/samples.json.

  python scripts/studies/sample_report.py --ckpt runs/peoples-daily [--samples 8] [--max-new-tokens 120]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", required=True, help="a folder written by ms-gpt pretrain (required)")
    p.add_argument("--samples", type=int, default=8, help="held-out lines continued (default: 8)")
    p.add_argument("--max-new-tokens", type=int, default=120, help="tokens sampled per line (default: 120)")
    p.add_argument("--prompt-chars", type=int, default=2,
                   help="each line's first characters given as the prompt (default: 2)")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default: 0.7)")
    p.add_argument("--top-k", type=int, default=20, help="sample from the k likeliest tokens (default: 20)")
    p.add_argument("--seed", type=int, default=0, help="the lines chosen and the sampler's seed (default: 0)")
    p.add_argument("--device", default=None,
                   help="Ascend, GPU or CPU (default: $MS_GPT_DEVICE, else the best available)")
    args = p.parse_args(argv)
    for name in ("samples", "max_new_tokens", "prompt_chars", "top_k"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")

    from ms_gpt import sample_quality
    from ms_gpt.config import GenerationConfig
    from ms_gpt.data.corpus import held_out_lines
    from ms_gpt.environment import device
    from ms_gpt.prompting import Writer
    from ms_gpt.run_folder import atomic, checkpoint

    device.setup(args.device, mode="jit", seed=args.seed)
    held_out = held_out_lines(checkpoint.read_run_config(Path(args.ckpt)), f"{args.ckpt}/{checkpoint.RUN_CONFIG}")
    writer = Writer.open(args.ckpt)
    step = max(1, len(held_out) // args.samples)
    prompts = [line[:args.prompt_chars] for line in held_out[::step][:args.samples]]
    samples = []
    for i, prompt in enumerate(prompts):
        gen = GenerationConfig(strategy="sample", max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                               top_k=args.top_k, seed=args.seed + i)
        text = writer(prompt, gen)
        samples.append({"prompt": prompt, "text": text})
        print(f"[{i + 1}] {text}", file=sys.stderr, flush=True)
    figures = sample_quality.report([s["text"] for s in samples], held_out)
    result = {"ckpt": str(args.ckpt), "settings": {k: v for k, v in vars(args).items() if k != "ckpt"},
              **figures, "samples_text": samples}
    atomic.write_json(Path(args.ckpt) / "samples.json", result)
    print(json.dumps({k: v for k, v in result.items() if k != "samples_text"}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
