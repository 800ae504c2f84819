"""The check catalogue: every audit check's name, helper (its module), claim, tolerance row, explicit batches and passes per batch.

The tolerance table, the audit's explicit batches, `--bert-budget`'s pricing and the README's checks table
all read this one list (docs/DESIGN.md §2); a test proves the README and the audit tests' markers match it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from pytest_bertprobe.compare import Tolerance
from pytest_bertprobe.sentences import ADVERSARIAL_SENTENCES, LONG_SENTENCE, PROBE_SENTENCES

F32, BF16, F16 = "float32", "bfloat16", "float16"

Batches = tuple[tuple[str, ...], ...]
# Each probe sentence alone, first: they pass on a healthy checkpoint whatever the batching, so a fault
# that needs padding is left to the generated batches, which Hypothesis shrinks to the minimal one.
EXPLICIT_BATCHES: Batches = tuple((sentence,) for sentence in PROBE_SENTENCES + ADVERSARIAL_SENTENCES)
# Attention kernels differ by shape, not by text: the generated batches, the shortest input and one cut at the
# model's maximum length (where sdpa may take another backend) cover them, at 2 eager passes instead of 19.
KERNEL_BATCHES: Batches = (("",), (LONG_SENTENCE,))
# Eager attention materializes the attention matrix: slower than the fused kernel the other passes use.
EAGER_COST = 1.3


class BatchShape(NamedTuple):
    """What a generated batch's cost depends on."""

    rows: int
    padded: bool  # some row is shorter than the batch
    eager: bool  # the model has an eager kernel besides its default one
    head_model: bool  # the checkpoint has heads


@dataclass(frozen=True)
class Check:
    """One audit check: what it claims, how it is judged, which batches it runs and what they cost."""

    name: str
    helper: str  # the public helper that implements it, `module:function` under pytest_bertprobe
    claim: str
    tolerances: Mapping[str, Tolerance] = field(default_factory=dict)  # per dtype; empty: exact or no tensors
    tolerance_row: str = ""  # another check's row this one is judged by
    explicit: Batches = EXPLICIT_BATCHES  # run before the generated batches (generated checks only)
    passes: Callable[[BatchShape], float] | None = None  # full-width passes of its own per new generated batch
    rows_alone: bool = False  # also runs each row of a new generated batch alone
    training: bool = False  # a verdict on whether the weights are trained: `--bert-allow-untrained` reports it instead

    @property
    def module(self) -> str:
        """The module that implements the check, e.g. `pytest_bertprobe.checks.pooler`."""
        return f"pytest_bertprobe.{self.helper.partition(':')[0]}"

    @property
    def row(self) -> str:
        """The tolerance row this check reads."""
        return self.tolerance_row or self.name


def _per_dtype(f32: tuple[float, float], bf16: tuple[float, float], f16: tuple[float, float]) -> dict[str, Tolerance]:
    return {F32: Tolerance(*f32), BF16: Tolerance(*bf16), F16: Tolerance(*f16)}


_EXACT = _per_dtype((0.0, 0.0), (0.0, 0.0), (0.0, 0.0))
# Relations computed from the model's own modules: bit-exact on CPU, room for a reordered sum only.
_OWN_MODULES = _per_dtype((1e-6, 1e-5), (1e-2, 1.6e-2), (1e-3, 1e-3))
# Half precision rounds every op; its bounds follow torch.testing's defaults per dtype, widened for
# comparisons that go through a whole encoder (padding, batching, attention kernels).
_BATCHING = _per_dtype((1e-5, 1e-5), (5e-2, 5e-2), (1e-2, 1e-2))
# A whole encoder at the lower precision of two sides. float32 is optimum's export bound for BERT; bf16/fp16
# leave room for rounding every weight and op through the layers (a bf16 copy of all-MiniLM-L6-v2 computed
# in bf16 needs 0.033 at rtol 0.05). ONNX under onnxruntime: other kernels (a dynamo export of MiniLM: 4e-5).
_WHOLE_ENCODER = _per_dtype((1e-4, 1e-4), (1e-1, 5e-2), (2e-2, 1e-2))

