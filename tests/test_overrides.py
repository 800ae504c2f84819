"""A conftest's `bert_model` / `bert_head_model`: audited when it is sound, one usage line with the fix when it is not."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import assert_usage_error

Factory = Callable[..., Path]

NARROW_SCOPE = """
import pytest

@pytest.fixture
def {name}(bert_checkpoint):
    return bert_checkpoint.{attribute}
"""

WITH_HEADS = """
import pytest
from transformers import AutoModelForMaskedLM

@pytest.fixture(scope="session")
def bert_model(bert_checkpoint):
    return AutoModelForMaskedLM.from_config(bert_checkpoint.model.config).eval()
"""

ROOT = Path(__file__).resolve().parent.parent
# The README's worked example: a classifier the user's code builds, and the encoder inside it.
README_OVERRIDE = re.findall(
    r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8").split("#### Overriding bert_model", 1)[1], flags=re.DOTALL
)[0]


@pytest.mark.parametrize(
    ("name", "attribute", "check", "workers"),
    [
        ("bert_model", "model", "pooler_relation", ()),
        ("bert_model", "model", "pooler_relation", ("-n", "2")),
        ("bert_head_model", "head_model", "head_relation", ()),
    ],
    ids=["bert_model", "bert_model-xdist", "bert_head_model"],
)
def test_an_override_of_narrower_scope_is_one_usage_line(
    pytester: pytest.Pytester, tiny_checkpoint: Factory, name: str, attribute: str, check: str, workers: tuple[str, ...]
) -> None:
    pytester.makeconftest(NARROW_SCOPE.format(name=name, attribute=attribute))
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", "-k", check, *workers)
    # Not pytest's ScopeMismatch under each test that reads it, nor a model loaded per test: one line, before any test runs.
    assert_usage_error(
        result,
        f"{name} is overridden at conftest.py:* with scope='function', but the plugin's fixtures are session-scoped *: "
        "declare it @pytest.fixture(scope=\"session\"); see 'Overriding bert_model' in the README",
    )
    assert "ScopeMismatch" not in result.stdout.str() + result.stderr.str()


def test_an_override_that_returns_a_model_with_heads_is_told_to_return_the_base_encoder(
    pytester: pytest.Pytester, tiny_checkpoint: Factory
) -> None:
    pytester.makeconftest(WITH_HEADS)
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", "-k", "pooler or padding or determinism")
    assert_usage_error(
        result,
        "bert_model, overridden at conftest.py:*, returns BertForMaskedLM, a model with heads: its outputs have no "
        "last_hidden_state, which every check reads. Return the base encoder: `model.base_model` (BertModel); *",
    )
    assert "AttributeError" not in result.stdout.str() + result.stderr.str()


def test_the_readme_override_is_audited_named_and_shares_its_passes(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    checks = ("-k", "pooler_relation or determinism or padding_invariance", "--bert-report-json=report.json")
    plain = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", *checks)
    plain.assert_outcomes(passed=3)
    passes = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))["models"][0]["forward_passes"]
    pytester.makeconftest(README_OVERRIDE)
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", *checks)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([
        "bert *bert *BertForSequenceClassification *",  # the class the user's code built
        "bert: bert_head_model is overridden at conftest.py:*: head_relation and label_map read BertForSequenceClassification",
        "bert: bert_model is overridden at conftest.py:*: the checks read BertModel",
    ])
    model = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))["models"][0]
    # The override's passes are memoised as the checkpoint's are: the same count, not one pass per check and example.
    assert model["forward_passes"] == passes > 0
    assert [re.sub(r":\d+:", ":N:", override).split(": ")[0] for override in model["overrides"]] == [
        "bert_head_model is overridden at conftest.py:N", "bert_model is overridden at conftest.py:N",
    ]


def test_a_pass_of_a_model_with_heads_says_to_pass_its_base_encoder(tiny_checkpoint: Factory) -> None:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from pytest_bertprobe.forward import cache

    path = tiny_checkpoint("bert")
    model, tokenizer = AutoModelForMaskedLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    with pytest.raises(TypeError, match=r"BertForMaskedLM returns MaskedLMOutput, which has no last_hidden_state .*"
                                        r"pass the base encoder: `model.base_model` \(BertModel\)"):  # fmt: skip
        cache.fresh_forward(model, tokenizer(["hello world"], return_tensors="pt"))
