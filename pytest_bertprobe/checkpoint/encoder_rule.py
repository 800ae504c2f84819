"""Which checkpoints the audit takes: a bidirectional text encoder over `input_ids`, told by what the model does.

No list of model types: a decoder, an encoder-decoder or a model that reads more than text is refused with
one line saying which and why. Before any weight loads, from the config and a build on the meta device
(`before_weights`); then, for models whose code does not say, by three tiny forward passes: 8 ids and two edits of them (`after_load`).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# Inputs that carry layout, pixels, audio or a decoder's side: a model that reads them is not a text encoder.
NON_TEXT_INPUTS = (
    "bbox", "image", "pixel_values", "pixel_values_videos", "visual_embeds", "visual_feats", "visual_pos",
    "xpath_tags_seq", "xpath_subs_seq", "input_values", "input_features", "decoder_input_ids",
)  # fmt: skip
_AUDITS = "pytest-bertprobe audits bidirectional text encoders over input_ids (bert, roberta, deberta-v2, modernbert, ...)"
_PROBE_IDS = (7, 8, 9, 10, 11, 12, 13, 14)


def model_class(architecture: Any, config: Any) -> type[PreTrainedModel] | None:
    """The class `from_pretrained` builds for `config`: `architecture`, or AutoModel's choice (None where it has none)."""
    mapping = getattr(architecture, "_model_mapping", None)
    if mapping is None:
        return architecture
    try:
        found = mapping[type(config)]
    except (KeyError, ValueError):
        return None
    return found[0] if isinstance(found, tuple) else found  # funnel: (FunnelModel, FunnelBaseModel)


def choose_language(model: Any) -> str | None:
    """Give a model with language adapters (X-MOD) its language: the config's default, else its only one; else why not."""
    languages = list(getattr(model.config, "languages", None) or ())
    if not hasattr(model, "set_default_language") or getattr(model.config, "default_language", None) is not None:
        return None
    if len(languages) != 1:
        shown = ", ".join(languages[:6]) + (", ..." if len(languages) > 6 else "")
        return (
            f"{type(model).__name__} has {len(languages)} language adapters ({shown}) and config.json sets no "
            "default_language, so the audit cannot tell which to run; set \"default_language\" in config.json"
        )
    model.set_default_language(languages[0])
    return None


def before_weights(config: Any, architecture: type[PreTrainedModel] | None) -> str | None:
    """Why a checkpoint of `config`, loaded as `architecture`, is no text encoder (None when it may be one)."""
    kind = f"model_type {config.model_type!r}"
    if getattr(config, "is_encoder_decoder", False):
        return f"{kind} is an encoder-decoder (config.is_encoder_decoder); {_AUDITS}"
    if getattr(config, "is_decoder", False):
        return f"{kind} is configured as a decoder (\"is_decoder\": true in config.json: causal attention); {_AUDITS}"
    if architecture is None:
        return None  # no class to judge before loading: after_load judges the model
    name = architecture.__name__
    parameters = list(inspect.signature(architecture.forward).parameters)
    if "input_ids" not in parameters:
        return f"{kind}: {name}.forward takes no input_ids (it reads {', '.join(parameters[1:4])}); {_AUDITS}"
    needs = [parameter for parameter in parameters if parameter in NON_TEXT_INPUTS]
    if needs:
        return f"{kind}: {name} reads non-text inputs ({', '.join(needs)}), so it is no text encoder; {_AUDITS}"
    if "use_cache" in parameters and "attention_mask" not in parameters:
        # A generation cache and no way to mask padding: it extends one sequence, it does not encode padded batches
        # (CPM-Ant, xLSTM, whose passes the causal probe cannot tell from an encoder's). FNet takes no mask but no cache.
        return (
            f"{kind} is a decoder: {name}.forward keeps a generation cache (use_cache) and takes no attention_mask, "
            f"so it cannot encode a padded batch; {_AUDITS}"
        )
    if isinstance(getattr(config, "type_vocab_sizes", None), (list, tuple)):
        return f"{kind}: {name} reads table inputs (token_type_ids per table row and column: type_vocab_sizes); {_AUDITS}"
    base = _meta_base_model(config, architecture)
    if base is None:
        return None  # a class that cannot be built here: loading decides, and after_load judges
    causal = next((module for module in base.modules() if getattr(module, "is_causal", False) is True), None)
    if causal is not None:
        return f"{kind} is a decoder: {type(causal).__name__}.is_causal is set, so no token sees the tokens after it; {_AUDITS}"
    return None


