"""Invariances of one model's outputs (docs/DESIGN.md §2): hidden states, padding, masked content, batch order."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pytest_bertprobe import compare
from pytest_bertprobe.checkpoint import compat
from pytest_bertprobe.checkpoint.limits import input_limit
from pytest_bertprobe.checkpoint.tables import embedding_rows, tables
from pytest_bertprobe.errors import CheckFailure, NotApplicable
from pytest_bertprobe.forward import cache
from pytest_bertprobe.forward.views import alone_and_batched, assert_outputs_agree, forward_view, real_tokens
from pytest_bertprobe.sentences import PROBE_SENTENCES
from pytest_bertprobe.tolerances import model_dtype, tolerance_for

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# Funnel and canine return more than num_hidden_layers + 1 hidden states by design.
_EXTRA_HIDDEN_STATES = {"funnel", "canine"}
__all__ = ["assert_outputs_agree", "forward_view", "real_tokens"]  # also read from here by earlier code


def assert_hidden_states_consistent(
    model: PreTrainedModel,
    inputs: Mapping[str, Any],
    *,
    atol: float | None = None,
    rtol: float | None = None,
    sentences: Sequence[str] | None = None,
) -> compare.Gap:
    """Assert `len(hidden_states) == num_hidden_layers + 1`, the last equals `last_hidden_state`, the first the embeddings.

    Raises `NotApplicable` for funnel/canine, or when the embeddings module cannot be called on `inputs`.
    """
    __tracebackhide__ = True
    import torch

    outputs = cache.forward(model, inputs)
    name, model_type = type(model).__name__, str(model.config.model_type)
    if model_type in _EXTRA_HIDDEN_STATES:
        raise NotApplicable(f"{name} ({model_type}) returns more than num_hidden_layers + 1 hidden states by design")
    if not outputs.hidden_states:
        raise NotApplicable(f"{name} returns no hidden_states even when asked (output_hidden_states=True)")
    layers, count = int(model.config.num_hidden_layers), len(outputs.hidden_states)
    if count != layers + 1:
        raise CheckFailure(
            f"len(hidden_states) == config.num_hidden_layers + 1: {count} != {layers + 1}\n"
            f"{name} returned {count} hidden states (the embeddings and one per layer run), "
            f"but its config declares num_hidden_layers={layers}\n"
            "Hint: were layers pruned or added without updating config.num_hidden_layers? "
            "Anything that indexes layers by the config (hidden_states[-k], layer-wise pooling) reads the wrong one"
        )
    tolerance = tolerance_for("hidden_states", model_dtype(model), atol=atol, rtol=rtol)
    mask = cache.attention_mask(inputs, getattr(model.config, "pad_token_id", None))
    last, expected_last, claim = outputs.hidden_states[-1], outputs.last_hidden_state, "hidden_states[-1] == last_hidden_state"
    if last.shape != expected_last.shape:
        raise NotApplicable(
            f"{name}'s hidden states are {tuple(last.shape)}, its last_hidden_state {tuple(expected_last.shape)}: "
            "other quantities by design (reformer's reversible layers carry two streams)"
        )
    if not compat.ties_last_hidden_state(model.config) or not torch.allclose(last, expected_last, atol=tolerance.atol, rtol=tolerance.rtol):
        # Untied on purpose, or by transformers 4.x: hidden_states[-1] is the state before a final norm.
        found = _final_norm(model, last, expected_last)
        if found is not None:
            with torch.inference_mode():
                last = found[1](last)
            claim = f"{found[0]}(hidden_states[-1]) == last_hidden_state"
    gaps = [
        compare.assert_close(
            real_tokens(last, mask), real_tokens(expected_last, mask), tolerance, claim=claim, sentences=sentences,
            hint="the last hidden state returned is not the encoder's output: a final norm or projection sits between them",
        )
    ]
    embeddings = _embedding_output(model, outputs.inputs, mask)
    gaps.append(
        compare.assert_close(
            real_tokens(outputs.hidden_states[0], mask), real_tokens(embeddings, mask), tolerance,
            claim="hidden_states[0] == model.embeddings(inputs)", sentences=sentences,
            hint="the first hidden state is not the embeddings' output: something changes it before layer 0",
        )
    )
    return max(gaps, key=lambda gap: gap.max_abs)


def _embedding_output(model: PreTrainedModel, inputs: Mapping[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """Call `model.embeddings` with the inputs its signature names, then any projection to the hidden size."""
    import torch

    name = type(model).__name__
    embeddings = getattr(model, "embeddings", None)
    if not isinstance(embeddings, torch.nn.Module):
        raise NotApplicable(f"{name} has no `embeddings` module to compare hidden_states[0] with")
    available = {**inputs, "mask": mask.to(model.device)}  # DeBERTa's embeddings zero the pads with `mask`
    parameters = inspect.signature(embeddings.forward).parameters
    missing = [
        parameter for parameter, spec in parameters.items()
        if parameter not in available and spec.default is inspect.Parameter.empty
        and spec.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]  # fmt: skip
    if tables(model).tokens is not None and tables(model).tokens.module is embeddings:
        raise NotApplicable(
            f"{name}.embeddings is its token table alone ({type(embeddings).__name__}); {name}.forward adds positions "
            "and norms itself, so no module's output is hidden_states[0] to compare with"
        )
    if missing:
        raise NotApplicable(f"{name}.embeddings needs {', '.join(missing)}, which the tokenizer does not produce")
    with torch.inference_mode():
        try:
            output = embeddings(**{key: value for key, value in available.items() if key in parameters})
        except Exception:  # noqa: BLE001 - called alone it takes a path the model never does (LUKE): watch the model's own call
            output = _as_called_by_the_model(model, embeddings, inputs)
        if not isinstance(output, torch.Tensor):
            output = _as_called_by_the_model(model, embeddings, inputs)  # I-BERT: (embeddings, scaling factor)
        width = int(model.config.hidden_size)
        if output.shape[-1] != width:
            output = _hidden_projection(model, int(output.shape[-1]), width)(output)
    return output


def _final_norm(model: PreTrainedModel, last: torch.Tensor, expected: torch.Tensor) -> tuple[str, Any] | None:
    """The norm outside the layers and embeddings that maps hidden_states[-1] onto last_hidden_state, if one does."""
    import torch

    for path, module in model.named_modules():
        parts = path.split(".")
        if "Norm" not in type(module).__name__ or parts[0] == "embeddings" or any(part.isdigit() for part in parts):
            continue
        try:
            with torch.inference_mode():
                if torch.allclose(module(last), expected, atol=1e-5, rtol=1e-4):
                    return path, module
        except Exception:  # noqa: BLE001 - a norm of another width: not this one
            continue
    return None


def _as_called_by_the_model(model: PreTrainedModel, embeddings: torch.nn.Module, inputs: Mapping[str, Any]) -> torch.Tensor:
    """What `embeddings` returns inside the model's own forward pass (its first tensor, where it returns several)."""
    import torch

    seen: list[torch.Tensor] = []

    def keep(_module: Any, _args: Any, output: Any) -> None:
        found = output if isinstance(output, torch.Tensor) else next((t for t in output if isinstance(t, torch.Tensor)), None)
        if found is not None:
            seen.append(found)

    handle = embeddings.register_forward_hook(keep)
    try:
        model(**inputs)
    finally:
        handle.remove()
    if not seen:
        raise NotApplicable(f"{type(model).__name__}'s own pass takes no tensor from its embeddings module: nothing to compare hidden_states[0] with")
    return seen[0]


