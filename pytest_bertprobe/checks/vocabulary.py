"""The vocabulary belongs to the weights: each token id reads the embedding row it was trained with.

Renumber a vocabulary consistently (vocab.txt and tokenizer.json agree, every id has a row) and every file check
passes while each token reads another token's row. Two data-free signs of the trained pairing (docs/DESIGN.md §3):

- words of a known class (digits, number words, months, weekdays, function words, ... in several languages:
  `word_classes.py`) lie much closer to each other than random tokens do. A token whose row lies no closer to its
  class than the 99th percentile of random rows is out of place; a renumbering puts most of them out of place.
- rows the tokenizer never emits for text (`[unused*]`) were never trained, so in a trained model they lie
  together; a common word must not read one of them (as in under-trained token detection, Magikarp).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_bertprobe.checkpoint.loading import Checkpoint
from pytest_bertprobe.checkpoint.spectrum import MIN_SIDE, measure_matrix
from pytest_bertprobe.checks.word_classes import WORD_CLASSES
from pytest_bertprobe.errors import CheckFailure, NotApplicable

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

OUT_OF_PLACE_SHARE = 0.15  # the real MiniLM and MPNet: 0 of 94 class tokens out of place; a renumbering: 95-100%
MIN_CLASS_TOKENS = 5  # a class counts where at least this many of its words are single tokens
MIN_CLASSES, MIN_TOKENS = 3, 20  # fewer, and the share says little
BASELINE_QUANTILE = 0.99
NEVER_EMITTED_FORMS = ("[unused{}]", "<unused{}>")  # rows the tokenizer never emits for text
CLUSTERED = 0.5  # never-emitted rows lie together: median cosine to their centroid (MiniLM 0.88, MPNet 0.84)
ON_UNTRAINED_ROW = 0.7  # a common word's row this close to that centroid reads an untrained row (MiniLM, MPNet: at most 0.52)
_BASELINE_ROWS = 2048
_MIN_NEVER_EMITTED = 16
_SHOWN = 8


@dataclass(frozen=True)
class _Rows:
    """Unit vectors of rows, centred on the vocabulary's mean row (so anisotropy does not pass for closeness)."""

    mean: torch.Tensor
    table: torch.Tensor

    def unit(self, ids: list[int] | torch.Tensor) -> torch.Tensor:
        import torch

        index = ids if isinstance(ids, torch.Tensor) else torch.tensor(ids, dtype=torch.long)
        rows = self.table[index.to(self.table.device)].float() - self.mean
        return rows / torch.linalg.vector_norm(rows, dim=1, keepdim=True).clamp_min(1e-12)


def assert_vocabulary_matches_rows(
    source: Checkpoint | PreTrainedModel, *, model: PreTrainedModel | None = None, tokenizer: PreTrainedTokenizerBase | None = None
) -> dict[str, Any]:
    """Assert the tokenizer's ids index the embedding rows they were trained with.

    Fails when 15% or more of the tokens of known word classes lie no closer to their class than random tokens do,
    or when a common word reads a row like the never-emitted `[unused*]` tokens' rows (where those lie together).
    Not applicable where the word embeddings look untrained (`weights_trained`'s to fail), are narrower than 64, or
    the vocabulary holds too few of the classes' words as single tokens. Returns each class's measurements.
    """
    __tracebackhide__ = True
    import torch

    model = model if model is not None else (source.model if isinstance(source, Checkpoint) else source)
    tokenizer = tokenizer if tokenizer is not None else (source.tokenizer if isinstance(source, Checkpoint) else None)
    if tokenizer is None:
        raise NotApplicable("no tokenizer given: the vocabulary's ids cannot be read")
    table = _word_embeddings(model)
    with torch.no_grad():
        classes = _class_ids(tokenizer, table.shape[0])
        rows, random_rows = _baseline(table, tokenizer, {i for ids in classes.values() for i in ids})
        measured = _measure_classes(rows, random_rows, classes)
        never = _never_emitted(rows, tokenizer, table.shape[0], [i for ids in classes.values() for i in ids])
    metrics = _metrics(tokenizer, classes, measured, never)
    if metrics["out_of_place_share"] >= OUT_OF_PLACE_SHARE or never.get("common_words_on_them"):
        raise CheckFailure(_message(metrics), metrics=metrics)
    return metrics


