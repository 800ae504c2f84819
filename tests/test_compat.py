"""The transformers 4.57 / 5.x seams: attention twins, loading-report keys, the final norm."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_bertprobe.checkpoint import compat


def test_key_names_accept_plain_names_and_5x_mismatch_tuples() -> None:
    keys = ["pooler.dense.weight", ("embeddings.word_embeddings.weight", (10, 4), (12, 4))]
    assert compat.key_names(keys) == {"pooler.dense.weight", "embeddings.word_embeddings.weight"}


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_an_attention_twin_shares_every_tensor_and_leaves_the_model_alone(
    implementation: str, tiny_checkpoint: Callable[..., Path]
) -> None:
    import torch
    from transformers import BertModel

    model = BertModel.from_pretrained(tiny_checkpoint("bert"), add_pooling_layer=False, attn_implementation="eager").eval()
    twin = compat.attention_twin(model, implementation)
    assert twin.config._attn_implementation == implementation and model.config._attn_implementation == "eager"
    assert twin.pooler is None and not twin.training
    ours = dict(model.named_parameters()) | dict(model.named_buffers())
    theirs = dict(twin.named_parameters()) | dict(twin.named_buffers())
    assert ours.keys() == theirs.keys()
    assert all(theirs[name] is tensor or theirs[name].data_ptr() == tensor.data_ptr() for name, tensor in ours.items())
    ids = torch.tensor([[2, 10, 11, 3]])
    with torch.inference_mode():
        assert torch.allclose(twin(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state, atol=1e-5)


def test_an_explicitly_untied_final_norm_is_never_tied() -> None:
    from transformers import ModernBertConfig

    config = ModernBertConfig()
    config.tie_last_hidden_states = False
    assert compat.ties_last_hidden_state(config) is False


def test_eager_matches_sdpa_survives_the_models_module_leaving_sys_modules(
    tiny_checkpoint: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from transformers import AutoModel, AutoTokenizer

    from pytest_bertprobe.checks.consistency import assert_eager_matches_sdpa
    from pytest_bertprobe.forward import cache as forward

    path = tiny_checkpoint("bert")
    model = AutoModel.from_pretrained(path).eval()
    # pytester's in-process runs put sys.modules back as it was: a module first imported inside one is gone after.
    monkeypatch.delitem(sys.modules, type(model).__module__)
    inputs = forward.encode(AutoTokenizer.from_pretrained(path), ["hello world", "a"])
    assert assert_eager_matches_sdpa(model, inputs).max_abs < 1e-5  # 4.57 raised KeyError looking the module up
