"""`--bert-budget`: how many generated examples the audit checks get so that a checkpoint fits its time budget.

The cost of an audit is forward passes. Before the first generated check of a checkpoint runs, a few
batches every audit needs anyway (the empty sentence, the seed's, the probe sentences) go through the
model and stay in the memo for the checks that read them later. Their timings, on this machine and this
checkpoint, fit a pass's price: a fixed part (every weight is read once per pass, which dominates short
batches of large models) plus a part per token. The explicit batches and the first batches Hypothesis will
generate (same seed, same batches) are tokenized and priced pass by pass, counting only passes the memo
does not already hold. What the budget leaves after the load (torch's and transformers' imports, once per
process, aside), the save/load round trip and the explicit examples, divided by the price of one generated
example, is the example count of every generated check: one count per checkpoint, so every check still
draws the same batches and shares their passes.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pytest_bertprobe.catalogue import CATALOGUE, BatchShape
from pytest_bertprobe.checkpoint.limits import input_limit
from pytest_bertprobe.forward import cache

MIN_EXAMPLES = 1
MAX_EXAMPLES = 1000
# Per example and generated check, besides its passes: Hypothesis, tokenizing, comparing (measured on MiniLM).
CHECK_SECONDS = 0.008


@dataclass(frozen=True)
class Plan:
    """The example count chosen for a checkpoint, and the measurements and estimates behind it."""

    budget_seconds: float
    max_examples: int
    seconds_per_pass: float
    seconds_per_token: float
    seconds_per_example: float
    fixed_seconds: float
    predicted_seconds: float

    def metrics(self) -> dict[str, Any]:
        """Plain JSON for the report, rounded for reading."""
        return {key: round(value, 6) if isinstance(value, float) else value for key, value in asdict(self).items()}


@dataclass(frozen=True)
class Price:
    """A pass's price: seconds per pass plus seconds per token."""

    per_pass: float
    per_token: float

    def of(self, passes: float, tokens: float) -> float:
        """Seconds for `passes` passes over `tokens` tokens in all."""
        return passes * self.per_pass + tokens * self.per_token


def fit_price(timings: Sequence[tuple[int, float]]) -> Price:
    """Least squares over `(tokens, seconds)` of the passes run so far; the first pays for warm-up and is left out."""
    points = [(tokens, seconds) for tokens, seconds in timings[1:] or timings if tokens > 0]
    if not points:
        raise ValueError("no forward pass measured yet")
    mean_tokens = statistics.fmean(tokens for tokens, _ in points)
    mean_seconds = statistics.fmean(seconds for _, seconds in points)
    spread = sum((tokens - mean_tokens) ** 2 for tokens, _ in points)
    slope = sum((tokens - mean_tokens) * (seconds - mean_seconds) for tokens, seconds in points) / spread if spread else 0.0
    if slope <= 0:  # noise or one size only: a flat price per pass
        return Price(mean_seconds, 0.0)
    intercept = mean_seconds - slope * mean_tokens
    if intercept < 0:  # a price per token only
        return Price(0.0, sum(seconds for _, seconds in points) / sum(tokens for tokens, _ in points))
    return Price(intercept, slope)


def batch_passes(inputs: Any, *, head_model: bool, eager: bool = True, alone: Sequence[int] | None = None) -> tuple[float, float]:
    """Passes and tokens one new batch costs across the generated checks (eager passes weighted by EAGER_COST).

    Shared by every check: one pass; then each catalogue check's own passes (eager_matches_sdpa: one eager
    pass if `eager`; masked_content_invariance: one when a row is padded; permutation_equivariance: one when
    there are two rows or more; head_relation: one of the head model); padding_invariance: the rows alone,
    one pass per length (only the rows in `alone` where given: others ran without padding before).
    """
    rows, width = (int(size) for size in inputs["input_ids"].shape)
    padded = rows * width
    lengths = [int(n) for n in inputs["attention_mask"].sum(dim=1)] if "attention_mask" in inputs else [width] * rows
    shape = BatchShape(rows=rows, padded=sum(lengths) < padded, eager=eager, head_model=head_model)
    full = 1
    for check in CATALOGUE:
        if check.passes is not None:
            full += check.passes(shape)
    runs_alone = any(check.rows_alone for check in CATALOGUE)
    alone_rows = (range(rows) if alone is None else alone) if rows > 1 and runs_alone else ()
    return full + len({lengths[row] for row in alone_rows}), full * padded + sum(lengths[row] for row in alone_rows)


def plan_examples(
    model: Any,
    tokenizer: Any,
    budget: float,
    *,
    load_seconds: float,
    head_model: bool,
    generated_checks: int,
    calibration: Sequence[Sequence[str]],
    explicit: Sequence[Sequence[str]],
    eager_explicit: Sequence[Sequence[str]],
    generated: Sequence[Sequence[str]],
) -> Plan:
    """Run the `calibration` batches (memoized for later checks), price the rest, pick the example count."""
    limit = input_limit(model, tokenizer)
    for sentences in calibration:
        cache.forward(model, cache.encode(tokenizer, sentences, model.device, max_length=limit))
    price = fit_price(cache.pass_timings(model))

    def seconds(batch: Sequence[str], eager: bool = True, alone: Sequence[int] | None = None) -> float:
        inputs = cache.encode(tokenizer, batch, model.device, max_length=limit)
        return price.of(*batch_passes(inputs, head_model=head_model, eager=eager, alone=alone))

    # Every pass is memoized: a batch seen before costs nothing, a sentence run alone before no second time.
    seen_batches = {tuple(batch) for batch in explicit}
    seen_alone = {batch[0] for batch in explicit if len(batch) == 1}
    generated_seconds = []
    for batch in generated:
        alone = [row for row, sentence in enumerate(batch) if sentence not in seen_alone and sentence not in batch[:row]]
        generated_seconds.append(seconds(batch, alone=alone) if tuple(batch) not in seen_batches else 0.0)
        seen_batches.add(tuple(batch))
        seen_alone.update(batch)
    per_check = CHECK_SECONDS * generated_checks
    per_example = statistics.fmean(generated_seconds) + per_check if generated else per_check
    # The load already spent, the save/load round trip's reload priced as another, and its second pass
    # with determinism's; then every explicit example (eager_matches_sdpa runs only `eager_explicit` of them).
    probe_tokens = cache.encode(tokenizer, calibration[-1], model.device, max_length=limit)["input_ids"].numel()
    fixed = 2 * load_seconds + price.of(2, 2 * probe_tokens) + sum(seconds(batch, batch in eager_explicit) + per_check for batch in explicit)
    affordable = (budget - fixed) / per_example
    count = max(MIN_EXAMPLES, min(MAX_EXAMPLES, math.floor(affordable) if affordable > 0 else 0))
    return Plan(budget, count, price.per_pass, price.per_token, per_example, fixed, fixed + per_example * count)
