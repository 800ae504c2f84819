"""pytest-bertprobe: audit BERT-family checkpoints — pooler, [CLS], tokenizer — from pytest.

Helpers load lazily, so importing the package (as pytest does for every run) imports neither
torch nor transformers.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

import pytest

# Before any of these modules is imported, so their plain `assert`s read well in a failure.
pytest.register_assert_rewrite("pytest_bertprobe.audit", "pytest_bertprobe.checks.pooler")

__version__ = "0.1.0"

_EXPORTS: dict[str, tuple[str, ...]] = {
    "pytest_bertprobe.checks.pooler": (
        "assert_pooler_is_dense_tanh_of_cls", "assert_cls_differs_from_pooler", "assert_pooler_not_degenerate",
        "assert_pooler_in_tanh_range",
    ),
    "pytest_bertprobe.checks.provenance": ("PoolerProvenance", "inspect_pooler_provenance", "assert_pooler_trained"),
    "pytest_bertprobe.checks.finiteness": ("assert_outputs_finite",),
    "pytest_bertprobe.checks.weights": ("assert_weights_loaded", "assert_weights_finite", "inspect_weights"),
    "pytest_bertprobe.checks.trained": ("assert_weights_trained",),
    "pytest_bertprobe.checks.vocabulary": ("assert_vocabulary_matches_rows",),
    "pytest_bertprobe.checkpoint.spectrum": ("MatrixStats", "measure_matrix"),
    "pytest_bertprobe.checks.invariances": (
        "assert_hidden_states_consistent", "assert_padding_invariant", "assert_masked_content_invariant",
        "assert_permutation_equivariant",
    ),
    "pytest_bertprobe.checks.consistency": ("assert_deterministic", "assert_eager_matches_sdpa", "assert_save_load_round_trip"),
    "pytest_bertprobe.checks.tokenizer.contract": (
        "assert_special_tokens_in_place", "assert_pads_on_the_right", "assert_input_names_accepted",
        "assert_token_ids_fit_embeddings", "assert_token_types_fit", "assert_max_length_fits", "assert_pad_ids_agree",
    ),
    "pytest_bertprobe.checks.tokenizer.files": ("assert_tokenizer_files_agree",),
    "pytest_bertprobe.checks.tokenizer.special_tokens": ("assert_special_tokens_real",),
    "pytest_bertprobe.checks.tokenizer.coverage": ("assert_language_coverage", "assert_casing_consistent", "LANGUAGES"),
    "pytest_bertprobe.checks.heads.replay": (
        "assert_nsp_head_reads_pooler", "assert_mlm_head_reads_last_hidden_state", "assert_heads_read_their_inputs",
    ),
    "pytest_bertprobe.checks.heads.labels": ("assert_label_map", "LabelMap"),
    "pytest_bertprobe.checks.embedding": ("assert_embedding_contract", "resolve_embedding", "sentence_embedding"),
    "pytest_bertprobe.checks.behaviour.embedding": ("assert_embedding_ranks_paraphrases", "probe_scores"),
    "pytest_bertprobe.checks.behaviour.masked_lm": ("assert_masked_tokens_recovered",),
    "pytest_bertprobe.checks.behaviour.classifier": ("assert_classifier_not_degenerate",),
    "pytest_bertprobe.checks.behaviour.probe_set": ("TRIPLETS", "Triplet", "MASKED_SENTENCES"),
    "pytest_bertprobe.checks.reference": (
        "assert_checkpoints_agree", "assert_tokenizers_agree", "assert_agrees_with_reference", "config_differences",
    ),
    "pytest_bertprobe.checks.snapshot": ("take_snapshot", "write_snapshot", "read_snapshot", "assert_matches_snapshot"),
    "pytest_bertprobe.checkpoint.anatomy": ("PoolerAnatomy", "PoolerKind", "locate_pooler", "describe_pooler"),
    "pytest_bertprobe.compare": ("Tolerance",),
    "pytest_bertprobe.errors": ("CheckFailure", "Gap", "Mismatch", "NoPoolerError", "NotApplicable"),
    "pytest_bertprobe.sentences": ("SEED_SENTENCES", "PROBE_SENTENCES"),
}  # fmt: skip
_LAZY = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    """Import public helpers on first use (PEP 562), so `import pytest_bertprobe` stays light."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pytest_bertprobe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
