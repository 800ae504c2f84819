"""Test tooling, not a stage of the audit: tiny offline BERT-family checkpoints (`make_tiny_checkpoint`).

Imports torch and transformers; the plugin never imports it.
"""

from pytest_bertprobe.testing.tiny import (
    ALL_ARCHITECTURES,
    ARCHITECTURES,
    DEFECTIVE_ARCHITECTURES,
    MASK_IGNORING_ARCHITECTURES,
    SEED_SENTENCES,
    make_tiny_checkpoint,
)

__all__ = ["ALL_ARCHITECTURES", "ARCHITECTURES", "DEFECTIVE_ARCHITECTURES", "MASK_IGNORING_ARCHITECTURES", "SEED_SENTENCES", "make_tiny_checkpoint"]
