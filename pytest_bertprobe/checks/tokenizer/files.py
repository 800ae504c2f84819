"""Tokenizer files agree (docs/DESIGN.md §2): every file that describes the vocabulary gives each token the same id.

A checkpoint may describe its vocabulary more than once: `vocab.txt` (WordPiece), `vocab.json` + `merges.txt`
(BPE), a sentencepiece model, `tokenizer.json`. AutoTokenizer reads `tokenizer.json`; the slow classes, other
runtimes and older exports read the others. The maps are read here straight from the files (no tokenizer class
needed), then compared on sentences through every tokenizer transformers builds from them offline.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_bertprobe.checkpoint import compat
from pytest_bertprobe.checkpoint.json_file import read_json_object
from pytest_bertprobe.compare import quote
from pytest_bertprobe.errors import ContractViolation, NotApplicable, UnreadableJson, first_line
from pytest_bertprobe.sentences import PROBE_SENTENCES

TOKENIZER_JSON = "tokenizer.json"
SENTENCEPIECE_MODELS = ("spiece.model", "sentencepiece.bpe.model", "spm.model")
# Sentencepiece UNKNOWN and CONTROL pieces: converters renumber them (fairseq's <s> <pad> </s> <unk> come first).
_RENUMBERED_PIECE_TYPES = {2, 3}
_TOKENIZER_FILES = (TOKENIZER_JSON, "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "config.json",
                    "vocab.txt", "vocab.json", "merges.txt", *SENTENCEPIECE_MODELS)  # fmt: skip
_SHOWN = 6
_CLIP = 2048  # characters per sentence: ids agree or not long before; slow tokenizers take seconds on 32k


Built = tuple[list[tuple[str, Any]], dict[str, str]]  # (label, tokenizer) of each one built; label -> why not built


@dataclass(frozen=True)
class Vocabulary:
    """One file's token -> id map; `shifted` when its ids may sit at a constant offset (a sentencepiece model)."""

    files: str
    ids: dict[str, int]
    shifted: bool = False


@dataclass(frozen=True)
class Disagreement:
    """Where two vocabularies differ: tokens with other ids (id in `first`, id in `second`) and tokens only one has."""

    first: Vocabulary
    second: Vocabulary
    differing: list[tuple[str, int, int]]
    only_first: list[str]
    only_second: list[str]
    offset: int


def read_vocabularies(folder: Path) -> list[Vocabulary]:
    """Every description of the vocabulary in `folder`, tokenizer.json first; an unreadable one fails."""
    return _read_vocabularies(folder, _stamps(folder))


def vocabulary_disagreements(folder: Path) -> list[Disagreement]:
    """Where each other vocabulary in `folder` differs from the first (tokenizer.json's); empty when they agree."""
    return _disagreements(folder, _stamps(folder))


def _stamps(folder: Path) -> tuple[tuple[str, int, int], ...]:
    return tuple((name, path.stat().st_mtime_ns, path.stat().st_size) for name in _TOKENIZER_FILES if (path := folder / name).is_file())


@functools.lru_cache(maxsize=8)  # every example of the audit check compares the same files
def _disagreements(folder: Path, stamps: tuple[tuple[str, int, int], ...]) -> list[Disagreement]:
    vocabularies = _read_vocabularies(folder, stamps)
    return [d for d in (compare_vocabularies(vocabularies[0], other) for other in vocabularies[1:]) if d is not None]


@functools.lru_cache(maxsize=8)  # every example of the audit check reads the same files
def _read_vocabularies(folder: Path, _stamps: tuple[tuple[str, int, int], ...]) -> list[Vocabulary]:
    found: list[Vocabulary] = []
    for name, read in (
        (TOKENIZER_JSON, _tokenizer_json_vocabulary),
        ("vocab.txt", _vocab_txt),
        ("vocab.json", _vocab_json),
        *((name, _sentencepiece_vocabulary) for name in SENTENCEPIECE_MODELS),
    ):
        path = folder / name
        if not path.is_file():
            continue
        try:
            vocabulary = read(path)
        except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
            cause = f"it {error}" if isinstance(error, UnreadableJson) else f"{type(error).__name__}: {error}"
            raise ContractViolation(
                f"{name} cannot be read as a vocabulary: {cause}\n"
                f"Hint: every runtime that reads {name} fails on it; re-save the tokenizer (tokenizer.save_pretrained)",
                {"unreadable": name},
            ) from None
        if vocabulary is not None:
            found.append(vocabulary)
    return found


