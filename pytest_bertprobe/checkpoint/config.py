"""What a config says about the network: the settings that shape it, compared between two checkpoints.

Read by the conversion audit (`reference_agreement`) and the golden snapshot, which both name the settings that differ.
"""

from __future__ import annotations

import json
from typing import Any

# Config keys that say how a model was saved or is called, not what it computes.
_CONFIG_NOISE = {
    "transformers_version", "_name_or_path", "dtype", "torch_dtype", "architectures", "auto_map", "id2label",
    "label2id", "use_cache", "output_attentions", "output_hidden_states", "return_dict", "problem_type",
    "tokenizer_class", "finetuning_task", "task_specific_params", "gradient_checkpointing", "torchscript",
}  # fmt: skip


def config_values(config: Any) -> dict[str, Any]:
    """The settings that shape the network, as plain JSON values (no file names, dtypes or versions)."""
    values = {
        key: value
        for key, value in config.to_dict().items()
        if key not in _CONFIG_NOISE and not key.startswith("_") and "dropout" not in key  # dropout is off in eval
    }
    return dict(json.loads(json.dumps(values, sort_keys=True, default=str)))


def differing_settings(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """The keys both `config_values` dicts have and set differently, sorted."""
    return [key for key in sorted(ours.keys() & theirs.keys()) if ours[key] != theirs[key]]
