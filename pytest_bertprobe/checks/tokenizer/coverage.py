"""Vocabulary coverage (docs/DESIGN.md §2): how much of each script's text falls into [UNK], and casing mismatches.

Rates are the share of a script's characters that end up inside an [UNK] token, measured in context
(WordPiece turns a whole word into [UNK] when one character is unknown, and that word is lost).
An English vocabulary rightly knows little Chinese, so rates are only reported, and fail past
`UNK_THRESHOLD` only for languages the user declares (`--bert-languages`).
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_bertprobe.errors import ContractViolation
from pytest_bertprobe.sentences import PROBE_SENTENCES

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# A declared language fails when more than 10% of its script's characters are lost: a vocabulary built
# for the language loses well under 1% (rare characters), one built without it loses most of them.
UNK_THRESHOLD = 0.10
# Title Case losing 10 points more than the same text in lower case means the tokenizer feeds a
# lower-cased vocabulary cased text.
CASING_THRESHOLD = 0.10
# Share of multi-letter vocabulary entries with capitals above which a vocabulary counts as cased.
CASED_VOCABULARY_SHARE = 0.05

# unicodedata name prefix -> script; checked in order, first match wins.
_SCRIPT_PREFIXES: tuple[tuple[str, str], ...] = (
    ("CJK UNIFIED IDEOGRAPH", "Han"), ("CJK COMPATIBILITY IDEOGRAPH", "Han"),
    ("HIRAGANA", "Kana"), ("KATAKANA", "Kana"), ("HANGUL", "Hangul"),
    ("LATIN", "Latin"), ("CYRILLIC", "Cyrillic"), ("GREEK", "Greek"), ("ARMENIAN", "Armenian"),
    ("GEORGIAN", "Georgian"), ("ARABIC", "Arabic"), ("HEBREW", "Hebrew"), ("DEVANAGARI", "Devanagari"),
    ("BENGALI", "Bengali"), ("TAMIL", "Tamil"), ("THAI", "Thai"),
)  # fmt: skip

# language code -> the script its text needs (Japanese: kana; its kanji are measured as Han).
LANGUAGES: dict[str, str] = {
    "zh": "Han", "ja": "Kana", "ko": "Hangul",
    "en": "Latin", "fr": "Latin", "de": "Latin", "es": "Latin", "it": "Latin", "pt": "Latin", "nl": "Latin",
    "pl": "Latin", "tr": "Latin", "vi": "Latin", "id": "Latin",
    "ru": "Cyrillic", "uk": "Cyrillic", "el": "Greek", "ar": "Arabic", "fa": "Arabic", "he": "Hebrew",
    "hi": "Devanagari", "bn": "Bengali", "ta": "Tamil", "th": "Thai",
}  # fmt: skip

# One sentence per language, after the seed's: "will there be a big typhoon today? the weather is nice, I am happy."
SAMPLES: dict[str, str] = {
    "zh": "今天会有大大的台风吗?天气很好,我很开心。",
    "ja": "今日は大きな台風が来ますか？天気がいいので、うれしいです。",
    "ko": "오늘 큰 태풍이 올까요? 날씨가 좋아서 기뻐요.",
    "en": "Will there be a big typhoon today? The weather is nice, so I am happy.",
    "fr": "Y aura-t-il un grand typhon aujourd'hui ? Il fait beau, je suis très content.",
    "de": "Gibt es heute einen großen Taifun? Das Wetter ist schön, ich bin glücklich.",
    "es": "¿Habrá un gran tifón hoy? Hace buen tiempo y estoy muy feliz.",
    "it": "Ci sarà un grande tifone oggi? Il tempo è bello e sono felice.",
    "pt": "Vai haver um grande tufão hoje? O tempo está bom e estou feliz.",
    "nl": "Komt er vandaag een grote tyfoon? Het weer is mooi en ik ben blij.",
    "pl": "Czy dzisiaj będzie duży tajfun? Pogoda jest ładna, więc jestem szczęśliwy.",
    "tr": "Bugün büyük bir tayfun olacak mı? Hava güzel, çok mutluyum.",
    "vi": "Hôm nay có bão lớn không? Thời tiết đẹp nên tôi rất vui.",
    "id": "Apakah akan ada topan besar hari ini? Cuacanya bagus, saya senang.",
    "ru": "Будет ли сегодня большой тайфун? Погода хорошая, и я счастлив.",
    "uk": "Чи буде сьогодні великий тайфун? Погода гарна, і я щасливий.",
    "el": "Θα έρθει σήμερα μεγάλος τυφώνας; Ο καιρός είναι ωραίος και είμαι χαρούμενος.",
    "ar": "هل سيكون هناك إعصار كبير اليوم؟ الطقس جميل وأنا سعيد.",
    "fa": "آیا امروز طوفان بزرگی می‌آید؟ هوا خوب است و من خوشحالم.",
    "he": "האם יהיה היום טייפון גדול? מזג האוויר יפה ואני שמח.",
    "hi": "क्या आज बड़ा तूफ़ान आएगा? मौसम अच्छा है और मैं खुश हूँ।",
    "bn": "আজ কি বড় ঝড় হবে? আবহাওয়া ভালো, আমি খুশি।",
    "ta": "இன்று பெரிய புயல் வருமா? வானிலை நன்றாக உள்ளது, நான் மகிழ்ச்சியாக இருக்கிறேன்.",
    "th": "วันนี้จะมีพายุใหญ่ไหม อากาศดีและฉันมีความสุข",
}  # fmt: skip

_CASE_PROBE = "The Weather Is Sad Today In Paris"
_WORD_MARKERS = ("##", "▁", "Ġ")  # WordPiece continuation, SentencePiece and byte-level BPE word starts


def validate_languages(codes: Iterable[str]) -> None:
    """Raise ValueError (one line) naming any language code the coverage check does not know."""
    unknown = [code for code in codes if code not in LANGUAGES]
    if unknown:
        raise ValueError(
            f"--bert-languages: unknown language code(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(LANGUAGES))}"
        )


def script_of(character: str) -> str | None:
    """The script a character belongs to ("Latin", "Han", ...), "Common"/"Symbol"/"Other", or None when not counted."""
    name = unicodedata.name(character, "")
    for prefix, script in _SCRIPT_PREFIXES:
        if name.startswith(prefix):
            return script
    category = unicodedata.category(character)
    if category[0] == "L":
        return "Other"
    if category[0] in "NP":
        return "Common"
    if category[0] == "S":
        return "Symbol"
    return None  # whitespace, controls, joiners, combining marks of no script


@dataclass
class Coverage:
    """Characters and [UNK]-lost characters per script."""

    characters: Counter[str] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)

    def add(self, other: Coverage) -> Coverage:
        """Sum of two coverages."""
        return Coverage(self.characters + other.characters, self.unknown + other.unknown)

    def rate(self, script: str) -> float:
        """Share of `script`'s characters lost to [UNK] (0.0 when there are none)."""
        total = self.characters[script]
        return self.unknown[script] / total if total else 0.0

    def metrics(self) -> dict[str, dict[str, float]]:
        """Per script: characters, unknown and rate, for reports."""
        return {
            script: {"characters": total, "unknown": self.unknown[script], "rate": round(self.rate(script), 4)}
            for script, total in sorted(self.characters.items())
        }