def recorded_added_tokens(folder: Path) -> dict[str, int]:
    """Added tokens whose ids the files record: tokenizer.json's added_tokens, added_tokens.json, added_tokens_decoder."""
    recorded: dict[str, int] = {}
    tokenizer_json = read_json_object(folder / TOKENIZER_JSON)
    recorded.update({entry["content"]: int(entry["id"]) for entry in tokenizer_json.get("added_tokens", ())})
    recorded.update({token: int(index) for token, index in read_json_object(folder / "added_tokens.json").items()})
    decoder = read_json_object(folder / "tokenizer_config.json").get("added_tokens_decoder", {})
    recorded.update({entry["content"]: int(index) for index, entry in decoder.items() if isinstance(entry, dict)})
    return recorded


def _tokenizer_json_vocabulary(path: Path) -> Vocabulary | None:
    vocab = read_json_object(path).get("model", {}).get("vocab")
    if isinstance(vocab, dict):
        return Vocabulary(path.name, {str(token): int(index) for token, index in vocab.items()})
    if isinstance(vocab, list):  # Unigram: [piece, score] in id order
        return Vocabulary(path.name, {str(entry[0]): index for index, entry in enumerate(vocab)})
    return None


def _vocab_txt(path: Path) -> Vocabulary:
    # As BERT's load_vocab reads it: one token a line, only the newline stripped, a later duplicate wins.
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return Vocabulary(path.name, {token: index for index, token in enumerate(lines)})


def _vocab_json(path: Path) -> Vocabulary:
    merges = " + merges.txt" if (path.parent / "merges.txt").is_file() else ""
    return Vocabulary(path.name + merges, {str(token): int(index) for token, index in read_json_object(path).items()})


def _sentencepiece_vocabulary(path: Path) -> Vocabulary:
    pieces = sentencepiece_pieces(path.read_bytes())
    ids = {piece: index for index, (piece, kind) in enumerate(pieces) if kind not in _RENUMBERED_PIECE_TYPES}
    return Vocabulary(path.name, ids, shifted=True)


def sentencepiece_pieces(data: bytes) -> list[tuple[str, int]]:
    """(piece, type) of a sentencepiece ModelProto in id order, read without sentencepiece or protobuf."""
    pieces = []
    for field, value in _protobuf_fields(data):
        if field == 1:  # ModelProto.pieces: piece (1), score (2), type (3; NORMAL when absent)
            inner = dict(_protobuf_fields(value))
            pieces.append((bytes(inner.get(1, b"")).decode("utf-8"), int(inner.get(3, 1))))
    if not pieces:
        raise ValueError("no pieces in the model")
    return pieces


