"""`--bert-shard=K/N`: which checkpoints of the zoo this run audits. Whole checkpoints, balanced by cost, one plan for every job.

The plan depends on the zoo alone, never on the order of `--bert-model` or on the job that computes it: each
checkpoint is priced (the parameters its safetensors headers describe plus a fixed cost per checkpoint, or its
duration in an earlier report), then dealt largest first to the shard with the least cost so far (ties: by id,
then the lowest shard). Each shard's JSON report records the whole plan, so `bertprobe-report merge` can tell a
missing shard from a smaller zoo, and shards that planned differently from each other.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_bertprobe.checkpoint.source import Source, checkpoint_ids, distinct_sources, locate_source, resolve_source
from pytest_bertprobe.checkpoint.weight_files import SAFETENSORS, SAFETENSORS_INDEX, stored_parameters
from pytest_bertprobe.options import Settings

# What a checkpoint costs besides its size (collection, the tokenizer checks, Hypothesis' own work), in parameters:
# a tiny checkpoint's audit takes about as long as one with this many more parameters (benchmarks/sweep.py measures it).
FIXED_COST_PARAMETERS = 16_000_000
BY_PARAMETERS = "parameters"
BY_DURATIONS = "durations"


@dataclass(frozen=True)
class ShardPlan:
    """Shard `index` of `total`, and the whole zoo's plan: every checkpoint id -> its shard, and what it was priced."""

    index: int
    total: int
    origin: str  # what asked for it: --bert-shard, ini bert_shard, CI_NODE_INDEX/CI_NODE_TOTAL
    basis: str  # BY_PARAMETERS or BY_DURATIONS
    assignment: dict[str, int]
    costs: dict[str, float]

    @property
    def label(self) -> str:
        """`K/N`."""
        return f"{self.index}/{self.total}"

    @property
    def ids(self) -> list[str]:
        """The checkpoints of this shard, by id."""
        return sorted(checkpoint_id for checkpoint_id, shard in self.assignment.items() if shard == self.index)

    def share(self) -> float:
        """This shard's part of the zoo's whole cost (0 to 1)."""
        total = sum(self.costs.values())
        return sum(self.costs[checkpoint_id] for checkpoint_id in self.ids) / total if total else 0.0

    def describe(self) -> str:
        """One line for the header: which shard, who asked for it, how many checkpoints, on what basis."""
        asked = "" if self.origin == "--bert-shard" else f" (from {self.origin}" + (
            ", as --bert-shard is not given)" if self.origin.startswith("CI_") else ")"
        )
        basis = "recorded durations" if self.basis == BY_DURATIONS else "stored parameters"
        return (
            f"shard {self.label}{asked}: {len(self.ids)} of {len(self.assignment)} checkpoints, "
            f"{self.share():.0%} of the zoo's cost by {basis}"
        )

    def as_json(self) -> dict[str, Any]:
        """Plain JSON, for the report and for xdist workers."""
        return {"index": self.index, "total": self.total, "origin": self.origin, "basis": self.basis,
                "assignment": dict(self.assignment), "costs": dict(self.costs)}  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ShardPlan:
        """The plan `as_json` wrote."""
        return cls(int(data["index"]), int(data["total"]), str(data["origin"]), str(data["basis"]),
                   {str(key): int(value) for key, value in data["assignment"].items()},
                   {str(key): float(value) for key, value in data["costs"].items()})  # fmt: skip


def assign(costs: Mapping[str, float], total: int) -> dict[str, int]:
    """Every id -> a shard in 1..`total`: largest cost first to the cheapest shard so far; ties by id, then shard."""
    loads = [0.0] * total
    shards: dict[str, int] = {}
    for checkpoint_id in sorted(costs, key=lambda name: (-costs[name], name)):
        cheapest = min(range(total), key=lambda shard: (loads[shard], shard))
        loads[cheapest] += costs[checkpoint_id]
        shards[checkpoint_id] = cheapest + 1
    return shards