def _lost_characters(tokenizer: PreTrainedTokenizerBase, text: str) -> set[int]:
    """Indices of `text`'s characters that end up inside an [UNK] token."""
    unk = tokenizer.unk_token_id
    if unk is None:
        return set()
    try:
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = encoding["offset_mapping"]
    except (NotImplementedError, KeyError, ValueError, TypeError):
        # Slow tokenizers have no offsets: judge each character alone.
        return {i for i, ch in enumerate(text) if not ch.isspace() and unk in tokenizer.encode(ch, add_special_tokens=False)}
    return {i for token, (start, end) in zip(encoding["input_ids"], offsets) if token == unk for i in range(start, end)}


def measure_coverage(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> Coverage:
    """Count each script's characters in `texts`, and how many the tokenizer loses to [UNK]."""
    coverage = Coverage()
    for text in texts:
        lost = _lost_characters(tokenizer, text)
        for index, character in enumerate(text):
            script = script_of(character)
            if script is not None:
                coverage.characters[script] += 1
                coverage.unknown[script] += index in lost
    return coverage


def _rate_line(coverage: Coverage, script: str) -> str:
    return f"{coverage.unknown[script]} of {coverage.characters[script]} {script} characters ({coverage.rate(script):.1%})"


def assert_language_coverage(
    tokenizer: PreTrainedTokenizerBase,
    languages: Sequence[str] = (),
    *,
    threshold: float = UNK_THRESHOLD,
    sentences: Sequence[str] = PROBE_SENTENCES,
) -> dict[str, Any]:
    """Measure [UNK] rates per script and per language; fail where a declared language's rate exceeds `threshold`.

    A language's rate counts its script's characters in `sentences` plus its sample sentence (`SAMPLES`).
    """
    __tracebackhide__ = True
    validate_languages(languages)
    per_text = {text: measure_coverage(tokenizer, [text]) for text in dict.fromkeys([*sentences, *SAMPLES.values()])}
    base = Coverage()
    for text in sentences:
        base = base.add(per_text[text])
    per_language = {code: base.add(per_text[SAMPLES[code]]) for code in LANGUAGES}
    everything = Coverage()
    for coverage in per_text.values():
        everything = everything.add(coverage)
    metrics: dict[str, Any] = {
        "threshold": threshold,
        "declared": list(languages),
        "scripts": everything.metrics(),
        "languages": {code: round(c.rate(LANGUAGES[code]), 4) for code, c in per_language.items()},
    }
    failing = [code for code in languages if per_language[code].rate(LANGUAGES[code]) > threshold]
    if not failing:
        return metrics
    worst = max(failing, key=lambda code: per_language[code].rate(LANGUAGES[code]))
    raise ContractViolation(
        "\n".join([
            f"The vocabulary does not cover declared language(s) {', '.join(failing)}: [UNK] swallows "
            f"{per_language[worst].rate(LANGUAGES[worst]):.1%} of {worst!r} text (up to {threshold:.0%} allowed).",
            *(f"{code}: {_rate_line(per_language[code], LANGUAGES[code])} lost, in the probe sentences and {SAMPLES[code]!r}"
              for code in failing),
            f"Example: {SAMPLES[worst]!r} -> {tokenizer.tokenize(SAMPLES[worst])[:16]}",
            "Hint: this checkpoint's vocabulary was built without that script; use a multilingual or "
            "language-specific checkpoint, or drop the language from --bert-languages",
        ]),
        metrics,
    )


def _lowercases(tokenizer: PreTrainedTokenizerBase) -> bool:
    return bool(tokenizer(_CASE_PROBE)["input_ids"] == tokenizer(_CASE_PROBE.lower())["input_ids"])


def _cased_vocabulary_share(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int, list[str]]:
    """Multi-letter vocabulary entries (specials and added tokens aside), and those holding capitals."""
    skip = {*tokenizer.all_special_tokens, *tokenizer.get_added_vocab()}
    words, cased = 0, []
    for token in tokenizer.get_vocab():
        if token in skip or (token[:1], token[-1:]) in (("[", "]"), ("<", ">")):  # specials, [unused0] placeholders
            continue
        bare = next(token[len(m):] for m in _WORD_MARKERS if token.startswith(m)) if token.startswith(_WORD_MARKERS) else token
        if bare.isascii():  # most entries: an ASCII letter is exactly a character with a case, and str methods run in C
            letters = len(bare) if bare.isalpha() else sum(ch.isalpha() for ch in bare)
            capital = letters > 0 and not bare.islower()
        else:
            cased_letters = [ch for ch in bare if ch.lower() != ch.upper()]
            letters, capital = len(cased_letters), any(ch.isupper() for ch in cased_letters)
        if letters >= 2:
            words += 1
            if capital:
                cased.append(token)
    return words, len(cased), sorted(cased)[:8]


def assert_casing_consistent(
    tokenizer: PreTrainedTokenizerBase, *, threshold: float = CASING_THRESHOLD, sentences: Sequence[str] = PROBE_SENTENCES
) -> dict[str, Any]:
    """Assert vocabulary and tokenizer agree on case: no [UNK] flood in Title Case, no lower-casing onto a cased vocabulary."""
    __tracebackhide__ = True
    texts = [*sentences, *SAMPLES.values()]
    titled = measure_coverage(tokenizer, [text.title() for text in texts])
    lowered = measure_coverage(tokenizer, [text.lower() for text in texts])
    cased_scripts = sorted({script_of(ch) or "" for t in texts for ch in t if ch.lower() != ch.upper()} - {""})
    words, cased, examples = _cased_vocabulary_share(tokenizer)
    share = cased / words if words else 0.0
    metrics: dict[str, Any] = {
        "tokenizer_lowercases": _lowercases(tokenizer),
        "multi_letter_vocabulary": words,
        "cased_vocabulary": cased,
        "title_case_unk_rate": {s: round(titled.rate(s), 4) for s in cased_scripts},
        "lower_case_unk_rate": {s: round(lowered.rate(s), 4) for s in cased_scripts},
    }
    if metrics["tokenizer_lowercases"] and share > CASED_VOCABULARY_SHARE:
        raise ContractViolation(
            "\n".join([
                f"The tokenizer lower-cases its input, but the vocabulary is cased: {cased} of {words} multi-letter "
                f"entries ({share:.1%}, up to {CASED_VOCABULARY_SHARE:.0%} allowed) hold capitals and can never be produced.",
                f"Examples: {examples}; {_CASE_PROBE!r} tokenizes as its lower-case form.",
                "Hint: a cased checkpoint loaded with do_lower_case=true; set \"do_lower_case\": false in "
                "tokenizer_config.json (or remove the Lowercase normalizer from tokenizer.json)",
            ]),
            metrics,
        )
    # A cased vocabulary may lack a rare capital; only a lower-cased one makes case itself the fault.
    flooded = [s for s in cased_scripts if titled.rate(s) - lowered.rate(s) > threshold]
    if metrics["tokenizer_lowercases"] or share > CASED_VOCABULARY_SHARE or not flooded:
        return metrics
    script = max(flooded, key=lambda s: titled.rate(s) - lowered.rate(s))
    example = next(t for t in texts if any(script_of(ch) == script for ch in t) and t.title() != t.lower())
    raise ContractViolation(
        "\n".join([
            f"Cased text floods [UNK] where its lower-case form does not: {script} {titled.rate(script):.1%} "
            f"in Title Case vs {lowered.rate(script):.1%} lower-cased (up to {threshold:.0%} points apart allowed).",
            f"Lost in Title Case: {_rate_line(titled, script)}; example {example.title()!r} -> {tokenizer.tokenize(example.title())[:12]}",
            f"The vocabulary is lower-cased ({cased} of {words} multi-letter entries hold capitals) and the tokenizer keeps case.",
            "Hint: set \"do_lower_case\": true in tokenizer_config.json (or restore the Lowercase normalizer in tokenizer.json)",
        ]),
        metrics,
    )
