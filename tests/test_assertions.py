"""The public pooler assertions, used directly on model objects as a user would outside pytest."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe import (
    SEED_SENTENCES,
    NoPoolerError,
    assert_cls_differs_from_pooler,
    assert_pooler_is_dense_tanh_of_cls,
)


def _load(path: Path) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


@pytest.fixture
def bert(tiny_checkpoint: Callable[..., Path]) -> tuple[Any, Any]:
    return _load(tiny_checkpoint("bert"))


def _seed_inputs(tokenizer: Any) -> Any:
    return tokenizer(list(SEED_SENTENCES), padding=True, truncation=True, max_length=200, return_tensors="pt")


def test_healthy_pooler_passes_bit_exact(bert: tuple[Any, Any]) -> None:
    model, tokenizer = bert
    gap = assert_pooler_is_dense_tanh_of_cls(model, _seed_inputs(tokenizer))
    assert gap.max_abs == 0.0 and gap.mismatched == 0


def test_identity_activation_fails_with_greatest_difference_and_its_index(bert: tuple[Any, Any]) -> None:
    import torch

    model, tokenizer = bert
    model.pooler.activation = torch.nn.Identity()
    inputs = _seed_inputs(tokenizer)
    with torch.no_grad():
        output = model(**inputs)
        difference = (output.pooler_output - torch.tanh(output.pooler_output)).abs()
    row, column = divmod(int(difference.argmax()), difference.shape[1])

    with pytest.raises(AssertionError) as failure:
        assert_pooler_is_dense_tanh_of_cls(model, inputs, sentences=SEED_SENTENCES)

    message = str(failure.value)
    assert message.startswith("pooler_output == tanh(pooler.dense(last_hidden_state[:, 0])): tensors are not close!")
    assert re.search(r"Mismatched elements: \d+ / \d+ \(\d+\.\d%\)", message)
    assert (
        f"Greatest absolute difference: {float(difference.max()):.6g} at index ({row}, {column}) "
        f"(sentence {row}: {SEED_SENTENCES[row]!r}) (up to 1e-06 allowed)" in message
    )
    assert "Greatest relative difference:" in message and "(up to 1e-05 allowed)" in message
    assert "Hint: the pooler's activation behaves like identity, not tanh" in message


def test_tolerances_can_be_overridden_per_call(bert: tuple[Any, Any]) -> None:
    import torch

    model, tokenizer = bert
    model.pooler.activation = torch.nn.Identity()
    assert_pooler_is_dense_tanh_of_cls(model, _seed_inputs(tokenizer), atol=100.0)


def test_cls_differs_from_a_real_pooler(bert: tuple[Any, Any]) -> None:
    model, tokenizer = bert
    gap = assert_cls_differs_from_pooler(model, _seed_inputs(tokenizer))
    assert gap.max_abs > 1e-3


def test_a_pooler_that_returns_cls_fails_the_difference_check(bert: tuple[Any, Any]) -> None:
    import torch

    model, tokenizer = bert
    hidden = model.config.hidden_size
    with torch.no_grad():
        model.pooler.dense.weight.copy_(torch.eye(hidden))
        model.pooler.dense.bias.zero_()
    model.pooler.activation = torch.nn.Identity()
    with pytest.raises(AssertionError, match=r"tensors are the same, but should differ!\n\nGreatest absolute difference: 0 at index \(0, 0\)"):
        assert_cls_differs_from_pooler(model, _seed_inputs(tokenizer), sentences=SEED_SENTENCES)


def test_pooler_assertions_refuse_models_without_a_pooler(tiny_checkpoint: Callable[..., Path]) -> None:
    model, tokenizer = _load(tiny_checkpoint("distilbert"))
    with pytest.raises(NoPoolerError, match="DistilBertModel \\(distilbert\\) has no pooler"):
        assert_pooler_is_dense_tanh_of_cls(model, _seed_inputs(tokenizer))
    with pytest.raises(NoPoolerError, match="has no pooler"):
        assert_cls_differs_from_pooler(model, _seed_inputs(tokenizer))


def test_a_disabled_pooler_says_so(tiny_checkpoint: Callable[..., Path]) -> None:
    from transformers import AutoTokenizer, BertModel

    path = tiny_checkpoint("bert")
    model = BertModel.from_pretrained(path, add_pooling_layer=False).eval()
    with pytest.raises(NoPoolerError, match=r"add_pooling_layer=False"):
        assert_pooler_is_dense_tanh_of_cls(model, _seed_inputs(AutoTokenizer.from_pretrained(path)))
