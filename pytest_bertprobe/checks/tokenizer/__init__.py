"""The tokenizer's checks: its contract with the model (`contract`), its files agreeing (`files`), its special tokens
being real (`special_tokens`), and how much of each script it covers (`coverage`)."""
