"""Hypothesis strategies for sentences a BERT-family checkpoint meets: mixed scripts, edge cases, batches.

Every strategy shrinks toward the simplest text (fewer fragments, then the first fragment of each
kind: a plain ASCII word), so a failure reports the minimal sentence that still breaks the check.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from hypothesis import strategies as st

from pytest_bertprobe.sentences import SEED_SENTENCES

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

ASCII_WORDS = ("a", "the", "hello", "world", "weather", "today", "typhoon", "Model", "BERT", "x1")
CJK_TEXT = ("开心", "快乐", "难过", "天气", "今天", "会有", "大大的", "台风", "吗", "中文", "模型", "句子")
ACCENTED = ("café", "naïve", "résumé", "Ångström", "señor", "Übermaß")
EMOJI = ("😀", "🌧️", "👍🏽", "🇨🇳", "❤️", "👨‍👩‍👧")
PUNCTUATION = ("?", "!", ".", ",", "…", "，", "。", "？", "«»", "—", "'", '"')
WHITESPACE = (" ", "  ", "\t", "\n", " \u3000 ", "\u00a0")

_FRAGMENT_KINDS = (ASCII_WORDS, CJK_TEXT, ACCENTED, EMOJI, PUNCTUATION)


def _fragments() -> st.SearchStrategy[str]:
    return st.one_of([st.sampled_from(kind) for kind in _FRAGMENT_KINDS])


def sentences(*, min_fragments: int = 0, max_fragments: int = 12) -> st.SearchStrategy[str]:
    """Sentences mixing ASCII words, CJK, accents, emoji and punctuation, joined by whitespace runs.

    The empty string is included (`min_fragments=0`): it tokenizes to special tokens only.
    """
    pieces = st.lists(st.tuples(_fragments(), st.sampled_from(WHITESPACE)), min_size=min_fragments, max_size=max_fragments)
    return pieces.map(lambda parts: "".join(fragment + space for fragment, space in parts).rstrip(" "))


def seed_like_sentences() -> st.SearchStrategy[str]:
    """The seed's five sentences, and Chinese text built from their characters."""
    characters = sorted(set("".join(SEED_SENTENCES)))
    built = st.lists(st.sampled_from(characters), min_size=1, max_size=20).map("".join)
    return st.one_of(st.sampled_from(SEED_SENTENCES), built)


def vocabulary_sentences(tokenizer: PreTrainedTokenizerBase, *, max_words: int = 16) -> st.SearchStrategy[str]:
    """Sentences built from the tokenizer's own pieces (WordPiece `##`, SentencePiece `▁`, BPE `Ġ` removed)."""
    words = _vocabulary_words(tokenizer)
    if not words:
        return sentences()
    return st.lists(st.sampled_from(words), min_size=1, max_size=max_words).map(" ".join)


# Per tokenizer, keyed by its size: every VocabularyPick of every example reads the same word list.
_WORDS: weakref.WeakKeyDictionary[PreTrainedTokenizerBase, tuple[int, list[str]]] = weakref.WeakKeyDictionary()


def _vocabulary_words(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    size = len(tokenizer)
    cached = _WORDS.get(tokenizer)
    if cached is None or cached[0] != size:
        cached = _WORDS[tokenizer] = (size, _read_vocabulary_words(tokenizer))
    return cached[1]


def _read_vocabulary_words(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    special = set(getattr(tokenizer, "all_special_tokens", ()))
    cleaned = {
        token.removeprefix("##").lstrip("▁Ġ").strip()
        for token in tokenizer.get_vocab()
        if token not in special and not (token[:1] in "<[" and token[-1:] in ">]")
    }
    # Sorted by (length, text) so the first (simplest) piece is stable and shrinking is deterministic: by text,
    # then by length (a stable sort keeps the text order within each length), twice as fast as a tuple key.
    words = sorted(word for word in cleaned if word.isprintable() and word)
    words.sort(key=len)
    return words


def overlong_sentences(max_length: int) -> st.SearchStrategy[str]:
    """Text longer than `max_length` tokens under any tokenizer: the truncation path."""
    return st.sampled_from(("长", "a ", "😀")).flatmap(
        lambda unit: st.integers(max_length + 1, 2 * max_length + 8).map(lambda count: unit * count)
    )


def batches(
    elements: st.SearchStrategy[str] | None = None, *, min_size: int = 1, max_size: int = 8
) -> st.SearchStrategy[list[str]]:
    """Batches of 1–8 sentences; rows of different lengths make padding matter."""
    return st.lists(elements if elements is not None else sentences(), min_size=min_size, max_size=max_size)


def sentence_pairs(elements: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[tuple[str, str]]:
    """(first, second) pairs, the input shape of NSP and cross-encoders."""
    element = elements if elements is not None else sentences(min_fragments=1)
    return st.tuples(element, element)


@dataclass(frozen=True)
class VocabularyPick:
    """A sentence of the tokenizer's own pieces, drawn before the tokenizer is known (as indices).

    Audit strategies are built at import time, before a checkpoint loads; `materialize` turns the
    indices into words of whichever tokenizer is under audit. Indices shrink toward 0, the simplest piece.
    """

    indices: tuple[int, ...]

    def text(self, tokenizer: PreTrainedTokenizerBase) -> str:
        """The words these indices pick from `tokenizer`'s vocabulary."""
        words = _vocabulary_words(tokenizer) or list(ASCII_WORDS)
        return " ".join(words[index % len(words)] for index in self.indices)


def vocabulary_picks(*, max_words: int = 16) -> st.SearchStrategy[VocabularyPick]:
    """Tokenizer-independent stand-ins for `vocabulary_sentences`."""
    return st.lists(_vocabulary_index(), min_size=1, max_size=max_words).map(lambda found: VocabularyPick(tuple(found)))


def _vocabulary_index() -> st.SearchStrategy[int]:
    """0 to 69999, drawn as base-100 digits.

    Hypothesis mixes into its integers the constants of every local module loaded, except those under 100: a
    digit each keeps the audit's batches the same whichever modules are loaded and wherever this package lives.
    """
    digits = st.integers(0, 99)
    return st.tuples(st.integers(0, 6), digits, digits).map(lambda d: (d[0] * 100 + d[1]) * 100 + d[2])


Sentence = Union[str, VocabularyPick]


def audit_sentences() -> st.SearchStrategy[Sentence]:
    """What the audit feeds a checkpoint: mixed scripts, the seed's Chinese, and its own vocabulary."""
    return st.one_of(sentences(), seed_like_sentences(), vocabulary_picks())


def materialize(batch: Sequence[Sentence], tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Plain strings for a batch that may hold `VocabularyPick`s."""
    return [item if isinstance(item, str) else item.text(tokenizer) for item in batch]


__all__ = [
    "ASCII_WORDS", "CJK_TEXT", "ACCENTED", "EMOJI", "PUNCTUATION", "WHITESPACE", "sentences", "seed_like_sentences",
    "vocabulary_sentences", "overlong_sentences", "batches", "sentence_pairs",
    "VocabularyPick", "vocabulary_picks", "Sentence", "audit_sentences", "materialize",
]  # fmt: skip


def __dir__() -> list[str]:
    """What `dir()` and completion offer: the strategies and their data, not this module's imports (`st`, `dataclass`)."""
    return sorted(__all__)
