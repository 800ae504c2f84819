"""Tiny tokenizers for transformers 4.x, which has no `vocab=` constructors on its tokenizer classes.

transformers 5 builds each class's `tokenizers` pipeline from an in-memory vocabulary; 4.x converts
from vocabulary files (sentencepiece models for unigram). This module builds the same pipelines as
5.24's classes (`BertTokenizer`, `RobertaTokenizer`, `XLMRobertaTokenizer`, ...) with the `tokenizers`
library and wraps them in 4.x's fast class, so `make_tiny_checkpoint` writes the same tokenizer.json
under either major version.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import transformers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerBase

__all__ = ["build_tokenizer"]

_SPACE = "▁"


def build_tokenizer(
    class_name: str, specials: tuple[str, ...], kwargs: Mapping[str, Any], *, bare_backend: bool = False
) -> PreTrainedTokenizerBase:
    """The 4.x fast tokenizer `class_name` would be, given 5.x's constructor `kwargs` (vocab, merges, ...)."""
    options = dict(kwargs)
    vocab = options.pop("vocab")
    merges = options.pop("merges", None)
    lowercase = bool(options.get("do_lower_case", False))
    build = _PIPELINES.get(class_name)
    if build is None:
        raise ValueError(f"no transformers 4.x pipeline for {class_name}")
    backend = build(vocab, merges, lowercase)
    if bare_backend:
        pad, unk, cls, sep, mask = specials
        options = {
            "pad_token": pad, "unk_token": unk, "cls_token": cls, "sep_token": sep, "mask_token": mask,
            "model_input_names": ["input_ids", "attention_mask"], **options,
        }  # fmt: skip
        options.pop("do_lower_case", None)
        return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, **options)
    return getattr(transformers, f"{class_name}Fast")(tokenizer_object=backend, **options)


def _template(cls: str, sep: str, ids: Mapping[str, int], *, double_sep: bool = False) -> processors.TemplateProcessing:
    """`cls A sep` and BERT's `cls A sep B sep` (B type 1), or RoBERTa's `cls A sep sep B sep` (all type 0)."""
    middle, b = (f"{sep}:0 {sep}:0", 0) if double_sep else (f"{sep}:0", 1)
    return processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {middle} $B:{b} {sep}:{b}",
        special_tokens=[(cls, ids[cls]), (sep, ids[sep])],
    )


def _bert_normalized(vocab: dict[str, int], lowercase: bool) -> Tokenizer:
    """WordPiece with BERT's normaliser and pre-tokenizer; no template yet."""
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def _wordpiece(vocab: dict[str, int], _merges: Any, lowercase: bool) -> Tokenizer:
    """BERT's pipeline (also ELECTRA, DistilBERT, MobileBERT, ERNIE, ModernBERT's hub tokenizers)."""
    tokenizer = _bert_normalized(vocab, lowercase)
    tokenizer.post_processor = _template("[CLS]", "[SEP]", vocab)
    return tokenizer


def _mpnet(vocab: dict[str, int], _merges: Any, lowercase: bool) -> Tokenizer:
    """BERT's normalisation with RoBERTa's `<s> A </s></s> B </s>` template."""
    tokenizer = _bert_normalized(vocab, lowercase)
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]), True, False)
    return tokenizer


def _byte_bpe(vocab: dict[str, int], merges: Any, lowercase: bool) -> Tokenizer:
    """RoBERTa's byte-level BPE."""
    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False)
    )
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]), True, False)
    return tokenizer


def _unigram(vocab: list[tuple[str, float]], unk: str, metaspace: pre_tokenizers.PreTokenizer | None = None) -> Tokenizer:
    """A sentencepiece-style Unigram model: words split on whitespace, each prefixed with '▁'."""
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=[token for token, _ in vocab].index(unk), byte_fallback=False))
    tokenizer.pre_tokenizer = metaspace or pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement=_SPACE, prepend_scheme="always")]
    )
    tokenizer.decoder = decoders.Metaspace(replacement=_SPACE, prepend_scheme="always")
    return tokenizer


