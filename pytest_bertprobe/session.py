"""Per-run state kept on the pytest config: the checkpoints asked for, and what happened to them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_bertprobe.checkpoint.shard import ShardPlan
from pytest_bertprobe.checkpoint.source import Source
from pytest_bertprobe.options import Settings

NO_MODEL_REASON = "no checkpoint to audit: pass --bert-model=PATH_OR_HUB_ID or set bert_models in your ini"

@dataclass
class CheckResult:
    """One audit check's outcome on one checkpoint, with the metrics that back it."""

    nodeid: str
    check: str
    outcome: str
    metrics: dict[str, Any] = field(default_factory=dict)
    text: str = ""  # a failure's whole message, for the HTML report (metrics keep its first lines)


@dataclass
class ModelRecord:
    """One checkpoint's life in this run: loads, time, forward passes, pooler anatomy, check results."""

    id: str
    source: Source
    model_type: str = ""
    model_class: str = ""  # the class audited (the bare encoder)
    head_class: str = ""  # the saved architecture with heads, when it has them
    device: str = ""  # where it ran (`--bert-device=auto` resolved)
    architecture_note: str | None = None  # why the class loaded is not the one config.architectures names
    untrained_modules: list[str] = field(default_factory=list)  # weights_trained's: modules besides the pooler that look untrained
    loads: int = 0  # in every process: the sum over `processes`
    load_seconds: float = 0.0
    seconds: float = 0.0  # every phase of its tests, loads included (`audit_seconds` less the imports)
    import_seconds: float = 0.0  # torch's and transformers' imports, paid by the first load in a process
    processes: dict[str, dict[str, Any]] = field(default_factory=dict)  # xdist worker (or `main`) -> pid, loads, tests
    forward_passes: int = 0
    head: str = ""  # what head_relation found, e.g. "SequenceClassification(27 labels) ← pooler_output"
    pooler_kind: str = ""
    pooler_activation: str | None = None
    pooler_verdict: str | None = None
    pooler_evidence: dict[str, Any] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)
    tests: dict[str, int] = field(default_factory=dict)  # the user's own tests on this checkpoint: outcome -> count
    overrides: list[str] = field(default_factory=list)  # e.g. "bert_model is overridden at conftest.py:7: the checks read MyEncoder"
    budget: dict[str, Any] = field(default_factory=dict)  # `--bert-budget`'s plan: example count and its grounds

    @property
    def loaded_class(self) -> str:
        """The class loaded from the checkpoint: the head model's when it has heads, else the encoder's."""
        return self.head_class or self.model_class

    @property
    def audit_seconds(self) -> float:
        """What auditing it took, its loads included, the process' one-time imports not: what `--bert-shard-durations` prices."""
        return max(self.seconds - self.import_seconds, 0.0)

    @property
    def outcome(self) -> str:
        """failed if any check failed or errored, else passed (or skipped when nothing ran)."""
        outcomes = {check.outcome for check in self.checks}
        if outcomes & {"failed", "error"}:
            return "failed"
        return "passed" if "passed" in outcomes else "skipped"

    def verdicts(self) -> dict[str, str]:
        """One outcome per check name: error > failed > passed > skipped across its tests."""
        rank = {"error": 3, "failed": 2, "passed": 1, "skipped": 0}
        merged: dict[str, str] = {}
        for check in self.checks:
            if rank[check.outcome] >= rank.get(merged.get(check.check, "skipped"), 0):
                merged[check.check] = check.outcome
        return merged


@dataclass
class ProbeSession:
    """Everything the hooks and fixtures share for one pytest run."""

    settings: Settings
    sources: list[Source]
    ids: list[str]
    records: dict[str, ModelRecord] = field(default_factory=dict)
    reference: Source | None = None  # `--bert-reference`: the original every checkpoint must agree with
    no_model_skips: int = 0  # tests that skipped because no checkpoint was given
    written: list[tuple[str, str]] = field(default_factory=list)  # (what, path) of each report file written
    shard: ShardPlan | None = None  # `--bert-shard`: this run's part of the zoo, and the whole plan

    def record(self, checkpoint_id: str) -> ModelRecord:
        """The record for `checkpoint_id`, created on first use; `records` stays in the order of `ids`."""
        if checkpoint_id not in self.records:
            source = self.sources[self.ids.index(checkpoint_id)]
            self.records[checkpoint_id] = ModelRecord(checkpoint_id, source)
            # In `--bert-model` order, whichever xdist worker reported first: the reports list checkpoints alike.
            self.records = dict(sorted(self.records.items(), key=lambda item: self.ids.index(item[0])))
        return self.records[checkpoint_id]

    def id_of(self, source: Source) -> str:
        """The test id of a `--bert-model` source."""
        return self.ids[self.sources.index(source)]


SESSION_KEY = pytest.StashKey[ProbeSession]()


def probe_session(config: pytest.Config) -> ProbeSession:
    """The run's `ProbeSession` (set up in `pytest_configure`)."""
    return config.stash[SESSION_KEY]
