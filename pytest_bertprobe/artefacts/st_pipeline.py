"""The sentence-transformers pipeline as the declared embedding: what `SentenceTransformer(path).encode` returns.

With the library installed and a `modules.json` beside the weights, the real library loads the checkpoint with
all its modules (Transformer, Pooling, Dense, Normalize, ...); the audit checks that every listed module
loaded, that `max_seq_length` fits the position table and the tokenizer, that a Normalize module gives unit
vectors, that query and document prompts give different embeddings, and that the plugin's own computation
(pooled from `last_hidden_state`) agrees with the library's. Custom code is never run (`trust_remote_code=False`).
"""

from __future__ import annotations

import importlib.util
import weakref
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_bertprobe import compare
from pytest_bertprobe.checkpoint.limits import usable_positions
from pytest_bertprobe.checkpoint.loading import quiet_progress_bars
from pytest_bertprobe.checks.embedding import modules_file, read_json
from pytest_bertprobe.errors import CheckFailure, NotApplicable
from pytest_bertprobe.tolerances import lowest_precision, model_dtype, tolerance_for

if TYPE_CHECKING:
    import torch

INSTALL_HINT = "pip install pytest-bertprobe[sentence-transformers]"
_BUILT_IN = "sentence_transformers."
_pipelines: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()  # checkpoint model -> its pipeline


def library_version() -> str | None:
    """The installed sentence-transformers version, or None."""
    if importlib.util.find_spec("sentence_transformers") is None:
        return None
    return metadata.version("sentence-transformers")


def listed_modules(checkpoint_path: Path | None) -> list[dict[str, Any]] | None:
    """The entries of `modules.json` beside the weights (None without one)."""
    file = modules_file(checkpoint_path) if checkpoint_path is not None else None
    if file is None:
        return None
    modules = read_json(file, "sentence-transformers' module list")
    return modules if isinstance(modules, list) else None


def normalizes(checkpoint_path: Path | None) -> bool:
    """Whether `modules.json` lists a Normalize module (unit-length sentence embeddings)."""
    modules = listed_modules(checkpoint_path) or []
    return any(str(module.get("type", "")).rsplit(".", 1)[-1] == "Normalize" for module in modules if isinstance(module, dict))


def load_pipeline(model: Any, folder: Path, device: Any) -> Any:
    """`SentenceTransformer(folder)` on `device`, loaded once per checkpoint; a module that does not load fails by name."""
    __tracebackhide__ = True
    if model in _pipelines:
        return _pipelines[model]
    modules = listed_modules(folder) or []
    custom = [str(m.get("type")) for m in modules if not str(m.get("type", "")).startswith(_BUILT_IN)]
    if custom:
        raise NotApplicable(
            f"modules.json lists modules that are custom code ({', '.join(custom)}); they were not imported, "
            "so the sentence-transformers pipeline is not audited"
        )
    from sentence_transformers import SentenceTransformer

    root = modules_file(folder)
    assert root is not None
    try:
        with quiet_progress_bars():
            pipeline = SentenceTransformer(str(root.parent), device=str(device), local_files_only=True, trust_remote_code=False)
    except Exception as error:  # noqa: BLE001 - whatever the library raises is the finding
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckFailure(
            f"sentence-transformers {library_version()} could not load the pipeline {root} lists "
            f"({', '.join(_names(modules))}): {type(error).__name__}: {text}\n"
            "Hint: users calling SentenceTransformer(path) get this error; fix the module's folder or config"
        ) from None
    _pipelines[model] = pipeline
    return pipeline


def _names(modules: Sequence[dict[str, Any]]) -> list[str]:
    return [f"{m.get('path') or '.'}: {str(m.get('type', '?')).rsplit('.', 1)[-1]}" for m in modules]