def select(settings: Settings, handed: Mapping[str, Any] | None = None) -> tuple[list[Source], list[str], ShardPlan]:
    """This shard's sources (resolved and deduplicated) and their zoo ids, and the plan (`handed` by xdist's controller)."""
    assert settings.shard is not None
    located = distinct_sources([locate_source(spec, settings.revision) for spec in settings.models])
    ids = checkpoint_ids(located)  # over the whole zoo: every shard names a checkpoint alike
    plan = ShardPlan.from_json(handed) if handed is not None else plan_shard(located, ids, settings)
    mine = [(source, checkpoint_id) for source, checkpoint_id in zip(located, ids) if plan.assignment[checkpoint_id] == plan.index]
    return [resolve_source(source.spec, settings.revision) for source, _ in mine], [checkpoint_id for _, checkpoint_id in mine], plan


def plan_shard(sources: Sequence[Source], ids: Sequence[str], settings: Settings) -> ShardPlan:
    """Price every checkpoint of the zoo and deal them over the shards."""
    assert settings.shard is not None
    parameters = {checkpoint_id: _parameters(source) for source, checkpoint_id in zip(sources, ids)}
    known = [count for count in parameters.values() if count is not None]
    typical = statistics.median(known) if known else 0  # a checkpoint whose size cannot be read costs what most do
    sizes = {checkpoint_id: (typical if count is None else count) + FIXED_COST_PARAMETERS for checkpoint_id, count in parameters.items()}
    costs, basis = {checkpoint_id: float(size) for checkpoint_id, size in sizes.items()}, BY_PARAMETERS
    if settings.shard_durations:
        costs, basis = _priced_by_durations(Path(settings.shard_durations), sources, ids, sizes), BY_DURATIONS
    index, total = settings.shard
    return ShardPlan(index, total, settings.shard_origin, basis, assign(costs, total), costs)


def _parameters(source: Source) -> int | None:
    """The checkpoint's stored parameter count: from its folder, the hub cache, or the hub's headers; None when unknown."""
    if source.local_path is not None:
        return stored_parameters(source.local_path)
    from huggingface_hub import constants, try_to_load_from_cache

    for name in (SAFETENSORS, SAFETENSORS_INDEX):
        cached = try_to_load_from_cache(str(source.hub_id), name, revision=source.revision)
        if isinstance(cached, str):
            count = stored_parameters(Path(cached).parent)
            if count is not None:
                return count
    if constants.HF_HUB_OFFLINE:
        return None
    from huggingface_hub import get_safetensors_metadata

    try:  # the headers only: a few kilobytes per checkpoint
        return sum(get_safetensors_metadata(str(source.hub_id), revision=source.revision).parameter_count.values())
    except Exception:  # noqa: BLE001 - a price, not a verdict: the shard that audits it reports what is wrong
        return None


def _priced_by_durations(path: Path, sources: Sequence[Source], ids: Sequence[str], sizes: Mapping[str, float]) -> dict[str, float]:
    """Seconds per checkpoint from an earlier report (matched by id, else by path); the rest priced by size at the median rate."""
    recorded = recorded_durations(path)
    seconds = {
        checkpoint_id: recorded.get(checkpoint_id, recorded.get(source.location))
        for source, checkpoint_id in zip(sources, ids)
    }
    rates = [value / sizes[checkpoint_id] for checkpoint_id, value in seconds.items() if value is not None]
    if not rates:
        raise ValueError(f"--bert-shard-durations={path}: records none of these checkpoints (matched by id and by path)")
    rate = statistics.median(rates)
    return {checkpoint_id: value if value is not None else sizes[checkpoint_id] * rate for checkpoint_id, value in seconds.items()}


def recorded_durations(path: Path) -> dict[str, float]:
    """`{id or path: seconds}` from a `--bert-report-json` (or a merged one); one line when it is not such a report."""
    named = f"--bert-shard-durations={path}"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ValueError(f"{named}: not a readable JSON report ({type(error).__name__}); give a --bert-report-json file") from None
    models = report.get("models") if isinstance(report, dict) else None
    if not isinstance(models, list):
        raise ValueError(f"{named}: not a bertprobe JSON report (no models list); give a --bert-report-json file")
    found: dict[str, float] = {}
    for model in models:
        seconds = model.get("seconds") if isinstance(model, dict) else None
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds > 0:
            found.update({str(key): float(seconds) for key in (model.get("id"), model.get("path")) if key})
    if not found:
        raise ValueError(f"{named}: records no durations (models[].seconds); write it with this version's --bert-report-json")
    return found
