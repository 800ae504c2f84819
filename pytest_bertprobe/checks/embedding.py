"""The sentence embedding a checkpoint's consumers use (`--bert-embedding`), resolved and checked.

`auto` reads sentence-transformers' files beside the weights: `modules.json` names the Pooling module's
folder (usually `1_Pooling`), whose `config.json` sets one `pooling_mode_*` flag. Without `modules.json`
(or for a hub id, which has no folder here) `auto` assumes `cls`, as bge and plain BERT consumers do.

What the audit does with a sentence-transformers config it cannot use:
- unreadable or inconsistent (invalid JSON, no Pooling folder, no pooling mode set at all):
  `EmbeddingConfigError`, and the audit FAILS: sentence-transformers itself would fail or guess.
- valid but a pooling this audit does not compute (max, mean_sqrt_len, weightedmean, lasttoken, several
  modes at once, or no Pooling module): `UnsupportedPoolingError`, and the audit SKIPS, saying so;
  `--bert-embedding=cls|mean|pooler` chooses one explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_bertprobe import compare
from pytest_bertprobe.checkpoint import json_file
from pytest_bertprobe.checkpoint.anatomy import locate_pooler
from pytest_bertprobe.errors import CheckFailure, EmbeddingConfigError, UnsupportedPoolingError
from pytest_bertprobe.forward import cache
from pytest_bertprobe.forward.views import assert_finite, passes_alone, sentence_embedding
from pytest_bertprobe.options import EMBEDDING_KINDS
from pytest_bertprobe.tolerances import dtype_name, tolerance_for

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

_MODES = {  # sentence-transformers Pooling config flag -> the pooling it selects
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


@dataclass(frozen=True)
class EmbeddingSpec:
    """Which sentence embedding (cls, pooler or mean) and where that choice came from."""

    kind: str
    source: str

    @property
    def declared(self) -> bool:
        """Chosen by the checkpoint's files or the user, not assumed for want of them."""
        return not self.source.startswith("assumed")


def resolve_embedding(kind: str, checkpoint_path: str | os.PathLike[str] | None) -> EmbeddingSpec:
    """Turn `--bert-embedding` into an `EmbeddingSpec`; `auto` reads sentence-transformers' pooling config."""
    if kind in EMBEDDING_KINDS:
        return EmbeddingSpec(kind, f"--bert-embedding={kind}")
    if kind != "auto":
        raise ValueError(f"unknown sentence embedding {kind!r}: use auto, {', '.join(EMBEDDING_KINDS)}")
    if checkpoint_path is None:
        return EmbeddingSpec("cls", "assumed: a hub id has no local folder to read sentence-transformers' modules.json from")
    modules = modules_file(Path(checkpoint_path))
    if modules is None:
        return EmbeddingSpec("cls", "assumed: no sentence-transformers modules.json beside the weights")
    config_file = modules.parent / _pooling_folder(modules) / "config.json"
    return _pooling_spec(config_file, read_json(config_file, "the Pooling module's config"))


def modules_file(folder: Path) -> Path | None:
    """`modules.json` in the folder, or in its parent when that lists the folder as a module (`0_Transformer`)."""
    if (folder / "modules.json").is_file():
        return folder / "modules.json"
    parent = folder.parent / "modules.json"
    if parent.is_file():
        modules = read_json(parent, "sentence-transformers' module list")
        if isinstance(modules, list) and any(isinstance(m, dict) and m.get("path") == folder.name for m in modules):
            return parent
    return None


def read_json(file: Path, what: str) -> Any:
    """A sentence-transformers JSON file, or `EmbeddingConfigError` saying what is wrong with it."""
    try:
        return json_file.read_json(file)
    except json_file.UnreadableJson as error:
        if error.missing:
            raise EmbeddingConfigError(f"{file}: missing; {what} must be there for --bert-embedding=auto") from None
        raise EmbeddingConfigError(f"{file}: {what} {error}") from None


def _pooling_folder(modules_file: Path) -> str:
    modules = read_json(modules_file, "sentence-transformers' module list")
    if not isinstance(modules, list) or not all(isinstance(m, dict) and isinstance(m.get("type"), str) for m in modules):
        raise EmbeddingConfigError(
            f"{modules_file}: expected a JSON list of modules, each with a 'type' and a 'path'; "
            "sentence-transformers cannot load this checkpoint"
        )
    pooling = [m for m in modules if m["type"].rsplit(".", 1)[-1] == "Pooling"]
    if not pooling:
        types = ", ".join(m["type"] for m in modules) or "none"
        raise UnsupportedPoolingError(
            f"{modules_file} lists no Pooling module (modules: {types}); the audit checks cls, mean or pooler "
            "embeddings: choose one with --bert-embedding"
        )
    if not isinstance(pooling[0].get("path"), str):
        raise EmbeddingConfigError(f"{modules_file}: the Pooling module has no 'path' naming its folder")
    return str(pooling[0]["path"])


def _pooling_spec(config_file: Path, config: Any) -> EmbeddingSpec:
    if not isinstance(config, dict):
        raise EmbeddingConfigError(f"{config_file}: expected a JSON object with pooling_mode_* flags")
    if isinstance(config.get("pooling_mode"), str):  # the constructor's string form, when saved that way
        modes = [str(config["pooling_mode"]).removesuffix("_token").removesuffix("_tokens")]
        where = f"pooling_mode: {config['pooling_mode']!r}"
    else:
        flags = [flag for flag in _MODES if config.get(flag) is True]
        modes = [_MODES[flag] for flag in flags]
        where = ", ".join(f"{flag}: true" for flag in flags)
    source = f"sentence-transformers {config_file.parent.name}/config.json ({where})"
    if not modes:
        raise EmbeddingConfigError(
            f"{config_file}: no pooling mode is set (none of {', '.join(_MODES)} is true); "
            "sentence-transformers would produce an empty embedding"
        )
    if len(modes) > 1 or modes[0] not in ("cls", "mean"):
        raise UnsupportedPoolingError(
            f"{source} selects {' + '.join(modes)} pooling; the audit checks cls, mean or pooler embeddings: "
            "choose one with --bert-embedding"
        )
    return EmbeddingSpec(modes[0], source)


