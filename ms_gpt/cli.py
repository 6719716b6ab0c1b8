"""``ms-gpt``: one subcommand per job. Nothing heavy is imported until a subcommand runs, so
``ms-gpt --help`` answers in a broken environment and in well under a second."""

from __future__ import annotations

import argparse
import json
import sys


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None,
                   help="Ascend, GPU or CPU (default: $MS_GPT_DEVICE, else auto: Ascend > GPU > CPU)")
    p.add_argument("--seed", type=int, default=0, help="seed for Python, NumPy and MindSpore (default 0)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ms-gpt",
        description="GPT-1 on MindSpore: from-scratch cells, the MindNLP openai-gpt flow, pinned environments.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    doc = sub.add_parser("doctor", help="report versions and devices; diagnose known breakages (exit 0 = healthy)")
    _common(doc)
    doc.add_argument("--json", action="store_true", help="print the report as JSON")
    doc.add_argument("--scan", nargs="+", default=[], metavar="PATH",
                     help="also look for stale tutorial imports in these .py/.ipynb files or folders")
    doc.add_argument("--explain", metavar="ERROR_TEXT",
                     help="diagnose an error message you got (e.g. \"cannot import name 'Truncate'\")")

    smk = sub.add_parser("smoke", help="a short real run of the MindNLP stack: train, evaluate, save, reload")
    _common(smk)
    smk.add_argument("--out", default="runs/smoke", help="output folder (metrics.json, model/)")
    smk.add_argument("--steps", type=_positive_int, default=None, help="optimizer steps (default 150)")
    pre = sub.add_parser("pretrain", help="pretrain a GPT from scratch on a corpus (builtin:NAME or a path)")
    _common(pre)
    pre.add_argument("--preset", default="tiny", help="GPTConfig preset: tiny, small, tutorial, gpt1 (default tiny)")
    pre.add_argument("--corpus", default="builtin:demo-en",
                     help="builtin:peoples-daily, builtin:reviews-zh, builtin:demo-en, or a .txt file/folder")
    pre.add_argument("--out", required=True, help="output folder (checkpoint, tokenizer/, metrics.json, loss.png)")
    pre.add_argument("--steps", type=_positive_int, default=200)
    pre.add_argument("--tokenizer", default="auto", help="auto (jieba for Chinese built-ins, else whitespace), "
                     "whitespace, char, jieba, bpe")
    pre.add_argument("--vocab-size", type=_positive_int, default=8000)
    pre.add_argument("--vocab-corpus", default=None, metavar="SRC",
                     help="more text to build the vocabulary over (not trained on), e.g. a task's training texts")
    pre.add_argument("--block-size", type=_positive_int, default=64)
    pre.add_argument("--batch-size", type=_positive_int, default=16)
    pre.add_argument("--learning-rate", type=float, default=3e-3)
    pre.add_argument("--amp", choices=("auto", "on", "off"), default="auto",
                     help="float16 compute with dynamic loss scaling (auto: on for Ascend, off elsewhere)")
    pre.add_argument("--until", type=_positive_int, default=None, metavar="STEP",
                     help="stop after this step with a checkpoint (continue later with --resume)")
    pre.add_argument("--resume", action="store_true", help="continue the run saved in --out, same settings")
    pre.add_argument("--no-progress", action="store_true", help="no progress bar")
    pre.add_argument("--distributed", action="store_true", help="data-parallel over the workers msrun starts "
                     "(use scripts/run_distributed.sh); --batch-size is per worker")

    gen = sub.add_parser("generate", help="generate text from a pretrained checkpoint folder")
    _common(gen)
    gen.add_argument("--ckpt", required=True, help="a folder written by ms-gpt pretrain")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--strategy", choices=("greedy", "beam", "sample"), default="greedy")
    gen.add_argument("--no-cache", action="store_true", help="recompute the whole sequence each step")
    gen.add_argument("--max-new-tokens", type=_positive_int, default=32)
    gen.add_argument("--num-beams", type=_positive_int, default=4)
    gen.add_argument("--repetition-penalty", type=float, default=1.0)
    gen.add_argument("--no-repeat-ngram-size", type=int, default=0)
    gen.add_argument("--temperature", type=float, default=1.0)
    gen.add_argument("--top-k", type=int, default=0)
    gen.add_argument("--top-p", type=float, default=1.0)

    ft = sub.add_parser("finetune", help="GPT-1 fine-tuning (head on the extract token + auxiliary LM loss)")
    _common(ft)
    ft.add_argument("--init", required=True, help="an ms_gpt checkpoint folder (ms-gpt pretrain) or a Hugging Face "
                    "openai-gpt folder")
    ft.add_argument("--task", required=True, choices=("classification", "entailment", "similarity", "multiple-choice"))
    ft.add_argument("--data", required=True, help="builtin:reviews-zh, or a folder with train/valid/test.jsonl "
                    "(fields per task: see the README)")
    ft.add_argument("--out", required=True, help="output folder (metrics.json, best/, loss.png)")
    ft.add_argument("--epochs", type=_positive_int, default=3)
    ft.add_argument("--batch-size", type=_positive_int, default=32)
    ft.add_argument("--learning-rate", type=float, default=6.25e-5)
    ft.add_argument("--lm-weight", type=float, default=0.5, help="λ of the auxiliary LM loss (0 turns it off)")
    ft.add_argument("--classifier-dropout", type=float, default=0.1)
    ft.add_argument("--warmup-fraction", type=float, default=0.002, help="share of steps for linear warmup")
    ft.add_argument("--schedule", choices=("linear", "cosine", "constant"), default="linear")
    ft.add_argument("--weight-decay", type=float, default=0.01)
    ft.add_argument("--max-len", type=_positive_int, default=128, help="tokens per sequence, specials included")
    ft.add_argument("--train-limit", type=_positive_int, default=None, help="use only the first N training rows")
    ft.add_argument("--reinit", action="store_true",
                    help="keep --init's architecture and tokenizer but start from random weights (baseline)")
    ft.add_argument("--pool", choices=("last", "mean"), default="last",
                    help="what the head reads: last = the extract token (GPT-1), mean = average of real tokens")
    ft.add_argument("--no-progress", action="store_true")

    sf = sub.add_parser("sft", help="supervised tuning on prompt/response pairs (loss on the response only)")
    _common(sf)
    sf.add_argument("--init", required=True, help="an ms_gpt checkpoint folder or a Hugging Face openai-gpt folder")
    sf.add_argument("--data", required=True, help='a JSONL file of {"prompt": ..., "response": ...}')
    sf.add_argument("--out", required=True, help="output folder (a checkpoint ms-gpt generate answers from)")
    sf.add_argument("--epochs", type=_positive_int, default=20)
    sf.add_argument("--batch-size", type=_positive_int, default=8)
    sf.add_argument("--learning-rate", type=float, default=1e-4)
    sf.add_argument("--max-len", type=_positive_int, default=None, help="default: the model's n_positions")
    sf.add_argument("--no-progress", action="store_true")

    imdb = sub.add_parser("finetune-imdb", help="the MindNLP course flow: openai-gpt fine-tuned for IMDb sentiment "
                          "(transformers.Trainer on MindSpore)")
    _common(imdb)
    imdb.add_argument("--model", default="openai-gpt", help="hub name (default openai-gpt), a local Hugging Face "
                      "openai-gpt folder, or an ms_gpt checkpoint folder (BPE tokenizer; exported through convert)")
    imdb.add_argument("--data-dir", default=None, help="local IMDb: an aclImdb tree, a save_to_disk folder, or "
                      "train/test parquet or CSV with text,label (default: load_dataset('imdb') from $HF_ENDPOINT)")
    imdb.add_argument("--out", required=True, help="output folder (metrics.json, best/, checkpoints/)")
    imdb.add_argument("--subset", type=float, default=0.1, help="share of train and of test used (default 0.1, "
                      "the course's; 1 = the full set)")
    imdb.add_argument("--val-fraction", type=float, default=0.3, help="validation share of the subset (default 0.3)")
    imdb.add_argument("--epochs", type=_positive_int, default=3)
    imdb.add_argument("--max-seq-len", type=_positive_int, default=512)
    imdb.add_argument("--batch-size", type=_positive_int, default=4)
    imdb.add_argument("--learning-rate", type=float, default=2e-5)
    imdb.add_argument("--weight-decay", type=float, default=0.0)
    imdb.add_argument("--warmup-ratio", type=float, default=0.0)
    imdb.add_argument("--buckets", default=None, metavar="L1,L2,...",
                      help="static length buckets, e.g. 128,256,512 (the last = --max-seq-len): far less padding")
    imdb.add_argument("--static-shapes", choices=("auto", "on", "off"), default="auto",
                      help="auto: on for Ascend (or $MS_GPT_STATIC_SHAPES), off elsewhere")
    imdb.add_argument("--course-tokens", action="store_true",
                      help="encode as the course does (no <bos>/<eos> around the text)")
    imdb.add_argument("--until-epoch", type=_positive_int, default=None, metavar="N",
                      help="stop after epoch N with its checkpoint (continue later with --resume)")
    imdb.add_argument("--resume", action="store_true", help="continue the run saved in --out (same settings)")

    conv = sub.add_parser("convert", help="Hugging Face openai-gpt folder <-> ms_gpt checkpoint folder")
    _common(conv)
    src = conv.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-hf", metavar="HF_DIR", help="read config.json + model.safetensors / pytorch_model.bin")
    src.add_argument("--to-hf", metavar="MS_DIR", help="read an ms_gpt folder (model.ckpt + gpt_config.json)")
    conv.add_argument("--out", required=True, help="output folder (written atomically)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "doctor":
        return _doctor(args)
    if args.command == "smoke":
        return _smoke(args)
    if args.command == "convert":
        return _convert(args)
    if args.command == "pretrain":
        return _pretrain(args)
    if args.command == "generate":
        return _generate(args)
    if args.command == "finetune":
        return _finetune(args)
    if args.command == "sft":
        return _sft(args)
    if args.command == "finetune-imdb":
        return _finetune_imdb(args)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2


def _doctor(args) -> int:
    from ms_gpt import doctor

    env = doctor.collect()
    code = doctor.run(as_json=args.json, scan=args.scan, explain_text=args.explain, env=env)
    if args.device:
        from ms_gpt.device import DeviceError, resolve_target

        try:
            resolve_target(args.device, available=env.targets or ["CPU"])
        except DeviceError as exc:
            print(f"[error] device: {exc}", file=sys.stderr)
            return 1
    return code


def _run_job(name: str, job, errors: tuple, show=lambda r: json.dumps(r, ensure_ascii=False)) -> int:
    """Run ``job()``; a bad-input error is one line on stderr and exit 2, else print ``show(result)``."""
    try:
        result = job()
    except errors as exc:
        print(f"ms-gpt {name}: {exc}", file=sys.stderr)
        return 2
    print(show(result))
    return 0


def _smoke(args) -> int:
    from ms_gpt.device import DeviceError
    from ms_gpt.flows import smoke

    cfg = smoke.SmokeConfig(seed=args.seed)
    if args.steps:
        cfg.steps = args.steps
    return _run_job("smoke", lambda: smoke.run(args.out, cfg, device=args.device), (DeviceError, ValueError))


def _pretrain(args) -> int:
    from ms_gpt.distributed import DistributedError
    from ms_gpt.flows import pretrain

    return _run_job("pretrain", lambda: pretrain.pretrain(
        args.corpus, args.out, preset=args.preset, steps=args.steps, tokenizer=args.tokenizer,
        vocab_size=args.vocab_size, block_size=args.block_size, batch_size=args.batch_size,
        learning_rate=args.learning_rate, device=args.device, seed=args.seed, progress=not args.no_progress,
        amp=args.amp, until=args.until, resume=args.resume, vocab_corpus=args.vocab_corpus,
        distributed=args.distributed),
        (ValueError, FileNotFoundError, DistributedError))


def _generate(args) -> int:
    from ms_gpt.flows import pretrain

    return _run_job("generate", lambda: pretrain.generate_text(
        args.ckpt, args.prompt, strategy=args.strategy, use_cache=not args.no_cache,
        max_new_tokens=args.max_new_tokens, device=args.device, seed=args.seed, num_beams=args.num_beams,
        repetition_penalty=args.repetition_penalty, no_repeat_ngram_size=args.no_repeat_ngram_size,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p),
        (ValueError, FileNotFoundError), show=str)


def _finetune(args) -> int:
    from ms_gpt.flows import finetune

    def job():
        cfg = finetune.FinetuneConfig(
            task=args.task, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
            lm_weight=args.lm_weight, classifier_dropout=args.classifier_dropout,
            warmup_fraction=args.warmup_fraction, schedule=args.schedule, weight_decay=args.weight_decay,
            max_len=args.max_len, train_limit=args.train_limit, reinit=args.reinit, pool=args.pool)
        return finetune.finetune(args.init, args.data, args.out, cfg, device=args.device, seed=args.seed,
                                 progress=not args.no_progress)

    return _run_job("finetune", job, (ValueError, FileNotFoundError))


def _sft(args) -> int:
    from ms_gpt.flows import sft

    def job():
        cfg = sft.SFTConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                            max_len=args.max_len)
        return sft.sft(args.init, args.data, args.out, cfg, device=args.device, seed=args.seed,
                       progress=not args.no_progress)

    return _run_job("sft", job, (ValueError, FileNotFoundError))


def _finetune_imdb(args) -> int:
    from ms_gpt.device import DeviceError
    from ms_gpt.flows import mindnlp_imdb

    def job():
        cfg = mindnlp_imdb.ImdbConfig(
            epochs=args.epochs, learning_rate=args.learning_rate, batch_size=args.batch_size,
            max_seq_len=args.max_seq_len, subset=args.subset, val_fraction=args.val_fraction,
            buckets=mindnlp_imdb.parse_buckets(args.buckets),
            static_shapes={"auto": None, "on": True, "off": False}[args.static_shapes],
            course_tokens=args.course_tokens, weight_decay=args.weight_decay, warmup_ratio=args.warmup_ratio,
            until_epoch=args.until_epoch, seed=args.seed)
        return mindnlp_imdb.finetune_imdb(args.model, args.out, cfg, data_dir=args.data_dir, device=args.device,
                                          resume=args.resume, log=lambda m: print(m, file=sys.stderr))

    def show(m):
        keys = ("eval_accuracy", "test_accuracy", "epochs_done", "stopped_after_epoch", "static_shapes", "shapes")
        return json.dumps({k: m[k] for k in keys if k in m})

    return _run_job("finetune-imdb", job, (ValueError, FileNotFoundError, DeviceError), show=show)


def _convert(args) -> int:
    from ms_gpt import convert, device

    def job():
        device.setup(args.device, mode="pynative", seed=args.seed)
        if args.from_hf:
            model = convert.load_hf_openai_gpt(args.from_hf)
            convert.save_ms_checkpoint(model, args.out)
        else:
            model = convert.load_ms_checkpoint(args.to_hf)
            convert.export_hf_openai_gpt(model, args.out)
        from ms_gpt.model import count_parameters

        return {"out": str(args.out), "parameters": count_parameters(model), "config": model.config.to_dict()}

    return _run_job("convert", job, (convert.ConversionError, device.DeviceError))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
