"""The model's lookup tables (tokens, positions, token types), found by what the model does with them, not by name.

Two passes on 8 tokens (other ids each time), watched by a forward hook on every module that holds a 2-D weight:
the table fed the very `input_ids` tensor is the token table, the one fed `token_type_ids` the type table (XLM sends types through its
word embeddings), the one fed consecutive ids the model made itself the absolute position table (its first id is
the offset: RoBERTa-style tables start at padding_idx + 1). I-BERT's `QuantEmbedding`, XLM's and FlauBERT's tables
outside `embeddings` and CANINE's hash buckets are found alike.
"""

from __future__ import annotations

import inspect
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

_PROBE_WIDTH = 8  # CANINE raises under 4 characters, funnel on 2 tokens


@dataclass(frozen=True)
class Table:
    """A lookup table the model reads: its module, its rows, and (positions) the first row a token can use."""

    module: Any
    rows: int
    first_row: int = 0


@dataclass(frozen=True)
class Tables:
    """What the watched passes found; None where the model has no such table (or the pass could not run)."""

    tokens: Table | None
    positions: Table | None
    types: Table | None
    watched: bool  # False: the pass raised, and nothing is known
    moved_by_left_padding: bool | None = None  # a masked pad in front changes the real tokens' states: positions count from the left


_FOUND: weakref.WeakKeyDictionary[Any, Tables] = weakref.WeakKeyDictionary()


def tables(model: PreTrainedModel) -> Tables:
    """The token, position and token type tables of `model`, found once per model by two watched passes (and two for left padding)."""
    base = model.base_model
    if base not in _FOUND:
        _FOUND[base] = _watch(base)
    return _FOUND[base]


def embedding_rows(model: PreTrainedModel) -> int | None:
    """Rows of the input token table (ids must stay below it); None where ids reach no table (CANINE hashes them)."""
    found = tables(model).tokens
    if found is not None:
        return found.rows
    vocabulary = getattr(model.config, "vocab_size", None)
    return None if tables(model).watched or not isinstance(vocabulary, int) else vocabulary


def _rows(module: Any) -> int:
    return int(getattr(module, "num_embeddings", None) or module.weight.shape[0])


def _watch(model: Any) -> Tables:
    import torch

    rows = safe_rows(model)
    if rows is None:
        return _named(model)  # too small a table to run 9 tokens through (on CUDA an index past it poisons the context)
    try:
        first, ids, type_ids = _watched_pass(model, rows, step=7)
        second, _, _ = _watched_pass(model, rows, step=11)  # a position table is fed the same ids whatever the tokens
    except Exception:  # noqa: BLE001 - a model that crashes here is reported by the checks that run it
        return _named(model)
    tokens = next((Table(m, _rows(m)) for m, fed in first if fed is ids or _same(fed, ids)), None)
    types = next((Table(m, _rows(m)) for m, fed in first if type_ids is not None and fed is type_ids), None)
    if types is None and type_ids is not None:  # Longformer pads the type ids to its window: a new tensor of zeros
        types = next((Table(m, _rows(m)) for m, fed in first if _all_zeros(fed) and (tokens is None or m is not tokens.module)), None)
    numbered = {id(m): fed for m, fed in second if _consecutive(fed)}
    positions = next(
        (Table(m, _rows(m), int(fed.reshape(-1)[0])) for m, fed in first
         if _consecutive(fed) and id(m) in numbered and torch.equal(numbered[id(m)], fed)),
        None,
    )  # fmt: skip
    return Tables(tokens, positions, types, watched=True, moved_by_left_padding=_moved_by_left_padding(model, ids, rows))


def _moved_by_left_padding(model: Any, ids: torch.Tensor, rows: int) -> bool | None:
    """Whether one masked pad in front of `ids` changes the states of the real tokens.

    None where nothing can be told: no mask to hide the pad, a pad id past the table, or modules in training
    mode (dropout would move everything; `require_eval_mode` reports that). Judged at padding_invariance's
    tolerance for the model's dtype: half precision alone moves states by more than float32's.
    """
    import torch

    from pytest_bertprobe.tolerances import model_dtype, tolerance_for

    pad = getattr(model.config, "pad_token_id", None)
    pad = pad if isinstance(pad, int) else 0
    if "attention_mask" not in inspect.signature(model.forward).parameters or not 0 <= pad < rows:
        return None
    if any(module.training for module in model.modules()):
        return None
    padded = torch.cat([ids.new_full((1, 1), pad), ids], dim=1)
    mask = torch.ones_like(padded)
    mask[0, 0] = 0
    try:
        with torch.inference_mode():
            alone = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
            shifted = model(input_ids=padded, attention_mask=mask).last_hidden_state[:, 1:]
    except Exception:  # noqa: BLE001 - a model that cannot take the pad: unknown
        return None
    tolerance = tolerance_for("padding_invariance", model_dtype(model))
    return alone.shape != shifted.shape or not torch.allclose(alone, shifted, atol=tolerance.atol, rtol=tolerance.rtol)


