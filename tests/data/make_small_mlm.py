"""Train the small masked-LM the behavioural tests use (`tests/data/small-mlm`), on text that ships with packages.

A WordPiece vocabulary of 4096 pieces and a 3-layer BERT (hidden 128) trained by masked-token prediction on
`pydoc_data.topics` (the reference manual pages `help()` shows), the builtins' docstrings and Debian's `fortunes`
(quotations and jokes in everyday English: `apt-get install fortunes`), on CPU in about 20 minutes. Saved in
float16 (about 2 MB). Run from the repository root: `python tests/data/make_small_mlm.py`; it prints the held-out
pseudo-perplexity and the one on the probe set's English masked-LM sentences.
"""

from __future__ import annotations

import builtins
import random
import re
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
TARGET = HERE / "small-mlm"
FORTUNES = Path("/usr/share/games/fortunes")
FORTUNE_FILES = ("fortunes", "cookie", "definitions", "education", "food", "humorists", "kids", "law", "literature", "love",
                 "medicine", "miscellaneous", "people", "pets", "platitudes", "politics", "science", "sports", "wisdom", "work")
VOCABULARY, LENGTH, STEPS, BATCH = 4096, 128, 1600, 24


def corpus() -> list[str]:
    """Paragraphs of the reference manual and the builtins' docstrings, whitespace normalised."""
    import pydoc_data.topics

    texts = [*pydoc_data.topics.topics.values()]
    texts += [obj.__doc__ for obj in vars(builtins).values() if isinstance(getattr(obj, "__doc__", None), str)]
    for name in FORTUNE_FILES:
        texts += (FORTUNES / name).read_text(encoding="utf-8", errors="replace").split("\n%\n")
    paragraphs = [re.sub(r"\s+", " ", part).strip() for text in texts for part in re.split(r"\n\s*\n", text)]
    return [paragraph for paragraph in paragraphs if len(paragraph.split()) >= 4]


def main() -> None:
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    torch.manual_seed(0)
    random.seed(0)
    torch.set_num_threads(1)
    paragraphs = corpus()
    random.shuffle(paragraphs)
    held_out, training = paragraphs[:40], paragraphs[40:]
    TARGET.mkdir(exist_ok=True)
    wordpiece = BertWordPieceTokenizer(lowercase=True, strip_accents=True)
    wordpiece.train_from_iterator(training, vocab_size=VOCABULARY, min_frequency=2)
    wordpiece.save_model(str(TARGET))
    tokenizer = BertTokenizerFast(str(TARGET / "vocab.txt"), do_lower_case=True, model_max_length=LENGTH)
    ids = [i for paragraph in training for i in tokenizer(paragraph, add_special_tokens=False)["input_ids"] + [tokenizer.sep_token_id]]
    print(f"{len(paragraphs)} paragraphs, {len(ids)} tokens, vocabulary {tokenizer.vocab_size}", flush=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=128, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=512, max_position_embeddings=LENGTH, type_vocab_size=2,
                        pad_token_id=tokenizer.pad_token_id, architectures=["BertForMaskedLM"])  # fmt: skip
    model = BertForMaskedLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=STEPS, pct_start=0.1)
    data = torch.tensor(ids)
    started = time.perf_counter()
    model.train()
    for step in range(STEPS):
        length = int(torch.randint(16, LENGTH + 1, ()))  # short inputs too: the probe's sentences are 8 to 20 tokens
        rows = BATCH * LENGTH // length
        starts = torch.randint(0, len(data) - length + 2, (rows,))
        body = torch.stack([data[s : s + length - 2] for s in starts])
        batch = torch.cat([torch.full((rows, 1), tokenizer.cls_token_id), body, torch.full((rows, 1), tokenizer.sep_token_id)], 1)
        types = (torch.arange(length) >= length // 2).long().expand(rows, -1) * (torch.rand(rows, 1) < 0.5)
        chosen = (torch.rand(batch.shape) < 0.15) & (batch != tokenizer.cls_token_id) & (batch != tokenizer.sep_token_id)
        roll = torch.rand(batch.shape)
        inputs = batch.clone()
        inputs[chosen & (roll < 0.8)] = tokenizer.mask_token_id
        swapped = chosen & (roll >= 0.8) & (roll < 0.9)
        inputs[swapped] = torch.randint(5, tokenizer.vocab_size, (int(swapped.sum()),))
        hidden = model.bert(input_ids=inputs, token_type_ids=types).last_hidden_state
        loss = torch.nn.functional.cross_entropy(model.cls(hidden[chosen]), batch[chosen])  # the head at masked tokens only
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 200 == 0 or step == STEPS - 1:
            print(f"step {step}: loss {loss.item():.3f} ({time.perf_counter() - started:.0f} s)", flush=True)
    model.eval()
    print(f"held-out pseudo-perplexity: {pseudo_perplexity(model, tokenizer, held_out):.1f}", flush=True)
    from pytest_bertprobe.checks.behaviour.probe_set import MASKED_SENTENCES

    print(f"probe English sentences: {pseudo_perplexity(model, tokenizer, list(MASKED_SENTENCES['en'])):.1f}", flush=True)
    model.half().save_pretrained(TARGET)
    tokenizer.save_pretrained(TARGET)
    (TARGET / "README.md").write_text(__doc__, encoding="utf-8")


def pseudo_perplexity(model: torch.nn.Module, tokenizer: object, paragraphs: list[str]) -> float:
    """exp(mean negative log-likelihood of each token masked alone), over the first 40 tokens of each paragraph."""
    losses = []
    with torch.inference_mode():
        for paragraph in paragraphs:
            ids = tokenizer(paragraph, truncation=True, max_length=42, return_tensors="pt")["input_ids"][0]
            rows = ids.repeat(len(ids) - 2, 1)
            positions = torch.arange(1, len(ids) - 1)
            rows[torch.arange(len(positions)), positions] = tokenizer.mask_token_id
            logits = model(input_ids=rows).logits[torch.arange(len(positions)), positions]
            losses.append(torch.nn.functional.cross_entropy(logits, ids[positions], reduction="none"))
    return float(torch.cat(losses).mean().exp())


if __name__ == "__main__":
    main()
