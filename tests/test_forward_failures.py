"""Loadable but broken checkpoints: a forward pass that raises is reported once, by the check that owns the input."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import plant_at_load, plant_copy

Factory = Callable[..., Path]


def _skips_pointing_at(result: pytest.RunResult, owner: str) -> int:
    """How many tests skipped saying `owner` reports their crashed pass (`-rs` folds equal reasons: `SKIPPED [N]`)."""
    counts = [re.match(r"SKIPPED \[(\d+)\]", line) for line in result.stdout.lines if f"{owner} reports it" in line]
    return sum(int(count.group(1)) for count in counts if count)


def test_position_table_of_zero_rows_fails_only_max_length(pytester: pytest.Pytester, tiny_checkpoint: Factory, tmp_path: Path) -> None:
    import torch

    def empty_positions(tensors: dict[str, Any]) -> None:
        tensors["embeddings.position_embeddings.weight"] = torch.zeros(0, tensors["embeddings.position_embeddings.weight"].shape[1])

    broken = plant_copy(tiny_checkpoint("bert"), tmp_path / "no-positions", config={"max_position_embeddings": 0}, weights=empty_positions)
    result = pytester.runpytest(f"--bert-model={broken}", "-rfs")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed") == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["FAILED *test_max_length_fits_the_position_table*"])
    assert "Traceback" not in result.stdout.str() and "IndexError: index out of range" not in "\n".join(
        line for line in result.stdout.lines if line.startswith("E ")
    )
    assert _skips_pointing_at(result, "tokenizer_max_length") >= 10


def test_vocabulary_of_one_row_fails_only_ids_in_embeddings(pytester: pytest.Pytester, tiny_checkpoint: Factory, tmp_path: Path) -> None:
    def one_row(tensors: dict[str, Any]) -> None:
        tensors["embeddings.word_embeddings.weight"] = tensors["embeddings.word_embeddings.weight"][:1].clone()

    broken = plant_copy(tiny_checkpoint("bert"), tmp_path / "one-word", config={"vocab_size": 1, "pad_token_id": 0}, weights=one_row)
    result = pytester.runpytest(f"--bert-model={broken}", "-rfs")
    assert result.parseoutcomes().get("failed") == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["FAILED *test_every_token_id_has_an_embedding_row*"])
    assert _skips_pointing_at(result, "tokenizer_ids_in_embeddings") >= 10


def _crash_where(breaks: Callable[[int], bool], message: str) -> Callable[[Any], None]:
    """A planter: the loaded model's forward raises `message` on inputs whose width `breaks`."""

    def plant(checkpoint: Any) -> None:
        model = checkpoint.model
        outputs = model.forward

        @functools.wraps(outputs)
        def crashing(*args: Any, **kwargs: Any) -> Any:
            if breaks(int(kwargs["input_ids"].shape[-1])):
                raise RuntimeError(message)
            return outputs(*args, **kwargs)

        model.forward = crashing

    return plant


_crash_on_short_inputs = _crash_where(lambda width: width <= 3, "planted: kernel needs 4 tokens")


def test_model_crashing_at_the_maximum_length_fails_only_max_length(
    pytester: pytest.Pytester, tiny_checkpoint: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant_at_load(monkeypatch, _crash_where(lambda width: width > 32, "planted: kernel takes 32 tokens"))
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", "-rfs")
    assert result.parseoutcomes().get("failed") == 1, result.stdout.str()
    result.stdout.fnmatch_lines([
        "E   ContractViolation: A forward pass at the tokenizer's maximum length fails: RuntimeError: planted: kernel takes 32 tokens",
        "FAILED *test_max_length_fits_the_position_table*",
    ])  # fmt: skip
    assert _skips_pointing_at(result, "tokenizer_max_length") >= 3


def test_model_crashing_on_a_short_input_is_reported_once(
    pytester: pytest.Pytester, tiny_checkpoint: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant_at_load(monkeypatch, _crash_on_short_inputs)
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", "-rfs", "--bert-report-json=report.json")
    assert result.parseoutcomes().get("failed") == 1, result.stdout.str()
    result.stdout.fnmatch_lines([
        "E   AssertionError: BertModel raises on the empty sentence (2 tokens with the special ones): RuntimeError: planted: kernel needs 4 tokens",
        "E   Input: input_ids of shape (1, 2) (1 row(s), 2 tokens wide)",
        "E   Diagnosis: the input fits the position, token and type tables, so the model itself breaks on it",
        "E   Failing batch (1 sentence): ['']",
        "FAILED *test_every_output_is_finite*",
    ])  # fmt: skip
    assert _skips_pointing_at(result, "outputs_finite") >= 5
    report = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))
    failed = [check for check in report["checks"] if check["outcome"] == "failed"]
    assert failed[0]["metrics"]["owner"] == "outputs_finite" and failed[0]["metrics"]["input_shape"] == [1, 2]


def test_healthy_checkpoint_has_no_forward_skips(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", "-rs")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert "reports it" not in result.stdout.str()
