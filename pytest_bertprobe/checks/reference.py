"""Conversion audit: a checkpoint against its trusted original, token ids first, then output by output.

Conversions (TF → PyTorch, fp32 → bf16, ports, re-saves) leave checkpoints that load and agree with
themselves; only a comparison with the original shows a wrong activation, a transposed weight or a
changed layer-norm epsilon. The failure names the first output (embeddings, then each layer) that
diverges, the worst sentence, and the config keys and weights that differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_bertprobe import tolerances
from pytest_bertprobe.checkpoint.config import config_values, differing_settings
from pytest_bertprobe.checkpoint.limits import input_limit
from pytest_bertprobe.compare import Gap, Tolerance, assert_close, measure, quote
from pytest_bertprobe.errors import CheckFailure
from pytest_bertprobe.forward import cache
from pytest_bertprobe.forward.views import real_ids, zero_padding

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

CHECK = "reference_agreement"
# Keys that name a file, its provenance or training-time and output options, not the network's math.
_LISTED = 3  # how many differing weights a message names


@dataclass(frozen=True)
class Agreement:
    """Every compared output's gap, in network order, and the dtype whose tolerance judged them."""

    gaps: dict[str, Gap]
    dtype: str

    def metrics(self) -> dict[str, Any]:
        """The worst output's numbers, and each output's greatest difference, for reports."""
        name, worst = max(self.gaps.items(), key=lambda item: item[1].max_abs / max(item[1].atol, 1e-30))
        return {
            **worst.metrics(),
            "output": name,
            "compared_at": self.dtype,
            "outputs": {output: gap.max_abs for output, gap in self.gaps.items()},
        }


def named_outputs(result: cache.Forward) -> dict[str, torch.Tensor]:
    """Embeddings, each layer, the final hidden state and the pooler, in the order data flows."""
    hidden = result.hidden_states
    outputs: dict[str, torch.Tensor] = {}
    if hidden:
        outputs["embeddings (hidden_states[0])"] = hidden[0]
        for layer in range(1, len(hidden)):
            outputs[f"layer {layer} of {len(hidden) - 1} (hidden_states[{layer}])"] = hidden[layer]
    outputs["last_hidden_state"] = result.last_hidden_state
    if result.pooler_output is not None:
        outputs["pooler_output"] = result.pooler_output
    return outputs


def comparison_dtype(*models: Any, stored: Sequence[str | None] = ()) -> str:
    """The lowest precision among the models' parameters and the dtypes their weights were stored in."""
    return tolerances.lowest_precision(*(tolerances.model_dtype(model) for model in models), *stored)


def assert_tokenizers_agree(
    tokenizer: PreTrainedTokenizerBase, reference_tokenizer: PreTrainedTokenizerBase, sentences: Sequence[str],
    *, max_lengths: tuple[int | None, int | None] = (None, None),
) -> tuple[Any, Any]:
    """Both tokenizers give the same ids, mask and token types for `sentences`; return both encodings.

    `max_lengths` truncate each side where its tokenizer would not (`tokenizer_contract.input_limit`).
    """
    __tracebackhide__ = True
    inputs = cache.encode(tokenizer, sentences, max_length=max_lengths[0])
    reference_inputs = cache.encode(reference_tokenizer, sentences, max_length=max_lengths[1])
    _assert_same_ids(inputs, reference_inputs, sentences, (tokenizer, reference_tokenizer))
    return inputs, reference_inputs


