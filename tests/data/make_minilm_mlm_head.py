"""Train a masked-LM head on the frozen all-MiniLM-L6-v2 encoder: the healthy control of `masked_lm_behaviour`.

No masked-LM checkpoint is available offline, and a masked-LM trained from scratch on this machine's CPU in minutes
(`make_small_mlm.py`) barely reads context. So the head of `BertForMaskedLM` (its transform and output bias; the
decoder is tied to MiniLM's word embeddings) is trained on the encoder's states at [MASK]ed tokens of sentences from
`pydoc_data.topics` and Debian's `fortunes` (`apt-get install fortunes`). The encoder's states are computed once, then
only the head trains. Saves the head's tensors, float16, to `minilm-mlm-head.safetensors` (0.4 MB);
`tests/behaviour_plants.py` puts them on a copy of MiniLM. Run from the repository root:
`python tests/data/make_minilm_mlm_head.py` (a few minutes on CPU).
"""

from __future__ import annotations

import math
import random
import re
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
TARGET = HERE / "minilm-mlm-head.safetensors"
FORTUNES = Path("/usr/share/games/fortunes")
FORTUNE_FILES = ("fortunes", "cookie", "education", "food", "humorists", "kids", "literature", "love", "miscellaneous",
                 "people", "pets", "platitudes", "science", "sports", "wisdom", "work")  # fmt: skip
SENTENCES, EPOCHS = 6000, 25


def sentences() -> list[str]:
    """Sentences of 5 to 30 words from the manual and the fortunes, shuffled (seed 0)."""
    import pydoc_data.topics

    texts = list(pydoc_data.topics.topics.values())
    for name in FORTUNE_FILES:
        texts += (FORTUNES / name).read_text(encoding="utf-8", errors="replace").split("\n%\n")
    found = set()
    for text in texts:
        for sentence in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", text).strip()):
            if 5 <= len(sentence.split()) <= 30 and not re.search(r"[=(){}\[\]<>*`|]", sentence):
                found.add(sentence)
    ordered = sorted(found)
    random.Random(0).shuffle(ordered)
    return ordered[:SENTENCES]


def main() -> None:
    from minilm_base import load_minilm
    from safetensors.torch import save_file
    from transformers import BertForMaskedLM

    path, tokenizer, model = load_minilm(BertForMaskedLM)
    texts = sentences()
    held_out = 320  # sentences whose masked tokens are only evaluated
    started = time.perf_counter()
    states, labels = [], []
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            batch = tokenizer(texts[start : start + 64], padding=True, truncation=True, max_length=64, return_tensors="pt")
            ids = batch["input_ids"]
            special = (ids == tokenizer.cls_token_id) | (ids == tokenizer.sep_token_id) | (batch["attention_mask"] == 0)
            chosen = (torch.rand(ids.shape) < 0.15) & ~special
            masked = ids.masked_fill(chosen, tokenizer.mask_token_id)
            hidden = model.bert(input_ids=masked, attention_mask=batch["attention_mask"]).last_hidden_state
            states.append(hidden[chosen].clone())
            labels.append(ids[chosen].clone())
            if start + 64 == held_out:
                split = sum(len(label) for label in labels)
    x, y = torch.cat(states), torch.cat(labels)
    print(f"{len(texts)} sentences, {len(y)} masked tokens, encoded in {time.perf_counter() - started:.0f} s", flush=True)
    head = model.cls.predictions
    trained = [*head.transform.parameters(), head.bias]
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in trained:
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(trained, lr=2e-3, weight_decay=0.01)
    for epoch in range(EPOCHS):
        order = split + torch.randperm(len(y) - split)
        for start in range(0, len(order), 512):
            picked = order[start : start + 512]
            loss = torch.nn.functional.cross_entropy(head(x[picked]), y[picked])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        with torch.no_grad():
            test = torch.nn.functional.cross_entropy(head(x[:split]), y[:split])
        print(f"epoch {epoch}: train loss {loss.item():.3f}, held-out perplexity {math.exp(test.item()):.1f} ({time.perf_counter() - started:.0f} s)", flush=True)
    state = {name: tensor.detach().half().contiguous() for name, tensor in model.state_dict().items()
             if name.startswith("cls.predictions.") and not name.endswith("decoder.weight")}  # fmt: skip
    save_file(state, TARGET, metadata={"format": "pt", "encoder": "all-MiniLM-L6-v2, frozen"})
    print(f"saved {TARGET} ({TARGET.stat().st_size / 1e6:.2f} MB): {sorted(state)}")


if __name__ == "__main__":
    main()
