"""Vocabulary coverage: [UNK] rates per script are reported, fail only for declared languages, and casing
mismatches between vocabulary and tokenizer fail; each fault planted into a tiny checkpoint copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_bertprobe.checks.tokenizer import coverage
from tests.helpers import junit_metrics
from tests.test_tokenizer_contract import (
    Fault,
    TinyFactory,
    check_fault,
    copy_checkpoint,
    edit_json,
    plant_all,
    replace_vocabulary,
    run_tokenizer_audit,
)


def _is_special(token: str) -> bool:
    return token.startswith("[") and token.endswith("]")


def _strip_cjk(path: Path) -> None:
    """An English-only vocabulary: every Han entry dropped to '[unusedN]'."""
    replace_vocabulary(path, lambda token: None if any(coverage.script_of(ch) == "Han" for ch in token) else token)


def _set_lowercasing(path: Path, lowercase: bool) -> None:
    edit_json(path / "tokenizer_config.json", lambda c: c.update(do_lower_case=lowercase))
    edit_json(path / "tokenizer.json", lambda t: t["normalizer"].update(lowercase=lowercase))


def _lower_cased_vocabulary(path: Path) -> None:
    replace_vocabulary(path, lambda token: None if not _is_special(token) and any(ch.isupper() for ch in token) else token)


def _lower_cased_vocabulary_not_lowercasing(path: Path) -> None:
    _lower_cased_vocabulary(path)
    _set_lowercasing(path, False)


def _cased_vocabulary(path: Path) -> None:
    """bert-base-cased style: whole words stored capitalized (the single letters stay in both cases)."""
    replace_vocabulary(path, lambda token: token.capitalize() if len(token) > 1 and token.isalpha() else token)


def _cased_vocabulary_not_lowercasing(path: Path) -> None:
    _cased_vocabulary(path)
    _set_lowercasing(path, False)


CASING_FAULTS: dict[str, Fault] = {
    "lower-vocab-cased-input": Fault("bert", _lower_cased_vocabulary_not_lowercasing, "test_vocabulary_and_tokenizer_agree_on_case", (
        "Cased text floods [UNK] where its lower-case form does not: Latin 100.0% in Title Case vs 22.7% lower-cased "
        "(up to 10% points apart allowed).",
        "Lost in Title Case: 653 of 653 Latin characters (100.0%); example 'Hello World' -> ['[UNK]', '[UNK]']",
        "The vocabulary is lower-cased (0 of 47 multi-letter entries hold capitals) and the tokenizer keeps case.",
        'Hint: set "do_lower_case": true in tokenizer_config.json',
    ), control=_lower_cased_vocabulary),
    "cased-vocab-lowercasing": Fault("bert", _cased_vocabulary,  # the tiny BERT tokenizer lower-cases already
         "test_vocabulary_and_tokenizer_agree_on_case", (
        "The tokenizer lower-cases its input, but the vocabulary is cased: 47 of 47 multi-letter entries (100.0%, up to 5% "
        "allowed) hold capitals and can never be produced.",
        "Examples: ['An', 'And', 'Are', 'Bad', 'Be', 'Big', 'Cold', 'Day']",
        "Hint: a cased checkpoint loaded with do_lower_case=true",
    ), control=_cased_vocabulary_not_lowercasing),
}


def test_audit_fails_casing_mismatches_and_passes_their_healthy_twins(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path, subtests: pytest.Subtests
) -> None:
    english_only = copy_checkpoint(tiny_checkpoint("bert"), tmp_path / "english-only")
    _strip_cjk(english_only)
    checkpoints = plant_all(CASING_FAULTS, tiny_checkpoint, tmp_path)
    run = run_tokenizer_audit(pytester, *checkpoints, english_only, args=("--junitxml=report.xml",))
    for name, fault in CASING_FAULTS.items():
        with subtests.test(fault=name):
            check_fault(run, name, fault)
    with subtests.test("undeclared languages are reported, not enforced"):
        assert run.outcome("test_declared_languages_are_covered", "english-only") == "passed"
        metrics = junit_metrics(pytester.path / "report.xml", "test_declared_languages_are_covered")["english-only"]
        assert metrics["threshold"] == coverage.UNK_THRESHOLD and metrics["declared"] == []
        assert metrics["scripts"]["Han"]["rate"] == 1.0 and metrics["scripts"]["Latin"]["rate"] < 0.05
        assert set(metrics["languages"]) == set(coverage.LANGUAGES) and metrics["languages"]["zh"] == 1.0


def test_declared_language_the_vocabulary_lacks_fails_and_a_covering_vocabulary_passes(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path
) -> None:
    english_only = copy_checkpoint(tiny_checkpoint("bert"), tmp_path / "english-only")
    _strip_cjk(english_only)
    chinese = copy_checkpoint(tiny_checkpoint("bert", extra_words=(coverage.SAMPLES["zh"],)), tmp_path / "chinese")

    run = run_tokenizer_audit(pytester, english_only, chinese, args=("--bert-languages=zh,en", "--junitxml=report.xml"))

    assert run.failing("english-only") == ["test_declared_languages_are_covered"]
    assert run.failing(chinese.name) == []
    message = run.message("test_declared_languages_are_covered", "english-only")
    for line in (
        "The vocabulary does not cover declared language(s) zh: [UNK] swallows 100.0% of 'zh' text (up to 10% allowed).",
        "zh: 36 of 36 Han characters (100.0%) lost, in the probe sentences and '今天会有大大的台风吗?天气很好,我很开心。'",
        "Example: '今天会有大大的台风吗?天气很好,我很开心。' -> ['[UNK]', '[UNK]',",
        "Hint: this checkpoint's vocabulary was built without that script",
    ):
        assert line in message, message
    metrics = junit_metrics(pytester.path / "report.xml", "test_declared_languages_are_covered")
    assert metrics["english-only"]["languages"]["zh"] == 1.0 and metrics["english-only"]["declared"] == ["zh", "en"]
    assert metrics[chinese.name]["languages"]["zh"] == 0.0


# --- the helpers outside pytest ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("character", "script"),
    [("a", "Latin"), ("é", "Latin"), ("天", "Han"), ("か", "Kana"), ("カ", "Kana"), ("한", "Hangul"), ("д", "Cyrillic"),
     ("λ", "Greek"), ("ا", "Arabic"), ("א", "Hebrew"), ("क", "Devanagari"), ("ก", "Thai"), ("7", "Common"),
     ("?", "Common"), ("😀", "Symbol"), (" ", None), ("\u200c", None)],
)  # fmt: skip
def test_characters_are_classified_by_script(character: str, script: str | None) -> None:
    assert coverage.script_of(character) == script


def test_every_language_has_a_sample_written_in_its_script() -> None:
    assert set(coverage.SAMPLES) == set(coverage.LANGUAGES)
    for code, script in coverage.LANGUAGES.items():
        letters = [ch for ch in coverage.SAMPLES[code] if coverage.script_of(ch) not in (None, "Common", "Symbol")]
        assert sum(coverage.script_of(ch) == script for ch in letters) >= len(letters) / 3, code


def test_unknown_language_codes_are_refused_in_one_line() -> None:
    coverage.validate_languages(["zh", "en"])
    with pytest.raises(ValueError) as refused:
        coverage.validate_languages(["zh", "klingon", "EN"])
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("--bert-languages: unknown language code(s) 'klingon', 'EN'; known: ar, bn, de, el, en,")


def test_wordpiece_loses_the_whole_word_around_an_unknown_character(tiny_checkpoint: TinyFactory) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint("modernbert"))  # no lower-casing, no accent stripping
    measured = coverage.measure_coverage(tokenizer, ["cafés ok"])
    assert (measured.characters["Latin"], measured.unknown["Latin"]) == (7, 5)


def test_the_threshold_is_a_parameter(tiny_checkpoint: TinyFactory) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint("bert"))  # zh: 4 of 36 Han characters unknown
    with pytest.raises(coverage.ContractViolation, match=r"swallows 11\.1% of 'zh' text \(up to 10% allowed\)"):
        coverage.assert_language_coverage(tokenizer, ["zh"])
    assert coverage.assert_language_coverage(tokenizer, ["zh"], threshold=0.2)["languages"]["zh"] == 0.1111


def test_real_minilm_is_an_uncased_english_vocabulary_with_some_cjk(minilm_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    metrics = coverage.assert_language_coverage(tokenizer, ["en", "fr", "de", "ru", "ja"])
    assert metrics["languages"]["en"] == 0.0 and metrics["languages"]["ja"] == 0.0
    assert metrics["languages"]["zh"] == pytest.approx(0.528, abs=1e-3)  # 19 of 36 Han characters
    with pytest.raises(coverage.ContractViolation, match=r"declared language\(s\) zh, th:"):
        coverage.assert_language_coverage(tokenizer, ["en", "zh", "th"])
    casing = coverage.assert_casing_consistent(tokenizer)
    assert casing["tokenizer_lowercases"] and casing["cased_vocabulary"] == 0