def assert_embedding_contract(
    model: PreTrainedModel,
    inputs: Mapping[str, Any],
    kind: str | EmbeddingSpec,
    *,
    atol: float | None = None,
    rtol: float | None = None,
    min_spread: float | None = None,
    sentences: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Assert the declared sentence embedding is computable, finite, not degenerate and (mean) padding-invariant.

    `inputs` should be distinct sentences; `atol`/`rtol` override the padding tolerance, `min_spread` the
    least spread of distinct sentences' embeddings. Returns the metrics for a report.
    """
    __tracebackhide__ = True
    spec = kind if isinstance(kind, EmbeddingSpec) else EmbeddingSpec(kind, "the caller")
    if spec.kind not in EMBEDDING_KINDS:
        raise ValueError(f"unknown sentence embedding {spec.kind!r}: use one of {', '.join(EMBEDDING_KINDS)} (resolve 'auto' first)")
    outputs = cache.forward(model, inputs)
    dtype = dtype_name(outputs.last_hidden_state.dtype)
    if spec.kind == "pooler" and outputs.pooler_output is None:
        raise CheckFailure(
            f"pooler sentence embedding cannot be computed: {type(model).__name__} returned pooler_output=None "
            f"({locate_pooler(model).reason or 'no pooler output'}).\nDeclared by: {spec.source}\n"
            "Hint: consumers that read pooler_output get None or crash; use --bert-embedding=cls or mean"
        )
    mask = cache.attention_mask(inputs, getattr(model.config, "pad_token_id", None))
    embedding = sentence_embedding(spec.kind, outputs, mask)
    assert_finite(
        embedding, tolerance_for("embedding_contract", dtype),
        claim=f"the {spec.kind} sentence embedding is finite (declared by {spec.source})", sentences=sentences,
        hint="NaN or inf reach the sentence embedding: look for a NaN weight or an overflow in half precision",
    )  # fmt: skip
    metrics: dict[str, Any] = {"embedding": spec.kind, "source": spec.source, "dimension": int(embedding.shape[-1])}
    # The catalogue's bound for "constant" (#4) per dtype; embedding_contract's bf16 atol (1e-2) would call
    # tiny random models' [CLS] (spread ~4e-3) degenerate.
    least = tolerance_for("pooler_not_degenerate", dtype).atol if min_spread is None else min_spread
    spread = _assert_spread(spec.kind, embedding, inputs["input_ids"], least, sentences)
    if spread is not None:
        metrics["spread"] = spread.max_abs
    if spec.kind == "mean":
        gap = _assert_mean_ignores_padding(model, inputs, mask, embedding, tolerance_for("padding_invariance", dtype, atol=atol, rtol=rtol), sentences)
        if gap is not None:
            metrics.update(padded_rows=gap.shape[0], max_abs=gap.max_abs, atol=gap.atol, rtol=gap.rtol)
    return metrics


def _assert_spread(
    kind: str, embedding: torch.Tensor, input_ids: torch.Tensor, least: float, sentences: Sequence[str] | None
) -> compare.Gap | None:
    """Distinct sentences (by token ids) must not share one embedding; None when fewer than two are distinct."""
    __tracebackhide__ = True
    first_of: dict[tuple[int, ...], int] = {}
    for index, row in enumerate(input_ids.tolist()):
        first_of.setdefault(tuple(row), index)
    distinct = list(first_of.values())
    if len(distinct) < 2:
        return None
    rows = embedding[distinct]
    return compare.assert_apart(
        rows, rows.mean(0, keepdim=True).expand_as(rows), least,
        claim=f"{kind} sentence embeddings of {len(distinct)} distinct sentences differ",
        sentences=[sentences[i] for i in distinct] if sentences else None,
        hint=f"every sentence gets the same {kind} embedding, so similarity search sees one point; "
        "check the weights that produce it (an untrained or zeroed layer), or an attention that returns zeros, "
        "so each token sees only itself (transformers' MRA without its CUDA kernel)",
    )  # fmt: skip


def _assert_mean_ignores_padding(
    model: PreTrainedModel, inputs: Mapping[str, Any], mask: torch.Tensor, embedding: torch.Tensor,
    tolerance: compare.Tolerance, sentences: Sequence[str] | None,
) -> compare.Gap | None:
    """Each padded row's mean embedding equals that sentence's alone; None when no row is padded."""
    __tracebackhide__ = True
    import torch

    padded = [row for row in range(mask.shape[0]) if int(mask[row].sum()) < mask.shape[1]]
    if not padded:
        return None
    alone = [sentence_embedding("mean", outputs, None) for outputs in passes_alone(model, inputs, mask, padded)]
    return compare.assert_close(
        torch.cat(alone), embedding[padded], tolerance,
        claim="mean embedding of a sentence alone == its row in the padded batch",
        sentences=[sentences[row] for row in padded] if sentences else None,
        hint="padding leaks into the mean: pad tokens are attended to or counted; check the attention "
        "mask reaches every layer and the tokenizer pads on the right",
    )  # fmt: skip