def _assert_every_module_loaded(pipeline: Any, modules: Sequence[dict[str, Any]]) -> list[str]:
    __tracebackhide__ = True
    loaded = [type(module).__name__ for module in pipeline]
    listed = [str(m.get("type", "?")).rsplit(".", 1)[-1] for m in modules]
    if loaded != listed:
        raise CheckFailure(
            f"sentence-transformers loaded modules {loaded}, but modules.json lists {listed}\n"
            "Hint: a module was skipped or replaced while loading; check its folder and its type in modules.json"
        )
    return loaded


def _assert_max_seq_length_fits(pipeline: Any, model: Any, tokenizer: Any) -> dict[str, Any]:
    __tracebackhide__ = True
    from pytest_bertprobe.checkpoint.limits import UNSET_MAX_LENGTH

    length, usable = pipeline.max_seq_length, usable_positions(model)
    declared = getattr(tokenizer, "model_max_length", None)
    declared = None if declared is None or declared >= UNSET_MAX_LENGTH else int(declared)
    metrics = {"max_seq_length": length, "usable_positions": usable, "model_max_length": declared}
    too_long = []
    if length and usable and length > usable:
        too_long.append(f"the model's {usable} usable positions")
    if length and declared and length > declared:
        too_long.append(f"the tokenizer's model_max_length {declared}")
    if too_long:
        raise CheckFailure(
            f"sentence-transformers max_seq_length {length} exceeds {' and '.join(too_long)}.\n"
            f"Inputs longer than {min(n for n in (usable, declared) if n)} tokens are not truncated in time: "
            "past the position table they raise IndexError (on CUDA, a device-side assert).\n"
            f"Hint: set \"max_seq_length\": {min(n for n in (usable, declared) if n)} in sentence_bert_config.json",
            metrics=metrics,
        )
    return metrics


def _pooled_before_dense(pipeline: Any, sentences: Sequence[str]) -> torch.Tensor:
    """The pipeline's output up to and including its Pooling module (Dense and later modules left out)."""
    import torch

    features = pipeline.tokenize(list(sentences))
    features = {name: value.to(pipeline.device) if isinstance(value, torch.Tensor) else value for name, value in features.items()}
    with torch.inference_mode():
        for module in pipeline:
            features = module(features)
            if type(module).__name__ == "Pooling":
                break
    return features["sentence_embedding"]


def assert_pipeline_contract(
    pipeline: Any, model: Any, tokenizer: Any, modules: Sequence[dict[str, Any]], pooled: torch.Tensor, sentences: Sequence[str],
    *, random_at_load: Sequence[str] = (),
) -> dict[str, Any]:
    """The library's embedding of `sentences` against the plugin's (`pooled`, then normalized where declared); its settings sound.

    Tolerances follow the dtype each side computed in (the library loads a checkpoint in its stored dtype).
    `random_at_load`: weights the file lacks, which the plugin's load and the library's each initialised at
    random; where they are given, embeddings that differ are that cause's (weights_loaded), and the check skips.
    """
    __tracebackhide__ = True
    import torch

    loaded = _assert_every_module_loaded(pipeline, modules)
    metrics: dict[str, Any] = {"computed_by": f"sentence-transformers {library_version()}", "modules": loaded,
                               **_assert_max_seq_length_fits(pipeline, model, tokenizer)}  # fmt: skip
    declared = pipeline.encode(list(sentences), convert_to_tensor=True, show_progress_bar=False).detach().float().cpu()
    after_pooling = [name for name in loaded[loaded.index("Pooling") + 1 :] if name != "Normalize"] if "Pooling" in loaded else loaded
    compared = declared if not after_pooling else _pooled_before_dense(pipeline, sentences).detach().float().cpu()
    ours = pooled.detach().float().cpu()
    if not after_pooling and "Normalize" in loaded:
        ours = torch.nn.functional.normalize(ours, dim=-1)
    dtype = lowest_precision(model_dtype(model), model_dtype(pipeline))
    try:
        gap = compare.assert_close(
            ours, compared, tolerance_for("embedding_contract", dtype),
            claim=f"the plugin's sentence embedding == sentence-transformers' {'Pooling output' if after_pooling else 'encode()'}",
            sentences=sentences,
            hint="the library computes another embedding than the declared config says: it loaded other weights "
            "(another model class, dropped pooler) or another pooling; compare its modules with modules.json",
        )  # fmt: skip
    except CheckFailure:
        if not random_at_load:
            raise
        raise NotApplicable(
            f"sentence-transformers' embedding differs from the plugin's because the file lacks {len(random_at_load)} weights "
            f"({', '.join(sorted(random_at_load)[:3])}, ...) that each load initialised at random: weights_loaded reports them"
        ) from None
    metrics["compared"] = f"pooling output (before {', '.join(after_pooling)})" if after_pooling else "encode()"
    metrics["library_gap"] = gap.metrics()  # apart from the padding gap the plugin's own checks report
    if "Normalize" in loaded:
        norms = declared.norm(dim=-1)
        compare.assert_close(  # normalized in the dtype the library computed in
            norms, torch.ones_like(norms), tolerance_for("embedding_contract", model_dtype(pipeline)),
            claim="a Normalize module gives unit-length sentence embeddings", sentences=sentences,
            hint="vectors leave the pipeline unnormalized: a module after Normalize rescales them",
        )  # fmt: skip
        metrics["norm_max_abs"] = float((norms - 1).abs().max())
    metrics.update(_prompts(pipeline, sentences))
    return metrics


