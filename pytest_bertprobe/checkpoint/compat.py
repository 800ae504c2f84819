"""The few places where transformers 4.57 and 5.x differ, detected by feature rather than by version."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pytest_bertprobe.tolerances import parameter_dtype

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def switches_attention_in_place(model: PreTrainedModel) -> bool:
    """Whether `set_attn_implementation` takes effect on a built model (5.x attention interface).

    transformers 4.x BERT-family models pick their attention classes when they are built, so there
    the implementation can only change by building the model again.
    """
    try:
        return bool(model._can_set_attn_implementation())
    except KeyError:  # 4.x reads sys.modules[the model's module], which tests may clear (pytester does); 5.x says False
        return False


@contextmanager
def attention_implementation(model: PreTrainedModel, implementation: str) -> Iterator[PreTrainedModel]:
    """`model` running `implementation`: switched in place and restored, else a twin sharing its weights."""
    if not switches_attention_in_place(model):
        yield attention_twin(model, implementation)
        return
    original = model.config._attn_implementation
    model.set_attn_implementation(implementation)
    try:
        yield model
    finally:
        model.set_attn_implementation(original)


def attention_twin(model: PreTrainedModel, implementation: str) -> PreTrainedModel:
    """A copy of `model` built for `implementation` whose parameters and buffers are `model`'s own tensors.

    Built on the meta device (no memory, no random init); what is not in the config or the tensors
    (hooks, modules patched in memory) is not copied.
    """
    import torch

    dtype = parameter_dtype(model)
    with torch.device("meta"):
        twin = type(model)._from_config(copy.deepcopy(model.config), attn_implementation=implementation, dtype=dtype)
    for name, _child in list(twin.named_children()):
        if getattr(model, name, None) is None:  # built with add_pooling_layer=False and the like
            setattr(twin, name, None)
    twin.load_state_dict(model.state_dict(), strict=True, assign=True)
    buffers = dict(model.named_buffers())
    for name, buffer in list(twin.named_buffers()):
        if buffer.is_meta:  # non-persistent buffers (position ids, rotary frequencies): the model's own
            owner, _, leaf = name.rpartition(".")
            twin.get_submodule(owner).register_buffer(leaf, buffers[name], persistent=False)
    return twin.eval()


def key_names(keys: Iterable[Any]) -> set[str]:
    """Parameter names from a loading report: 5.x lists mismatched keys as `(name, shape, shape)`."""
    return {str(key[0] if isinstance(key, tuple) else key) for key in keys}


def ties_last_hidden_state(config: Any) -> bool:
    """Whether `hidden_states[-1]` is `last_hidden_state` even where a final norm sits between them.

    5.x's output capturing ties them unless `config.tie_last_hidden_states` is False; 4.x returns
    the state before the final norm (ModernBERT) and has no such setting.
    """
    import importlib.util

    if importlib.util.find_spec("transformers.utils.output_capturing") is None:
        return False
    return getattr(config, "tie_last_hidden_states", None) is not False


def builds_only_fast_tokenizers() -> bool:
    """5.x has no slow (Python) tokenizers: its slow class names are aliases of the fast ones (BertTokenizerFast = BertTokenizer)."""
    import transformers

    return getattr(transformers, "BertTokenizer", None) is getattr(transformers, "BertTokenizerFast", None)
