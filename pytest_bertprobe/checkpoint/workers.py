"""pytest-xdist: every test of a checkpoint on one worker, so each checkpoint loads once in the whole run.

xdist's `loadgroup` keeps tests that share an `xdist_group` mark on one worker: each worker appends `@group` to
the node ids it reports, and the controller deals out tests by that suffix. Three things make it hold here:

- the mark is on each test when the item is made (the `bert_checkpoint` parameter carries it, `group_mark`);
- each worker is told that its controller schedules by group (`CheckpointScheduling.pytest_configure_node`):
  a worker parses the command line again, where `-n 2` alone means `--dist no`, and would add no suffix;
- the suffix is really added (`with_group_suffix`): xdist 3.8 writes `item._nodeid`, which pytest 9.2's
  structured node ids no longer read (pytest-dev/pytest-xdist#1386), so every test became a group of its own.

The same handoff gives every worker the controller's `--bert-shard` plan, so no worker prices the zoo again.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

GROUP_PREFIX = "bertprobe-"
LOADGROUP_KEY = "bertprobe_loadgroup"
PLAN_KEY = "bertprobe_shard_plan"
SPREADING_MODES = ("loadscope", "loadfile", "worksteal")  # modes that would spread one checkpoint's tests over workers
_GROUP_UNSAFE = re.compile(r"[^\w.\-/]")  # xdist splits the group off at the last '@' and after the last ']'


def group_name(checkpoint_id: str) -> str:
    """The `xdist_group` of every test of `checkpoint_id`."""
    return GROUP_PREFIX + _GROUP_UNSAFE.sub("_", checkpoint_id)


def group_mark(checkpoint_id: str) -> pytest.MarkDecorator:
    """The mark `pytest_generate_tests` puts on the `bert_checkpoint` parameter: on the item before any hook reads it."""
    return pytest.mark.xdist_group(name=group_name(checkpoint_id))


def without_group(nodeid: str) -> str:
    """A test's node id without the `@group` suffix of loadgroup: reports name tests alike with or without -n."""
    params_end = nodeid.rfind("]")
    suffix = nodeid.find("@", params_end + 1)
    return nodeid[:suffix] if suffix > params_end else nodeid


def with_group_suffix(item: pytest.Item) -> None:
    """Append `@group` to an item's node id as xdist's worker means to, where pytest ignored xdist's write."""
    names = {str(mark.args[0] if mark.args else mark.kwargs.get("name", "default")) for mark in item.iter_markers("xdist_group")}
    if not any(name.startswith(GROUP_PREFIX) for name in names):
        return  # only the audit's own groups: other tests are the user's business
    wanted = f"{without_group(item.nodeid)}@{'_'.join(sorted(names))}"  # xdist's own spelling of several groups
    if item.nodeid == wanted:
        return  # xdist's write took effect (pytest before 9.2)
    if hasattr(item, "_id"):  # pytest 9.2+: the node id is a structured NodeId; parse keeps the string as given
        from _pytest.nodeid import NodeId

        item._id = NodeId.parse(wanted)
    else:
        item._nodeid = wanted


def process_label() -> str:
    """The xdist worker this process is (gw0, gw1, ...), or `main` for a run without workers."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def schedule_by_checkpoint(config: pytest.Config, has_checkpoints: bool) -> None:
    """On the controller: `-n` alone (xdist's `load`) becomes `loadgroup`; a mode that splits a checkpoint is one usage line.

    On a worker: schedule by group when the controller does (`CheckpointScheduling` said so).
    """
    worker_input = getattr(config, "workerinput", None)
    if worker_input is not None:
        if worker_input.get(LOADGROUP_KEY):
            config.option.loadgroup = True  # read by xdist's worker in its pytest_collection_modifyitems
        return
    dist = getattr(config.option, "dist", None)
    if dist == "load":
        config.option.dist = "loadgroup"  # as load for ungrouped tests; keeps each checkpoint on one worker
    elif dist in SPREADING_MODES and has_checkpoints:
        raise pytest.UsageError(
            f"--dist {dist} spreads one checkpoint's tests over several workers, each loading it; "
            "use --dist loadgroup (what bertprobe sets for -n), which keeps each checkpoint on one worker"
        )


def handed_plan(config: pytest.Config) -> dict[str, Any] | None:
    """On a worker: the shard plan its controller made; None on the controller or without a plan."""
    return getattr(config, "workerinput", {}).get(PLAN_KEY)


class CheckpointScheduling:
    """Plugin object: on the controller, tells each worker how tests are scheduled and which shard plan holds;
    on a worker, makes sure each audit test's node id carries its group."""

    def __init__(self, plan: dict[str, Any] | None) -> None:
        self.plan = plan

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """Called by xdist on the controller before each worker starts; `workerinput` travels to the worker."""
        node.workerinput[LOADGROUP_KEY] = node.config.getvalue("dist") == "loadgroup"
        if self.plan is not None:
            node.workerinput[PLAN_KEY] = self.plan

    @pytest.hookimpl(trylast=True)  # after xdist's worker wrote its suffix (or meant to)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        """On a loadgroup worker: every grouped audit test's node id ends in its `@group`."""
        if hasattr(config, "workerinput") and getattr(config.option, "loadgroup", False):
            for item in items:
                with_group_suffix(item)