def _prompts(pipeline: Any, sentences: Sequence[str]) -> dict[str, Any]:
    """Prompts from config_sentence_transformers.json; with a query and a document prompt, their embeddings must differ."""
    __tracebackhide__ = True
    prompts = {name: text for name, text in (getattr(pipeline, "prompts", None) or {}).items() if text}
    found: dict[str, Any] = {"prompts": prompts, "default_prompt_name": getattr(pipeline, "default_prompt_name", None)}
    document = next((name for name in ("document", "passage", "corpus") if name in prompts), None)
    if "query" in prompts and document is not None and prompts["query"] != prompts[document]:
        query = pipeline.encode(list(sentences), prompt_name="query", convert_to_tensor=True, show_progress_bar=False)
        passage = pipeline.encode(list(sentences), prompt_name=document, convert_to_tensor=True, show_progress_bar=False)
        gap = compare.assert_apart(
            query.float().cpu(), passage.float().cpu(), tolerance_for("pooler_not_degenerate", "float32").atol,
            claim=f"query and {document} embeddings (prompts {prompts['query']!r} and {prompts[document]!r}) differ",
            sentences=sentences, hint="the prompts do not reach the model: check config_sentence_transformers.json",
        )  # fmt: skip
        found["query_vs_document_max_abs"] = gap.max_abs
    return found


def declared_pipeline_metrics(
    requested: str, checkpoint: Any, kind: str, inputs: Any, sentences: Sequence[str]
) -> dict[str, Any]:
    """Under `--bert-embedding=auto` with a modules.json: the library's pipeline checked against the plugin's embedding.

    Otherwise, or without the library, says who computed the declared embedding (the plugin, from the config).
    """
    __tracebackhide__ = True
    from pytest_bertprobe.checks.embedding import sentence_embedding
    from pytest_bertprobe.forward import cache

    folder = checkpoint.source.local_path
    modules = listed_modules(folder) if requested == "auto" else None
    if modules is None:
        return {"computed_by": "the plugin"}
    version = library_version()
    if version is None:
        return {"computed_by": f"the plugin, from the config files (sentence-transformers not installed: {INSTALL_HINT})"}
    try:
        pipeline = load_pipeline(checkpoint.model, folder, checkpoint.device)
    except NotApplicable as reason:
        return {"computed_by": f"the plugin, from the config files ({reason})"}
    pooled = sentence_embedding(kind, cache.forward(checkpoint.model, inputs), inputs.get("attention_mask"))
    random_at_load = sorted(checkpoint.loading_info.missing_keys)
    return assert_pipeline_contract(pipeline, checkpoint.model, checkpoint.tokenizer, modules, pooled, sentences, random_at_load=random_at_load)
