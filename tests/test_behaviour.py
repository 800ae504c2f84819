"""Behavioural checks (#27): the checkpoint behaves like the trained model it claims to be.

Real weights throughout: copies of all-MiniLM-L6-v2 with one fault planted each, and the CLS-pooled encoder, the
classifier and the masked-LM this repository trained on it (`tests/behaviour_plants.py`, `tests/data/`). One pytester run audits them all and reads each check's outcome from
the JSON report.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe.checks.behaviour.probe_set import LANGUAGES, MASKED_SENTENCES, TRIPLETS, triplet_sentences
from pytest_bertprobe.sentences import SEED_SENTENCES
from tests import behaviour_plants as plants

BEHAVIOUR = ("embedding_behaviour", "masked_lm_behaviour", "classifier_behaviour")
_UNSPACED = ("zh", "ja")


def _words(language: str, sentence: str) -> set[str]:
    """What a bag-of-words model compares: lower-cased words, or characters where words are not spaced."""
    if language in _UNSPACED:
        return {character for character in sentence if character.isalnum()}
    return {"".join(c for c in word if c.isalnum()) for word in sentence.lower().split()} - {""}


def _overlap(language: str, first: str, second: str) -> float:
    a, b = _words(language, first), _words(language, second)
    return len(a & b) / len(a | b)


def test_words_alone_rank_every_distractor_above_its_paraphrase() -> None:
    for triplet in TRIPLETS:
        anchor, paraphrase, distractor = triplet[1:]
        assert _overlap(triplet.language, anchor, distractor) > _overlap(triplet.language, anchor, paraphrase), triplet


def test_the_probe_set_spans_eight_languages_and_holds_the_seed_sentences() -> None:
    assert LANGUAGES == ("en", "zh", "de", "es", "fr", "ru", "ja", "ar")
    assert set(SEED_SENTENCES) <= {sentence for sentences in triplet_sentences().values() for sentence in sentences}
    assert all(len(MASKED_SENTENCES[language]) >= 4 for language in LANGUAGES)
    assert sum(triplet.language == "en" for triplet in TRIPLETS) == 8


def test_an_english_vocabulary_reads_the_latin_languages_and_says_why_not_the_others(minilm_path: Path) -> None:
    from transformers import AutoTokenizer

    from pytest_bertprobe.checks.behaviour.reading import read_languages

    readings = read_languages(AutoTokenizer.from_pretrained(minilm_path), triplet_sentences())
    assert [language for language, reading in readings.items() if reading.read] == ["en", "de", "es", "fr"]
    assert readings["zh"].reason == "62% of its letters map to [UNK]"
    assert readings["ja"].reason == "22% of its letters map to [UNK]"
    assert readings["ru"].reason == "92% of its words are spelled letter by letter"
    assert readings["ar"].reason == "100% of its words are spelled letter by letter"


@pytest.fixture(scope="module")
def minilm(minilm_path: Path) -> Iterator[tuple[Any, Any]]:
    from transformers import AutoModel, AutoTokenizer

    from pytest_bertprobe.forward import cache

    model, tokenizer = AutoModel.from_pretrained(minilm_path).eval(), AutoTokenizer.from_pretrained(minilm_path)
    with cache.shared(model, tokenizer):
        yield model, tokenizer


def test_minilm_mean_embedding_ranks_every_english_paraphrase_first(minilm: tuple[Any, Any]) -> None:
    from pytest_bertprobe import assert_embedding_ranks_paraphrases

    metrics = assert_embedding_ranks_paraphrases(*minilm, "mean")
    assert (metrics["language"], round(metrics["margin"], 2)) == ("en", 0.35)
    assert metrics["languages"]["en"]["ranked_first"]["mean"] == "8/8"
    assert {language for language, data in metrics["languages"].items() if not data["read"]} == {"zh", "ru", "ja", "ar"}
    assert metrics["sentences"] == 3 * (8 + 3 * 3)


def test_cls_declared_for_the_mean_trained_minilm_fails_naming_mean(minilm: tuple[Any, Any]) -> None:
    from pytest_bertprobe import CheckFailure, assert_embedding_ranks_paraphrases

    with pytest.raises(CheckFailure) as failure:
        assert_embedding_ranks_paraphrases(*minilm, "cls", source="1_Pooling/config.json")
    message = str(failure.value)
    assert message.startswith("1_Pooling/config.json declares cls pooling, but mean pooling separates paraphrases 2.1x better")
    assert "was the model trained with mean?" in message
    assert "Hint: declare the pooling the model was trained with (pooling_mode_mean_tokens: true" in message
    assert failure.value.metrics is not None and failure.value.metrics["poolings"]["cls"]["margin"] == pytest.approx(0.16, abs=0.005)


def test_a_bag_of_words_embedding_fails_with_the_evidence(minilm: tuple[Any, Any]) -> None:
    """The embeddings alone, averaged (no encoder layer): the look-alike distractors win every English triplet."""
    from pytest_bertprobe import CheckFailure, assert_embedding_ranks_paraphrases

    model, tokenizer = minilm
    bag = type(model).from_pretrained(model.name_or_path, num_hidden_layers=0).eval()
    with pytest.raises(CheckFailure, match=r"does not rank paraphrases above look-alike distractors: best margin -0\.16 \(en, 1/8 ") as failure:
        assert_embedding_ranks_paraphrases(bag, tokenizer, "mean")
    assert "Worst triplet (" in str(failure.value)


def test_the_minilm_masked_lm_recovers_english_tokens_far_better_than_chance(minilm_path: Path) -> None:
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertForMaskedLM

    from pytest_bertprobe import assert_masked_tokens_recovered

    model = BertForMaskedLM.from_pretrained(minilm_path).eval()
    model.load_state_dict({key: tensor.float() for key, tensor in load_file(plants.MLM_HEAD).items()}, strict=False)
    metrics = assert_masked_tokens_recovered(model, AutoTokenizer.from_pretrained(minilm_path))
    assert (metrics["language"], metrics["vocabulary"]) == ("en", 30522)
    assert metrics["pseudo_perplexity"] < metrics["max_pseudo_perplexity"] / 2
    assert [language for language, data in metrics["languages"].items() if data.get("read") is False] == ["zh", "ru", "ja", "ar"]


@pytest.fixture(scope="session")
def behaviour_models(tmp_path_factory: pytest.TempPathFactory, minilm_path: Path) -> dict[str, Path]:
    """Every checkpoint of the sweep, by name: MiniLM and its copies, the classifiers, the masked-LMs."""
    folder = tmp_path_factory.mktemp("behaviour")
    return {
        "minilm": minilm_path,
        **plants.minilm_plants(minilm_path, folder),
        **plants.classifier_plants(minilm_path, folder),
        **plants.mlm_plants(minilm_path, folder),
    }


# The behavioural check each checkpoint exercises, and its outcome there; the other two skip (nothing declared, no head).
EXERCISES: dict[str, dict[str, tuple[str, ...]]] = {
    "embedding_behaviour": {
        "passed": ("minilm", "minilm-float16", "minilm-perturbed", "minilm-cls-trained",
                   "minilm-6-heads"),  # changes too little: README, "What a green audit means"
        "failed": ("minilm-random", "minilm-layers-1-4", "minilm-query-key-0", "minilm-layernorm", "minilm-relu", "minilm-cls-declared"),
    },
    "classifier_behaviour": {"passed": ("classifier",), "failed": ("classifier-zeroed", "classifier-shrunk", "classifier-biased")},
    "masked_lm_behaviour": {
        "passed": ("minilm-mlm",), "failed": ("minilm-mlm-encoder-random", "minilm-mlm-layers-1-4", "minilm-mlm-relu"),
    },
}  # fmt: skip
EXPECTED: dict[str, tuple[str, ...]] = {  # name -> the outcome of each check of BEHAVIOUR
    name: tuple(next((outcome for outcome, names in EXERCISES[check].items() if name in names), "skipped") for check in BEHAVIOUR)
    for outcomes in EXERCISES.values()
    for names in outcomes.values()
    for name in names
}


def _outcomes(report: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Each model's checks by name, models in `--bert-model` order."""
    data = json.loads(report.read_text(encoding="utf-8"))
    found: dict[str, dict[str, dict[str, Any]]] = {model["id"]: {} for model in data["models"]}
    for check in data["checks"]:
        found[check["model"]][check["check"]] = check
    return found


