"""Distil all-MiniLM-L6-v2 into a CLS-pooled sentence encoder: the healthy control of `embedding_behaviour`'s pooling test.

No CLS-trained sentence encoder is available offline, so this makes one: the last layer's feed-forward block
(`encoder.layer.5.intermediate` / `.output`, 1.2 M of the model's 22.7 M weights) is trained so that the [CLS]
state reproduces the teacher's own mean-pooled embedding (cosine loss), on sentences of `pydoc_data.topics` (text
that ships with Python). The [CLS] state of the last layer depends on that block only through its own row, so the
other tokens' attention inputs are computed once. Saves those tensors, float16, to `cls-minilm-layer5.safetensors`
(about 2.4 MB); `tests/behaviour_plants.py` puts them into a copy of MiniLM and declares CLS pooling.
Run from the repository root: `python tests/data/make_cls_minilm.py` (a minute or two on CPU).
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
TARGET = HERE / "cls-minilm-layer5.safetensors"
PREFIX = "encoder.layer.5."
TRAINED = ("intermediate.dense.weight", "intermediate.dense.bias", "output.dense.weight", "output.dense.bias",
           "output.LayerNorm.weight", "output.LayerNorm.bias")  # fmt: skip
SENTENCES, EPOCHS, BATCH = 4000, 60, 128


def sentences() -> list[str]:
    """Sentences of the reference manual pages `help()` shows, 5 to 30 words, no code."""
    import pydoc_data.topics

    found = []
    for text in pydoc_data.topics.topics.values():
        for paragraph in re.split(r"\n\s*\n", text):
            if paragraph.startswith((" ", "\t")):  # indented: code or grammar
                continue
            for sentence in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", paragraph).strip()):
                if 5 <= len(sentence.split()) <= 30 and not re.search(r"[=(){}\[\]<>*`]", sentence):
                    found.append(sentence)
    found = sorted(set(found))
    random.Random(0).shuffle(found)
    return found[:SENTENCES]


def main() -> None:
    from minilm_base import load_minilm
    from safetensors.torch import save_file
    from transformers import AutoModel

    _, tokenizer, model = load_minilm(AutoModel)
    layer = model.encoder.layer[5]
    texts = sentences()
    started = time.perf_counter()
    inputs, targets = [], []
    captured: list[torch.Tensor] = []
    handle = layer.attention.register_forward_hook(lambda _module, _args, output: captured.append(output[0][:, 0]))
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            batch = tokenizer(texts[start : start + 64], padding=True, truncation=True, max_length=128, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            targets.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
            inputs.append(captured.pop())
    handle.remove()
    attention, target = torch.cat(inputs).clone(), torch.cat(targets).clone()
    print(f"{len(texts)} sentences embedded in {time.perf_counter() - started:.0f} s", flush=True)
    held_out = 400
    parameters = [p for name, p in layer.named_parameters() if name in TRAINED]
    for name, p in layer.named_parameters():
        p.requires_grad_(name in TRAINED)
    optimizer = torch.optim.AdamW(parameters, lr=2e-4, weight_decay=0.0)
    train_x, train_y = attention[held_out:], target[held_out:]

    def cls_state(x: torch.Tensor) -> torch.Tensor:
        return layer.output(layer.intermediate(x), x)  # BertOutput: LayerNorm(dense(h) + x)

    for epoch in range(EPOCHS):
        order = torch.randperm(len(train_x))
        for start in range(0, len(order), BATCH):
            picked = order[start : start + BATCH]
            loss = 1 - torch.nn.functional.cosine_similarity(cls_state(train_x[picked]), train_y[picked]).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        if epoch % 10 == 0 or epoch == EPOCHS - 1:
            with torch.no_grad():
                test = torch.nn.functional.cosine_similarity(cls_state(attention[:held_out]), target[:held_out]).mean()
            print(f"epoch {epoch}: train loss {loss.item():.4f}, held-out cosine to the teacher {test.item():.4f}", flush=True)
    state = {PREFIX + name: p.detach().half().contiguous() for name, p in layer.named_parameters() if name in TRAINED}
    save_file(state, TARGET, metadata={"format": "pt", "teacher": "all-MiniLM-L6-v2 mean pooling"})
    print(f"saved {TARGET} ({TARGET.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