def _hidden_projection(model: PreTrainedModel, embedding_size: int, hidden_size: int) -> torch.nn.Linear:
    """The one embedding-to-hidden Linear outside `model.embeddings` (ELECTRA `embeddings_project`, ALBERT's mapping)."""
    import torch

    candidates = [
        module for path, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and "embedding" in path and not path.startswith("embeddings.")
        and (module.in_features, module.out_features) == (embedding_size, hidden_size)
    ]  # fmt: skip
    if len(candidates) != 1:
        raise NotApplicable(
            f"{type(model).__name__}.embeddings returns width {embedding_size}, hidden states have {hidden_size}, "
            f"and {len(candidates)} embedding projections match: cannot rebuild hidden_states[0]"
        )
    return candidates[0]


def assert_padding_invariant(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    atol: float | None = None,
    rtol: float | None = None,
    sentences: Sequence[str] | None = None,
) -> compare.Gap:
    """Assert each sentence alone gives what its row of the padded batch gives: [CLS], pooler_output, real tokens.

    `sentences` defaults to `PROBE_SENTENCES`; they should differ in length so that rows carry padding.
    """
    __tracebackhide__ = True
    import torch

    batch_sentences = list(PROBE_SENTENCES if sentences is None else sentences)
    limit = input_limit(model, tokenizer)
    batch_inputs = cache.encode(tokenizer, batch_sentences, model.device, max_length=limit)
    batch_mask = cache.attention_mask(batch_inputs, tokenizer.pad_token_id)
    for row, sentence in enumerate(batch_sentences):
        alone_ids = cache.encode(tokenizer, [sentence], model.device, max_length=limit)["input_ids"][0]
        batch_ids = batch_inputs["input_ids"][row][batch_mask[row].bool()]
        if not torch.equal(alone_ids, batch_ids):
            differs = f"has {len(alone_ids)} tokens alone but {len(batch_ids)}" if len(alone_ids) != len(batch_ids) else "has other token ids alone than"
            raise CheckFailure(
                f"sentence {row}: {sentence!r} {differs} in the padded batch\n"
                "Hint: the tokenizer's truncation or special tokens depend on the batch"
            )
    alone, batch = alone_and_batched(model, batch_inputs, batch_mask)
    return assert_outputs_agree(
        alone,
        batch,
        tolerance_for("padding_invariance", model_dtype(model), atol=atol, rtol=rtol),
        claim="each sentence alone == its row of the padded batch",
        sentences=batch_sentences,
        hint=f"padding changes the outputs (the tokenizer pads on the {tokenizer.padding_side}): "
        "does the model apply attention_mask? Some (yoso, fnet) ignore it, so batched results depend on the batch",
    )


