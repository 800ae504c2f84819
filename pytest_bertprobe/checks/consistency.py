"""Consistency of a model with itself (docs/DESIGN.md §2): repeated passes, attention kernels, save and load."""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pytest_bertprobe import compare
from pytest_bertprobe.checkpoint import compat
from pytest_bertprobe.checkpoint.loading import quiet_progress_bars
from pytest_bertprobe.errors import NotApplicable
from pytest_bertprobe.forward import cache
from pytest_bertprobe.forward.views import assert_outputs_agree, forward_view
from pytest_bertprobe.tolerances import model_dtype, parameter_dtype, tolerance_for

if TYPE_CHECKING:
    from transformers import PreTrainedModel

_REFERENCE, _FUSED = "eager", "sdpa"


def assert_deterministic(
    model: PreTrainedModel,
    inputs: Mapping[str, Any],
    *,
    atol: float | None = None,
    rtol: float | None = None,
    sentences: Sequence[str] | None = None,
) -> compare.Gap:
    """Assert no module is in training mode and two forward passes give identical outputs."""
    __tracebackhide__ = True
    mask = cache.attention_mask(inputs, getattr(model.config, "pad_token_id", None))
    first = forward_view(cache.forward(model, inputs), mask)  # shared with the other checks of this batch
    # A fresh pass on purpose: `cache.forward` would hand back the first one from its memo. Like every fresh
    # pass, it fails on a model in training mode.
    second = forward_view(cache.fresh_forward(model, inputs), mask)
    return assert_outputs_agree(
        second,
        first,
        tolerance_for("determinism", model_dtype(model), atol=atol, rtol=rtol),
        claim="second forward pass == first forward pass",
        sentences=sentences,
        hint="the model is random in eval mode: functional dropout with training=True, "
        "a stateful hook or module, or a nondeterministic kernel (torch.use_deterministic_algorithms)",
    )


def assert_eager_matches_sdpa(
    model: PreTrainedModel,
    inputs: Mapping[str, Any],
    *,
    atol: float | None = None,
    rtol: float | None = None,
    sentences: Sequence[str] | None = None,
) -> compare.Gap:
    """Assert the sdpa attention kernel gives what eager attention gives; the model's own setting is restored.

    Where the implementation cannot be switched in place (transformers 4.x), the other implementation
    runs on a twin that shares the model's weights. Raises `NotApplicable` when the architecture has
    only one of the two implementations.
    """
    __tracebackhide__ = True
    name, current = type(model).__name__, model.config._attn_implementation
    if not getattr(model, "_supports_sdpa", False):
        raise NotApplicable(
            f"{name} ({model.config.model_type}) has only the {current} attention implementation: nothing to compare"
        )
    cache.require_eval_mode(model)
    mask = cache.attention_mask(inputs, getattr(model.config, "pad_token_id", None))
    outputs = {
        implementation: forward_view(
            cache.forward(model, inputs) if implementation == current else _pass_with(model, implementation, inputs), mask
        )
        for implementation in (_REFERENCE, _FUSED)
    }
    return assert_outputs_agree(
        outputs[_FUSED],
        outputs[_REFERENCE],
        tolerance_for("eager_matches_sdpa", model_dtype(model), atol=atol, rtol=rtol),
        claim=f"outputs with attn_implementation={_FUSED!r} == with {_REFERENCE!r}",
        sentences=sentences,
        hint=f"the {_FUSED} attention kernel disagrees with the reference {_REFERENCE} attention on {model.device}: "
        "check the attention mask it receives and the kernel backend; "
        f"load with attn_implementation={_REFERENCE!r} until it is fixed",
    )


def _pass_with(model: PreTrainedModel, implementation: str, inputs: Mapping[str, Any]) -> cache.Forward:
    """A pass with another attention implementation (recalled for a batch seen before), then the model's own one again."""
    with compat.attention_implementation(model, implementation) as switched:
        return cache.forward(switched, inputs)


def assert_save_load_round_trip(
    model: PreTrainedModel,
    inputs: Mapping[str, Any],
    *,
    atol: float | None = None,
    rtol: float | None = None,
    sentences: Sequence[str] | None = None,
) -> compare.Gap:
    """Assert `save_pretrained` then `from_pretrained` (same class and dtype) reproduces the outputs exactly."""
    __tracebackhide__ = True
    if getattr(type(model), "config_class", None) is None:
        raise NotApplicable(
            f"{type(model).__name__} has no config_class, so from_pretrained cannot load it on its own "
            "(transformers 4.x DPR encoders): there is no round trip to make"
        )
    mask = cache.attention_mask(inputs, getattr(model.config, "pad_token_id", None))
    expected = forward_view(cache.forward(model, inputs), mask)
    dtype = parameter_dtype(model)
    with tempfile.TemporaryDirectory(prefix="bertprobe-round-trip-") as folder, quiet_progress_bars():
        with _config_kept(model):
            model.save_pretrained(folder)
        reloaded, info = type(model).from_pretrained(
            folder, dtype=dtype, attn_implementation=model.config._attn_implementation, output_loading_info=True,
            **_built_as(model),
        )
    actual = forward_view(cache.forward(reloaded.to(model.device).eval(), inputs), mask)
    del reloaded
    missing = sorted(info.get("missing_keys", ()))
    hint = (
        f"reloading had to initialise {len(missing)} weights that were not saved: {', '.join(missing[:4])}"
        if missing
        else "the model in memory is not what save_pretrained writes: a module attribute changed without its "
        "config field (activation, layer-norm eps), a non-persistent buffer, or a patched forward"
    )
    return assert_outputs_agree(
        actual,
        expected,
        tolerance_for("save_load_round_trip", model_dtype(model), atol=atol, rtol=rtol),
        claim=f"outputs after save_pretrained and {type(model).__name__}.from_pretrained == before",
        sentences=sentences,
        hint=hint,
    )


def _built_as(model: PreTrainedModel) -> dict[str, Any]:
    """How the model was built where its config does not say: a head model's base without its pooler (BertForMaskedLM's)."""
    if getattr(model, "pooler", ...) is None and "add_pooling_layer" in inspect.signature(type(model).__init__).parameters:
        return {"add_pooling_layer": False}
    return {}


@contextmanager
def _config_kept(model: PreTrainedModel) -> Iterator[None]:
    """`save_pretrained` rewrites `config.architectures` and `config.dtype` in place; the config may be shared with heads."""
    config = model.config
    saved = {key: getattr(config, key) for key in ("architectures", "dtype") if hasattr(config, key)}
    try:
        yield
    finally:
        for key, value in saved.items():
            setattr(config, key, value)
