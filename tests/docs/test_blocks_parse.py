"""Every command block of the documentation parses, run or not: the blocks that the docs test
(test_docs.py) cannot run, those after `<!-- not run: reason -->` (Docker, long-running
servers, `make run`), are checked here at least for their syntax, as the tools that would run
them read it: `bash -n` for `bash` and `console` blocks (a console block's `$ ` lines), `sh -n`
for `sh` blocks, Python's compiler for `python` blocks, and YAML's safe loader for `yaml`
blocks. The blocks that run are checked too: a syntax error is told here without a server.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.docs.test_docs import BLOCKS, ROOT, Block

#: the languages checked, each by its parser
PARSED = {"bash", "sh", "console", "python", "yaml", "yml"}
CHECKED = [block for block in BLOCKS if block.lang in PARSED]


def syntax_error(block: Block) -> str | None:
    """What the block's parser says of it: None when it parses."""
    if block.lang == "python":
        try:
            compile(block.text, block.id, "exec")
        except SyntaxError as exc:
            return f"line {exc.lineno}: {exc.msg}"
        return None
    if block.lang in ("yaml", "yml"):
        try:
            list(yaml.safe_load_all(block.text))
        except yaml.YAMLError as exc:
            return str(exc)
        return None
    text = block.text
    if block.lang == "console":  # the commands are the `$ ` lines; the rest is output
        text = "\n".join(line[2:] for line in text.splitlines() if line.startswith("$ ")) + "\n"
    shell = "sh" if block.lang == "sh" else "bash"
    done = subprocess.run(
        [shell, "-n"], input=text, capture_output=True, text=True, timeout=30, check=False
    )
    return (
        None
        if done.returncode == 0
        else done.stderr.strip() or f"{shell} -n: exit {done.returncode}"
    )


def test_every_block_that_is_not_run_is_checked() -> None:
    skipped = [block for block in BLOCKS if block.skip is not None]
    assert skipped, "no block is marked not run"
    assert [block.id for block in skipped if block.lang not in PARSED] == []
    assert {block.id for block in skipped} <= {block.id for block in CHECKED}


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("bash", "if true; then\n  echo unclosed\n"),
        ("bash", 'echo "unterminated\n'),
        ("sh", "case x in\n"),
        ("console", "$ for name in a b; do\n$ echo $name\noutput\n"),
        ("python", "def broken(:\n    pass\n"),
        ("yaml", "services: [api\n"),
    ],
)
def test_a_block_that_does_not_parse_is_told(lang: str, text: str) -> None:
    block = Block(ROOT / "README.md", 0, lang, text)
    assert syntax_error(block) is not None


def test_a_console_block_s_output_is_not_parsed() -> None:
    text = "$ echo ok\nok (this line is output: ( is no syntax error here\n"
    assert syntax_error(Block(ROOT / "README.md", 0, "console", text)) is None


@pytest.mark.parametrize("block", CHECKED, ids=[block.id for block in CHECKED])
def test_block_parses(block: Block) -> None:
    error = syntax_error(block)
    where = Path(block.page).relative_to(ROOT)
    assert error is None, (
        f"{where}:{block.line} ({block.lang}) does not parse: {error}\n{block.text}"
    )
