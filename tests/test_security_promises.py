"""SECURITY.md true line by line: every promise of "What the API promises" names the tests that
hold it, and each test it names exists (its file, and a function of that name defined there)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def _promises() -> list[str]:
    text = (ROOT / "SECURITY.md").read_text()
    section = text.split("## What the API promises", 1)[1].split("\n## ", 1)[0]
    bullets = re.split(r"\n- ", "\n" + section.split("\n- ", 1)[1])
    return [bullet.strip() for bullet in bullets if bullet.strip()]


PROMISES = _promises()


def test_the_section_holds_the_promises() -> None:
    assert len(PROMISES) >= 10, PROMISES


@pytest.mark.parametrize(
    "promise", PROMISES, ids=[re.sub(r"\W+", "-", p.split("**")[1]) for p in PROMISES]
)
def test_every_promise_names_tests_that_exist(promise: str) -> None:
    references = TEST_REF.findall(promise)
    assert references, f"names no test: {promise[:80]}"
    for file, name in references:
        path = ROOT / file
        assert path.is_file(), f"{file} does not exist"
        defined = {
            node.name
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        assert name in defined, f"{file} defines no {name}"
