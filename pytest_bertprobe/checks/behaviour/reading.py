"""Which probe languages a tokenizer reads: a behavioural check judges a model only where its vocabulary can see the text.

A language is not read when its letters fall into [UNK] (more than `coverage.UNK_THRESHOLD` of them: an English
vocabulary on Chinese), or when the tokenizer spells most of its words letter by letter (an English vocabulary on
Russian or Arabic: every letter is in the vocabulary, no word is). Scripts written without spaces between words
(Chinese, Japanese, Thai) are read character by character by design, so only [UNK] decides for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_bertprobe.checks.tokenizer.coverage import UNK_THRESHOLD, measure_coverage, script_of

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SPELLED_SHARE = 0.5  # more than half the words spelled letter by letter: the vocabulary has no words of the language
_UNSPACED_SCRIPTS = frozenset({"Han", "Kana", "Thai"})
_NOT_LETTERS = frozenset({"Common", "Symbol"})


@dataclass(frozen=True)
class Reading:
    """Whether a tokenizer reads a language's probe text, and why not."""

    language: str
    unknown: float  # share of the letters inside [UNK] tokens
    spelled: float  # share of the words (3 letters or more, spaced scripts) spelled one token per letter

    @property
    def read(self) -> bool:
        """The tokenizer sees this language's words: judge the model on it."""
        return self.unknown <= UNK_THRESHOLD and self.spelled <= SPELLED_SHARE

    @property
    def reason(self) -> str:
        """Why the language is not read ('' when it is)."""
        if self.unknown > UNK_THRESHOLD:
            return f"{self.unknown:.0%} of its letters map to [UNK]"
        if self.spelled > SPELLED_SHARE:
            return f"{self.spelled:.0%} of its words are spelled letter by letter"
        return ""


def read_languages(tokenizer: PreTrainedTokenizerBase, texts: Mapping[str, Sequence[str]]) -> dict[str, Reading]:
    """For each language, how the tokenizer reads its `texts` (two tokenizer calls per language, no model)."""
    return {language: _reading(tokenizer, language, sentences) for language, sentences in texts.items()}


def _reading(tokenizer: PreTrainedTokenizerBase, language: str, sentences: Sequence[str]) -> Reading:
    coverage = measure_coverage(tokenizer, ["\n".join(sentences)])  # one tokenizer call: [UNK] does not cross a line
    letters = sum(count for script, count in coverage.characters.items() if script not in _NOT_LETTERS)
    lost = sum(count for script, count in coverage.unknown.items() if script not in _NOT_LETTERS)
    words = [word for word in (_letters_of(raw) for sentence in sentences for raw in sentence.split()) if len(word) >= 3]
    spaced = [word for word in words if script_of(word[0]) not in _UNSPACED_SCRIPTS]
    spelled = 0
    if spaced:
        pieces = tokenizer(spaced, add_special_tokens=False)["input_ids"]
        spelled = sum(len(ids) >= len(word) for word, ids in zip(spaced, pieces))
    return Reading(language, lost / letters if letters else 0.0, spelled / len(spaced) if spaced else 0.0)


def _letters_of(word: str) -> str:
    """The word without punctuation around or inside it (quotes, question marks, the Spanish ¿)."""
    return "".join(character for character in word if character.isalpha())


def not_read(readings: Mapping[str, Reading]) -> str:
    """The languages a tokenizer does not read, each with why: `ru (spelled letter by letter); zh ([UNK] 60%)`."""
    return "; ".join(f"{language} ({reading.reason})" for language, reading in readings.items() if not reading.read)
