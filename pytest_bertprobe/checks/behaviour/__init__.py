"""Behavioural checks: whether the checkpoint behaves like the trained model it claims to be (docs/DESIGN.md §2).

`probe_set` is the data (multilingual anchor / paraphrase / distractor triplets, masked-LM sentences);
`reading` decides which of its languages a tokenizer reads; `embedding`, `masked_lm` and `classifier` are the
checks, each a verdict on training (`Check.training`: `--bert-allow-untrained` reports it instead of failing).
"""
