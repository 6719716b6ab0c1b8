"""The README and docs/ as a user reads them: the README stays a short how-to, every `ms-gpt` command the pages
show in a shell block parses with the real command-line parser (a flag that does not exist fails), and every
relative link (and its #anchor) resolves."""
import re
import shlex
from pathlib import Path

import pytest

from ms_gpt.cli import JOBS, build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 300
SHELL_FENCES = ("bash", "sh", "shell", "console")
PLUMBING = ("&&", "||", "|", ";", ">", "2>", ">>", "2>&1")


def shell_blocks(text: str):
    """The contents of the page's fenced shell blocks, one string each."""
    return re.findall(r"^```(?:%s)\n(.*?)^```" % "|".join(SHELL_FENCES), text, flags=re.M | re.S)


def commands(block: str):
    """Each `ms-gpt ...` invocation of a shell block as its argument list (after `ms-gpt`), continuation
    lines joined, comments and shell plumbing (`&&`, `|`, `;`, redirections) cut off."""
    joined = re.sub(r"\\\n\s*", " ", block)
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        while words:
            at = next((i for i, w in enumerate(words) if w == "ms-gpt" or w.endswith("/ms-gpt")), None)
            if at is None:
                break
            rest = words[at + 1:]
            end = next((i for i, w in enumerate(rest) if w in PLUMBING), len(rest))
            out.append(rest[:end])
            words = rest[end:]
    return out


def inline_commands(text: str):
    """Complete `ms-gpt ...` commands quoted in the prose (an inline code span, which may wrap a line); a
    synopsis with placeholders (``[--flag]``, ``a|b``, ``...``) is not a command."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    spans = re.findall(r"(?<!`)`((?:\.venv/bin/)?ms-gpt [^`]+)`(?!`)", text)
    argvs = [shlex.split(" ".join(s.split()))[1:] for s in spans if not re.search(r"[\[\]|<>]|\.\.\.|…", s)]
    return [a for a in argvs if a and not a[0].isupper()]  # `ms-gpt COMMAND --help`: a placeholder


def documented_commands():
    found = []
    for page in PAGES:
        text = page.read_text()
        name = page.relative_to(ROOT).as_posix()
        found += [(name, argv, True) for block in shell_blocks(text) for argv in commands(block)]
        found += [(name, argv, False) for argv in inline_commands(text)]
    return found


def parse(argv: list, whole: bool):
    """Parse ``argv`` as ``ms-gpt`` does. A command quoted in the prose (not ``whole``) may leave out flags a
    job requires (the prose names the ones that matter): a run file would hold them, so it is parsed as
    with ``--config``, which still refuses flags that do not exist and values outside their choices."""
    if not whole and argv and argv[0] in JOBS and "--config" not in argv:
        argv = [*argv, "--config", "run.json"]
    return build_parser(argv).parse_args(argv)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (hyphens and underscores kept), spaces to
    hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_the_readme_is_a_short_how_to():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}): move detail to docs/"
    for page in ("cells", "pretraining", "finetuning", "chat", "rlhf", "mindnlp-imdb", "containers", "msrun"):
        assert f"](docs/{page}.md)" in (ROOT / "README.md").read_text(), f"the README does not link docs/{page}.md"


def test_the_extractor_reads_shell_blocks():
    block = ("# a comment\n.venv/bin/ms-gpt pretrain --corpus builtin:demo-en \\\n    --out runs/demo  # trailing\n"
             "ms-gpt generate --ckpt runs/demo --prompt 'the cat' && ms-gpt chat --ckpt runs/demo > log.txt\n")
    assert commands(block) == [["pretrain", "--corpus", "builtin:demo-en", "--out", "runs/demo"],
                               ["generate", "--ckpt", "runs/demo", "--prompt", "the cat"],
                               ["chat", "--ckpt", "runs/demo"]]
    assert inline_commands("run `ms-gpt reward --data builtin:chitchat-pairs`, not `ms-gpt ppo [--steps N]` or "
                           "`ms-gpt COMMAND --help`") == [["reward", "--data", "builtin:chitchat-pairs"]]
    parse(["reward", "--data", "builtin:chitchat-pairs"], whole=False)  # prose may leave required flags out
    for argv, whole in ((["pretrain", "--corpus", "x", "--out", "y", "--no-such-flag"], True),
                        (["reward", "--data", "x", "--no-such-flag"], False), (["chat", "--strategy", "magic"], False),
                        (["sft", "--data", "x"], True)):
        with pytest.raises(SystemExit):  # an unknown flag, a value outside its choices, a missing required flag
            parse(argv, whole)
    assert slug("Pretraining defaults, and quality per step against nanoGPT") == \
        "pretraining-defaults-and-quality-per-step-against-nanogpt"
    assert slug("The MindNLP IMDb flow (`ms-gpt finetune-imdb`)") == "the-mindnlp-imdb-flow-ms-gpt-finetune-imdb"


def test_every_documented_command_parses(capsys):
    found = documented_commands()
    assert len(found) >= 40, len(found)  # the chapters show their commands
    bad = []
    for page, argv, whole in found:
        try:
            parse(argv, whole)
        except SystemExit as exc:
            err = capsys.readouterr().err.strip().splitlines()
            if exc.code:  # --help exits 0
                bad.append(f"{page}: ms-gpt {shlex.join(argv)}: {err[-1] if err else exc.code}")
    assert not bad, "\n".join(bad)


def test_every_relative_link_resolves():
    bad = []
    for page in PAGES:
        text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                bad.append(f"{page.relative_to(ROOT)}: {target}: no such file")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                bad.append(f"{page.relative_to(ROOT)}: {target}: no heading #{anchor} in {file.name}")
    assert not bad, "\n".join(bad)


def undocumented_options(help_text: str) -> list:
    """The options of an argparse ``--help`` whose help states neither a default nor that it is required (``-h``
    aside)."""
    options = help_text.split("options:")[-1]
    blocks = re.split(r"\n  (?=-)", options)[1:]
    return [b.split()[0].rstrip(",") for b in blocks
            if "default" not in b.lower() and "(required)" not in b and not b.startswith("-h")]


SCRIPTS = sorted(str(p.relative_to(ROOT / "scripts")) for p in (ROOT / "scripts").rglob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_scripts_help_states_every_default(script):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert undocumented_options(proc.stdout) == [], proc.stdout
    assert undocumented_options("options:\n  -h, --help  show\n  --out OUT  where\n  --n N  steps (default: 3)\n") == \
        ["--out"]


def test_scripts_are_grouped_by_kind():
    """scripts/ holds at its top only what a user runs (the README's and the design card's commands and the
    benchmarks); the rest sits in one folder per kind."""
    top = sorted(p.name for p in (ROOT / "scripts").iterdir())
    benches = [n for n in top if n.startswith("bench_") and n.endswith(".py")]
    assert len(benches) == 4
    assert sorted(set(top) - set(benches)) == ["data", "environment", "launch_notebook.sh", "notebook", "quickstart.sh",
                                               "run_distributed.sh", "setup.sh", "studies", "test.sh"]
