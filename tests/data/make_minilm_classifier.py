"""Train a small sequence classifier on top of all-MiniLM-L6-v2: the healthy control of `classifier_behaviour`.

Four topics of the Python reference manual (`pydoc_data.topics`, text that ships with Python): numbers, text,
errors, control flow. The encoder stays frozen; the pooler and the classifier of `BertForSequenceClassification`
are trained on the [CLS] states of the manual's sentences (a few seconds on CPU). Saves the two heads' tensors,
float16, to `minilm-classifier-head.safetensors` (0.3 MB); `tests/behaviour_plants.py` puts them on a copy of MiniLM.
Run from the repository root: `python tests/data/make_minilm_classifier.py`.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
TARGET = HERE / "minilm-classifier-head.safetensors"
LABELS = ("numbers", "text", "errors", "control flow")
TOPICS = {
    "numbers": ("numbers", "integers", "floating", "binary", "bitwise", "shifting", "power", "unary", "numeric-types"),
    "text": ("strings", "string-methods", "formatstrings", "typesseq", "specialattrs"),
    "errors": ("exceptions", "try", "raise", "assert", "bltin-exceptions"),
    "control flow": ("for", "while", "if", "break", "continue", "return", "yield", "compound"),
}  # fmt: skip
EPOCHS = 100


def examples() -> list[tuple[str, int]]:
    """(sentence, label) from the topics' pages: sentences of 5 to 30 words, no code."""
    import pydoc_data.topics

    found = []
    for label, name in enumerate(LABELS):
        for topic in TOPICS[name]:
            text = pydoc_data.topics.topics.get(topic, "")
            for paragraph in re.split(r"\n\s*\n", text):
                for sentence in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", paragraph).strip()):
                    if 5 <= len(sentence.split()) <= 30 and not re.search(r"[=(){}\[\]<>*`]", sentence):
                        found.append((sentence, label))
    found = sorted(set(found))
    random.Random(0).shuffle(found)
    return found


def main() -> None:
    from minilm_base import load_minilm
    from safetensors.torch import save_file
    from transformers import BertForSequenceClassification

    path, tokenizer, model = load_minilm(
        BertForSequenceClassification,
        num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id={name: i for i, name in enumerate(LABELS)},
    )
    data = examples()
    texts, labels = [text for text, _ in data], torch.tensor([label for _, label in data])
    states = []
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            batch = tokenizer(texts[start : start + 64], padding=True, truncation=True, max_length=128, return_tensors="pt")
            states.append(model.bert(**batch).last_hidden_state[:, 0])
    cls = torch.cat(states).clone()
    held_out = len(cls) // 5
    heads = [*model.bert.pooler.parameters(), *model.classifier.parameters()]
    optimizer = torch.optim.AdamW(heads, lr=1e-3, weight_decay=0.01)
    weights = torch.bincount(labels[held_out:], minlength=len(LABELS)).float().reciprocal() * len(labels)

    def logits(x: torch.Tensor) -> torch.Tensor:
        return model.classifier(model.bert.pooler.activation(model.bert.pooler.dense(x)))

    for epoch in range(EPOCHS):
        loss = torch.nn.functional.cross_entropy(logits(cls[held_out:]), labels[held_out:], weight=weights)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if epoch % 50 == 0 or epoch == EPOCHS - 1:
            with torch.no_grad():
                accuracy = (logits(cls[:held_out]).argmax(1) == labels[:held_out]).float().mean()
            print(f"epoch {epoch}: loss {loss.item():.3f}, held-out accuracy {accuracy.item():.2f} ({held_out} sentences)", flush=True)
    state = {name: tensor.detach().half().contiguous() for name, tensor in model.state_dict().items() if name.startswith(("bert.pooler.", "classifier."))}
    save_file(state, TARGET, metadata={"format": "pt", "labels": ",".join(LABELS)})
    print(f"{len(data)} sentences; saved {TARGET} ({TARGET.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
