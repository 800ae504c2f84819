"""The weights were trained: no module besides the pooler looks freshly initialised, re-initialised or shuffled.

A model with random weights passes every output check (finite, deterministic, padding-invariant), so this is
read from the weights themselves: the exact signs of an initialisation (LayerNorm at 1 and 0, biases at zero)
and each matrix's entries against a random matrix of its shape (`checkpoint/spectrum.py`, docs/DESIGN.md §3).
The pooler is `pooler_provenance`'s to judge (an untrained pooler is legitimate where nothing reads it), and a
weight transformers initialised at load is `weights_loaded`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_bertprobe.checkpoint.fresh_init import looks_untrained, module_evidence
from pytest_bertprobe.checkpoint.loading import Checkpoint
from pytest_bertprobe.checkpoint.spectrum import EDGE_RANDOM, MIN_SIDE, SPREAD_RANDOM
from pytest_bertprobe.checks.weights import inspect_weights, pooler_parameters
from pytest_bertprobe.errors import CheckFailure, NotApplicable

if TYPE_CHECKING:
    from transformers import PreTrainedModel

_SHOWN = 8  # modules described in a message; the report has them all
_HINT = (
    "these weights were never trained, or were re-initialised or shuffled after training (a model saved straight "
    "from its config or after init_weights, a training run that froze or skipped these modules, a converter that "
    "wrote fresh tensors): save the checkpoint from the trained model. A model with random weights still gives "
    "finite, deterministic, padding-invariant outputs, so no output check sees this; for tiny random test "
    "checkpoints, --bert-allow-untrained reports it instead of failing"
)


def assert_weights_trained(source: Checkpoint | PreTrainedModel, *, model: PreTrainedModel | None = None) -> dict[str, Any]:
    """Assert no Linear, LayerNorm or Embedding besides the pooler looks untrained.

    A LayerNorm looks untrained at weight 1 and bias 0 everywhere; a matrix with both sides of at least 64 when its
    rows and columns carry energy as evenly as independent entries do and its largest eigenvalue stays within the
    Marchenko–Pastur edge of a random matrix of its shape (any initialisation scheme, or shuffled entries); a smaller
    one when its bias is zero in every unit (without a bias: a weight std within 5% of `initializer_range`).
    For a `Checkpoint`, the head model is judged, and modules whose weights transformers initialised at load are
    left to `weights_loaded`. Returns every module's evidence, the untrained ones and the thresholds.
    """
    __tracebackhide__ = True
    audited = _audited(source, model)
    pooler = sorted({name.rpartition(".")[0] for name in pooler_parameters(audited)})
    at_load = sorted({name.rpartition(".")[0] for name in _initialised_at_load(source, model)})
    initializer_range = getattr(audited.config, "initializer_range", None)
    evidence = module_evidence(audited, initializer_range, besides=[*pooler, *at_load])
    untrained = looks_untrained(evidence)
    trained_spreads = [signs["matrix"]["spread"] for signs in evidence.values() if "matrix" in signs and not signs["looks_untrained"]]
    metrics = {
        "untrained": untrained,
        "modules": evidence,
        "left_out": {"pooler (pooler_provenance)": pooler, "initialised at load (weights_loaded)": at_load},
        "trained_spread": [min(trained_spreads), max(trained_spreads)] if trained_spreads else None,
        "thresholds": {"spread": SPREAD_RANDOM, "edge": EDGE_RANDOM, "min_side": MIN_SIDE, "initializer_range": initializer_range},
    }
    if untrained:
        raise CheckFailure(_message(type(audited).__name__, evidence, untrained, metrics["trained_spread"], initializer_range), metrics=metrics)
    return metrics


def _audited(source: Checkpoint | PreTrainedModel, model: PreTrainedModel | None) -> PreTrainedModel:
    if model is None and isinstance(source, Checkpoint):
        return source.head_model if source.head_model is not None else source.model
    if isinstance(source, Checkpoint) and model is source.model and source.head_model is not None:
        return source.head_model  # the audit passes the bare encoder: judge the heads too
    return model if model is not None else source  # type: ignore[return-value]


def _initialised_at_load(source: Checkpoint | PreTrainedModel, model: PreTrainedModel | None) -> list[str]:
    """Parameters transformers initialised at load: the ledger's count where the files are at hand, else the loading report's."""
    if not isinstance(source, Checkpoint):
        return []
    try:
        return inspect_weights(source, model=model, compare=False, scan=False).missing
    except (NotApplicable, FileNotFoundError):
        return sorted(source.loading_info.missing_keys)


def _message(model_class: str, evidence: dict[str, dict[str, Any]], untrained: list[str], spreads: list[float] | None, initializer_range: float | None) -> str:
    judged = len(evidence)
    named = ", ".join(untrained[:3]) + (f" and {len(untrained) - 3} more" if len(untrained) > 3 else "")
    lines = [f"{len(untrained)} of the {judged} Linear, LayerNorm and Embedding modules of {model_class} besides the pooler look untrained "
             f"(freshly initialised, re-initialised or shuffled): {named}"]  # fmt: skip
    lines += [f"  {name} {_describe(evidence[name], initializer_range)}" for name in untrained[:_SHOWN]]
    if len(untrained) > _SHOWN:
        lines.append(f"  ... and {len(untrained) - _SHOWN} more: {_layers(untrained[_SHOWN:])} (all in the report)")
    if any("matrix" in evidence[name] for name in untrained):
        reference = f"this model's trained matrices {spreads[0]:.1f}–{spreads[1]:.0f}×" if spreads else "no matrix of this model looks trained"
        lines.append(f"energy spread: how unevenly a matrix's rows and columns carry weight, against independent entries (1×; {reference}); "
                     f"a matrix looks random under {SPREAD_RANDOM:g}× with no eigenvalue of WᵀW/n past {EDGE_RANDOM:g}× the "
                     "Marchenko–Pastur edge of a random matrix of its shape")  # fmt: skip
    return "\n".join(lines) + f"\nHint: {_HINT}"


def _describe(signs: dict[str, Any], initializer_range: float | None) -> str:
    """`(Linear 384×384): energy spread 1.02×, largest eigenvalue 0.96× the Marchenko–Pastur edge; bias 0 in all 384 units`."""
    if signs["kind"] == "layer_norm":
        return f"(LayerNorm): weight 1 and bias 0 in all {signs['units']} units, its initialisation"
    rows, columns = signs["shape"]
    parts = []
    matrix = signs.get("matrix")
    if matrix is not None:
        parts.append(f"energy spread {matrix['spread']:.2f}×")
        if matrix["edge"] is not None:
            parts[-1] += f", largest eigenvalue {matrix['edge']:.2f}× the Marchenko–Pastur edge"
    if signs.get("bias_all_zero"):
        parts.append(f"bias 0 in all {rows} units")
    elif signs.get("bias_all_zero") is False:
        parts.append("bias not 0")
    ratio = signs.get("weight_std_ratio")
    if ratio is not None and initializer_range and (matrix is None or abs(ratio - 1) <= 0.05):
        parts.append(f"std {ratio:.2f}× initializer_range ({initializer_range:g})")
    return f"({'Linear' if signs['kind'] == 'linear' else 'Embedding'} {rows}×{columns}): " + "; ".join(parts)


def _layers(names: list[str]) -> str:
    """`encoder.layer.1 (8), encoder.layer.2 (8), ...`: the remaining modules counted per layer."""
    counts: dict[str, int] = {}
    for name in names:
        parts = name.split(".")
        digit = next((i for i, part in enumerate(parts) if part.isdigit()), None)
        key = ".".join(parts[: digit + 1]) if digit is not None else parts[0]
        counts[key] = counts.get(key, 0) + 1
    shown = [f"{key} ({count})" for key, count in list(counts.items())[:6]]
    return ", ".join(shown) + (f", +{len(counts) - 6} more groups" if len(counts) > 6 else "")
