"""Stage 6, the built-in audit: one pytest test per catalogue check, collected from `bertprobe_audit_*.py`.

`harness` runs a check on explicit then generated batches (one seed, so passes are shared) and turns its outcome
into a pass, a failure or a skip; `budget` sizes the generated examples to `--bert-budget`; `record` keeps each
check's numbers on its test item for the report; `plot_data` computes what the HTML plots draw; `selection` makes
each check's name a `-k` keyword and applies `--bert-checks` / `--bert-skip-checks`. The module file names are users'
test ids: they do not change.
"""