def _word_embeddings(model: PreTrainedModel) -> torch.Tensor:
    import torch

    try:
        embeddings = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):  # transformers raises for a model that does not say (CANINE, SAM3's text model)
        embeddings = None
    weight = getattr(embeddings, "weight", None)
    if not isinstance(embeddings, torch.nn.Embedding) or weight is None or not weight.is_floating_point():
        raise NotApplicable(f"the input embeddings are {type(embeddings).__name__}, not a table with one row per token id")
    if weight.shape[1] < MIN_SIDE:
        raise NotApplicable(f"word embeddings {weight.shape[1]} wide: under {MIN_SIDE} dimensions their geometry is too coarse to judge")
    stats = measure_matrix(weight, spectrum=False)
    if stats is not None and stats.looks_random:
        raise NotApplicable(f"the word embeddings look untrained (energy spread {stats.spread:.2f}×): weights_trained fails them")
    return weight.detach()


def _class_ids(tokenizer: PreTrainedTokenizerBase, rows: int) -> dict[str, list[int]]:
    """Each class's words that are one token (as written, after a space, or capitalised), as ids; classes of 5 or more."""
    words = sorted({word for members in WORD_CLASSES.values() for word in members})
    special = set(tokenizer.all_special_ids)
    single: dict[str, int] = {}
    for variant in (lambda word: word, lambda word: " " + word, str.capitalize):
        pending = [word for word in words if word not in single]
        encoded = tokenizer([variant(word) for word in pending], add_special_tokens=False)["input_ids"]
        for word, ids in zip(pending, encoded):
            if len(ids) == 1 and ids[0] != tokenizer.unk_token_id and ids[0] not in special and 0 <= ids[0] < rows:
                single[word] = ids[0]
    classes = {name: list(dict.fromkeys(single[word] for word in members if word in single)) for name, members in WORD_CLASSES.items()}
    classes = {name: ids for name, ids in classes.items() if len(ids) >= MIN_CLASS_TOKENS}
    if len(classes) < MIN_CLASSES or sum(map(len, classes.values())) < MIN_TOKENS:
        found = ", ".join(f"{name} ({len(ids)})" for name, ids in classes.items()) or "none"
        raise NotApplicable(f"the vocabulary holds too few of the known word classes as single tokens to judge (classes of "
                            f"{MIN_CLASS_TOKENS}+: {found}; needs {MIN_CLASSES} classes and {MIN_TOKENS} tokens)")  # fmt: skip
    return classes


