import subprocess
import sys

import pytest

from ms_gpt import cli


def test_help_does_not_import_mindspore():
    code = (
        "import sys, contextlib, io\n"
        "from ms_gpt.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'doctor' in out.getvalue() and 'smoke' in out.getvalue()\n"
        "heavy = sorted(m for m in ('mindspore', 'mindnlp', 'torch', 'transformers', 'numpy') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_console_script_help(venv_bin):
    out = subprocess.run([str(venv_bin / "ms-gpt"), "--help"], capture_output=True, text=True, check=True)
    assert "doctor" in out.stdout and "smoke" in out.stdout


@pytest.mark.parametrize("command", ["doctor", "smoke"])
def test_every_command_accepts_device_and_seed(command):
    args = cli.build_parser().parse_args([command, "--device", "CPU", "--seed", "7"])
    assert (args.device, args.seed) == ("CPU", 7)


def test_bad_steps_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["smoke", "--steps", "0"])
    assert exc.value.code == 2
    assert "expected a positive integer, got 0" in capsys.readouterr().err


def test_unknown_device_is_a_clear_error(capsys, tmp_path):
    assert cli.main(["smoke", "--device", "tpu", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown device 'tpu'" in err and "Ascend" in err and "CPU" in err


def test_help_reads_right_required_flags_and_off_switches(capsys, tmp_path):
    """Required flags are required in the usage (no brackets) unless --config may hold them; a --no- flag's help
    says what the flag does."""
    parser = cli.build_parser(["finetune"])
    usage = parser._subparsers._group_actions[0].choices["finetune"].format_usage()
    assert "--init INIT" in usage and "[--init INIT]" not in usage and "[--epochs EPOCHS]" in usage
    with pytest.raises(SystemExit) as exc:
        cli.main(["finetune", "--task", "classification"])
    assert exc.value.code == 2
    assert "the following arguments are required: --init, --data, --out" in capsys.readouterr().err
    run = tmp_path / "run.json"
    run.write_text('{"task": "classification"}')
    assert cli.main(["finetune", "--config", str(run)]) == 2  # --config given: it may hold them; it names the missing
    assert "--init is required (give it as a flag or in --config)" in capsys.readouterr().err
    helps = {}
    for command in ("pretrain", "generate", "ppo"):
        sub = cli.build_parser([command])._subparsers._group_actions[0].choices[command]
        helps.update({a.option_strings[0]: a.help for a in sub._actions if a.option_strings})
    assert helps["--no-progress"].startswith("hide the progress bar")
    assert helps["--no-cache"].startswith("recompute the whole sequence")
    assert helps["--no-bias-correction"].startswith("Adam without bias correction")
    assert not [f for f, h in helps.items() if f.startswith("--no-") and "on by default" in (h or "")]
