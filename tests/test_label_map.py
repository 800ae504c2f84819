"""label_map: a classifier's labels fit its head; planted misfits fail by name, generic names are reported only."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe.checks.heads.labels import assert_label_map, label_map_problems
from pytest_bertprobe.compare import NotApplicable
from tests.helpers import junit_metrics, plant_copy

TinyFactory = Callable[..., Path]
LABELS = ("sports", "politics", "tech")
AUDIT = ("-p", "no:cacheprovider", "-rfs", "-k", "label_map")


@pytest.fixture(scope="module")
def classifier(tiny_checkpoint: TinyFactory) -> Path:
    return tiny_checkpoint("bert", model_class="BertForSequenceClassification", labels=LABELS)


def _load(path: Path) -> Any:
    import transformers
    from transformers import AutoConfig

    return getattr(transformers, AutoConfig.from_pretrained(path).architectures[0]).from_pretrained(path).eval()


def _planted(classifier: Path, tmp_path: Path, name: str, **config: Any) -> Path:
    return plant_copy(classifier, tmp_path / name, config=config)


def test_named_labels_pass(classifier: Path) -> None:
    checked = assert_label_map(_load(classifier), classifier / "config.json")
    assert checked.metrics() == {"labels": 3, "names": list(LABELS), "generic_names": False, "problem_type": None}


def test_generic_names_are_reported_not_failed(tiny_checkpoint: TinyFactory) -> None:
    path = tiny_checkpoint("roberta", model_class="RobertaForTokenClassification")
    checked = assert_label_map(_load(path), path / "config.json")
    assert checked.generic and checked.names == ("LABEL_0", "LABEL_1")


def test_one_output_without_a_problem_type_is_reported_as_regression(tiny_checkpoint: TinyFactory) -> None:
    assert assert_label_map(_load(tiny_checkpoint("distilbert", model_class="DistilBertForSequenceClassification", labels=("score",)))).problem_type == (
        "regression (num_labels = 1)"
    )


def test_label2id_that_is_not_the_inverse_fails(classifier: Path, tmp_path: Path) -> None:
    path = _planted(classifier, tmp_path, "swapped", label2id={"sports": 1, "politics": 0, "tech": 2})
    with pytest.raises(AssertionError) as failure:
        assert_label_map(_load(path), path / "config.json")
    message = str(failure.value)
    assert message.startswith("label map of BertForSequenceClassification (3 labels): label2id is not the inverse of id2label\n")
    assert "label2id['sports'] = 1, but id2label[1] = 'politics'" in message and "\nHint: " in message
    assert failure.value.metrics["problems"] == ["label2id is not the inverse of id2label"]  # type: ignore[attr-defined]


def test_duplicate_label_names_fail(classifier: Path, tmp_path: Path) -> None:
    path = _planted(classifier, tmp_path, "duplicates", id2label={"0": "sports", "1": "sports", "2": "tech"}, label2id={"sports": 0, "tech": 2})
    with pytest.raises(AssertionError, match=r"^label map of .*: duplicate label names\n") as failure:
        assert_label_map(_load(path), path / "config.json")
    assert "duplicate label names: 'sports' at ids 0, 1" in str(failure.value)


def test_ids_with_a_gap_fail(classifier: Path, tmp_path: Path) -> None:
    path = _planted(classifier, tmp_path, "gap", id2label={"0": "sports", "2": "politics", "3": "tech"}, label2id={"sports": 0, "politics": 2, "tech": 3})
    with pytest.raises(AssertionError, match=r": ids are not 0\.\.n-1\n") as failure:
        assert_label_map(_load(path), path / "config.json")
    assert "ids 0, 2, 3; missing 1" in str(failure.value)


def test_more_names_than_classifier_outputs_fail(classifier: Path) -> None:
    model = _load(classifier)
    model.config.id2label = {**model.config.id2label, 3: "weather"}
    model.config.label2id = {name: index for index, name in model.config.id2label.items()}
    with pytest.raises(AssertionError, match=r"num_labels != the classifier's out_features\n"):
        assert_label_map(model)
    assert ("num_labels != the classifier's out_features", "classifier.out_features = 3, but id2label has 4 entries") in label_map_problems(model)


def test_num_labels_in_the_file_that_disagrees_with_id2label_is_seen(classifier: Path) -> None:
    # 5.x replaces such an id2label by generic names at load, 4.x drops num_labels: only the file still says so.
    stored = {"num_labels": 5, "id2label": {"0": "sports", "1": "politics", "2": "tech"}}
    assert ("num_labels != len(id2label) in config.json", "num_labels = 5, id2label has 3 entries") in label_map_problems(_load(classifier), stored)


def test_a_classification_problem_type_needs_two_labels(tiny_checkpoint: TinyFactory) -> None:
    model = _load(tiny_checkpoint("bert", model_class="BertForSequenceClassification", labels=("score",)))
    model.config.problem_type = "single_label_classification"
    with pytest.raises(AssertionError, match="problem_type does not fit the labels"):
        assert_label_map(model)


def test_models_without_a_classifier_are_not_applicable(tiny_checkpoint: TinyFactory) -> None:
    with pytest.raises(NotApplicable, match="^BertForMaskedLM has no classification head, so no label map to check$"):
        assert_label_map(_load(tiny_checkpoint("bert", model_class="BertForMaskedLM")))


def test_audit_fails_planted_label_maps_by_name_and_reports_generic_names(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, classifier: Path, tmp_path: Path
) -> None:
    generic = tiny_checkpoint("electra", model_class="ElectraForSequenceClassification")
    swapped = _planted(classifier, tmp_path, "swapped", label2id={"sports": 1, "politics": 0, "tech": 2})
    duplicates = _planted(classifier, tmp_path, "dups", id2label={"0": "sports", "1": "sports", "2": "tech"}, label2id={"sports": 0, "tech": 2})
    models = [f"--bert-model={path}" for path in (classifier, generic, swapped, duplicates, tiny_checkpoint("bert"))]
    result = pytester.runpytest(*models, *AUDIT, "--junitxml=out.xml")
    result.assert_outcomes(passed=2, failed=2, skipped=1)
    result.stdout.fnmatch_lines_random([
        "E*label map of BertForSequenceClassification (3 labels): label2id is not the inverse of id2label",
        "E*label map of BertForSequenceClassification (3 labels): duplicate label names",
        "*SKIPPED*checkpoint has no classification head (saved as BertModel)",
        "swapped: label_map: failed: label map of BertForSequenceClassification (3 labels): label2id is not the inverse of id2label",
    ])
    metrics = junit_metrics(pytester.path / "out.xml", "test_label_map_fits_the_classifier")
    assert metrics[generic.name]["generic_names"] is True and metrics[classifier.name]["generic_names"] is False
    assert metrics["dups"]["problems"][0] == "duplicate label names"
    assert json.dumps(metrics[classifier.name]["names"]) == json.dumps(list(LABELS))


def test_an_id_that_is_not_a_number_is_reported_not_crashed_on(classifier: Path) -> None:
    model = _load(classifier)
    model.config.label2id = {"sports": "zero", "politics": 1, "tech": 2}
    problems = dict(label_map_problems(model))
    assert problems["label2id is not the inverse of id2label"].startswith("label2id['sports'] = zero, but id2label[zero] = None")