def _protobuf_fields(data: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) of a protobuf message: varints as int, everything else as bytes."""
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        wire = key & 7
        if wire == 0:
            value, position = _varint(data, position)
        elif wire == 2:
            length, position = _varint(data, position)
            value, position = data[position : position + length], position + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, position = data[position : position + size], position + size
        else:
            raise ValueError(f"not a protobuf message (wire type {wire} at byte {position})")
        if position > len(data):
            raise ValueError("truncated protobuf message")
        yield key >> 3, value


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if position >= len(data):
            raise ValueError("truncated protobuf varint")
        byte = data[position]
        result |= (byte & 0x7F) << shift
        position, shift = position + 1, shift + 7
        if not byte & 0x80:
            return result, position


def compare_vocabularies(first: Vocabulary, second: Vocabulary) -> Disagreement | None:
    """Tokens whose ids differ; a sentencepiece model may sit at one offset (fairseq's specials before its pieces)."""
    common = [token for token in second.ids if token in first.ids]
    offsets = Counter(first.ids[token] - second.ids[token] for token in common)
    offset = offsets.most_common(1)[0][0] if offsets and second.shifted else 0
    differing = [(t, first.ids[t], second.ids[t]) for t in common if first.ids[t] - second.ids[t] != offset]
    only_second = [token for token in second.ids if token not in first.ids]
    only_first = [] if second.shifted else [token for token in first.ids if token not in second.ids]
    if not (differing or only_first or only_second):
        return None
    return Disagreement(first, second, sorted(differing, key=lambda d: d[1]), only_first, only_second, offset)


def build_tokenizers(folder: Path, *, loaded: Any = None) -> Built:
    """The tokenizers transformers builds offline from each description, by label; and why any could not be built.

    `loaded`: the tokenizer `AutoTokenizer.from_pretrained(folder)` already gave (the checkpoint's), used as is.
    """
    from transformers import AutoTokenizer

    built: list[tuple[str, Any]] = []
    failed: dict[str, str] = {}

    def attempt(label: str, build: Any) -> Any:
        try:
            tokenizer = build()
        except Exception as error:  # noqa: BLE001 - a description transformers cannot build is noted, not judged
            failed[label] = first_line(error)
            return None
        built.append((label, tokenizer))
        return tokenizer

    others = [v.files for v in read_vocabularies(folder) if v.files != TOKENIZER_JSON]
    main = attempt(f"AutoTokenizer ({TOKENIZER_JSON if (folder / TOKENIZER_JSON).is_file() else ', '.join(others)})",
                   lambda: loaded if loaded is not None else AutoTokenizer.from_pretrained(folder))  # fmt: skip
    if (folder / TOKENIZER_JSON).is_file() and others:
        label = f"AutoTokenizer without tokenizer.json ({', '.join(others)})"
        if all(name in SENTENCEPIECE_MODELS for name in others) and importlib.util.find_spec("sentencepiece") is None:
            failed[label] = "needs the sentencepiece package"
        else:
            with tempfile.TemporaryDirectory(prefix="bertprobe-tokenizer-") as copy:
                for name in _TOKENIZER_FILES:
                    if name != TOKENIZER_JSON and (folder / name).is_file():
                        shutil.copyfile(folder / name, Path(copy) / name)
                attempt(label, lambda: AutoTokenizer.from_pretrained(copy))
    if main is not None:
        # 5.x maps each model type to one class: with a fast one loaded, `use_fast=False` would build it again.
        only_fast = getattr(main, "is_fast", False) and compat.builds_only_fast_tokenizers()
        attempt(f"slow tokenizer ({', '.join(others) or TOKENIZER_JSON})", lambda: _slow(AutoTokenizer, folder, only_fast))
    return built, failed


def _slow(auto: Any, folder: Path, only_fast: bool) -> Any:
    """The slow (Python) tokenizer, where transformers still has one (4.x, or a Python-only class)."""
    if only_fast:
        raise LookupError("transformers builds only fast tokenizers")
    tokenizer = auto.from_pretrained(folder, use_fast=False)
    if getattr(tokenizer, "is_fast", True):
        raise LookupError("transformers builds only fast tokenizers")
    return tokenizer


def first_sentence_difference(tokenizers: Sequence[tuple[str, Any]], sentences: Sequence[str]) -> tuple[str, str, list[int], list[int]] | None:
    """(sentence, other tokenizer's label, ids of the first tokenizer, ids of the other) where they first differ."""
    if len(tokenizers) < 2 or not sentences:
        return None
    texts = [text[:_CLIP] for text in sentences]
    (_, first), *others = tokenizers
    expected = first(texts, verbose=False)["input_ids"]
    for label, tokenizer in others:
        for text, ours, theirs in zip(texts, expected, tokenizer(texts, verbose=False)["input_ids"]):
            if ours != theirs:
                return text, label, ours, theirs
    return None


def assert_tokenizer_files_agree(
    folder: str | Path, *, sentences: Sequence[str] = PROBE_SENTENCES, tokenizers: Built | Callable[[], Built] | None = None
) -> dict[str, Any]:
    """Assert every vocabulary file in `folder` gives each token the same id, and the tokenizers built from them agree on `sentences`.

    `tokenizers` is what `build_tokenizers(folder)` returns, or a function returning it (called only when there
    is something to compare): build once for many calls. Raises `NotApplicable` where one file describes the vocabulary.
    """
    __tracebackhide__ = True
    folder = Path(folder)
    vocabularies = read_vocabularies(folder)
    if len(vocabularies) < 2:
        only = vocabularies[0].files if vocabularies else "no vocabulary file (vocab.txt, vocab.json, tokenizer.json, ...)"
        raise NotApplicable(f"only {only} describes the vocabulary: nothing to compare")
    built, failed = tokenizers() if callable(tokenizers) else tokenizers or build_tokenizers(folder)
    disagreements = vocabulary_disagreements(folder)
    difference = first_sentence_difference(built, sentences)
    if difference is None and disagreements:  # the tokens themselves, where the sentences hold none of them
        tokens = [t for d in disagreements for t in [*(t for t, _, _ in d.differing), *d.only_first, *d.only_second][:_SHOWN]]
        difference = first_sentence_difference(built, tokens)
    metrics: dict[str, Any] = {
        "files": {v.files: len(v.ids) for v in vocabularies},
        "tokenizers": [label for label, _ in built],
        "not_built": failed,
        "sentences": len(sentences),
        "tokens_differing": sum(len(d.differing) + len(d.only_first) + len(d.only_second) for d in disagreements),
    }
    if not disagreements and difference is None:
        return metrics
    lines = [line for d in disagreements for line in _describe(d)]
    if difference is not None:
        text, label, ours, theirs = difference
        position = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        lines.append(
            f"On sentence {quote(text)}: {built[0][0]} gives {_ids(ours)}, {label} gives {_ids(theirs)} "
            f"(first difference at position {position})."
        )
    what = (
        f"Token ids differ between {disagreements[0].first.files} and {disagreements[0].second.files}: "
        f"{metrics['tokens_differing']} of {len(disagreements[0].first.ids)} tokens."
        if disagreements
        else "The tokenizers built from the checkpoint's files disagree, although the vocabulary files agree."
    )
    raise ContractViolation(
        what,
        metrics,
        details=lines,
        hint=f"AutoTokenizer reads {TOKENIZER_JSON}; the slow tokenizer classes, other runtimes and older exports read "
        "the other files, so they feed the model other ids. Find the description the model was trained with, load "
        "the tokenizer from it alone and save_pretrained, so every file is rewritten from it (or ship only that one)",
    )


def _describe(disagreement: Disagreement) -> list[str]:
    a, b = disagreement.first.files, disagreement.second.files
    offset = f" + {disagreement.offset}" if disagreement.offset else ""
    shown = ", ".join(f"{token!r} ({a} {x}, {b} {y}{offset})" for token, x, y in disagreement.differing[:_SHOWN])
    more = f", … {len(disagreement.differing) - _SHOWN} more" if len(disagreement.differing) > _SHOWN else ""
    lines = [f"{len(disagreement.differing)} tokens with other ids in {a} and {b}: {shown}{more}"] if disagreement.differing else []
    for name, only in ((a, disagreement.only_first), (b, disagreement.only_second)):
        if only:
            ids = disagreement.first.ids if name == a else disagreement.second.ids
            listed = ", ".join(f"{token!r} ({ids[token]})" for token in only[:_SHOWN])
            lines.append(f"Only in {name}: {len(only)} tokens: {listed}{', …' if len(only) > _SHOWN else ''}")
    return lines


def _ids(ids: list[int], limit: int = 16) -> str:
    return str(ids) if len(ids) <= limit else f"{ids[:limit]}… ({len(ids)} ids)"
