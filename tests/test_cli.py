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
