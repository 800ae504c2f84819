"""The tokenizer contract (docs/DESIGN.md §2): whatever the tokenizer emits, the model must be able to read.

Each `assert_*` helper takes `(model, tokenizer)`, returns the metrics that back its verdict, raises
`ContractViolation` (an `AssertionError`) naming the fault, or `NotApplicable` saying why it does not apply.
None of them runs a forward pass that could index past a table (on CUDA that poisons the context).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pytest_bertprobe.checkpoint.limits import (
    declared_max_length,
    input_limit,
    position_offset,
    usable_positions,
    uses_absolute_positions,
    working_length,
)
from pytest_bertprobe.checkpoint.tables import embedding_rows, tables
from pytest_bertprobe.compare import quote
from pytest_bertprobe.errors import ContractViolation, ForwardError, NotApplicable
from pytest_bertprobe.forward import cache
from pytest_bertprobe.sentences import PAIRS, PROBE_SENTENCES

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

_SHOWN_TOKENS = 12


def _name(model: PreTrainedModel) -> str:
    return type(model).__name__


def _long_text(length: int) -> str:
    # Every word is at least one token, so this always reaches `length` tokens before truncation.
    return " ".join(["hello world"] * length)


def _show_tokens(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> str:
    tokens = tokenizer.convert_ids_to_tokens(list(ids))
    if len(tokens) <= _SHOWN_TOKENS:
        return repr(tokens)
    half = _SHOWN_TOKENS // 2
    head, tail = ", ".join(map(repr, tokens[:half])), ", ".join(map(repr, tokens[-half:]))
    return f"[{head}, … {len(tokens) - _SHOWN_TOKENS} more …, {tail}]"


def _label(text: str | tuple[str, str]) -> str:
    if isinstance(text, tuple):
        return f"pair ({quote(text[0])}, {quote(text[1])})"
    return f"sentence {quote(text)}"


def _boundary_tokens(tokenizer: PreTrainedTokenizerBase) -> tuple[str | None, str | None]:
    """The token that must open every input ([CLS] or BOS) and the one that must close it ([SEP] or EOS)."""
    first = tokenizer.cls_token if tokenizer.cls_token is not None else tokenizer.bos_token
    last = tokenizer.sep_token if tokenizer.sep_token is not None else tokenizer.eos_token
    return first, last


def reads_summary_last(model: PreTrainedModel) -> bool:
    """Whether the model reads its summary token at the end of the input, as its own heads do (XLNet:
    `config.summary_type == "last"`, `A <sep> <cls>` padded on the left); BERT's family reads it at position 0."""
    return getattr(model.config, "summary_type", None) == "last"