def assert_masked_content_invariant(
    model: PreTrainedModel,
    inputs: Mapping[str, Any],
    *,
    atol: float | None = None,
    rtol: float | None = None,
    sentences: Sequence[str] | None = None,
) -> compare.Gap:
    """Assert that other token ids where `attention_mask == 0` change no real token, [CLS] or pooler_output.

    For MobileBERT (trigram embeddings) the masked tokens next to real ones keep their ids: it reads them by design.
    """
    __tracebackhide__ = True
    import torch

    mask = cache.attention_mask(inputs, getattr(model.config, "pad_token_id", None))
    ids = inputs["input_ids"]
    vocabulary = embedding_rows(model) or int(ids.max()) + 2  # CANINE hashes any code point
    position = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    other = (ids + 1 + position) % vocabulary
    other = torch.where(other == ids, (ids + 1) % vocabulary, other)
    keep = mask.to(ids.device).bool()
    if getattr(model.config, "trigram_input", False):
        # MobileBERT embeds each token with its neighbours' ids, so the pad next to a real token is visible by design.
        keep = keep | torch.nn.functional.pad(keep[:, :-1], (1, 0)) | torch.nn.functional.pad(keep[:, 1:], (0, 1))
    changed = {**inputs, "input_ids": torch.where(keep, ids, other)}
    return assert_outputs_agree(
        forward_view(cache.forward(model, changed), mask),
        forward_view(cache.forward(model, inputs), mask),
        tolerance_for("masked_content_invariance", model_dtype(model), atol=atol, rtol=rtol),
        claim="outputs with other ids under attention_mask=0 == outputs of the padded batch",
        sentences=sentences,
        hint="tokens the attention mask hides still reach the real tokens: the mask is ignored or applied late",
    )


def assert_permutation_equivariant(
    model: PreTrainedModel,
    inputs: Mapping[str, Any],
    *,
    atol: float | None = None,
    rtol: float | None = None,
    sentences: Sequence[str] | None = None,
) -> compare.Gap:
    """Assert that shuffling the batch (each row moves one down, cyclically) shuffles the outputs the same way."""
    __tracebackhide__ = True
    import torch

    mask = cache.attention_mask(inputs, getattr(model.config, "pad_token_id", None))
    size = int(inputs["input_ids"].shape[0])
    order = torch.roll(torch.arange(size), 1)
    undo = torch.argsort(order)
    shuffled = {
        key: value[order.to(value.device)] if hasattr(value, "shape") and value.shape[:1] == (size,) else value
        for key, value in inputs.items()
    }
    tokens, pooled = forward_view(cache.forward(model, shuffled), mask[order.to(mask.device)])
    return assert_outputs_agree(
        (tokens[undo.to(tokens.device)], None if pooled is None else pooled[undo.to(pooled.device)]),
        forward_view(cache.forward(model, inputs), mask),
        tolerance_for("permutation_equivariance", model_dtype(model), atol=atol, rtol=rtol),
        claim="outputs of the shuffled batch, put back in order == outputs of the batch",
        sentences=sentences,
        hint="a row's output depends on the other rows or on its place in the batch: "
        "look for state shared across the batch (a mask taken from one row, batch statistics)",
    )
