"""A classifier's label map fits its head: one name per output, ids 0..n-1, label2id the inverse of id2label.

Loading hides some of it: 5.x replaces `id2label` by generic names when config.json's `num_labels`
disagrees with it, 4.x keeps the map and drops `num_labels`. So the file's own values are read too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_bertprobe.checkpoint.json_file import read_json_object
from pytest_bertprobe.checks.heads.promises import CLASSIFICATION_TASKS, SEQUENCE_CLASSIFICATION
from pytest_bertprobe.checks.heads.replay import task_of
from pytest_bertprobe.errors import CheckFailure, NotApplicable

if TYPE_CHECKING:
    from transformers import PreTrainedModel

_GENERIC_NAME = re.compile(r"LABEL_\d+")
_PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")
_SHOWN = 5  # offending entries quoted per problem
_REPORTED_NAMES = 50  # label names kept in the report


@dataclass(frozen=True)
class LabelMap:
    """A classifier's labels as checked: how many, their names, whether they are transformers' generic ones."""

    labels: int
    names: tuple[str, ...]
    generic: bool  # LABEL_0, LABEL_1, ...: reported, not failed (the names were never set)
    problem_type: str | None

    def metrics(self) -> dict[str, Any]:
        """Plain-JSON view for reports."""
        names = list(self.names[:_REPORTED_NAMES])
        return {"labels": self.labels, "names": names, "generic_names": self.generic, "problem_type": self.problem_type}


def _classifier(model: PreTrainedModel) -> tuple[str, int] | None:
    """The head's last linear layer outside the base model, and its out_features."""
    import torch

    in_base = {id(module) for module in model.base_model.modules()}
    linears = [
        (name, module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and id(module) not in in_base
    ]
    return linears[-1] if linears else None


def _read_file(config_file: str | Path | None) -> dict[str, Any]:
    return {} if config_file is None else read_json_object(Path(config_file))


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f", ... ({len(items) - _SHOWN} more)" if len(items) > _SHOWN else "")


def label_map_problems(model: PreTrainedModel, stored: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """Every way the label map misfits the head, as (what is wrong, where); empty when it fits."""
    config = model.config
    id2label = {int(key): str(value) for key, value in (config.id2label or {}).items()}
    label2id = {str(key): _as_id(value) for key, value in (config.label2id or {}).items()}
    found = [
        _outputs_problem(model, len(id2label)),
        _stored_count_problem(stored or {}),
        _ids_problem(id2label),
        _duplicates_problem(id2label),
        _inverse_problem(id2label, label2id),
        _problem_type_problem(getattr(config, "problem_type", None), len(id2label)),
    ]
    return [problem for problem in found if problem is not None]


def _as_id(value: Any) -> Any:
    """An id as stored ("2" and 2 alike); anything else kept as is, to be reported rather than crash."""
    return int(value) if isinstance(value, int) or (isinstance(value, str) and value.isdigit()) else value


def _outputs_problem(model: PreTrainedModel, count: int) -> tuple[str, str] | None:
    classifier = _classifier(model)
    if classifier is None or classifier[1] == count:
        return None
    return "num_labels != the classifier's out_features", f"{classifier[0]}.out_features = {classifier[1]}, but id2label has {count} entries"


def _stored_count_problem(stored: Mapping[str, Any]) -> tuple[str, str] | None:
    """config.json's own num_labels against its own id2label (loading resolves the conflict silently)."""
    count, names = stored.get("num_labels"), stored.get("id2label")
    if not isinstance(count, int) or not isinstance(names, dict) or count == len(names):
        return None
    return "num_labels != len(id2label) in config.json", f"num_labels = {count}, id2label has {len(names)} entries"


def _ids_problem(id2label: Mapping[int, str]) -> tuple[str, str] | None:
    if sorted(id2label) == list(range(len(id2label))):
        return None
    missing = sorted(set(range(len(id2label))) - set(id2label))
    return "ids are not 0..n-1", f"ids {_listing([str(i) for i in sorted(id2label)])}; missing {_listing([str(i) for i in missing])}"


def _duplicates_problem(id2label: Mapping[int, str]) -> tuple[str, str] | None:
    by_name: dict[str, list[int]] = {}
    for index, name in sorted(id2label.items()):
        by_name.setdefault(name, []).append(index)
    duplicates = [f"{name!r} at ids {', '.join(map(str, ids))}" for name, ids in by_name.items() if len(ids) > 1]
    return ("duplicate label names", _listing(duplicates)) if duplicates else None


def _inverse_problem(id2label: Mapping[int, str], label2id: Mapping[str, Any]) -> tuple[str, str] | None:
    """A stored label2id must invert id2label; 5.x writes none (`label2id: null`) and derives it."""
    if not label2id:
        return None
    wrong = [f"label2id[{name!r}] = {index}, but id2label[{index}] = {id2label.get(index)!r}"
             for name, index in label2id.items() if id2label.get(index) != name]  # fmt: skip
    wrong += [f"id2label[{index}] = {name!r} is not in label2id" for index, name in sorted(id2label.items()) if name not in label2id]
    if not wrong and len(label2id) == len(id2label):
        return None
    return "label2id is not the inverse of id2label", _listing(wrong) or f"{len(label2id)} entries, id2label has {len(id2label)}"


def _problem_type_problem(problem_type: str | None, count: int) -> tuple[str, str] | None:
    if problem_type is not None and problem_type not in _PROBLEM_TYPES:
        return "problem_type is unknown", f"problem_type = {problem_type!r}; transformers knows {', '.join(_PROBLEM_TYPES)}"
    if problem_type in _PROBLEM_TYPES[1:] and count < 2:
        return "problem_type does not fit the labels", f"problem_type = {problem_type!r} with {count} label (classification needs 2 or more)"
    return None


def assert_label_map(model: PreTrainedModel, config_file: str | Path | None = None) -> LabelMap:
    """Assert a sequence/token classifier's label map fits its head; `config_file` adds config.json's own values.

    Raises `NotApplicable` for models without a classification head.
    """
    __tracebackhide__ = True
    task = task_of(model)
    if task not in CLASSIFICATION_TASKS:
        raise NotApplicable(f"{type(model).__name__} has no classification head, so no label map to check")
    problems = label_map_problems(model, _read_file(config_file))
    names = tuple(str(name) for _, name in sorted((int(k), v) for k, v in (model.config.id2label or {}).items()))
    problem_type = getattr(model.config, "problem_type", None)
    if task == SEQUENCE_CLASSIFICATION and problem_type is None and len(names) == 1:
        problem_type = "regression (num_labels = 1)"
    checked = LabelMap(len(names), names, all(_GENERIC_NAME.fullmatch(name) for name in names), problem_type)
    if problems:
        lines = [f"label map of {type(model).__name__} ({len(names)} labels): {problems[0][0]}", ""]
        lines += [f"{what}: {where}" for what, where in problems]
        lines.append(
            "Hint: fix id2label / label2id / num_labels in config.json (one name per classifier output, ids 0..n-1, "
            "label2id the exact inverse); predictions are reported under these names"
        )
        raise CheckFailure("\n".join(lines), metrics={**checked.metrics(), "problems": [what for what, _ in problems]})
    return checked
