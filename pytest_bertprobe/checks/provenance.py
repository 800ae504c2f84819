"""Where the pooler's weights came from: the provenance verdict and its evidence (docs/DESIGN.md §2).

Were the pooler weights in the checkpoint, does the loaded pooler equal the file, and does it carry the
fresh-init fingerprint (a bias identically zero in every unit: biases start at zero and only a gradient
moves them). The checks of the pooler's outputs are in `pooler.py`, finiteness in `finiteness.py`.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pytest_bertprobe.checkpoint.anatomy import PoolerKind, locate_pooler
from pytest_bertprobe.checkpoint.fresh_init import linear_fingerprint
from pytest_bertprobe.checkpoint.loading import Checkpoint
from pytest_bertprobe.checkpoint.weight_files import read_weight_files
from pytest_bertprobe.errors import CheckFailure, NoPoolerError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

Verdict = Literal["trained", "untrained", "missing", "absent", "disabled"]


@dataclass(frozen=True)
class PoolerProvenance:
    """A verdict on the pooler's weights, with the evidence that supports it (plain JSON)."""

    verdict: Verdict
    evidence: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        """The report's view: `{"verdict": ..., "evidence": ...}`."""
        return {"verdict": self.verdict, "evidence": self.evidence}

    def explain(self) -> str:
        """What the evidence says, in the lines a failure message needs."""
        evidence = self.evidence
        lines = [evidence.get("why", f"pooler verdict: {self.verdict}")]
        for name, layer in evidence.get("layers", {}).items():
            ratio = layer["weight_std_ratio"]
            scale = "" if ratio is None else f" = {ratio:.3g} x initializer_range {evidence['initializer_range']:g}"
            bias = "no bias" if layer["bias_all_zero"] is None else (
                "bias zero in every unit" if layer["bias_all_zero"] else f"bias max |value| {layer['bias_max_abs']:.3g}"
            )  # fmt: skip
            lines.append(f"{name}: weight std {layer['weight_std']:.4g}{scale}; {bias}")
        missing = evidence.get("missing_at_load")
        lines.append(f"missing at load: {'not known' if missing is None else ', '.join(missing) or 'none'}")
        lines.append(f"checkpoint file: {evidence.get('file_evidence', 'not read')}")
        return "\n".join(lines)


_HINTS: dict[str, str] = {
    "missing": "save the checkpoint with its pooler (the full model's state dict, add_pooling_layer=True), or build "
    "the model with add_pooling_layer=False and use the [CLS] state or mean pooling; a head trained on top of a "
    "random pooler cannot be reproduced",
    "untrained": "pooler_output is tanh of a never-trained projection: use the [CLS] state or mean pooling "
    "(as sentence-transformers does), or fine-tune the pooler before reading it",
}


def inspect_pooler_provenance(
    source: Checkpoint | PreTrainedModel,
    *,
    model: PreTrainedModel | None = None,
    missing_keys: Iterable[str] | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
) -> PoolerProvenance:
    """Judge the pooler's weights: trained, untrained (fresh-init fingerprint), missing, absent or disabled.

    `source` is a loaded `Checkpoint` (its loading report and local folder are used) or a model; the keyword
    parts override or supply what a bare model lacks. Hub ids have no local folder, so the comparison with
    the file is reported as unavailable. When `model` is not the checkpoint's own load (an overridden
    `bert_model` fixture), the file comparison does not apply to it and is skipped.
    """
    import torch

    audited, missing, path, file_note = _parts(source, model, missing_keys, checkpoint_path)
    anatomy = locate_pooler(audited)
    if anatomy.kind is PoolerKind.DISABLED:
        return PoolerProvenance("disabled", {"kind": anatomy.kind.value, "why": anatomy.reason})
    pooler = anatomy.module
    if pooler is None or next(pooler.parameters(), None) is None:
        return PoolerProvenance("absent", {"kind": anatomy.kind.value, "why": anatomy.reason})

    own = {id(parameter) for parameter in pooler.parameters()}
    parameters = {name: p for name, p in audited.base_model.named_parameters() if id(p) in own}
    evidence: dict[str, Any] = {"kind": anatomy.kind.value, "parameters": sorted(parameters)}
    evidence["missing_at_load"] = (
        None if missing is None else sorted(key for key in missing if any(_names(key, name) for name in parameters))
    )
    if path is not None:
        evidence.update(_compare_with_file(Path(path), parameters))
    else:
        evidence["file_evidence"] = f"unavailable: {file_note}"
    initializer_range = getattr(audited.config, "initializer_range", None)
    evidence["initializer_range"] = initializer_range
    with torch.no_grad():
        layers = _linears(pooler, parameters)
        evidence["layers"] = {prefix: linear_fingerprint(linear, initializer_range) for prefix, linear in layers}
    verdict, evidence["why"] = _judge(evidence)
    return PoolerProvenance(verdict, evidence)


def _parts(
    source: Checkpoint | PreTrainedModel,
    model: PreTrainedModel | None,
    missing_keys: Iterable[str] | None,
    checkpoint_path: str | os.PathLike[str] | None,
) -> tuple[PreTrainedModel, Collection[str] | None, str | os.PathLike[str] | None, str]:
    """The model to judge, the loading report's missing keys, the folder to read, and why none."""
    if not isinstance(source, Checkpoint):
        audited = model if model is not None else source
        known = None if missing_keys is None else set(missing_keys)
        return audited, known, checkpoint_path, "no checkpoint folder given"
    audited = model if model is not None else source.model
    missing = set(source.loading_info.missing_keys if missing_keys is None else missing_keys)
    if checkpoint_path is not None:
        return audited, missing, checkpoint_path, ""
    if audited is not source.model:
        return audited, missing, None, "the audited model is not this checkpoint's own load (bert_model overridden)"
    if source.source.local_path is None:
        return audited, missing, None, f"{source.source.location} is a hub id, not a local folder"
    return audited, missing, source.source.local_path, ""