def _places(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[tuple[str, int]]:
    """Each special token and where every input must hold it (negative: from the end), by the model's convention."""
    first, last = _boundary_tokens(tokenizer)
    wanted = [(last, -2), (first, -1)] if reads_summary_last(model) else [(first, 0), (last, -1)]
    return [(token, position) for token, position in wanted if token is not None]


def _position_name(position: int, length: int) -> str:
    if position >= 0:
        return f"position {position}"
    return f"the {'last' if position == -1 else 'second-to-last'} position ({length + position})" if length + position >= 0 else (
        f"the {'last' if position == -1 else 'second-to-last'} position")  # fmt: skip


def assert_special_tokens_in_place(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    sentences: Sequence[str] = PROBE_SENTENCES,
    pairs: Sequence[tuple[str, str]] = PAIRS,
) -> dict[str, Any]:
    """Assert [CLS]/BOS opens and [SEP]/EOS closes every single sentence and pair, truncated ones too; for a model that
    reads its summary token last (XLNet), [SEP] then [CLS] close every input instead."""
    __tracebackhide__ = True
    places = _places(model, tokenizer)
    if not places:
        raise NotApplicable(f"{type(tokenizer).__name__} defines neither [CLS]/BOS nor [SEP]/EOS")
    length = working_length(model, tokenizer)
    # Fast tokenizers truncate very long texts in time (and, for pairs, memory: a 20k-character pair exhausts
    # 24 GiB) that grows faster than the text. At a token per 8 characters or more, a text clipped to 8 * length
    # characters still overflows `length`, and so does a pair of halves that long; `_long_text` always does.
    clip = 8 * length
    singles = [text[:clip] for text in sentences]
    clipped_pairs = [(a[: clip // 2], b[: clip // 2]) for a, b in pairs]
    long_text = _long_text(length)
    inputs: list[str | tuple[str, str]] = [*singles, *clipped_pairs, long_text]
    # One call per shape: the same ids as a call per text, for a fraction of the per-call cost.
    single_ids = tokenizer(singles, truncation=True, max_length=length)["input_ids"] if singles else []
    pair_ids = (
        tokenizer([a for a, _ in clipped_pairs], [b for _, b in clipped_pairs], truncation=True, max_length=length)["input_ids"]
        if clipped_pairs
        else []
    )
    # The same truncated text whatever the batch: tokenized once per shared (read-only) tokenizer.
    long_ids = cache.recall(tokenizer, ("special tokens: long text", length),
                             lambda: tokenizer([long_text], truncation=True, max_length=length)["input_ids"][0])  # fmt: skip
    wrong: list[tuple[str, int, str | tuple[str, str], list[int]]] = []
    misplaced: set[int] = set()
    for index, (text, ids) in enumerate(zip(inputs, [*single_ids, *pair_ids, long_ids])):
        for expected, position in places:
            at = position if position >= 0 else len(ids) + position
            if not 0 <= at < len(ids) or ids[at] != tokenizer.convert_tokens_to_ids(expected):
                wrong.append((expected, position, text, ids))
                misplaced.add(index)
    metrics = {"first_token": next((token for token, at in places if at == 0), None),
               "last_token": next((token for token, at in places if at == -1), None),
               "convention": "summary token last" if reads_summary_last(model) else "summary token first",
               "inputs_checked": len(inputs), "misplaced": len(misplaced)}  # fmt: skip
    if not wrong:
        return metrics
    expected, position, text, ids = wrong[0]
    expected_id = tokenizer.convert_tokens_to_ids(expected)
    at = position if position >= 0 else len(ids) + position
    there = (f"found {tokenizer.convert_ids_to_tokens(ids[at])!r} (id {ids[at]}) there" if 0 <= at < len(ids)
             else f"the input has {len(ids)} token{'s' if len(ids) != 1 else ''}, so there is no such position")  # fmt: skip
    found = [i for i, token_id in enumerate(ids) if token_id == expected_id]
    if reads_summary_last(model):
        hint = (f"{_name(model)} reads the sentence summary at the last position (config.summary_type 'last', as XLNet's heads "
                f"read it): make the tokenizer's post-processor template '$A {places[0][0]} {places[-1][0]}' / "
                f"'$A {places[0][0]} $B {places[0][0]} {places[-1][0]}', padded on the left, or load the model's own tokenizer class")
    else:
        hint = ("BERT-family models read the sentence summary at position 0 (the pooler and CLS embeddings read "
                "last_hidden_state[:, 0]): make the tokenizer's post-processor template '[CLS] $A [SEP]' / "
                "'[CLS] $A [SEP] $B [SEP]' (tokenizer.json post_processor), or load the model's own tokenizer class")
    raise ContractViolation(
        f"{expected} is not at {_position_name(position, len(ids))}: {there}.",
        metrics,
        details=[
            f"Misplaced in {len(misplaced)} of {len(inputs)} inputs; first: {_label(text)} -> {_show_tokens(tokenizer, ids)}",
            f"{expected} (id {expected_id}) is at position(s) {found or 'nowhere'} of {len(ids)}.",
        ],
        hint=hint,
    )


def assert_pads_on_the_right(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, sentences: Sequence[str] = PROBE_SENTENCES
) -> dict[str, Any]:
    """Assert batches pad on the right when the model has absolute positions (left padding shifts them); a model that
    reads its summary token last (XLNet) must get left padding instead, so that token stays last in every row."""
    __tracebackhide__ = True
    summary_last = reads_summary_last(model)
    if not summary_last and not uses_absolute_positions(model):
        raise NotApplicable(
            f"{_name(model)} reads no position table, and a masked pad in front leaves every real token's state as it was "
            "(positions are relative or rotary): padding on either side is allowed"
        )
    if tokenizer.pad_token is None:
        raise NotApplicable(f"{type(tokenizer).__name__} has no pad token, so it does not pad batches")
    inputs = cache.encode(tokenizer, sentences, max_length=input_limit(model, tokenizer))
    mask = cache.attention_mask(inputs, tokenizer.pad_token_id)
    # A right-padded row is 1...1 0...0 (its mask never rises); a left-padded one 0...0 1...1 (it never falls).
    rises = [row for row in range(mask.shape[0]) if bool((mask[row, 1:] > mask[row, :-1]).any())]
    falls = [row for row in range(mask.shape[0]) if bool((mask[row, 1:] < mask[row, :-1]).any())]
    wrong = falls if summary_last else rises
    metrics = {"padding_side": tokenizer.padding_side, "rows": int(mask.shape[0]),
               "left_padded_rows": len(rises), "right_padded_rows": len(falls)}  # fmt: skip
    if not wrong:
        return metrics
    row = wrong[0]
    pads = int((mask[row] == 0).sum())
    if summary_last:
        raise ContractViolation(
            f"Padding is on the right for a model that reads its summary token last: {len(wrong)} of {mask.shape[0]} rows end with padding.",
            metrics,
            details=[f"Row {row} ({_label(sentences[row])}): its last {pads} positions are pad tokens, so the last position "
                     f"{_name(model)} reads the summary from is a pad (padding_side={tokenizer.padding_side!r})."],
            hint="set \"padding_side\": \"left\" in tokenizer_config.json, as the model's own tokenizer class does",
        )
    raise ContractViolation(
        f"Padding is on the left for an absolute-position model: {len(wrong)} of {mask.shape[0]} rows start with padding.",
        metrics,
        details=[
            f"Row {row} ({_label(sentences[row])}): {pads} pad tokens at positions 0..{pads - 1}, so its first real token "
            f"sits at position {pads} (padding_side={tokenizer.padding_side!r}); {_name(model)} numbers positions from the left.",
        ],
        hint="with learned absolute positions, left padding shifts every real token's position id and puts a pad at "
        "index 0, where [CLS] is read: set \"padding_side\": \"right\" in tokenizer_config.json",
    )


def _forward_parameters(model: PreTrainedModel) -> list[str]:
    """Named parameters of `forward`; `**kwargs` accepts a name only to drop it."""
    kinds = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    return [name for name, p in inspect.signature(model.forward).parameters.items() if p.kind not in kinds]


def assert_input_names_accepted(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, pairs: Sequence[tuple[str, str]] = PAIRS
) -> dict[str, Any]:
    """Assert every input the tokenizer produces (`model_input_names`, pair encodings) is a named `forward` argument."""
    __tracebackhide__ = True
    first, second = zip(*pairs)
    produced = list(dict.fromkeys([*tokenizer.model_input_names, *tokenizer(list(first), list(second))]))
    accepted = _forward_parameters(model)
    rejected = [name for name in produced if name not in accepted]
    metrics = {"produced": produced, "rejected": rejected}
    if not rejected:
        return metrics
    raise ContractViolation(
        f"The tokenizer produces {', '.join(map(repr, rejected))}, which {_name(model)}.forward does not accept.",
        metrics,
        details=[
            f"Produced for {_label(pairs[0])}: {produced}; model_input_names: {list(tokenizer.model_input_names)}",
            f"{_name(model)}.forward takes: {accepted}",
        ],
        hint="model(**tokenizer(...)) drops such inputs into **kwargs (segment ids silently ignored) or raises TypeError: "
        f"set \"model_input_names\" in tokenizer_config.json to the inputs {_name(model)} reads",
    )


def assert_token_ids_fit_embeddings(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """Assert every token id, added tokens included, has a row in the input embedding matrix."""
    __tracebackhide__ = True
    rows = embedding_rows(model)
    if rows is None:
        raise NotApplicable(f"{_name(model)} indexes no table with the ids themselves (it hashes them, as CANINE does): every id has an embedding")
    vocabulary = {**tokenizer.get_vocab(), **tokenizer.get_added_vocab()}
    past = sorted(((i, t) for t, i in vocabulary.items() if i >= rows), reverse=True)
    added = set(tokenizer.get_added_vocab())
    metrics = {
        "embedding_rows": rows,
        "tokenizer_size": len(tokenizer),
        "max_id": max(vocabulary.values()),
        "ids_past_rows": len(past),
    }
    if not past:
        return metrics
    worst_id, worst = past[0]
    shown = ", ".join(f"{t!r} ({i}{', added' if t in added else ''})" for i, t in past[:5])
    raise ContractViolation(
        f"Token ids reach past the embedding matrix: {worst!r} has id {worst_id}, the matrix has {rows} rows (ids 0..{rows - 1}).",
        metrics,
        details=[
            f"{len(past)} tokens past it ({sum(t in added for _, t in past)} added): {shown}{', …' if len(past) > 5 else ''}",
            f"Tokenizing {worst!r} gives ids {tokenizer(worst)['input_ids']}: a forward pass on it raises IndexError "
            f"(on CUDA, a device-side assert). len(tokenizer) = {len(tokenizer)}.",
        ],
        hint="tokens were added to the tokenizer without model.resize_token_embeddings(len(tokenizer)); resize and "
        "save the model, or remove the added tokens from the tokenizer",
    )


def assert_token_types_fit(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, pairs: Sequence[tuple[str, str]] = PAIRS
) -> dict[str, Any]:
    """Assert every pair's `token_type_ids` is below the model's number of token types (`type_vocab_size`)."""
    __tracebackhide__ = True
    table = tables(model).types
    types = table.rows if table is not None else 0
    if types == 0:
        raise NotApplicable(f"{_name(model)} looks up no table with token_type_ids, so no type id can reach past one")
    first, second = zip(*pairs)
    encoding = tokenizer(list(first), list(second), truncation=True, max_length=working_length(model, tokenizer))
    if "token_type_ids" not in encoding:
        raise NotApplicable(f"{type(tokenizer).__name__} produces no token_type_ids: the model uses type 0 throughout")
    metrics = {"type_vocab_size": types, "max_type_id": max(max(row) for row in encoding["token_type_ids"])}
    if metrics["max_type_id"] < types:
        return metrics
    row = next(r for r, ids in enumerate(encoding["token_type_ids"]) if max(ids) >= types)
    type_ids = encoding["token_type_ids"][row]
    position = next(i for i, t in enumerate(type_ids) if t >= types)
    raise ContractViolation(
        f"Pair token type ids reach past the token type table: type {type_ids[position]} at position {position}, "
        f"but {_name(model)} has {types} token type(s) (type_vocab_size={types}, ids 0..{types - 1}).",
        metrics,
        details=[f"On {_label(pairs[row])}: token_type_ids {type_ids}"],
        hint="the tokenizer's pair template gives the second segment its own type (BERT-style) but the model was "
        "trained with fewer (RoBERTa-style type_vocab_size=1): use the model's own tokenizer, or drop "
        "token_type_ids from model_input_names",
    )


def assert_max_length_fits(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """Assert `model_max_length` fits the usable positions and a forward pass at that length works."""
    __tracebackhide__ = True
    declared, usable = declared_max_length(tokenizer), usable_positions(model)
    metrics: dict[str, Any] = {
        "model_max_length": declared if declared is not None else "unset",
        "usable_positions": usable,
        "position_offset": position_offset(model),
    }
    if declared is None and usable is not None and tables(model).positions is not None:
        raise ContractViolation(
            f"Tokenizer model_max_length is unset ({tokenizer.model_max_length:.0e}), but {_name(model)} has "
            f"{usable} usable positions: truncation=True will not truncate; inputs longer than {usable} tokens crash.",
            metrics,
            details=[f"An input of {usable + 1} tokens indexes position {usable + position_offset(model)}, past the position table "
             "(RuntimeError: the size of tensor a must match the size of tensor b; on CUDA, a device-side assert)."],
            hint=f"set \"model_max_length\": {usable} in tokenizer_config.json",
        )
    if declared is not None and usable is not None and declared > usable:
        table = tables(model).positions
        rows = (
            f"{table.rows} position rows - offset {position_offset(model)}"
            if table is not None
            else "max_position_embeddings"
        )
        raise ContractViolation(
            f"Tokenizer model_max_length {declared} exceeds the model's {usable} usable positions ({rows}).",
            metrics,
            details=[f"An input truncated at {declared} tokens indexes position {declared - 1 + position_offset(model)}: "
             f"{declared - usable} positions past the table (IndexError; on CUDA, a device-side assert)."],
            hint=f"set \"model_max_length\": {usable} in tokenizer_config.json",
        )
    length = declared if declared is not None else usable
    if length is None:
        raise NotApplicable("neither the tokenizer (model_max_length) nor the config (max_position_embeddings) gives a length")
    if cache.ran_at_width(model, length):
        metrics["forward_length"] = length  # a shared pass of another check already ran this wide: the evidence
        return metrics
    inputs = tokenizer([_long_text(length)], truncation=True, max_length=length, return_tensors="pt")
    metrics["forward_length"] = int(inputs["input_ids"].shape[1])
    try:
        cache.forward(model, inputs)
    except ForwardError as error:
        if error.owner in ("tokenizer_ids_in_embeddings", "tokenizer_token_types"):
            raise  # the pass breaks on what the tokenizer's ids index, not on the length: that check reports it
        raise ContractViolation(
            f"A forward pass at the tokenizer's maximum length fails: {error.metrics['error']}",
            metrics,
            details=[f"Input: {quote(_long_text(length))} truncated to {metrics['forward_length']} tokens "
             f"(model_max_length {metrics['model_max_length']}, usable positions {usable})"],
            hint="set model_max_length to the longest input the model really takes",
        ) from error
    return metrics


def assert_pad_ids_agree(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """Assert the tokenizer pads with `config.pad_token_id`, where both are set."""
    __tracebackhide__ = True
    ours, theirs = tokenizer.pad_token_id, getattr(model.config, "pad_token_id", None)
    if ours is None or theirs is None:
        side = "tokenizer has no pad token" if ours is None else "config has no pad_token_id"
        raise NotApplicable(f"nothing to compare: the {side}")
    metrics = {"tokenizer_pad_token_id": ours, "config_pad_token_id": theirs}
    if ours == theirs:
        return metrics
    raise ContractViolation(
        f"Pad token ids disagree: the tokenizer pads with {tokenizer.pad_token!r} (id {ours}), config.pad_token_id is {theirs} "
        f"({tokenizer.convert_ids_to_tokens(theirs)!r}).",
        metrics,
        details=[f"Every padded batch (e.g. {_label(PROBE_SENTENCES[0])} next to a longer one) fills with id {ours}."],
        hint="the model's padding_idx (and, for RoBERTa-style models, where positions start) follows config.pad_token_id: "
        "make config.json and the tokenizer name the same pad token",
    )
