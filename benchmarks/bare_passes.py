"""The bare side of the overhead benchmark: load the checkpoint, replay recorded forward passes, exit.

`python benchmarks/bare_passes.py CHECKPOINT RECORD` loads the model as the audit does (the class in
`config.architectures`, float32, safetensors, eval mode) and runs every recorded pass in a plain loop
under `torch.inference_mode()`, switching the attention implementation where the audit did.
"""

from __future__ import annotations

import sys
import time

import torch
import transformers


def main(checkpoint: str, record: str) -> None:
    """Load, replay, and print how long each part took."""
    started = time.perf_counter()
    config = transformers.AutoConfig.from_pretrained(checkpoint)
    names = [name for name in config.architectures or () if hasattr(transformers, name)]
    architecture = getattr(transformers, names[0]) if names else transformers.AutoModel
    full = architecture.from_pretrained(checkpoint, config=config, dtype=torch.float32, use_safetensors=True).eval()
    models = {type(full).__name__: full, type(full.base_model).__name__: full.base_model}
    loaded = time.perf_counter()
    calls = torch.load(record, weights_only=True)
    with torch.inference_mode():
        for call in calls:
            model = models[call["model"]]
            if model.config._attn_implementation != call["attn"]:
                model.set_attn_implementation(call["attn"])
            model(*call["args"], **call["kwargs"])
    done = time.perf_counter()
    print(f"load {loaded - started:.2f} s, {len(calls)} passes {done - loaded:.2f} s")


if __name__ == "__main__":
    main(*sys.argv[1:3])