CATALOGUE: tuple[Check, ...] = (
    Check("pooler_relation", "checks.pooler:assert_pooler_is_dense_tanh_of_cls",
          "pooler_output == act(dense(last_hidden_state[:, 0]))",
          _per_dtype((1e-6, 1e-5), (1e-5, 1.6e-2), (1e-5, 1e-3))),
    Check("cls_differs_from_pooler", "checks.pooler:assert_cls_differs_from_pooler",
          "the [CLS] state is not the pooler output", _per_dtype((1e-3, 0.0), (1e-2, 0.0), (1e-2, 0.0))),
    Check("weights_loaded", "checks.weights:assert_weights_loaded",
          "every parameter and persistent buffer comes from the file, renames explained"),
    Check("weights_finite", "checks.weights:assert_weights_finite", "every tensor in the file is free of NaN/inf"),
    Check("weights_trained", "checks.trained:assert_weights_trained",
          "no module besides the pooler looks freshly initialised, re-initialised or shuffled", training=True),
    Check("vocabulary_rows", "checks.vocabulary:assert_vocabulary_matches_rows",
          "each token id reads the embedding row it was trained with", training=True),
    Check("pooler_provenance", "checks.provenance:assert_pooler_trained",
          "pooler verdict trained / untrained / missing / absent / disabled, with evidence"),
    Check("pooler_not_degenerate", "checks.pooler:assert_pooler_not_degenerate",
          "distinct sentences give distinct pooler outputs", _per_dtype((1e-6, 0.0), (1e-5, 0.0), (1e-5, 0.0))),
    Check("pooler_range", "checks.pooler:assert_pooler_in_tanh_range", "a tanh pooler stays in [-1, 1]"),
    Check("outputs_finite", "checks.finiteness:assert_outputs_finite", "every hidden state and pooler_output is finite"),
    Check("hidden_states", "checks.invariances:assert_hidden_states_consistent",
          "num_hidden_layers + 1 states, embeddings first, the last last_hidden_state", _OWN_MODULES),
    Check("eager_matches_sdpa", "checks.consistency:assert_eager_matches_sdpa",
          "the sdpa kernel agrees with eager attention", _per_dtype((1e-5, 1e-4), (5e-2, 5e-2), (1e-2, 1e-2)),
          explicit=KERNEL_BATCHES, passes=lambda shape: EAGER_COST * shape.eager),
    # A sentence alone has no padding, nothing under the mask and no neighbour: explicit batches would compare a pass with itself.
    Check("padding_invariance", "checks.invariances:assert_padding_invariant",
          "each sentence alone equals its row of a right-padded batch",
          _per_dtype((1e-4, 1e-4), (5e-2, 5e-2), (1e-2, 1e-2)), explicit=(), rows_alone=True),
    Check("masked_content_invariance", "checks.invariances:assert_masked_content_invariant",
          "ids under attention_mask == 0 change nothing", _BATCHING,
          explicit=(), passes=lambda shape: shape.padded),
    Check("permutation_equivariance", "checks.invariances:assert_permutation_equivariant",
          "shuffling the batch shuffles the outputs", _BATCHING,
          explicit=(), passes=lambda shape: shape.rows > 1),
    Check("determinism", "checks.consistency:assert_deterministic",
          "no module in training mode; two passes identical", _EXACT),
    Check("save_load_round_trip", "checks.consistency:assert_save_load_round_trip",
          "save_pretrained then from_pretrained gives identical outputs", _EXACT),
    Check("tokenizer_special_tokens", "checks.tokenizer.contract:assert_special_tokens_in_place",
          "[CLS]/BOS first and [SEP]/EOS last (a model reading its summary last: [SEP] [CLS] last), for sentences, pairs and truncated text"),
    Check("tokenizer_padding_side", "checks.tokenizer.contract:assert_pads_on_the_right",
          "absolute-position models pad on the right; a model reading its summary token last, on the left"),
    Check("tokenizer_input_names", "checks.tokenizer.contract:assert_input_names_accepted",
          "every model_input_names entry is an argument of forward"),
    Check("tokenizer_ids_in_embeddings", "checks.tokenizer.contract:assert_token_ids_fit_embeddings",
          "every token id has an embedding row"),
    Check("tokenizer_token_types", "checks.tokenizer.contract:assert_token_types_fit",
          "pair token_type_ids < type_vocab_size"),
    Check("tokenizer_max_length", "checks.tokenizer.contract:assert_max_length_fits",
          "model_max_length fits the position table, and a pass at that length works"),
    Check("tokenizer_pad_id", "checks.tokenizer.contract:assert_pad_ids_agree",
          "the tokenizer's pad id is config.pad_token_id"),
    Check("tokenizer_special_ids", "checks.tokenizer.special_tokens:assert_special_tokens_real",
          "every declared special token has its own id, the one the files give it"),
    Check("tokenizer_files_agree", "checks.tokenizer.files:assert_tokenizer_files_agree",
          "every vocabulary file gives every token the same id"),
    Check("token_coverage", "checks.tokenizer.coverage:assert_language_coverage",
          "[UNK] rate per script; fails past 10% for --bert-languages"),
    Check("tokenizer_casing", "checks.tokenizer.coverage:assert_casing_consistent",
          "cased text does not flood [UNK]; lower-casing does not hide a cased vocabulary"),
    Check("head_relation", "checks.heads.replay:assert_heads_read_their_inputs",
          "each head's logits == its own modules replayed on the base output its architecture promises",
          _OWN_MODULES, passes=lambda shape: shape.head_model),
    Check("label_map", "checks.heads.labels:assert_label_map", "num_labels, id2label, label2id and the classifier agree"),
    Check("embedding_contract", "checks.embedding:assert_embedding_contract",
          "the declared sentence embedding is computable, finite, not constant, padding-invariant",
          _OWN_MODULES),
    Check("embedding_behaviour", "checks.behaviour.embedding:assert_embedding_ranks_paraphrases",
          "the declared sentence embedding ranks paraphrases above look-alike distractors, as well as any other pooling",
          training=True),
    Check("masked_lm_behaviour", "checks.behaviour.masked_lm:assert_masked_tokens_recovered",
          "a masked-LM head recovers masked tokens of natural sentences far better than chance", training=True),
    Check("classifier_behaviour", "checks.behaviour.classifier:assert_classifier_not_degenerate",
          "a sequence classifier's logits move with the input, and no bias fixes its prediction", training=True),
    Check("reference_agreement", "checks.reference:assert_agrees_with_reference",
          "a conversion agrees with its original: ids, every layer, the pooler, the config",
          _WHOLE_ENCODER),
    Check("onnx_agreement", "artefacts.onnx_export:assert_export_matches",
          "an ONNX export agrees with its checkpoint under onnxruntime", _WHOLE_ENCODER),
    Check("golden_snapshot", "checks.snapshot:assert_matches_snapshot",
          "ids, embeddings, config and weights unchanged since the snapshot",
          tolerance_row="reference_agreement"),
)

BY_NAME: dict[str, Check] = {check.name: check for check in CATALOGUE}
NAMES: tuple[str, ...] = tuple(BY_NAME)
