"""A classifier's label map fits its head: one name per output, ids 0..n-1, label2id the inverse of id2label.

Loading hides some of it: 5.x replaces `id2label` by generic names when config.json's `num_labels`
disagrees with it, 4.x keeps the map and drops `num_labels`. So the file's own values are read too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_bertprobe.compare import NotApplicable
from pytest_bertprobe.finetuned_heads import CLASSIFICATION_TASKS, SEQUENCE_CLASSIFICATION
from pytest_bertprobe.heads import task_of

if TYPE_CHECKING:
    from transformers import PreTrainedModel

_GENERIC_NAME = re.compile(r"LABEL_\d+")
_PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")
_SHOWN = 5  # offending entries quoted per problem


@dataclass(frozen=True)
class LabelMap:
    """A classifier's labels as checked: how many, their names, whether they are transformers' generic ones."""

    labels: int
    names: tuple[str, ...]
    generic: bool  # LABEL_0, LABEL_1, ...: reported, not failed (the names were never set)
    problem_type: str | None

    def metrics(self) -> dict[str, Any]:
        """Plain-JSON view for reports."""
        return {"labels": self.labels, "names": list(self.names[:50]), "generic_names": self.generic, "problem_type": self.problem_type}


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
    if config_file is None or not Path(config_file).is_file():
        return {}
    loaded = json.loads(Path(config_file).read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f", ... ({len(items) - _SHOWN} more)" if len(items) > _SHOWN else "")


def label_map_problems(model: PreTrainedModel, stored: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """Every way the label map misfits the head, as (what is wrong, where); empty when it fits."""
    config = model.config
    id2label: dict[int, str] = {int(key): str(value) for key, value in (config.id2label or {}).items()}
    count = len(id2label)
    problems: list[tuple[str, str]] = []
    classifier = _classifier(model)
    if classifier is not None and classifier[1] != count:
        problems.append(("num_labels != the classifier's out_features", f"{classifier[0]}.out_features = {classifier[1]}, but id2label has {count} entries"))
    stored = stored or {}
    if isinstance(stored.get("num_labels"), int) and isinstance(stored.get("id2label"), dict) and stored["num_labels"] != len(stored["id2label"]):
        problems.append(("num_labels != len(id2label) in config.json", f"num_labels = {stored['num_labels']}, id2label has {len(stored['id2label'])} entries"))
    if sorted(id2label) != list(range(count)):
        missing = sorted(set(range(count)) - set(id2label))
        problems.append(("ids are not 0..n-1", f"ids {_listing([str(i) for i in sorted(id2label)])}; missing {_listing([str(i) for i in missing])}"))
    by_name: dict[str, list[int]] = {}
    for index, name in sorted(id2label.items()):
        by_name.setdefault(name, []).append(index)
    duplicates = [f"{name!r} at ids {', '.join(map(str, ids))}" for name, ids in by_name.items() if len(ids) > 1]
    if duplicates:
        problems.append(("duplicate label names", _listing(duplicates)))
    label2id = {str(key): value for key, value in (config.label2id or {}).items()}
    if label2id:  # 5.x writes none (label2id: null) and derives it; a stored one must be the inverse
        wrong = [f"label2id[{name!r}] = {index}, but id2label[{index}] = {id2label.get(int(index))!r}"
                 for name, index in label2id.items() if id2label.get(int(index)) != name]  # fmt: skip
        wrong += [f"id2label[{index}] = {name!r} is not in label2id" for name, (index, *_) in by_name.items() if name not in label2id]
        if wrong or len(label2id) != count:
            problems.append(("label2id is not the inverse of id2label", _listing(wrong) or f"{len(label2id)} entries, id2label has {count}"))
    problem_type = getattr(config, "problem_type", None)
    if problem_type is not None and problem_type not in _PROBLEM_TYPES:
        problems.append(("problem_type is unknown", f"problem_type = {problem_type!r}; transformers knows {', '.join(_PROBLEM_TYPES)}"))
    elif problem_type in _PROBLEM_TYPES[1:] and count < 2:
        problems.append(("problem_type does not fit the labels", f"problem_type = {problem_type!r} with {count} label (classification needs 2 or more)"))
    return problems


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
        failure = AssertionError("\n".join(lines))
        failure.metrics = {**checked.metrics(), "problems": [what for what, _ in problems]}  # type: ignore[attr-defined]
        raise failure
    return checked
