"""Shared views of a forward pass: real tokens, what consumers read, sentence embeddings, finiteness.

Every check that reads outputs goes through these, so "real tokens" or "the mean embedding" mean one thing
(docs/DESIGN.md §1). Two views of padding exist on purpose: `real_tokens` moves each row's real tokens to the
front (rows of different batches line up), `zero_padding` keeps positions and zeroes the padded ones (two
passes of one batch line up).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pytest_bertprobe.compare import Tolerance, assert_close
from pytest_bertprobe.errors import CheckFailure, ForwardError, Gap
from pytest_bertprobe.forward import cache
from pytest_bertprobe.forward.cache import Forward
from pytest_bertprobe.options import EMBEDDING_KINDS

if TYPE_CHECKING:
    import torch

_EXACT = Tolerance(0.0, 0.0)

def real_tokens(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`[batch, length, hidden]` with each row's real (unmasked) tokens moved to the front, zeros after.

    Row `i`, position 0 is then sentence `i`'s first real token ([CLS]) whichever side the tokenizer pads.
    """
    import torch

    real = mask.to(hidden.device).bool()
    order = torch.argsort((~real).to(torch.int8), dim=1, stable=True)
    gathered = hidden.gather(1, order.unsqueeze(-1).expand_as(hidden))
    keep = torch.arange(hidden.shape[1], device=hidden.device) < real.sum(dim=1, keepdim=True)
    return torch.where(keep.unsqueeze(-1), gathered, torch.zeros((), dtype=hidden.dtype, device=hidden.device))