def after_load(model: PreTrainedModel) -> str | None:
    """Why the loaded base `model` is no text encoder, from one pass on 8 ids and two edits of them (None: it may be one)."""
    import torch

    from pytest_bertprobe.checkpoint.tables import safe_rows

    kind = f"model_type {model.config.model_type!r}"
    rows = safe_rows(model)
    if rows is None:
        return None  # tables too small to run 9 tokens: the audit names that (tokenizer_max_length, ...)
    ids = torch.tensor([[i % rows for i in _PROBE_IDS]], device=model.device)
    last_changed, first_changed = ids.clone(), ids.clone()
    last_changed[0, -1] = (ids[0, -1] + 1) % rows
    first_changed[0, 0] = (ids[0, 0] + 1) % rows
    try:
        with torch.no_grad():
            states = [_token_states(model, batch) for batch in (ids, last_changed, first_changed)]
    except Exception:  # noqa: BLE001 - a model that crashes here is audited, and the audit names the crash
        return None
    if any(state is None for state in states):
        return f"{kind}: {type(model).__name__} returns no per-token hidden states (last_hidden_state); {_AUDITS}"
    plain, later_edit, earlier_edit = states
    noise = 1e-6 * float(plain.abs().max())  # chunked kernels (xLSTM, Mamba) reorder sums: not a dependence
    before_moved = float((plain[0, :-1] - later_edit[0, :-1]).abs().max())  # the states before the edited last token
    after_moved = float((plain[0, 1:] - earlier_edit[0, 1:]).abs().max())  # the states after the edited first token
    if after_moved > noise and before_moved <= noise:
        return (
            f"{kind} is a decoder: changing the last of 8 tokens moves {type(model).__name__}'s hidden states before it "
            f"by {before_moved:.3g}, changing the first moves those after it by {after_moved:.3g} (causal); {_AUDITS}"
        )
    return None


def _meta_base_model(config: Any, architecture: type[PreTrainedModel]) -> Any:
    model = meta_model(architecture, config)
    return model.base_model if model is not None else None


_last_meta: list[tuple[Any, Any, Any]] = []  # (class, config, model): the one build the load's checks share


def meta_model(architecture: type[PreTrainedModel], config: Any) -> Any:
    """`architecture` built from `config` on the meta device (no memory, no weights), or None where it cannot be built.

    The last build is kept: the encoder rule, the head lookup and the size checks of one load share it.
    """
    import torch

    if _last_meta and _last_meta[0][0] is architecture and _last_meta[0][1] is config:
        return _last_meta[0][2]
    _last_meta.clear()
    try:
        with torch.device("meta"):
            model = architecture._from_config(config)
    except Exception:  # noqa: BLE001 - custom or unusual classes: judged after loading instead
        model = None
    _last_meta.append((architecture, config, model))
    return model


def forget_meta_model() -> None:
    """Release the kept build once the load no longer needs it."""
    _last_meta.clear()


def _token_states(model: PreTrainedModel, ids: Any) -> Any:
    """The per-token hidden states of one pass on `ids` (batch, tokens, hidden), or None when there are none."""
    import torch

    outputs = model(input_ids=ids)
    states = getattr(outputs, "last_hidden_state", None)
    if states is None and isinstance(outputs, tuple) and outputs:
        states = outputs[0]
    ok = isinstance(states, torch.Tensor) and states.dim() == 3 and states.shape[1] == ids.shape[1]
    return states if ok else None