@pytest.mark.real_weights
def test_planted_faults_fail_by_the_behaviour_checks_and_the_controls_pass(
    pytester: pytest.Pytester, behaviour_models: dict[str, Path]
) -> None:
    models = [f"--bert-model={path}" for path in behaviour_models.values()]
    result = pytester.runpytest(*models, "-k", "bertprobe_audit_behaviour", "--bert-report-json=report.json", "-p", "no:xdist")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    outcomes = _outcomes(pytester.path / "report.json")
    ids = dict(zip(behaviour_models, outcomes))  # the report lists models in --bert-model order
    found = {name: tuple(outcomes[ids[name]][check]["outcome"] for check in BEHAVIOUR) for name in behaviour_models}
    assert found == EXPECTED
    metrics = {name: outcomes[ids[name]]["embedding_behaviour"]["metrics"] for name in behaviour_models if name.startswith("minilm") and "-mlm" not in name}
    margins = {name: round(data["margin"], 2) for name, data in metrics.items()}
    assert margins == {
        "minilm": 0.35, "minilm-float16": 0.35, "minilm-perturbed": 0.34, "minilm-cls-trained": 0.37, "minilm-random": -0.03,
        "minilm-layers-1-4": 0.11, "minilm-query-key-0": 0.06, "minilm-layernorm": 0.0, "minilm-relu": 0.03,
        "minilm-cls-declared": 0.16, "minilm-6-heads": 0.28,
    }  # fmt: skip
    perplexities = {name: round(outcomes[ids[name]]["masked_lm_behaviour"]["metrics"]["pseudo_perplexity"]) for name in behaviour_models if "-mlm" in name}
    assert perplexities == {"minilm-mlm": 455, "minilm-mlm-encoder-random": 19027, "minilm-mlm-layers-1-4": 7192, "minilm-mlm-relu": 7522}
    result.stdout.fnmatch_lines([
        "*minilm-cls-declared: embedding_behaviour: failed: *declares cls pooling, but mean pooling separates paraphrases 2.1x better*",
        "*minilm-mlm-relu: masked_lm_behaviour: failed: The masked-LM head does not recover masked tokens: pseudo-perplexity 7522*",
    ], consecutive=False)  # fmt: skip