def assert_checkpoints_agree(
    model: PreTrainedModel,
    reference: PreTrainedModel,
    inputs: Mapping[str, torch.Tensor],
    *,
    reference_inputs: Mapping[str, torch.Tensor] | None = None,
    sentences: Sequence[str] | None = None,
    dtype: str | None = None,
    atol: float | None = None,
    rtol: float | None = None,
) -> Agreement:
    """Embeddings, every hidden state and the pooler of `model` match `reference` on the same inputs.

    `reference_inputs` (the reference tokenizer's encoding) is compared with `inputs` first. Tolerances
    are `reference_agreement`'s at `dtype`, by default the lower precision of the two models.
    """
    __tracebackhide__ = True
    if reference_inputs is not None:
        _assert_same_ids(inputs, reference_inputs, sentences, None)
    dtype = dtype or comparison_dtype(model, reference)
    tolerance = tolerances.tolerance_for(CHECK, dtype, atol=atol, rtol=rtol)
    ours = named_outputs(cache.forward(model, inputs))
    theirs = named_outputs(cache.forward(reference, reference_inputs if reference_inputs is not None else inputs))
    _assert_same_structure(ours, theirs)
    mask = cache.attention_mask(inputs, getattr(model.config, "pad_token_id", None)).bool()
    gaps = output_gaps(ours, theirs, inputs, tolerance, getattr(model.config, "pad_token_id", None))
    names = list(gaps)
    for position, name in enumerate(names):
        if gaps[name].mismatched:
            assert_close(
                zero_padding(ours[name], mask),
                zero_padding(theirs[name], mask),
                tolerance,
                claim=f"Checkpoint vs reference, first diverging output {name}",
                sentences=sentences,
                # Only the outputs up to this one: "outputs that agree" are those before the divergence.
                details=_diagnosis(
                    {earlier: gaps[earlier] for earlier in names[: position + 1]}, ours, theirs, mask, sentences, model, reference, dtype
                ),
                hint=_hint(name, names),
            )
    agreement = Agreement(gaps, dtype)
    settings = config_differences(model.config, reference.config)
    if settings:
        raise CheckFailure(
            f"Checkpoint vs reference: every output agrees at {dtype} tolerances on these sentences, "
            "but the configs differ:\n  " + "\n  ".join(settings) + "\nHint: each of these changes the network's "
            "math (on other inputs, or beyond these tiny gaps); make config.json match the original's",
            metrics={**agreement.metrics(), "config_differences": settings},
        )
    return agreement


def output_gaps(
    ours: Mapping[str, torch.Tensor],
    theirs: Mapping[str, torch.Tensor],
    inputs: Mapping[str, torch.Tensor],
    tolerance: Tolerance,
    pad_token_id: int | None = None,
) -> dict[str, Gap]:
    """Each `named_outputs` entry's gap to the reference's, padded positions left out, in network order."""
    mask = cache.attention_mask(inputs, pad_token_id).bool()
    return {name: measure(zero_padding(output, mask), zero_padding(theirs[name], mask), tolerance) for name, output in ours.items()}


def assert_agrees_with_reference(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    reference: PreTrainedModel,
    reference_tokenizer: PreTrainedTokenizerBase,
    *,
    sentences: Sequence[str],
    stored_dtypes: Sequence[str | None] = (),
    atol: float | None = None,
    rtol: float | None = None,
) -> Agreement:
    """The audit's check: token ids first, then every output, at the precision of the lower of the two."""
    __tracebackhide__ = True
    limits = (input_limit(model, tokenizer), input_limit(reference, reference_tokenizer))
    inputs, reference_inputs = assert_tokenizers_agree(tokenizer, reference_tokenizer, sentences, max_lengths=limits)
    dtype = comparison_dtype(model, reference, stored=stored_dtypes)
    return assert_checkpoints_agree(
        model, reference, inputs.to(model.device), sentences=sentences, dtype=dtype, atol=atol, rtol=rtol,
        reference_inputs=reference_inputs.to(reference.device),
    )  # fmt: skip


def config_differences(config: Any, reference_config: Any) -> list[str]:
    """`key: value here, value in the reference` for each setting both configs have and set differently."""
    ours, theirs = config_values(config), config_values(reference_config)
    return [f"{key}: {ours[key]!r} here, {theirs[key]!r} in the reference" for key in differing_settings(ours, theirs)]


def weight_differences(model: PreTrainedModel, reference: PreTrainedModel, limit: int = _LISTED) -> list[str]:
    """The weights that differ most (the reference rounded to the model's dtype), and any that are transposed."""
    import torch

    ours, theirs = model.state_dict(), reference.state_dict()
    found: list[tuple[float, str]] = []
    for name in sorted(ours.keys() & theirs.keys()):
        mine, original = ours[name].detach().cpu(), theirs[name].detach().cpu().to(ours[name].dtype)
        if mine.shape != original.shape:
            found.append((float("inf"), f"{name}: shape {tuple(mine.shape)} here, {tuple(original.shape)} in the reference"))
            continue
        if not mine.is_floating_point() or torch.equal(mine, original):
            continue
        difference = float((mine.double() - original.double()).abs().max())
        transposed = mine.dim() == 2 and mine.shape[0] == mine.shape[1] and torch.equal(mine, original.T)
        found.append((difference, f"{name}: greatest difference {difference:.6g}" + (" (it is the reference transposed)" if transposed else "")))
    only = sorted(ours.keys() ^ theirs.keys())
    lines = [line for _, line in sorted(found, key=lambda item: -item[0])[:limit]]
    if len(found) > limit:
        lines.append(f"... and {len(found) - limit} more of {len(ours)} weights")
    return lines + ([f"only on one side: {', '.join(only[:limit])}" + (" ..." if len(only) > limit else "")] if only else [])


