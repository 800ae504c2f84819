"""A forward pass that raises: which input, what it raised, why, and which audit check owns the finding.

Many checks share one pass of a batch. The check whose clause explains the crash reports it once (an input
past the position table: `tokenizer_max_length`; token ids past the embedding matrix:
`tokenizer_ids_in_embeddings`; token types past their table: `tokenizer_token_types`; a crash at the
tokenizer's maximum length: `tokenizer_max_length` again; an input of no token at all (a tokenizer that adds no
special token, on the empty sentence): `tokenizer_special_tokens`; any other crash:
`outputs_finite`, the check that every output exists and is finite); the others skip, pointing at it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_bertprobe.checkpoint.limits import declared_max_length, usable_positions
from pytest_bertprobe.checkpoint.tables import embedding_rows, tables
from pytest_bertprobe.errors import ForwardError, first_line

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_OWNER = "outputs_finite"


def diagnose(
    model: PreTrainedModel, inputs: Mapping[str, torch.Tensor], error: Exception, tokenizer: PreTrainedTokenizerBase | None = None
) -> ForwardError:
    """Explain `error`, raised by `model` on `inputs`, from the input's shape and ids against the model's tables."""
    ids = inputs.get("input_ids")
    shape = tuple(ids.shape) if ids is not None else ()
    width = int(shape[-1]) if shape else 0
    metrics: dict[str, Any] = {"error": first_line(error), "input_shape": list(shape)}
    owner, diagnosis, hint = DEFAULT_OWNER, "", "run the model on this input alone to see where it breaks"
    usable = usable_positions(model)
    declared = declared_max_length(tokenizer) if tokenizer is not None else None
    rows = embedding_rows(model)
    types = tables(model).types.rows if tables(model).types is not None else None
    top_id = int(ids.max()) if ids is not None and ids.numel() else None
    top_type = int(inputs["token_type_ids"].max()) if "token_type_ids" in inputs and inputs["token_type_ids"].numel() else None
    if shape and width == 0:
        owner = "tokenizer_special_tokens"
        diagnosis = "the tokenizer gives the input no token at all (it adds no special token), so there is nothing to encode"
        hint = "make the tokenizer add the model's special tokens ([CLS] ... [SEP]), so even the empty sentence is an input"
    elif usable is not None and width > usable:
        owner = "tokenizer_max_length"
        diagnosis = f"the input is {width} tokens wide, past the model's {usable} usable positions"
        hint = f"set \"model_max_length\": {max(usable, 0)} in tokenizer_config.json (or fix max_position_embeddings)"
    elif rows is not None and top_id is not None and top_id >= rows:
        owner = "tokenizer_ids_in_embeddings"
        diagnosis = f"token id {top_id} is past the embedding matrix's {rows} rows"
        hint = "resize the embeddings to len(tokenizer) (or fix vocab_size in config.json)"
    elif types is not None and top_type is not None and top_type >= types:
        owner = "tokenizer_token_types"
        diagnosis = f"token type {top_type} is past the token type table's {types} rows"
        hint = "fix type_vocab_size in config.json, or the tokenizer's pair template"
    elif declared is not None and width >= declared:
        owner = "tokenizer_max_length"
        diagnosis = f"the model breaks on an input at the tokenizer's maximum length ({declared} tokens), within its positions"
        hint = "set model_max_length to the longest input the model really takes"
    else:
        diagnosis = "the input fits the position, token and type tables, so the model itself breaks on it"
        hint = (
            f"{type(model).__name__} cannot take this input: a defect of the model's code (run it on this input alone), "
            "or, where it is by design, a minimum input length the tokenizer must enforce"
        )
    shown = _shown_input(ids, tokenizer)
    metrics.update(owner=owner, diagnosis=diagnosis, input=shown)
    message = (
        f"{type(model).__name__} raises on {shown}: {metrics['error']}\n"
        f"Input: input_ids of shape {shape} ({shape[0] if shape else 0} row(s), {width} tokens wide)\n"
        f"Diagnosis: {diagnosis}\nHint: {hint}"
    )
    return ForwardError(message, owner=owner, metrics=metrics)


def _shown_input(ids: torch.Tensor | None, tokenizer: PreTrainedTokenizerBase | None) -> str:
    """The input in words: the empty sentence, a short one quoted, else its shape."""
    if ids is None:
        return "an input without input_ids"
    if tokenizer is None or ids.shape[0] != 1:
        return f"a batch of {ids.shape[0]} rows {ids.shape[-1]} tokens wide"
    try:
        text = tokenizer.decode(ids[0].tolist(), skip_special_tokens=True).strip()
    except Exception:  # noqa: BLE001 - ids the tokenizer cannot decode (perhaps why the model raised): say the shape
        return f"a sentence of {ids.shape[-1]} tokens the tokenizer cannot decode"
    if not text:
        return f"the empty sentence ({ids.shape[-1]} tokens with the special ones)"
    return f"the sentence {text[:40]!r} ({ids.shape[-1]} tokens)"