@pytest.mark.real_weights
def test_the_default_audit_passes_the_trained_controls_and_fails_a_fresh_initialisation(
    pytester: pytest.Pytester, behaviour_models: dict[str, Path]
) -> None:
    names = ("minilm-cls-trained", "classifier", "minilm-mlm", "minilm-random")
    result = pytester.runpytest(*(f"--bert-model={behaviour_models[name]}" for name in names), "--bert-report-json=report.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    outcomes = dict(zip(names, _outcomes(pytester.path / "report.json").values()))
    failed = {name: sorted(check for check, data in checks.items() if data["outcome"] == "failed") for name, checks in outcomes.items()}
    assert failed["minilm-cls-trained"] == failed["classifier"] == failed["minilm-mlm"] == []
    # One cause, one failure: random weights are weights_trained's finding; the behaviour it explains skips, naming it.
    assert failed["minilm-random"] == ["weights_trained"]
    skipped = outcomes["minilm-random"]["embedding_behaviour"]
    assert skipped["outcome"] == "skipped" and skipped["metrics"]["reason"].endswith("weights_trained reports it")


@pytest.fixture(scope="module")
def tiny_readers(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A tiny random BERT whose vocabulary reads the English probe sentences, and its masked-LM twin."""
    from pytest_bertprobe.testing import make_tiny_checkpoint

    english = [*triplet_sentences()["en"], *MASKED_SENTENCES["en"]]
    words = sorted({word.strip(".,?!'").lower() for sentence in english for word in sentence.split()})
    folder = tmp_path_factory.mktemp("tiny-readers")
    return [
        f"--bert-model={make_tiny_checkpoint(folder / 'bert', extra_words=words)}",
        f"--bert-model={make_tiny_checkpoint(folder / 'bert-mlm', extra_words=words, model_class='BertForMaskedLM')}",
    ]


def test_allow_untrained_reports_the_behaviour_verdicts_on_a_tiny_random_checkpoint(pytester: pytest.Pytester, tiny_readers: list[str]) -> None:
    result = pytester.runpytest(*tiny_readers, "--bert-embedding=mean", "-k", "bertprobe_audit_behaviour", "--bert-report-html=out.html")
    assert result.ret == pytest.ExitCode.OK
    page = (pytester.path / "out.html").read_text(encoding="utf-8")
    assert "Paraphrase vs look-alike distractor, per language" in page and "Masked-token recovery (pseudo-perplexity), per language" in page
    result.stdout.fnmatch_lines([
        "*: embedding_behaviour: reported, not failed (--bert-allow-untrained): The declared mean sentence embedding does not rank*",
        "*: masked_lm_behaviour: reported, not failed (--bert-allow-untrained): The masked-LM head does not recover masked tokens*",
    ], consecutive=False)  # fmt: skip


@pytest.mark.real_weights  # here: without --bert-allow-untrained, as a user's default audit runs
def test_without_allow_untrained_the_tiny_random_checkpoint_fails_the_behaviour_checks(pytester: pytest.Pytester, tiny_readers: list[str]) -> None:
    result = pytester.runpytest(*tiny_readers, "--bert-embedding=mean", "-k", "bertprobe_audit_behaviour")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=3, skipped=3)  # the declared embedding of both, the masked-LM head of the twin
