"""The sentence-transformers pipeline as the declared embedding: the real library against the plugin's computation."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe.artefacts import st_pipeline
from tests.helpers import assert_one_failure, junit_metrics
from tests.test_embedding import _copy, _sentence_transformers

pytest.importorskip("sentence_transformers")

TinyFactory = Callable[..., Path]
AUDIT = ("-p", "no:cacheprovider", "-rfs", "-k", "sentence_embedding", "--junitxml=out.xml")


@pytest.fixture
def st_folder(tiny_checkpoint: TinyFactory, tmp_path: Path) -> Path:
    """A tiny BERT with sentence-transformers' files: Transformer, mean Pooling, Normalize (as all-MiniLM-L6-v2)."""
    return _sentence_transformers(_copy(tiny_checkpoint("bert"), tmp_path / "st-tiny"))


def _metrics(pytester: pytest.Pytester) -> dict[str, Any]:
    (metrics,) = junit_metrics(pytester.path / "out.xml").values()
    return metrics


@pytest.mark.real_weights
def test_real_minilm_passes_computed_by_sentence_transformers(pytester: pytest.Pytester, minilm_path: Path) -> None:
    result = pytester.runpytest(f"--bert-model={minilm_path}", *AUDIT)
    result.assert_outcomes(passed=1)
    metrics = _metrics(pytester)
    assert metrics["computed_by"] == f"sentence-transformers {st_pipeline.library_version()}"
    assert metrics["modules"] == ["Transformer", "Pooling", "Normalize"] and metrics["compared"] == "encode()"
    assert (metrics["max_seq_length"], metrics["usable_positions"], metrics["model_max_length"]) == (256, 512, 512)
    assert metrics["library_gap"]["max_abs"] < 1e-6 and metrics["norm_max_abs"] < 1e-6 and metrics["embedding"] == "mean"
    assert metrics["padded_rows"] == 4  # the plugin's own checks still report


def test_a_tiny_sentence_transformers_folder_passes(pytester: pytest.Pytester, st_folder: Path) -> None:
    result = pytester.runpytest(f"--bert-model={st_folder}", *AUDIT)
    result.assert_outcomes(passed=1)
    metrics = _metrics(pytester)
    assert metrics["computed_by"].startswith("sentence-transformers ") and metrics["max_seq_length"] == 64
    assert metrics["prompts"] == {} and "query_vs_document_max_abs" not in metrics


