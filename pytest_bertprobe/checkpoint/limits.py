"""The model's and the tokenizer's limits: how long an input the model can position, and what the tokenizer declares.

Shared by the tokenizer contract, the forward-failure diagnosis, the audit's batches and the sentence-transformers
pipeline: every stage that truncates an input or explains a crash reads them here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_bertprobe.checkpoint.tables import tables

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# transformers stores "no limit" as int(1e30); anything this large was never set by a person.
UNSET_MAX_LENGTH = 1_000_000
_FALLBACK_LENGTH = 512


def uses_absolute_positions(model: PreTrainedModel) -> bool:
    """True when the model reads a position table, its config says `absolute`, or a masked pad in front moves its outputs."""
    found = tables(model)
    if found.positions is not None or found.moved_by_left_padding:
        return True
    return getattr(model.config, "position_embedding_type", None) == "absolute"


def position_offset(model: PreTrainedModel) -> int:
    """Rows of the position table no token can use: RoBERTa-style models number from padding_idx + 1."""
    table = tables(model).positions
    return 0 if table is None else table.first_row


def usable_positions(model: PreTrainedModel) -> int | None:
    """The longest input the model can position: table rows minus the offset, else the config's maximum."""
    table = tables(model).positions
    if table is not None:
        return table.rows - table.first_row
    maximum = getattr(model.config, "max_position_embeddings", None)
    return int(maximum) if isinstance(maximum, int) and maximum > 0 else None


def declared_max_length(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The tokenizer's `model_max_length`, None where it is unset (transformers' 1e30 placeholder)."""
    length = getattr(tokenizer, "model_max_length", None)
    return None if length is None or length >= UNSET_MAX_LENGTH else int(length)


def input_limit(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int | None:
    """Where to truncate the audit's inputs: the usable positions when the tokenizer sets no model_max_length, else None.

    An unset model_max_length (1e30) truncates nothing: `tokenizer_max_length` fails on it, and the other checks
    run on inputs the model can position instead of all crashing on the long probe sentence.
    """
    return usable_positions(model) if declared_max_length(tokenizer) is None else None


def working_length(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int:
    """The longest input worth trying: the smaller of the tokenizer's and the model's limits."""
    limits = [n for n in (declared_max_length(tokenizer), usable_positions(model)) if n]
    return min(limits) if limits else _FALLBACK_LENGTH
