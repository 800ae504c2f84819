"""Stage 2, the checkpoint: everything decided from the files and the load, before any check runs a pass.

Where a `--bert-model` points (`source`), the files checked before anything imports torch (`preflight`, `json_file`,
`weight_files`), the load itself (`loading`, `frozen_imports`, `compat`, `encoder_rule`, `load_failure`), the weights
ledger (`ledger`, `renames`, `fresh_init`), and what the loaded model is made of (`tables`, `limits`, `anatomy`, `config`).
"""
