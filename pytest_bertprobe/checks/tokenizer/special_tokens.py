"""Special tokens are real: each declared special token has its own id, and the config's token ids name those tokens."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_bertprobe.checks.tokenizer.files import read_vocabularies, recorded_added_tokens
from pytest_bertprobe.errors import ContractViolation, NotApplicable

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# config key -> the tokenizer's token for that role, in order of preference. pad_token_id: `tokenizer_pad_id`.
_CONFIG_ROLES = {
    "bos_token_id": ("bos_token", "cls_token"),
    "eos_token_id": ("eos_token", "sep_token"),
    "cls_token_id": ("cls_token",),
    "sep_token_id": ("sep_token",),
}


def assert_special_tokens_real(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, folder: str | Path | None = None
) -> dict[str, Any]:
    """Assert each special token has its own id (not [UNK], not one invented at load) and config's *_token_id name them.

    `folder` holds the tokenizer's files: a special token found in none of its vocabularies nor among the added
    tokens they record got its id at load time. Defaults to the folder the tokenizer was loaded from.
    """
    __tracebackhide__ = True
    specials = list(dict.fromkeys(str(token) for token in tokenizer.all_special_tokens))
    if not specials:
        raise NotApplicable(f"{type(tokenizer).__name__} declares no special tokens")
    ids = {token: int(tokenizer.convert_tokens_to_ids(token)) for token in specials}
    metrics: dict[str, Any] = {"special_token_ids": ids}
    problems = [
        f"{token!r} maps to the unknown token {tokenizer.unk_token!r} (id {index}): it is not in the vocabulary."
        for token, index in ids.items()
        if token != tokenizer.unk_token and index == tokenizer.unk_token_id
    ]
    problems += _not_from_the_files(ids, _folder(tokenizer, folder))
    config_ids, config_problems = _config_ids(model, tokenizer)
    metrics["config_ids"] = config_ids
    problems += config_problems
    if not problems:
        return metrics
    metrics["problems"] = len(problems)
    raise ContractViolation(
        f"Special tokens are not what the model was trained with: {problems[0]}",
        metrics,
        details=problems[1:],
        hint="a special token without its own id in the vocabulary, or a config naming another token, means the model "
        "reads other rows than it was trained on: restore the vocabulary file the model was trained with (every "
        "line in place), or set the config's token ids to the tokenizer's",
    )


def _folder(tokenizer: PreTrainedTokenizerBase, folder: str | Path | None) -> Path | None:
    """`folder`, else the local folder the tokenizer was loaded from, if any."""
    if folder is not None:
        return Path(folder)
    loaded = str(getattr(tokenizer, "name_or_path", "") or "")
    return Path(loaded) if loaded and Path(loaded).is_dir() else None


def _not_from_the_files(ids: dict[str, int], folder: Path | None) -> list[str]:
    """Special tokens whose id is not the one the files give: recorded with another, or in no file (invented at load)."""
    if folder is None:
        return []
    vocabularies = [v for v in read_vocabularies(folder) if not v.shifted]  # sentencepiece classes add fairseq's own
    if not vocabularies:
        return []
    recorded = recorded_added_tokens(folder)
    problems = [
        f"{token!r} has id {index}, but the files record it as {recorded[token]} (added tokens)."
        for token, index in ids.items()
        if token in recorded and recorded[token] != index
    ]
    known = set(recorded).union(*(v.ids for v in vocabularies))
    files = " or ".join(f"{v.files} ({len(v.ids)} entries)" for v in vocabularies)
    problems += [
        f"{token!r} is in neither {files} nor the added tokens the files record: the tokenizer gave it id {index} "
        "at load time, a row the model trained for another token (if a line was lost from the file, every token after it moved up one)."
        for token, index in ids.items()
        if token not in known
    ]
    return problems


def _config_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> tuple[dict[str, Any], list[str]]:
    """The config's token ids for roles the tokenizer has, and a line for each that names another token."""
    found: dict[str, Any] = {}
    problems = []
    for key, roles in _CONFIG_ROLES.items():
        value = getattr(model.config, key, None)
        role = next((r for r in roles if getattr(tokenizer, r, None) is not None), None)
        if value is None or role is None:
            continue
        found[key] = value
        token = str(getattr(tokenizer, role))
        expected = int(tokenizer.convert_tokens_to_ids(token))
        named = value if isinstance(value, (list, tuple)) else [value]
        if expected not in named:
            shown = ", ".join(f"{i} ({tokenizer.convert_ids_to_tokens(int(i))!r})" for i in named)
            problems.append(f"config.{key} is {shown}, but the tokenizer's {role} is {token!r} (id {expected}).")
    return found, problems