def _names(key: str, parameter: str) -> bool:
    """A checkpoint key names a base-model parameter exactly or under a head model's prefix (`bert.`)."""
    return key == parameter or key.endswith("." + parameter)


def _linears(pooler: torch.nn.Module, parameters: Mapping[str, Any]) -> list[tuple[str, torch.nn.Linear]]:
    import torch

    ids = {id(p): name for name, p in parameters.items()}
    found = []
    for module in pooler.modules():
        if isinstance(module, torch.nn.Linear):
            found.append((ids[id(module.weight)].removesuffix(".weight"), module))
    return found


def _read_pooler_tensors(folder: Path, names: Iterable[str]) -> tuple[str, dict[str, torch.Tensor]]:
    """Read only the named tensors from the folder's safetensors (sharded or not); say which file(s)."""
    files = read_weight_files(folder)
    chosen = {}
    for name in names:
        keys = sorted((key for key in files.keys if _names(key, name)), key=len)
        if keys:
            chosen[keys[0]] = name
    return files.label, {chosen[key]: tensor for key, tensor in files.tensors(chosen)}


def _compare_with_file(folder: Path, parameters: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Compare the loaded pooler with the file exactly (after casting the file to the loaded dtype)."""
    import torch

    try:
        label, stored = _read_pooler_tensors(folder, parameters)
    except Exception as error:  # noqa: BLE001 - unreadable weights make this evidence unavailable, not a crash
        return {"file_evidence": f"unavailable: {type(error).__name__}: {error}"}
    absent = sorted(set(parameters) - set(stored))
    differing, worst = [], 0.0
    for name, tensor in sorted(stored.items()):
        here = parameters[name].detach().to("cpu")
        if tensor.shape != here.shape:
            differing.append(name)
            worst = float("inf")
        elif not torch.equal(tensor.to(here.dtype), here):
            differing.append(name)
            worst = max(worst, float((tensor.double() - here.double()).abs().max()))
    notes = [f"{', '.join(absent)} not in {label}"] if absent else []
    if differing:
        notes.append(f"{', '.join(differing)} differ from {label} (max |diff| {worst:.3g})")
    elif stored:
        notes.append(f"loaded pooler identical to {label}" + (" where present" if absent else ""))
    return {
        "checkpoint_files": label,
        "absent_from_file": absent,
        "identical_to_file": not differing if stored else None,
        "max_abs_diff_to_file": worst if stored else None,
        "file_evidence": "; ".join(notes),
    }


def _judge(evidence: Mapping[str, Any]) -> tuple[Verdict, str]:
    """Missing beats untrained beats trained: a random pooler's zero bias says nothing about training."""
    missing = sorted(set(evidence.get("missing_at_load") or ()) | set(evidence.get("absent_from_file") or ()))
    if missing:
        return "missing", (
            f"pooler weights missing from the checkpoint: {', '.join(missing)}; transformers initialises them "
            "randomly on every load, so pooler_output changes from one load to the next"
        )
    if evidence.get("identical_to_file") is False:
        return "missing", (
            "the loaded pooler differs from the checkpoint's weights: something re-initialised or changed it "
            "after loading, so it is not the pooler the checkpoint holds"
        )
    zero = [name for name, layer in evidence["layers"].items() if layer["bias_all_zero"]]
    if zero:
        return "untrained", (
            f"pooler untrained: {', '.join(f'{name}.bias' for name in zero)} is zero in every unit; biases start "
            "at zero and a layer that never received a gradient keeps it"
        )
    return "trained", "pooler trained: weights from the checkpoint, biases moved from their zero initialisation"


def require_verdict(provenance: PoolerProvenance, accept: Collection[str], *, hint: str | None = None) -> None:
    """Raise `NoPoolerError` for absent/disabled poolers, `AssertionError` for any verdict not in `accept`."""
    __tracebackhide__ = True
    if provenance.verdict in ("absent", "disabled"):
        raise NoPoolerError(provenance.evidence.get("why", f"pooler {provenance.verdict}"))
    if provenance.verdict not in accept:
        advice = hint or _HINTS.get(provenance.verdict, "")
        raise CheckFailure(
            f"pooler provenance is {provenance.verdict!r}, expected {' or '.join(map(repr, accept))}:\n"
            f"{provenance.explain()}" + (f"\nHint: {advice}" if advice else "")
        )


def assert_pooler_trained(
    source: Checkpoint | PreTrainedModel,
    *,
    model: PreTrainedModel | None = None,
    missing_keys: Iterable[str] | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
) -> PoolerProvenance:
    """Assert the pooler's weights came from the checkpoint and were trained; return the provenance.

    Raises `NoPoolerError` for models without a pooler (absent) or built without it (disabled).
    """
    __tracebackhide__ = True
    provenance = inspect_pooler_provenance(
        source, model=model, missing_keys=missing_keys, checkpoint_path=checkpoint_path
    )
    require_verdict(provenance, ("trained",))
    return provenance