def zero_padding(output: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Zero the padded positions: what a model computes there is nobody's output."""
    if mask is None or output.dim() != 3 or output.shape[:2] != mask.shape:
        return output
    return output.masked_fill(~mask.to(output.device)[..., None], 0)


def forward_view(outputs: Forward, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What consumers read from a pass: its real tokens (see `real_tokens`) and its pooler_output."""
    return real_tokens(outputs.last_hidden_state, mask), outputs.pooler_output


def row_alone(inputs: Mapping[str, Any], row: int, mask: torch.Tensor) -> dict[str, Any]:
    """Row `row` of a padded batch as a batch of its own: only its real (unmasked) tokens, as if tokenized alone."""
    keep = mask[row].bool()
    width = keep.shape[0]
    return {
        name: value[row : row + 1][:, keep.to(value.device)] if value.dim() == 2 and value.shape[1] == width else value[row : row + 1]
        for name, value in inputs.items()
    }


def passes_alone(model: Any, inputs: Mapping[str, Any], mask: torch.Tensor, rows: Sequence[int]) -> list[Forward]:
    """The pass of each row in `rows` without padding (`row_alone`): what padding invariance compares its row with.

    Rows of one length need no padding to share a batch, so those the memo holds in no unpadded pass run
    together, one pass per length: each still sees only itself.
    """
    import torch

    singles = {row: row_alone(inputs, row, mask) for row in rows}
    found = {row: cache.recall_alone(model, single) for row, single in singles.items()}
    by_length: dict[int, dict[bytes, list[int]]] = {}  # length -> each distinct row's inputs -> the rows holding them
    for row in rows:
        if found[row] is None:
            content = b"".join(value.cpu().numpy().tobytes() for value in singles[row].values())
            by_length.setdefault(int(singles[row]["input_ids"].shape[1]), {}).setdefault(content, []).append(row)
    for groups in by_length.values():
        leaders = [same[0] for same in groups.values()]
        batch = {name: torch.cat([singles[row][name] for row in leaders]) for name in singles[leaders[0]]}
        try:
            outputs = cache.forward(model, batch)
        except ForwardError:
            if len(leaders) == 1:
                raise
            for leader in leaders:  # the crash named by the sentence that causes it, as a pass of its own names it
                cache.forward(model, singles[leader])
            raise
        for index, same in enumerate(groups.values()):
            for row in same:
                found[row] = outputs if len(leaders) == 1 else cache.row_of(outputs, index)
    return [found[row] for row in rows]  # type: ignore[misc]


def alone_and_batched(
    model: Any, inputs: Mapping[str, Any], mask: torch.Tensor
) -> tuple[tuple[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor | None]]:
    """`forward_view`s of every row alone and of the padded batch, lined up row by row (zeros past each length)."""
    import torch

    batch = forward_view(cache.forward(model, inputs), mask)
    alone_tokens = torch.zeros_like(batch[0])
    alone_pooled = []
    for row, outputs in enumerate(passes_alone(model, inputs, mask, range(mask.shape[0]))):
        alone_tokens[row, : outputs.last_hidden_state.shape[1]] = outputs.last_hidden_state[0]
        if outputs.pooler_output is not None:
            alone_pooled.append(outputs.pooler_output[0])
    return (alone_tokens, torch.stack(alone_pooled) if alone_pooled else None), batch


def assert_outputs_agree(
    actual: tuple[torch.Tensor, torch.Tensor | None],
    expected: tuple[torch.Tensor, torch.Tensor | None],
    tolerance: Tolerance,
    *,
    claim: str,
    sentences: Sequence[str] | None,
    hint: str,
) -> Gap:
    """Compare `(real tokens, pooler_output)` pairs: the [CLS] row, then the pooler, then every real token.

    Both token tensors come from `real_tokens`, rows are sentences; returns the greatest gap of the three.
    """
    __tracebackhide__ = True
    (tokens, pooled), (expected_tokens, expected_pooled) = actual, expected
    parts = [("last_hidden_state[:, 0] ([CLS])", tokens[:, 0], expected_tokens[:, 0])]
    if (pooled is None) != (expected_pooled is None):
        raise CheckFailure(f"{claim}: pooler_output is None on one side only\nHint: {hint}")
    if pooled is not None and expected_pooled is not None:
        parts.append(("pooler_output", pooled, expected_pooled))
    parts.append(("last_hidden_state at real tokens", tokens, expected_tokens))
    gaps = [
        assert_close(a, e, tolerance, claim=f"{claim}, {name}", sentences=sentences, hint=hint)
        for name, a, e in parts
    ]
    return max(gaps, key=lambda gap: gap.max_abs)


def real_ids(tensor: torch.Tensor, inputs: Mapping[str, torch.Tensor], row: int) -> list[int]:
    """Row `row` of `tensor` (ids, mask or token types) at the positions `inputs`' attention mask keeps."""
    if row >= len(tensor):
        return []
    values = tensor[row]
    if "attention_mask" in inputs:
        values = values[inputs["attention_mask"][row].cpu().bool()]
    return [int(value) for value in values]


def sentence_embedding(kind: str, outputs: Forward, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """One vector per row: cls = last_hidden_state[:, 0], pooler = pooler_output, mean = masked token mean."""
    hidden = outputs.last_hidden_state
    if kind == "cls":
        return hidden[:, 0]
    if kind == "pooler":
        if outputs.pooler_output is None:
            raise ValueError("pooler embedding: the model returned pooler_output=None")
        return outputs.pooler_output
    if kind == "mean":
        import torch

        mask = torch.ones(hidden.shape[:2]) if attention_mask is None else attention_mask
        weights = mask.to(hidden.device, hidden.dtype).unsqueeze(-1)
        # sentence-transformers' clamp: an all-masked row gives zeros, not NaN.
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
    raise ValueError(f"unknown sentence embedding {kind!r}: use one of {', '.join(EMBEDDING_KINDS)}")


def assert_finite(
    tensor: torch.Tensor, tolerance: Tolerance = _EXACT, *, claim: str, sentences: Sequence[str] | None = None, hint: str = ""
) -> Gap:
    """Fail when `tensor` holds NaN/inf, in `assert_close`'s words.

    Against itself with NaN/inf zeroed: every non-finite value mismatches, finite ones are equal, so the
    gap counts them and its greatest difference sits at the first one.
    """
    __tracebackhide__ = True
    import torch

    return assert_close(
        tensor, torch.nan_to_num(tensor, nan=0.0, posinf=0.0, neginf=0.0), tolerance, claim=claim, sentences=sentences, hint=hint
    )