def _baseline(table: torch.Tensor, tokenizer: PreTrainedTokenizerBase, members: set[int]) -> tuple[_Rows, torch.Tensor]:
    """The centring mean and unit random rows: every k-th id, special tokens and class tokens left out."""
    import torch

    left_out = set(tokenizer.all_special_ids) | members
    ids = [i for i in range(0, table.shape[0], max(1, table.shape[0] // _BASELINE_ROWS)) if i not in left_out]
    sample = table[torch.tensor(ids, device=table.device)].float()
    rows = _Rows(sample.mean(0), table)
    centred = sample - rows.mean
    return rows, centred / torch.linalg.vector_norm(centred, dim=1, keepdim=True).clamp_min(1e-12)


def _measure_classes(rows: _Rows, random_rows: torch.Tensor, classes: dict[str, list[int]]) -> dict[str, dict[str, Any]]:
    """Per class: each member's mean cosine to the others, the class's cohesion, and random rows' mean cosine to the class."""
    import torch

    measured = {}
    members = rows.unit([i for ids in classes.values() for i in ids])
    to_random = random_rows @ members.T
    start = 0
    for name, ids in classes.items():
        count, own = len(ids), members[start : start + len(ids)]
        random = to_random[:, start : start + count].mean(1)
        start += count
        similarity = own @ own.T
        closeness = ((similarity.sum(1) - similarity.diagonal()) / (count - 1)).tolist()
        bound = float(torch.quantile(random, BASELINE_QUANTILE))
        measured[name] = {
            "closeness": [round(value, 4) for value in closeness],
            "cohesion": round(float((similarity.sum() - similarity.diagonal().sum()) / (count * (count - 1))), 4),
            "random_mean": round(float(random.mean()), 4),
            "random_bound": round(bound, 4),
            "out_of_place": [index for index, value in zip(ids, closeness) if value < bound],
        }
    return measured


def _never_emitted(rows: _Rows, tokenizer: PreTrainedTokenizerBase, size: int, common: list[int]) -> dict[str, Any]:
    """Where the `[unused*]` rows lie together: the common words whose rows lie among them."""
    import torch

    ids = [i for i in _never_emitted_ids(tokenizer) if i < size]
    if len(ids) < _MIN_NEVER_EMITTED:
        return {"count": len(ids)}
    unused = rows.unit(ids)
    centroid = unused.mean(0)
    centroid /= torch.linalg.vector_norm(centroid).clamp_min(1e-12)
    median = float((unused @ centroid).median())
    found: dict[str, Any] = {"count": len(ids), "median_cosine": round(median, 4), "clustered": median >= CLUSTERED}
    if found["clustered"]:
        closeness = rows.unit(common) @ centroid
        found["common_words_on_them"] = [[i, round(float(value), 4)] for i, value in zip(common, closeness) if value >= ON_UNTRAINED_ROW]
        found["common_words_max"] = round(float(closeness.max()), 4)
    return found


def _never_emitted_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ids of `[unusedN]` / `<unusedN>`, N counted up until 64 names in a row are missing (reading no whole vocabulary)."""
    found: list[int] = []
    backend = getattr(tokenizer, "backend_tokenizer", None)  # a fast tokenizer's own lookup: no Python per name
    lookup = backend.token_to_id if backend is not None else tokenizer.convert_tokens_to_ids
    unknown = tokenizer.unk_token_id
    for form in NEVER_EMITTED_FORMS:
        number, misses = 0, 0
        while misses < 64:
            ids = [lookup(form.format(n)) for n in range(number, number + 64)]
            hits = [i for i in ids if i is not None and i != unknown]
            misses = 0 if hits else misses + 64
            found += hits
            number += 64
    return sorted(set(found))


def _metrics(tokenizer: PreTrainedTokenizerBase, classes: dict[str, list[int]], measured: dict[str, dict[str, Any]], never: dict[str, Any]) -> dict[str, Any]:
    tokens = sum(map(len, classes.values()))
    out = sum(len(found["out_of_place"]) for found in measured.values())
    per_class = {name: {"tokens": tokenizer.convert_ids_to_tokens(ids), "ids": ids, **measured[name]} for name, ids in classes.items()}
    return {"classes": per_class, "tokens": tokens, "out_of_place": out, "out_of_place_share": round(out / tokens, 4),
            "threshold": OUT_OF_PLACE_SHARE, "never_emitted": never}  # fmt: skip


def _message(metrics: dict[str, Any]) -> str:
    classes, lines = metrics["classes"], []
    if metrics["out_of_place_share"] >= OUT_OF_PLACE_SHARE:
        lines.append(f"{metrics['out_of_place']} of the {metrics['tokens']} tokens of known word classes lie no closer to their class than "
                     f"random tokens do ({metrics['out_of_place_share']:.0%}; threshold {OUT_OF_PLACE_SHARE:.0%}; the real MiniLM and MPNet: 0%):")  # fmt: skip
        lines += [f"  {line}" for line in _examples(classes)]
        cohesion = ", ".join(f"{name} {found['cohesion']:.2f}" for name, found in classes.items())
        lines.append(f"  mean cosine within each class (random tokens: about 0; MiniLM and MPNet: 0.34-0.73): {cohesion}")
    for token_id, closeness in metrics["never_emitted"].get("common_words_on_them", [])[:_SHOWN]:
        token = next(t for found in classes.values() for t, i in zip(found["tokens"], found["ids"]) if i == token_id)
        lines.append(f"{token!r} (id {token_id}) reads a row like the never-emitted [unused*] tokens' rows: cosine {closeness:.2f} to "
                     f"their centroid (theirs: median {metrics['never_emitted']['median_cosine']:.2f}; threshold {ON_UNTRAINED_ROW:g})")  # fmt: skip
    hint = ("the tokenizer's ids do not index the rows these weights were trained with: vocab.txt / tokenizer.json were "
            "renumbered, or come from another checkpoint of the same vocabulary size. Every file can agree "
            "(tokenizer_files_agree) and every id can have a row (tokenizer_ids_in_embeddings) while each token reads another "
            "token's row; ship the tokenizer files the model was trained with")  # fmt: skip
    return "\n".join(lines) + f"\nHint: {hint}"


def _examples(classes: dict[str, dict[str, Any]]) -> list[str]:
    """Up to `_SHOWN` out-of-place tokens, taken from the classes in turn."""
    queues = [[(name, found, token_id) for token_id in found["out_of_place"]] for name, found in classes.items()]
    picked: list[str] = []
    while len(picked) < _SHOWN and any(queues):
        for queue in queues:
            if queue and len(picked) < _SHOWN:
                name, found, token_id = queue.pop(0)
                index = found["ids"].index(token_id)
                picked.append(f"{name}: {found['tokens'][index]!r} (id {token_id}): mean cosine {found['closeness'][index]:.2f} to the other "
                              f"{len(found['ids']) - 1} (random tokens: {found['random_mean']:.2f}, 99th percentile {found['random_bound']:.2f})")  # fmt: skip
    return picked
