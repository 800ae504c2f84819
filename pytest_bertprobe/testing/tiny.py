"""Tiny offline BERT-family checkpoints for tests: random weights, real tokenizer templates.

`make_tiny_checkpoint` writes config.json, model.safetensors and tokenizer files that
`AutoModel.from_pretrained` / `AutoTokenizer.from_pretrained` load with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import inspect
import os
import pathlib
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
import transformers
from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from pytest_bertprobe.checkpoint.encoder_rule import model_class
from pytest_bertprobe.sentences import SEED_SENTENCES

__all__ = ["ALL_ARCHITECTURES", "ARCHITECTURES", "DEFECTIVE_ARCHITECTURES", "MASK_IGNORING_ARCHITECTURES", "SEED_SENTENCES", "make_tiny_checkpoint"]


_ENGLISH_WORDS: tuple[str, ...] = (
    "the", "a", "an", "is", "are", "was", "be", "will", "there", "it", "this", "that", "what", "how",
    "i", "you", "we", "they", "and", "or", "not", "of", "to", "in", "on", "for", "with", "very",
    "hello", "world", "weather", "today", "tomorrow", "happy", "glad", "sad", "big", "typhoon",
    "rain", "sun", "wind", "cold", "hot", "good", "bad", "day", "model", "test", "sentence",
)  # fmt: skip

_PUNCTUATION = ".,?!'\"-:;()"
_MAX_LENGTH = 64
_BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")

_COMMON_CONFIG: Mapping[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 37,
    "max_position_embeddings": _MAX_LENGTH,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
}
# Roberta-style embeddings number positions from padding_idx + 1 (pad id 1), so two rows are never usable.
_OFFSET_POSITIONS = {"max_position_embeddings": _MAX_LENGTH + 2}


@dataclass(frozen=True)
class _Arch:
    """How to build one model_type: its tokenizer class, vocabulary style and config overrides."""

    tokenizer_class: str
    vocab_kind: Literal["wordpiece", "unigram", "byte_bpe"]
    specials: tuple[str, ...]  # in id order; names match the tokenizer class's defaults
    lowercase: bool = True
    config: Mapping[str, Any] = field(default_factory=dict)
    bare_backend: bool = False  # save as a plain TokenizersBackend (tokenizer.json only), like ModernBERT's hub repos
    padding_side: str = "right"


_ARCHS: dict[str, _Arch] = {
    "bert": _Arch("BertTokenizer", "wordpiece", _BERT_SPECIALS),
    "roberta": _Arch("RobertaTokenizer", "byte_bpe", _FAIRSEQ_SPECIALS, False, _OFFSET_POSITIONS),
    # XLMRobertaTokenizer hard-codes unk_id=3, which _FAIRSEQ_SPECIALS satisfies.
    "xlm-roberta": _Arch("XLMRobertaTokenizer", "unigram", _FAIRSEQ_SPECIALS, False, _OFFSET_POSITIONS),
    # AlbertTokenizer hard-codes unk_id=1.
    "albert": _Arch(
        "AlbertTokenizer", "unigram", ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"),
        config={"embedding_size": 16, "num_hidden_groups": 1, "inner_group_num": 1},
    ),  # fmt: skip
    "electra": _Arch("ElectraTokenizer", "wordpiece", _BERT_SPECIALS, config={"embedding_size": 16}),
    "distilbert": _Arch(
        "DistilBertTokenizer", "wordpiece", _BERT_SPECIALS,
        config={"dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 37},
    ),  # fmt: skip
    "mobilebert": _Arch(
        "MobileBertTokenizer", "wordpiece", _BERT_SPECIALS,
        config={"embedding_size": 16, "intra_bottleneck_size": 16, "true_hidden_size": 16,
                "num_feedforward_networks": 2, "classifier_activation": True},
    ),  # fmt: skip
    "mpnet": _Arch(
        "MPNetTokenizer", "wordpiece", ("<s>", "<pad>", "</s>", "[UNK]", "<mask>"),
        config={**_OFFSET_POSITIONS, "relative_attention_num_buckets": 32},
    ),  # fmt: skip
    # DeBERTa-v3 layout: relative attention only, no absolute position input.
    "deberta-v2": _Arch(
        "DebertaV2Tokenizer", "unigram", ("[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"), False,
        {"relative_attention": True, "position_buckets": 32, "max_relative_positions": -1,
         "pos_att_type": ["p2c", "c2p"], "position_biased_input": False, "norm_rel_ebd": "layer_norm",
         "share_att_key": True},
    ),  # fmt: skip
    # Layer 0 global, layer 1 sliding (window 32 tokens) — the real alternating layout, scaled down.
    "modernbert": _Arch(
        "BertTokenizer", "wordpiece", _BERT_SPECIALS, False,
        {"intermediate_size": 64, "local_attention": 32, "layer_types": ["full_attention", "sliding_attention"]},
        bare_backend=True,
    ),  # fmt: skip
    # Block-sparse attention needs inputs far longer than these; full attention works at any length.
    "big_bird": _Arch(
        "BigBirdTokenizer", "unigram", ("<pad>", "</s>", "<s>", "<unk>", "[CLS]", "[SEP]", "[MASK]"), False,
        {"attention_type": "original_full"},
    ),  # fmt: skip
    "ernie": _Arch("BertTokenizer", "wordpiece", _BERT_SPECIALS, config={"use_task_id": False}),
}
# XLNet reads its summary token last: its own tokenizer's `A <sep> <cls>`, padded on the left (xlnet-base-cased's ids).
_XLNET = _Arch(
    "XLNetTokenizer", "unigram", ("<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>"), False,
    {"d_model": 32, "n_layer": 2, "n_head": 4, "d_head": 8, "d_inner": 37}, padding_side="left",
)  # fmt: skip

ARCHITECTURES: tuple[str, ...] = tuple(_ARCHS)  # the healthy core of the family, each with its own tokenizer class

_LLAMA_STYLE = {"head_dim": 8, "num_key_value_heads": 2}  # grouped-query attention, scaled down
_ROBERTA_STYLE = {arch: replace(_ARCHS["roberta"], config={**_OFFSET_POSITIONS, **extra}) for arch, extra in {
    "camembert": {}, "data2vec-text": {}, "roberta-prelayernorm": {}, "xlm-roberta-xl": {}, "ibert": {},
    "longformer": {"attention_window": 16},
    "luke": {"entity_vocab_size": 8, "entity_emb_size": 16},
    # No default_language: the audit must pick the only adapter language itself.
    "xmod": {"languages": ["en_XX"]},
}.items()}  # fmt: skip
_BERT_STYLE: dict[str, Mapping[str, Any]] = {
    "bert-generation": {}, "canine": {"num_hash_buckets": 64, "local_transformer_stride": 16}, "convbert": {},
    "deberta": {}, "dpr": {}, "eurobert": {"mask_token_id": 4}, "gte": {}, "jina_embeddings_v3": {}, "megatron-bert": {}, "mra": {},
    "nomic_bert": {}, "nystromformer": {}, "rembert": {
        "input_embedding_size": 16, "output_embedding_size": 16}, "roc_bert": {}, "roformer": {}, "splinter": {},
    "squeezebert": {"embedding_size": 32, "intermediate_size": 64},
    "esm": {**_OFFSET_POSITIONS, "pad_token_id": 0, "mask_token_id": 4, "token_dropout": False},
    "xlm": {"emb_dim": 32, "n_layers": 2, "n_heads": 4, "unk_index": 1, "mask_index": 4},
    "flaubert": {"emb_dim": 32, "n_layers": 2, "n_heads": 4, "unk_index": 1, "mask_index": 4},
    "funnel": {"d_model": 32, "n_head": 4, "d_head": 8, "d_inner": 37, "block_sizes": [1, 1], "num_decoder_layers": 1},
    "reformer": {"attention_head_size": 8, "num_attention_heads": 4, "attn_layers": ["local", "local"],
                 "axial_pos_shape": [8, 8], "axial_pos_embds_dim": [16, 16], "feed_forward_size": 37,
                 "local_attn_chunk_length": 16},
    "ultrabert": {**_LLAMA_STYLE, "layer_types": ["sliding_attention", "full_attention"], "sliding_window": 16,
                  "prediction_head_size": 32},
    "embedding_gemma2_text": {**_LLAMA_STYLE, "layer_types": ["sliding_attention", "full_attention"],
                              "sliding_window": 16, "hidden_size_per_layer_input": 16, "embedding_dim": 32},
    "esmc": {**_LLAMA_STYLE, "num_key_value_heads": 4},
    "openai_privacy_filter": {**_LLAMA_STYLE, "num_local_experts": 4, "num_experts_per_tok": 2, "sliding_window": 16},
    "tipsv2_text_model": {}, "sam3_lite_text_text_model": {"projection_dim": 32, "repmixer_kernel_size": 3, "layer_scale_init_value": 0.5},
}  # fmt: skip
# transformers' own models whose attention mask has no effect (5.24 and 4.57): padding changes their outputs.
MASK_IGNORING_ARCHITECTURES: tuple[str, ...] = ("yoso", "fnet")
_ARCHS.update({arch: _ARCHS["bert"] for arch in MASK_IGNORING_ARCHITECTURES})
_ARCHS.update(_ROBERTA_STYLE)
_ARCHS.update({arch: replace(_ARCHS["bert"], config=extra) for arch, extra in _BERT_STYLE.items()})
_ARCHS["xlnet"] = _XLNET
# transformers' own defects that the audit must catch (docs/DESIGN.md §5); yoso and fnet above are two of them.
DEFECTIVE_ARCHITECTURES: tuple[str, ...] = (
    *MASK_IGNORING_ARCHITECTURES, "mra", "convbert", "nystromformer", "funnel", "canine", "sam3_lite_text_text_model", "reformer",
)
# Every bidirectional text encoder of transformers 5.x that `make_tiny_checkpoint` builds.
ALL_ARCHITECTURES: tuple[str, ...] = tuple(_ARCHS)


def make_tiny_checkpoint(
    path: str | os.PathLike[str],
    arch: str = "bert",
    *,
    seed: int = 0,
    model_class: str = "AutoModel",
    add_pooling_layer: bool = True,
    extra_words: Iterable[str] = (),
    labels: Sequence[str] | None = None,
) -> pathlib.Path:
    """Write a tiny random-weight checkpoint of `arch` to `path` and return the path.

    `labels` names a classification head's classes (`config.id2label` and `label2id`), one output each.
    """
    if arch not in _ARCHS:
        raise ValueError(f"unknown arch {arch!r}; known: {', '.join(_ARCHS)}")
    spec = _ARCHS[arch]
    tokenizer = _build_tokenizer(spec, extra_words)
    config = _build_config(arch, spec, tokenizer)
    if labels is not None:
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: index for index, label in enumerate(labels)}
    cls = _resolve_model_class(model_class, config)
    model_kwargs: dict[str, Any] = {}
    if not add_pooling_layer:
        if "add_pooling_layer" not in inspect.signature(cls.__init__).parameters:
            raise ValueError(f"{cls.__name__} ({arch}) has no add_pooling_layer option")
        model_kwargs["add_pooling_layer"] = False

    # fork_rng: seeding must not disturb the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config, **model_kwargs)
        with torch.no_grad():
            # Default init zeroes biases; the product reads an all-zero pooler bias as "never trained".
            for name, param in model.named_parameters():
                if name.endswith("bias"):
                    param.normal_(0.0, 0.02)
    model.eval()
    read = inspect.signature(model.base_model.forward).parameters
    if any(name not in read for name in tokenizer.model_input_names):
        # The tokenizer a model ships with emits only what its forward reads: no token types for RoBERTa-XL or
        # Nystromformer, no attention mask for FNet (its own convention).
        _set_input_names(tokenizer, [name for name in tokenizer.model_input_names if name in read])

    out = pathlib.Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _resolve_model_class(name: str, config: PretrainedConfig) -> type[PreTrainedModel]:
    cls = getattr(transformers, name, None)
    if cls is None:
        raise ValueError(f"transformers has no class named {name!r}")
    if name.startswith("Auto"):
        found = model_class(cls, config)
        if found is None:
            raise ValueError(f"{name} has no class for {config.model_type!r}")
        return found
    # Compare by model_type, not isinstance: pytester's sys.modules restore can leave two BertConfig classes.
    config_class = getattr(cls, "config_class", None)
    if not (isinstance(cls, type) and issubclass(cls, PreTrainedModel) and getattr(config_class, "model_type", None) == config.model_type):
        raise ValueError(f"{name} is not a model class for {config.model_type!r}")
    return cls


def _build_config(arch: str, spec: _Arch, tokenizer: PreTrainedTokenizerBase) -> PretrainedConfig:
    config_cls = transformers.CONFIG_MAPPING[arch]
    defaults = config_cls().to_dict()
    bos = tokenizer.bos_token_id if tokenizer.bos_token is not None else tokenizer.cls_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token is not None else tokenizer.sep_token_id
    token_ids = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "cls_token_id": tokenizer.cls_token_id,
        "sep_token_id": tokenizer.sep_token_id,
    }
    # Only ids the config already carries: BERT's bos/eos stay None, as on the hub.
    overrides = {k: v for k, v in {**_COMMON_CONFIG, **token_ids}.items() if defaults.get(k) is not None}
    return config_cls(**{**overrides, **spec.config, "vocab_size": len(tokenizer)})


def _build_tokenizer(spec: _Arch, extra_words: Iterable[str]) -> PreTrainedTokenizerBase:
    chars, words = _alphabet(extra_words, spec.lowercase)
    legacy = not hasattr(transformers, "TokenizersBackend")  # transformers 4.x: separate slow and fast classes
    return _build_backend(spec, chars, words, legacy)


def _set_input_names(tokenizer: PreTrainedTokenizerBase, names: list[str]) -> None:
    """Set what the tokenizer emits, also in what save_pretrained writes (tokenizer_config.json)."""
    tokenizer.model_input_names = names
    tokenizer.init_kwargs["model_input_names"] = names


def _build_backend(spec: _Arch, chars: list[str], words: list[str], legacy: bool) -> PreTrainedTokenizerBase:
    cls = getattr(transformers, spec.tokenizer_class + ("Fast" if legacy else ""))
    kwargs: dict[str, Any] = {"model_max_length": _MAX_LENGTH, "padding_side": spec.padding_side}
    if "do_lower_case" in inspect.signature(cls.__init__).parameters:
        kwargs["do_lower_case"] = spec.lowercase
    if spec.vocab_kind == "wordpiece":
        continuations = [f"##{c}" for c in chars if c.isascii() and c.isalnum()]
        kwargs["vocab"] = {token: i for i, token in enumerate([*spec.specials, *chars, *words, *continuations])}
    elif spec.vocab_kind == "unigram":
        # Scores are log-probabilities: a whole word beats spelling it out, so words stay one piece.
        kwargs["vocab"] = [
            *((s, 0.0) for s in spec.specials),
            ("▁", -2.0),
            *((f"▁{w}", -1.0) for w in words),
            *((c, -5.0) for c in chars),
        ]
    else:
        kwargs["vocab"], kwargs["merges"] = _byte_bpe(spec.specials, chars, words)
    if legacy:
        from pytest_bertprobe.testing.tokenizers4 import build_tokenizer

        return build_tokenizer(spec.tokenizer_class, spec.specials, kwargs, bare_backend=spec.bare_backend)
    tokenizer = cls(**kwargs)
    if spec.bare_backend:
        pad, unk, cls_token, sep, mask = spec.specials
        tokenizer = transformers.TokenizersBackend(
            tokenizer_object=tokenizer.backend_tokenizer,
            pad_token=pad, unk_token=unk, cls_token=cls_token, sep_token=sep, mask_token=mask,
            model_input_names=["input_ids", "attention_mask"],
            model_max_length=_MAX_LENGTH, padding_side="right",
        )  # fmt: skip
    return tokenizer


def _alphabet(extra_words: Iterable[str], lowercase: bool) -> tuple[list[str], list[str]]:
    """Single characters (seed CJK, ASCII, punctuation) and multi-character words, deduplicated."""
    words = [w.strip() for w in (*_ENGLISH_WORDS, *extra_words) if w.strip()]
    if lowercase:
        words = [w.lower() for w in words]
    text = "".join(SEED_SENTENCES) + string.ascii_letters + string.digits + _PUNCTUATION + "".join(words)
    chars = sorted(set(text) - set(string.whitespace))
    return chars, list(dict.fromkeys(w for w in words if len(w) > 1))


def _byte_symbols() -> list[str]:
    """GPT-2's printable stand-in character for each byte value 0..255."""
    printable = {*range(33, 127), *range(161, 173), *range(174, 256)}
    spare = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(spare)) for b in range(256)]


def _byte_bpe(
    specials: tuple[str, ...], chars: list[str], words: list[str]
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level BPE vocab and merges in which each character and word ("Ġword" and "word") is one token.

    Each unit's merges are appended after everything that already applies to it, so they only fire
    once earlier merges are exhausted and can never change how an earlier unit tokenizes.
    """
    symbols = _byte_symbols()
    vocab = {token: i for i, token in enumerate([*specials, *symbols])}
    ranks: dict[tuple[str, str], int] = {}
    for unit in [*chars, *words, *(f" {w}" for w in words)]:
        pieces = _apply_merges([symbols[b] for b in unit.encode()], ranks)
        merged = pieces[0]
        for piece in pieces[1:]:
            ranks.setdefault((merged, piece), len(ranks))
            merged += piece
            vocab.setdefault(merged, len(vocab))
    return vocab, list(ranks)


def _apply_merges(pieces: list[str], ranks: Mapping[tuple[str, str], int]) -> list[str]:
    """Plain BPE: repeatedly merge the adjacent pair with the lowest rank."""
    while len(pieces) > 1:
        rank, i = min((ranks.get(pair, len(ranks)), i) for i, pair in enumerate(zip(pieces, pieces[1:])))
        if rank == len(ranks):
            break
        pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces
