"""Fixed probe sentences: the seed's five, and edge cases every audit tries."""

from __future__ import annotations

# The seed's experiment (bge-large-zh): happy, glad, sad, weather, "will there be a big typhoon today?"
SEED_SENTENCES: tuple[str, ...] = ("开心", "快乐", "难过", "天气", "今天会有大大的台风吗?")

ENGLISH_SENTENCES: tuple[str, ...] = ("hello world", "the weather is sad today")

PROBE_SENTENCES: tuple[str, ...] = SEED_SENTENCES + ENGLISH_SENTENCES