def test_max_seq_length_past_the_positions_fails_by_name(pytester: pytest.Pytester, st_folder: Path) -> None:
    (st_folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": False}))
    result = pytester.runpytest(f"--bert-model={st_folder}", *AUDIT)
    assert_one_failure(result, [
        "E*sentence-transformers max_seq_length 128 exceeds the model's 64 usable positions and the tokenizer's model_max_length 64.",
        "E*Hint: set \"max_seq_length\": 64 in sentence_bert_config.json",
        "FAILED *test_declared_sentence_embedding_is_sound[[]st-tiny[]]*",
    ])


def test_a_module_that_does_not_load_fails_naming_the_pipeline(pytester: pytest.Pytester, st_folder: Path) -> None:
    modules = json.loads((st_folder / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (st_folder / "modules.json").write_text(json.dumps(modules))
    result = pytester.runpytest(f"--bert-model={st_folder}", *AUDIT)
    assert_one_failure(result, ["E*sentence-transformers * could not load the pipeline */modules.json lists (.: Transformer, 1_Pooling: Pooling, 2_Dense: Dense, 2_Normalize: Normalize): *"])


def test_query_and_document_prompts_are_reported_and_must_differ(pytester: pytest.Pytester, st_folder: Path) -> None:
    prompts = {"prompts": {"query": "query: ", "document": "passage: "}, "default_prompt_name": None}
    (st_folder / "config_sentence_transformers.json").write_text(json.dumps(prompts))
    result = pytester.runpytest(f"--bert-model={st_folder}", *AUDIT)
    result.assert_outcomes(passed=1)
    metrics = _metrics(pytester)
    assert metrics["prompts"] == prompts["prompts"] and metrics["query_vs_document_max_abs"] > 1e-3


def test_a_dense_module_is_compared_at_the_pooling_output(pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer, models

    transformer = models.Transformer(str(tiny_checkpoint("bert")))
    modules = [transformer, models.Pooling(32, "mean"), models.Dense(32, 8), models.Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(tmp_path / "st-dense"))
    result = pytester.runpytest(f"--bert-model={tmp_path / 'st-dense'}", *AUDIT)
    result.assert_outcomes(passed=1)
    metrics = _metrics(pytester)
    assert metrics["modules"] == ["Transformer", "Pooling", "Dense", "Normalize"]
    assert metrics["compared"] == "pooling output (before Dense)" and metrics["library_gap"]["max_abs"] < 1e-6


def test_without_the_library_the_hand_read_config_stays_and_the_metrics_say_so(
    pytester: pytest.Pytester, st_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(st_pipeline, "library_version", lambda: None)
    result = pytester.runpytest(f"--bert-model={st_folder}", *AUDIT)
    result.assert_outcomes(passed=1)
    metrics = _metrics(pytester)
    assert metrics["computed_by"] == f"the plugin, from the config files (sentence-transformers not installed: {st_pipeline.INSTALL_HINT})"
    assert metrics["embedding"] == "mean" and "modules" not in metrics


def test_an_explicit_embedding_is_computed_by_the_plugin(pytester: pytest.Pytester, st_folder: Path) -> None:
    result = pytester.runpytest(f"--bert-model={st_folder}", "--bert-embedding=cls", *AUDIT)
    result.assert_outcomes(passed=1)
    assert _metrics(pytester)["computed_by"] == "the plugin"


@pytest.mark.real_weights
def test_half_precision_copies_of_the_real_minilm_pass_at_their_own_dtype(pytester: pytest.Pytester, minilm_path: Path, tmp_path: Path) -> None:
    """sentence-transformers 6.3 computes in the stored dtype: its Normalize output is unit length to float16/bfloat16
    precision (0.000199 and 0.0016 off), which the check must not hold to float32's 1e-6."""
    import shutil

    import torch
    from transformers import AutoModel

    copies = []
    for dtype in ("float16", "bfloat16"):
        copy = Path(shutil.copytree(minilm_path, tmp_path / f"minilm-{dtype}"))
        AutoModel.from_pretrained(minilm_path, dtype=torch.float32).to(getattr(torch, dtype)).save_pretrained(copy)
        copies.append(f"--bert-model={copy}")
    result = pytester.runpytest(*copies, *AUDIT)
    result.assert_outcomes(passed=2)
    metrics_by_test = junit_metrics(pytester.path / "out.xml")
    assert len(metrics_by_test) == 2, metrics_by_test
    for metrics in metrics_by_test.values():
        assert metrics["computed_by"] == f"sentence-transformers {st_pipeline.library_version()}" and metrics["norm_max_abs"] < 1e-2


def test_the_unit_length_check_follows_the_dtype_the_library_computed_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pipeline computing in float16 normalizes to float16 precision: judged at float16 tolerance, not float32's."""
    import torch

    class HalfPipeline(torch.nn.Module):
        """Stands for SentenceTransformer: Transformer, Pooling, Normalize modules; encode() in float16."""

        def __init__(self, vectors: torch.Tensor) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1, dtype=torch.float16))
            self.vectors = vectors
            self.max_seq_length = 0

        def __iter__(self) -> Any:
            return iter([type(name, (), {})() for name in ("Transformer", "Pooling", "Normalize")])

        def encode(self, sentences: Any, **kwargs: Any) -> torch.Tensor:
            return torch.nn.functional.normalize(self.vectors, dim=-1).half()

    vectors = torch.randn(5, 384)
    pipeline = HalfPipeline(vectors)
    modules = [{"type": f"sentence_transformers.models.{name}"} for name in ("Transformer", "Pooling", "Normalize")]
    model = torch.nn.Linear(1, 1)  # a float32 "model": the comparison runs at the lower precision of the two
    monkeypatch.setattr(st_pipeline, "usable_positions", lambda model: None)
    metrics = st_pipeline.assert_pipeline_contract(pipeline, model, None, modules, vectors, ["a"] * 5)
    assert 1e-6 < metrics["norm_max_abs"] < 1e-3  # off by float16 rounding, within float16's tolerance
