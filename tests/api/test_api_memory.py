"""`api.memory`: the API fixes glibc's mapping threshold, so that the blocks of large answers
are given back to the system when freed (bench/large_answers.py measures the effect)."""

from __future__ import annotations

import platform

import pytest

from procexec.api import memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_mapping_threshold_is_fixed() -> None:
    assert memory.give_back_large_blocks()
    assert memory.give_back_large_blocks()  # again, as every app made in one process does