def _named(model: Any) -> Tables:
    """Where a model that cannot run says its tables are (BERT's names), to explain its crash by them."""
    embeddings = getattr(model, "embeddings", None)
    tokens, positions, types = (getattr(embeddings, name, None) for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"))
    padding = getattr(positions, "padding_idx", None)
    return Tables(
        tokens=Table(tokens, _rows(tokens)) if tokens is not None else None,
        positions=Table(positions, _rows(positions), 0 if padding is None else int(padding) + 1) if positions is not None else None,
        types=Table(types, _rows(types)) if types is not None else None,
        watched=False,
    )


def safe_rows(model: Any) -> int | None:
    """How many token ids the watched passes may use (None: the tables are too small to run 9 tokens)."""
    limits = [getattr(model.config, name, None) for name in ("vocab_size", "max_position_embeddings")]
    try:
        table = model.get_input_embeddings()
        limits[0] = min(int(table.weight.shape[0]), limits[0]) if isinstance(limits[0], int) else int(table.weight.shape[0])
    except (AttributeError, NotImplementedError, TypeError):  # CANINE: no token table; I-BERT's QuantEmbedding has a weight
        pass
    vocabulary, positions = limits
    if (isinstance(vocabulary, int) and vocabulary < 2) or (isinstance(positions, int) and positions < _PROBE_WIDTH + 3):
        return None
    return vocabulary if isinstance(vocabulary, int) else 64


def _watched_pass(
    model: Any, rows: int, *, step: int
) -> tuple[list[tuple[Any, torch.Tensor]], torch.Tensor, torch.Tensor | None]:
    """(module, integer tensor it was fed) for every table call of one pass on 8 ids; the ids; the type ids."""
    import torch

    ids = (torch.arange(_PROBE_WIDTH, device=model.device) * step + 5).remainder(rows).flip(0).unsqueeze(0)
    accepted = inspect.signature(model.forward).parameters
    inputs = {"input_ids": ids}
    if "attention_mask" in accepted:
        inputs["attention_mask"] = torch.ones_like(ids)
    if "token_type_ids" in accepted:
        inputs["token_type_ids"] = torch.zeros_like(ids)
    calls: list[tuple[Any, torch.Tensor]] = []

    def record(module: Any, args: tuple[Any, ...]) -> None:
        if args and isinstance(args[0], torch.Tensor) and not args[0].is_floating_point() and not args[0].is_complex():
            calls.append((module, args[0]))

    handles = [
        module.register_forward_pre_hook(record)
        for module in model.modules()
        if isinstance(getattr(module, "weight", None), torch.Tensor) and module.weight.dim() == 2
    ]
    try:
        with torch.inference_mode():
            model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    return calls, ids, inputs.get("token_type_ids")


def _same(fed: torch.Tensor, ids: torch.Tensor) -> bool:
    """The 8 ids, maybe laid out otherwise (XLNet reads them tokens-first) or padded further (Longformer's window)."""
    flat = fed.reshape(-1) if fed.dim() < 2 or fed.shape[0] == 1 else fed.transpose(0, -1).reshape(-1)
    return flat.numel() >= _PROBE_WIDTH and bool((flat[:_PROBE_WIDTH] == ids.reshape(-1)[:_PROBE_WIDTH]).all())


def _all_zeros(fed: torch.Tensor) -> bool:
    return fed.dim() > 0 and fed.shape[-1] >= _PROBE_WIDTH and not bool(fed.any())


def _consecutive(fed: torch.Tensor) -> bool:
    """Ids the model numbered itself: start, start + 1, ... over the 8 tokens (a window may pad further)."""
    if fed.dim() == 0 or fed.shape[-1] < _PROBE_WIDTH:
        return False
    first = fed.reshape(-1, fed.shape[-1])[0, :_PROBE_WIDTH]
    return bool(((first[1:] - first[:-1]) == 1).all()) and int(first[0]) >= 0
