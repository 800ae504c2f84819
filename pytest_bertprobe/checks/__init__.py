"""Stage 4, the checks: one public `assert_*` helper per claim, each returning what it measured or raising.

One module per concern (`pooler`, `provenance`, `finiteness`, `weights`, `invariances`, `consistency`, `embedding`,
`reference`, `snapshot`), the tokenizer's in `tokenizer/` and the heads' in `heads/`. None knows about pytest: the
audit (stage 6) turns a `CheckFailure` into a failed test and `NotApplicable` into a skip.
"""
