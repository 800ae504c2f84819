"""Stage 3, the forward cache: one pass per distinct batch, shared by every check, and what checks read off it.

`cache` runs (or recalls) passes with hidden states and the pooler's real input; `failure` explains a pass that
raises and names the check that owns the finding; `views` is what checks read off a pass (real tokens, sentence
embeddings, each row alone). `pytest_bertprobe.forward` hands on the cache's public names.
"""

from pytest_bertprobe.forward.cache import (
    Forward,
    accepted_inputs,
    attention_mask,
    encode,
    forward,
    forward_passes,
    fresh_forward,
    pass_timings,
    passes_run,
    ran_at_width,
    recall,
    recall_alone,
    require_eval_mode,
    row_of,
    shared,
    wait_passively,
)

__all__ = [
    "Forward", "accepted_inputs", "attention_mask", "encode", "forward", "forward_passes", "fresh_forward", "pass_timings",
    "passes_run", "ran_at_width", "recall", "recall_alone", "require_eval_mode", "row_of", "shared", "wait_passively",
]  # fmt: skip
