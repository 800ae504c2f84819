"""What each head of the BERT family reads: the catalogue `heads.py` checks by replay.

Pretraining heads (NSP/SOP on `pooler_output`, MLM and ELECTRA's discriminator on `last_hidden_state`)
go by output field. Fine-tuned heads go by the class name's suffix, and what a sequence classifier
reads depends on the architecture (measured on transformers 5.24 and 4.57, see docs/DESIGN.md §6):

- BERT style (bert, albert, mobilebert, ernie, megatron-bert, fnet, ...): dropout -> classifier on `pooler_output`;
- RoBERTa style (roberta, xlm-roberta, camembert, electra, deberta(-v2), mpnet, big_bird, ...): their own
  head over `last_hidden_state` (it takes the [CLS] row itself; DeBERTa's ContextPooler does the same);
- DistilBERT: `pre_classifier` -> ReLU -> classifier on `last_hidden_state[:, 0]`;
- ModernBERT: its head over `last_hidden_state[:, 0]`, or over the masked mean with `classifier_pooling="mean"`.

Token classification and question answering heads read `last_hidden_state` in every architecture. Multiple-choice
heads (run with one choice per sentence) read `pooler_output` in BERT- *and* RoBERTa-style models, their own head
over `last_hidden_state` in ELECTRA and DeBERTa, and `last_hidden_state[:, 0]` in DistilBERT, YOSO and ModernBERT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from pytest_bertprobe.forward.cache import Forward

POOLER_OUTPUT = "pooler_output"
LAST_HIDDEN_STATE = "last_hidden_state"
CLS_STATE = "last_hidden_state[:, 0]"
MEAN_STATE = "mean of last_hidden_state over the attention mask"

SEQUENCE_CLASSIFICATION = "SequenceClassification"
TOKEN_CLASSIFICATION = "TokenClassification"
QUESTION_ANSWERING = "QuestionAnswering"
MULTIPLE_CHOICE = "MultipleChoice"
CLASSIFICATION_TASKS = (SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION)
FINETUNED_TASKS = (*CLASSIFICATION_TASKS, QUESTION_ANSWERING, MULTIPLE_CHOICE)

# class-name suffix -> task whose logits a plain `logits` field (or QA's start/end logits) carries
TASK_BY_SUFFIX: dict[str, str] = {
    "ForSequenceClassification": SEQUENCE_CLASSIFICATION,
    "ForTokenClassification": TOKEN_CLASSIFICATION,
    "ForQuestionAnswering": QUESTION_ANSWERING,
    "ForMultipleChoice": MULTIPLE_CHOICE,  # run with one choice per sentence: the base sees the shared pass's batch
}

# Read from transformers' code (5.24 and 4.57); the types with tiny checkpoints are also measured by replay.
_POOLER_CLASSIFIERS = frozenset({"bert", "albert", "mobilebert", "ernie", "megatron-bert", "roc_bert", "squeezebert", "fnet"})
_OWN_HEAD_CLASSIFIERS = frozenset({
    "roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "roberta-prelayernorm", "data2vec-text", "xmod",
    "electra", "deberta", "deberta-v2", "mpnet", "big_bird", "roformer", "convbert", "yoso", "nystromformer", "mra",
    "esm",
})  # fmt: skip
# Multiple choice differs: RoBERTa-style models score choices from pooler_output there, YOSO like DistilBERT.
_POOLER_MULTIPLE_CHOICE = frozenset({"bert", "albert", "mobilebert", "ernie", "roberta", "xlm-roberta", "mpnet", "big_bird", "fnet"})
_OWN_HEAD_MULTIPLE_CHOICE = frozenset({"electra", "deberta", "deberta-v2"})  # sequence_summary / ContextPooler on the head
# task -> (model types reading pooler_output, reading last_hidden_state through their own head, reading the [CLS] state)
_PROMISES: dict[str, tuple[frozenset[str], frozenset[str], frozenset[str]]] = {
    SEQUENCE_CLASSIFICATION: (_POOLER_CLASSIFIERS, _OWN_HEAD_CLASSIFIERS, frozenset({"distilbert"})),
    MULTIPLE_CHOICE: (_POOLER_MULTIPLE_CHOICE, _OWN_HEAD_MULTIPLE_CHOICE, frozenset({"distilbert", "yoso"})),
}


def promised_input(model_type: str, task: str, config: Any) -> str | None:
    """The base output `task`'s head of a `model_type` model reads by design; None when this catalogue has no entry."""
    if task not in _PROMISES:
        return LAST_HIDDEN_STATE  # token classification, QA
    if model_type == "modernbert":
        return MEAN_STATE if getattr(config, "classifier_pooling", "cls") == "mean" else CLS_STATE
    pooler, own_head, cls_state = _PROMISES[task]
    if model_type in pooler:
        return POOLER_OUTPUT
    if model_type in own_head:
        return LAST_HIDDEN_STATE
    return CLS_STATE if model_type in cls_state else None


def describe(task: str, labels: int | None, received: str) -> str:
    """How reports name a head: `SequenceClassification(27 labels) ← pooler_output`."""
    count = f"({labels} label{'s' if labels != 1 else ''})" if labels is not None and task in CLASSIFICATION_TASKS else ""
    return f"{task}{count} ← {received}"


def source(outputs: Forward, reads: str) -> torch.Tensor | None:
    """The base output named `reads`, from one shared forward pass (None when the base model has no pooler)."""
    if reads == POOLER_OUTPUT:
        return outputs.pooler_output
    if reads == CLS_STATE:
        return outputs.last_hidden_state[:, 0]
    if reads == MEAN_STATE:
        return _masked_mean(outputs)
    return outputs.last_hidden_state


def _masked_mean(outputs: Forward) -> torch.Tensor:
    """ModernBERT's `classifier_pooling="mean"`, computed in its own order of operations (so equal bit for bit)."""
    import torch

    states = outputs.last_hidden_state
    mask = outputs.inputs.get("attention_mask")
    if mask is None:
        mask = torch.ones(states.shape[:2], device=states.device, dtype=torch.bool)
    mask = mask.to(states.device)
    return (states * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(dim=1, keepdim=True)


def identify(tensor: Any, outputs: Forward) -> str | None:
    """Name `tensor` among the base model's outputs (exact values), or None."""
    import torch

    if not isinstance(tensor, torch.Tensor):
        return None
    candidates: dict[str, torch.Tensor | None] = {
        POOLER_OUTPUT: outputs.pooler_output,
        LAST_HIDDEN_STATE: outputs.last_hidden_state,
        f"{CLS_STATE} (the [CLS] state)": outputs.last_hidden_state[:, 0],
    }
    last = len(outputs.hidden_states) - 1
    for index, hidden in enumerate(outputs.hidden_states):
        label = "the embeddings" if index == 0 else f"layer {index} of {last}"
        candidates[f"hidden_states[{index}] ({label})"] = hidden
        candidates[f"hidden_states[{index}][:, 0] ([CLS] of {label})"] = hidden[:, 0]
    for label, candidate in candidates.items():
        if candidate is not None and candidate.shape == tensor.shape and torch.equal(candidate.to(tensor.device), tensor):
            return label
    if tensor.dim() == 2 and tensor.shape[0] == outputs.last_hidden_state.shape[0]:
        mean = _masked_mean(outputs)
        if mean.shape == tensor.shape and torch.equal(mean.to(tensor.device), tensor):
            return MEAN_STATE
    return None


def short_name(label: str) -> str:
    """`last_hidden_state[:, 0] (the [CLS] state)` -> `last_hidden_state[:, 0]`: the name a report shows."""
    return label.split(" (")[0]
