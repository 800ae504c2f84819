"""The audit's tokenization and forward passes take adversarial text in stride, on every architecture."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_bertprobe.forward.cache import encode, forward
from pytest_bertprobe.sentences import ADVERSARIAL_SENTENCES, PROBE_SENTENCES
from pytest_bertprobe.testing import ARCHITECTURES


@pytest.mark.parametrize("arch", [*ARCHITECTURES, "minilm"])
def test_adversarial_sentences_tokenize_and_run(
    arch: str, tiny_checkpoint: Callable[..., Path], minilm_path: Path
) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path if arch == "minilm" else tiny_checkpoint(arch)
    model, tokenizer = AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    batch = encode(tokenizer, [*ADVERSARIAL_SENTENCES, *PROBE_SENTENCES])
    assert batch["input_ids"].shape[1] <= tokenizer.model_max_length
    outputs = forward(model, batch)
    assert bool(torch.isfinite(outputs.last_hidden_state).all())
