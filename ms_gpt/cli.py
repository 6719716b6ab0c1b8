"""``ms-gpt``: one subcommand per job. Nothing heavy is imported until a subcommand runs, so
``ms-gpt --help`` answers in a broken environment and in well under a second."""

from __future__ import annotations

import argparse
import json
import os
import sys


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None,
                   help="Ascend, GPU or CPU (default: $MS_GPT_DEVICE, else auto: Ascend > GPU > CPU)")
    p.add_argument("--seed", type=int, default=0, help="seed for Python, NumPy and MindSpore (default 0)")


from ms_gpt.flows.jobs import JOBS  # noqa: E402  (pure Python) command -> config class, flow, help


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command. A job's required flags are required unless ``argv`` gives ``--config`` (the
    run file may hold them; the config then says which one is missing)."""
    from ms_gpt.config import add_flags
    from ms_gpt.flows import configs

    parser = argparse.ArgumentParser(
        prog="ms-gpt",
        description="GPT-1 on MindSpore: from-scratch cells, the MindNLP openai-gpt flow, pinned environments.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    given = sys.argv[1:] if argv is None else argv
    config_given = any(a == "--config" or a.startswith("--config=") for a in given)

    doc = sub.add_parser("doctor", help="report versions and devices; diagnose known breakages (exit 0 = healthy)")
    _common(doc)
    doc.add_argument("--json", action="store_true", help="print the report as JSON")
    doc.add_argument("--scan", nargs="+", default=[], metavar="PATH",
                     help="also look for stale tutorial imports in these .py/.ipynb files or folders")
    doc.add_argument("--explain", metavar="ERROR_TEXT",
                     help="diagnose an error message you got (e.g. \"cannot import name 'Truncate'\")")

    for command, (name, _, help_text) in JOBS.items():
        cls = getattr(configs, name)
        job = sub.add_parser(command, help=help_text)
        add_flags(job, cls, renames=cls.FLAGS, hidden=cls.DERIVED, require=not config_given)
        _diagnostics(job)

    conv = sub.add_parser("convert", help="Hugging Face openai-gpt folder <-> ms_gpt checkpoint folder")
    _common(conv)
    src = conv.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-hf", metavar="HF_DIR", help="read config.json + model.safetensors / pytorch_model.bin")
    src.add_argument("--to-hf", metavar="MS_DIR", help="read an ms_gpt folder (model.ckpt + gpt_config.json)")
    conv.add_argument("--out", required=True, help="output folder: a new or empty one, or one an earlier convert "
                                                   "the same way wrote (with --overwrite); never the input")
    conv.add_argument("--overwrite", action="store_true", help="replace the model an earlier convert wrote into --out "
                                                               "(other files there are left alone)")
    _diagnostics(conv)
    return parser


def _diagnostics(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", dest="_debug", action="store_true",
                   help="show the full traceback of an error (default: one line naming the problem)")
    p.add_argument("--verbose", dest="_verbose", action="store_true",
                   help="let MindSpore's own C++ log lines through (GLOG_v=3, errors only, unless this is given)")


def main(argv: list[str] | None = None) -> int:
    """``ms-gpt``. Run from the command line (``argv`` None), SIGINT is routed past MindSpore's own
    handler first (see :mod:`ms_gpt.run_folder.interrupt`), so that Ctrl-C saves a checkpoint."""
    if argv is None:
        from ms_gpt.run_folder import interrupt

        interrupt.route_sigint()
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if not getattr(args, "_verbose", False):
        os.environ.setdefault("GLOG_v", "3")  # read when mindspore is imported, which happens below
    if args.command == "doctor":
        return _doctor(args)
    if args.command == "convert":
        return _convert(args)
    return _job(args.command, args)


def _doctor(args) -> int:
    from ms_gpt.environment import doctor

    env = doctor.collect()
    try:
        code = doctor.run(as_json=args.json, scan=args.scan, explain_text=args.explain, env=env)
    except FileNotFoundError as exc:  # --scan of a missing path
        print(f"ms-gpt doctor: {exc}", file=sys.stderr)
        return 2
    if args.device:
        from ms_gpt.environment.device import DeviceError, resolve_target

        try:
            resolve_target(args.device, available=env.targets or ["CPU"])
        except DeviceError as exc:
            print(f"[error] device: {exc}", file=sys.stderr)
            return 1
    return code


def _run_job(name: str, job, show=lambda r: json.dumps(r, ensure_ascii=False), debug: bool = False) -> int:
    """Run ``job()`` and print ``show(result)``. A user-caused failure (bad input, a missing or corrupt
    file, a busy run folder, a full or read-only disk, a failed distributed start) is one line on stderr
    and exit 2 (``debug``: the traceback too); a signal that stopped training after its checkpoint exits
    128 + the signal's number."""
    from ms_gpt.errors import MsGptError
    from ms_gpt.run_folder.interrupt import Interrupted

    try:
        result = job()
    except Interrupted as exc:
        print(f"ms-gpt {name}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"ms-gpt {name}: interrupted outside the training loop (before or after it); no checkpoint was "
              "saved by the interruption", file=sys.stderr)
        return 130
    except (MsGptError, ValueError, OSError) as exc:
        if debug:
            raise
        print(f"ms-gpt {name}: {_one_line(exc)}", file=sys.stderr)
        return 2
    if result is not None:  # an interactive chat has printed as it went
        print(show(result))
    return 0


