"""Fixed probe sentences: the seed's five, and edge cases every audit tries."""

from __future__ import annotations

# The seed's experiment (bge-large-zh): happy, glad, sad, weather, "will there be a big typhoon today?"
SEED_SENTENCES: tuple[str, ...] = ("开心", "快乐", "难过", "天气", "今天会有大大的台风吗?")

ENGLISH_SENTENCES: tuple[str, ...] = ("hello world", "the weather is sad today", "Will there be a big typhoon?")

EDGE_SENTENCES: tuple[str, ...] = (
    "",  # only the special tokens
    "café naïve résumé",  # accents
    "good day 😀🌧️",  # emoji
    "  hello \t  world  ",  # whitespace runs
    "?!.,;:",  # punctuation only
)

# Distinct lengths on purpose: padding-dependent checks need rows of different lengths.
PROBE_SENTENCES: tuple[str, ...] = SEED_SENTENCES + ENGLISH_SENTENCES + EDGE_SENTENCES

PAIRS: tuple[tuple[str, str], ...] = (
    ("今天会有大大的台风吗?", "天气"),
    ("hello world", "the weather is sad today"),
)

# Four times the longest position table in the family (ModernBERT's 8192): the truncation path, and inputs
# exactly at the maximum. Tokenizing costs time in the text's length, truncated or not: 32k characters, not more.
LONG_SENTENCE = "长" * 32_768

# Text that has crashed tokenizers and audits elsewhere; the audit must take all of it in stride.
ADVERSARIAL_SENTENCES: tuple[str, ...] = (
    "\x00\x01\x07\x1b[31m\x7f control",  # control characters and an ANSI escape
    "zero\u200bwidth\u200c\u200d\ufeff joiners",  # zero-width space, joiners, BOM
    "\u202eRTL override\u202c \u200fmark",  # right-to-left override and mark
    "\u0301\u0308 lone combining marks",  # combining marks with nothing to combine with
    "[CLS] [SEP] [MASK] [PAD] [UNK] <s> </s> <pad> <mask>",  # special-token text
    LONG_SENTENCE,
)
