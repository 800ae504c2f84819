"""`--bert-budget`: how many generated examples the audit checks get so that a checkpoint fits its time budget.

The cost of an audit is forward passes. Before the first generated check of a checkpoint runs, the probe
and seed batches go through the model (the memo keeps them for the checks that read them later): their
seconds per token, on this machine and this checkpoint, price every other pass. The explicit batches and
the first batches Hypothesis will generate (same seed, same batches) are tokenized to count the tokens
each costs. What the budget leaves after the load, the save/load round trip, the explicit examples and
the fixed checks, divided by the cost of one generated example, is the example count of every generated
check: one count per checkpoint, so every check still draws the same batches and shares their passes.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pytest_bertprobe import probes
from pytest_bertprobe.tokenizer_contract import usable_positions

MIN_EXAMPLES = 1
MAX_EXAMPLES = 1000
# Everything besides forward passes (tokenizing, comparing, Hypothesis, pytest); the overhead benchmark bounds it by 1.3.
OVERHEAD = 1.3
# Eager attention materializes the attention matrix: slower than the fused kernel the other passes use.
EAGER_COST = 1.5


@dataclass(frozen=True)
class Plan:
    """The example count chosen for a checkpoint, and the measurements and estimates behind it."""

    budget_seconds: float
    max_examples: int
    seconds_per_token: float
    tokens_per_example: float
    fixed_seconds: float
    predicted_seconds: float

    def metrics(self) -> dict[str, Any]:
        """Plain JSON for the report, rounded for reading."""
        return {key: round(value, 9) if isinstance(value, float) else value for key, value in asdict(self).items()}


def batch_cost(inputs: Any, *, head_model: bool) -> float:
    """Token-passes one batch costs across the generated checks, in fused-attention tokens.

    Shared by every check: one pass; eager_matches_sdpa: one eager pass; masked_content_invariance: one
    pass when a row is padded; permutation_equivariance: one when there are two rows or more; padding_invariance:
    each row alone; head_relation: one pass of the head model.
    """
    mask = inputs["attention_mask"] if "attention_mask" in inputs else None
    rows, width = (int(size) for size in inputs["input_ids"].shape)
    padded = rows * width
    real = int(mask.sum()) if mask is not None else padded
    passes = 1 + EAGER_COST + (1 if real < padded else 0) + (1 if rows > 1 else 0) + (1 if head_model else 0)
    return passes * padded + (real if rows > 1 else 0)


def seconds_per_token(model: Any) -> float:
    """Seconds per token of the passes run so far; the first pass pays for warm-up, so it is left out when others exist."""
    timings = [(tokens, seconds) for tokens, seconds in probes.pass_timings(model) if tokens > 0]
    if not timings:
        raise ValueError("no forward pass measured yet")
    return statistics.fmean(seconds / tokens for tokens, seconds in (timings[1:] or timings))


def plan_examples(
    model: Any,
    tokenizer: Any,
    budget: float,
    *,
    load_seconds: float,
    head_model: bool,
    calibration: Sequence[Sequence[str]],
    explicit: Sequence[Sequence[str]],
    generated: Sequence[Sequence[str]],
) -> Plan:
    """Run the `calibration` batches (they are memoized for later checks), price the rest, pick the example count."""
    for sentences in calibration:
        probes.run(model, probes.encode(tokenizer, sentences, model.device))
    rate = seconds_per_token(model)

    def tokens(batches: Sequence[Sequence[str]]) -> list[float]:
        return [batch_cost(probes.encode(tokenizer, batch, model.device), head_model=head_model) for batch in batches]

    per_example = statistics.fmean(tokens(generated)) if generated else 1.0
    # Fixed checks: a second pass (determinism) and a reloaded pass (save/load) of the probe batch, one pass at
    # the maximum length, and the round trip's save and load, priced as a second load.
    probe_tokens = probes.encode(tokenizer, calibration[0], model.device)["input_ids"].numel()
    max_length = min(n for n in (getattr(tokenizer, "model_max_length", None), usable_positions(model), 4096) if n)
    fixed_tokens = sum(tokens(explicit)) + 2 * probe_tokens + max_length
    fixed = 2 * load_seconds + OVERHEAD * rate * fixed_tokens
    affordable = (budget - fixed) / (OVERHEAD * rate * per_example)
    count = max(MIN_EXAMPLES, min(MAX_EXAMPLES, math.floor(affordable) if affordable > 0 else 0))
    predicted = fixed + OVERHEAD * rate * per_example * count
    return Plan(budget, count, rate, per_example, fixed, predicted)