def _assert_same_structure(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> None:
    __tracebackhide__ = True
    if list(ours) != list(theirs):
        raise CheckFailure(
            f"Checkpoint vs reference: the outputs differ in kind: {len(ours) - 2} layers here and "
            f"{len(theirs) - 2} in the reference ({', '.join(ours)} vs {', '.join(theirs)})"
            "\nHint: the reference must be the same architecture; pruned or distilled copies are new models"
        )
    for name, output in ours.items():
        if output.shape != theirs[name].shape:
            raise CheckFailure(
                f"Checkpoint vs reference, {name}: shapes differ: {tuple(output.shape)} here, "
                f"{tuple(theirs[name].shape)} in the reference\nHint: compare hidden_size and the configs"
            )


def _diagnosis(
    gaps: dict[str, Gap],
    ours: dict[str, torch.Tensor],
    theirs: dict[str, torch.Tensor],
    mask: torch.Tensor | None,
    sentences: Sequence[str] | None,
    model: Any,
    reference: Any,
    dtype: str,
) -> list[str]:
    """Context for a divergence: the outputs that agreed, the worst sentence, config keys and weights that differ."""
    lines = [f"Compared at {dtype} tolerances."]
    agreed = [f"{name} ({gap.max_abs:.3g})" for name, gap in gaps.items() if not gap.mismatched]
    lines.append("Outputs that agree, greatest difference: " + (", ".join(agreed) if agreed else "none (the embeddings already differ)"))
    last = "last_hidden_state"
    per_sentence = (zero_padding(ours[last], mask).double() - zero_padding(theirs[last], mask).double()).abs().flatten(1).amax(1)
    worst = int(per_sentence.argmax())
    label = f" {quote(sentences[worst])}" if sentences is not None and worst < len(sentences) else ""
    lines.append(f"Worst sentence: {worst}{label}, greatest difference in {last} {float(per_sentence[worst]):.6g}")
    settings = config_differences(model.config, reference.config)
    lines.append("Config differences: " + ("; ".join(settings) if settings else "none"))
    weights = weight_differences(model, reference)
    lines.append("Weights that differ: " + ("; ".join(weights) if weights else "none (identical after rounding to this dtype)"))
    return lines


def _hint(name: str, order: list[str]) -> str:
    if name == order[0] and name.startswith("embeddings"):
        return "the embeddings differ: compare the vocabulary, the embedding and position tables, and layer_norm_eps"
    return (
        f"everything before {name} agrees, so the fault is in that layer: its weights (a transposed or swapped "
        "matrix), hidden_act, or layer_norm_eps; see the config and weight differences above"
    )


def _assert_same_ids(
    inputs: Mapping[str, torch.Tensor],
    reference_inputs: Mapping[str, torch.Tensor],
    sentences: Sequence[str] | None,
    tokenizers: tuple[Any, Any] | None,
) -> None:
    """Exact token agreement, named at the first sentence and position where the two differ."""
    __tracebackhide__ = True
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        if key not in inputs or key not in reference_inputs:
            continue
        ours, theirs = inputs[key].cpu(), reference_inputs[key].cpu()
        for row in range(max(len(ours), len(theirs))):
            mine = real_ids(ours, inputs, row)
            original = real_ids(theirs, reference_inputs, row)
            if mine == original:
                continue
            position = next((i for i, (a, b) in enumerate(zip(mine, original)) if a != b), min(len(mine), len(original)))
            label = f" {quote(sentences[row])}" if sentences is not None and row < len(sentences) else ""
            lines = [
                f"Tokenizers disagree: {key} of sentence {row}{label} differ at position {position}",
                f"  here:      {_tokens(mine, tokenizers[0] if tokenizers and key == 'input_ids' else None)}",
                f"  reference: {_tokens(original, tokenizers[1] if tokenizers and key == 'input_ids' else None)}",
                "Hint: the outputs were not compared, since the models would read different tokens; "
                "save the original tokenizer with the converted weights",
            ]
            raise CheckFailure("\n".join(lines), metrics={"tokens": key, "sentence": row, "position": position})


def _tokens(ids: list[int], tokenizer: Any, limit: int = 24) -> str:
    shown = tokenizer.convert_ids_to_tokens(ids[:limit]) if tokenizer is not None else ids[:limit]
    return " ".join(str(token) for token in shown) + (f" ... ({len(ids)} tokens)" if len(ids) > limit else "")