def _ids(vocab: list[tuple[str, float]]) -> dict[str, int]:
    """Token -> id for a scored Unigram vocabulary."""
    return {token: i for i, (token, _) in enumerate(vocab)}


def _xlm_roberta(vocab: list[tuple[str, float]], _merges: Any, lowercase: bool) -> Tokenizer:
    tokenizer = _unigram(vocab, "<unk>")
    tokenizer.post_processor = _template("<s>", "</s>", _ids(vocab), double_sep=True)
    return tokenizer


def _albert(vocab: list[tuple[str, float]], _merges: Any, lowercase: bool) -> Tokenizer:
    tokenizer = _unigram(vocab, "<unk>")
    steps = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"'), normalizers.NFKD(), normalizers.StripAccents()]
    tokenizer.normalizer = normalizers.Sequence([*steps, *([normalizers.Lowercase()] if lowercase else [])])
    tokenizer.post_processor = _template("[CLS]", "[SEP]", _ids(vocab))
    return tokenizer


def _deberta_v2(vocab: list[tuple[str, float]], _merges: Any, lowercase: bool) -> Tokenizer:
    metaspace = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(replacement=_SPACE, prepend_scheme="always")])
    tokenizer = _unigram(vocab, "[UNK]", metaspace)
    steps = [normalizers.Replace(Regex(r"\s{2,}|[\n\r\t]"), " "), normalizers.NFC(), normalizers.Strip(left=False, right=True)]
    tokenizer.normalizer = normalizers.Sequence([*([normalizers.Lowercase()] if lowercase else []), *steps])
    tokenizer.post_processor = _template("[CLS]", "[SEP]", _ids(vocab))
    return tokenizer


def _big_bird(vocab: list[tuple[str, float]], _merges: Any, lowercase: bool) -> Tokenizer:
    tokenizer = _unigram(vocab, "<unk>", pre_tokenizers.Metaspace(replacement=_SPACE, prepend_scheme="always", split=True))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Strip(left=False, right=False), normalizers.Replace(Regex(r" {2,}"), _SPACE)]
    )
    tokenizer.decoder = decoders.Metaspace(replacement=_SPACE, prepend_scheme="always", split=True)
    tokenizer.post_processor = _template("[CLS]", "[SEP]", _ids(vocab))
    return tokenizer


def _xlnet(vocab: list[tuple[str, float]], _merges: Any, lowercase: bool) -> Tokenizer:
    """XLNet's: ALBERT's normalisation, and the summary token last (`A <sep> <cls>`, <cls> of type 2)."""
    tokenizer = _unigram(vocab, "<unk>")
    steps = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"'), normalizers.NFKD(), normalizers.StripAccents()]
    tokenizer.normalizer = normalizers.Sequence([*steps, *([normalizers.Lowercase()] if lowercase else [])])
    ids = _ids(vocab)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A:0 <sep>:0 <cls>:2", pair="$A:0 <sep>:0 $B:1 <sep>:1 <cls>:2",
        special_tokens=[("<sep>", ids["<sep>"]), ("<cls>", ids["<cls>"])],
    )
    return tokenizer


_PIPELINES: dict[str, Callable[[Any, Any, bool], Tokenizer]] = {
    "BertTokenizer": _wordpiece,
    "ElectraTokenizer": _wordpiece,
    "DistilBertTokenizer": _wordpiece,
    "MobileBertTokenizer": _wordpiece,
    "MPNetTokenizer": _mpnet,
    "RobertaTokenizer": _byte_bpe,
    "XLMRobertaTokenizer": _xlm_roberta,
    "AlbertTokenizer": _albert,
    "DebertaV2Tokenizer": _deberta_v2,
    "BigBirdTokenizer": _big_bird,
    "XLNetTokenizer": _xlnet,
}