def _one_line(exc: BaseException) -> str:
    """The error's message; an OSError from the system as 'what went wrong: the file', with the remedy
    for a full disk, a read-only file system or a missing permission."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        hint = {28: " (the disk is full: free space or choose another --out)",
                30: " (a read-only file system: choose a writable --out)",
                13: " (no permission: choose another --out, or fix the folder's permissions)",
                27: " (over the file-size limit, ulimit -f)"}.get(exc.errno, "")
        return f"{exc.strerror}{where}{hint}"
    return str(exc) or type(exc).__name__


def _show_imdb(m: dict) -> str:
    keys = ("eval_accuracy", "test_accuracy", "epochs_done", "stopped_after_epoch", "static_shapes", "shapes")
    return json.dumps({k: m[k] for k in keys if k in m})


def _show_ppo(m: dict) -> str:
    return json.dumps({k: v for k, v in m.items() if k != "steps"}, ensure_ascii=False)  # the steps: metrics.json


# how a command's result is printed (default: its JSON)
SHOW = {"generate": str, "chat": str, "finetune-imdb": _show_imdb, "ppo": _show_ppo}


def _job(command: str, args) -> int:
    """Build the command's config from --config and the flags, run it as ``ms_gpt.api.run`` does (:data:`JOBS`),
    print its result."""
    from ms_gpt import api
    from ms_gpt.config import from_args
    from ms_gpt.flows.jobs import config_class

    try:
        cfg = from_args(config_class(command), args)
    except ValueError as exc:
        print(f"ms-gpt {command}: {exc}", file=sys.stderr)
        return 2
    shown = {"show": SHOW[command]} if command in SHOW else {}  # else its JSON
    return _run_job(command, lambda: api.run(cfg), debug=args._debug, **shown)


def _convert(args) -> int:
    """The input is read first; then ``--out`` is claimed like a run folder (:mod:`ms_gpt.run_folder.ownership`): new,
    empty, or an earlier convert's of the same direction with ``--overwrite``; never the input."""
    from ms_gpt import convert
    from ms_gpt.environment import device
    from ms_gpt.run_folder import checkpoint, names, ownership

    flag, source = ("--from-hf", args.from_hf) if args.from_hf else ("--to-hf", args.to_hf)
    command = f"convert {flag}"
    written = names.HF_EXPORT if args.to_hf else names.RUN_ENTRIES

    def job():
        device.setup(args.device, mode="pynative", seed=args.seed)
        model = convert.load_hf_openai_gpt(source) if args.from_hf else checkpoint.load_model(source)
        with ownership.claim(args.out, command, {flag: source}) as out:
            held = [name for name in written if (out / name).exists()]
            if held and not args.overwrite:
                raise ValueError(f"--out {out} already holds a converted model ({', '.join(held)}); replace it with "
                                 "--overwrite, or choose another --out")
            if args.from_hf:
                checkpoint.clear_run(out)
                checkpoint.save_model(model, out)
            else:
                convert.export_hf_openai_gpt(model, out)
            ownership.write_marker(out, command)
        from ms_gpt.model import count_parameters

        return {"out": str(args.out), "parameters": count_parameters(model), "config": model.config.to_dict()}

    return _run_job("convert", job, debug=args._debug)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
