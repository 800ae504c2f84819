"""Checkpoints for the behavioural checks' tests: copies of the real all-MiniLM-L6-v2 with a fault planted, and the
healthy controls this repository trained on it (`tests/data/make_*.py`): a CLS-pooled encoder, a classifier, a masked-LM.

Each builder writes a folder and returns its path; `tests/test_behaviour.py` builds them once per session.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers import plant_copy

DATA = Path(__file__).resolve().parent / "data"
MLM_HEAD = DATA / "minilm-mlm-head.safetensors"
CLS_LAYER = DATA / "cls-minilm-layer5.safetensors"
CLASSIFIER_HEAD = DATA / "minilm-classifier-head.safetensors"
CLASSIFIER_LABELS = ("numbers", "text", "errors", "control flow")
CLS_POOLING = {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}

Tensors = dict[str, Any]


def declare_pooling(folder: Path, **flags: bool) -> Path:
    """Set sentence-transformers' pooling flags in `folder/1_Pooling/config.json`."""
    config = folder / "1_Pooling" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text(encoding="utf-8")), **flags}, indent=2), encoding="utf-8")
    return folder


def swapped(first: str, second: str) -> Callable[[Tensors], None]:
    """Every tensor under prefix `first` saved in `second`'s place and back: two layers, or a query and a key projection."""

    def swap(tensors: Tensors) -> None:
        for key in [key for key in tensors if key.startswith(first)]:
            other = second + key[len(first) :]
            tensors[key], tensors[other] = tensors[other], tensors[key]

    return swap


def weight_and_bias_swapped(layer_norm: str) -> Callable[[Tensors], None]:
    """A LayerNorm whose weight and bias were saved in each other's place."""

    def swap(tensors: Tensors) -> None:
        tensors[f"{layer_norm}.weight"], tensors[f"{layer_norm}.bias"] = tensors[f"{layer_norm}.bias"], tensors[f"{layer_norm}.weight"]

    return swap


def freshly_initialised(config_folder: Path, model_class: str = "BertModel") -> Callable[[Tensors], None]:
    """Every stored tensor replaced by a fresh initialisation of the same model (seed 0): what `save_pretrained` of
    `from_config` writes."""

    def replace(tensors: Tensors) -> None:
        import torch
        import transformers

        architecture = getattr(transformers, model_class)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            state = architecture(transformers.AutoConfig.from_pretrained(config_folder)).state_dict()
        for key in tensors:
            if key in state:
                tensors[key] = state[key].clone().contiguous().to(tensors[key].dtype)

    return replace


def in_float16(tensors: Tensors) -> None:
    for key, tensor in tensors.items():
        if tensor.is_floating_point():
            tensors[key] = tensor.half()


def perturbed(tensors: Tensors) -> None:
    """Each weight moved by Gaussian noise of 1% of its own standard deviation (seed 0)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and tensor.numel() > 1:
            noise = torch.randn(tensor.shape, generator=generator)
            tensors[key] = (tensor.float() + 0.01 * tensor.float().std() * noise).to(tensor.dtype)


def cls_trained(tensors: Tensors) -> None:
    """The last layer's feed-forward block distilled so that [CLS] carries the sentence embedding (make_cls_minilm.py)."""
    from safetensors.torch import load_file

    for key, tensor in load_file(CLS_LAYER).items():
        tensors[key] = tensor.float()


def minilm_classifier(minilm: Path, target: Path, edit: Callable[[Tensors], None] | None = None) -> Path:
    """A BertForSequenceClassification: MiniLM's encoder, the pooler and classifier trained by make_minilm_classifier.py."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertForSequenceClassification

    labels = dict(enumerate(CLASSIFIER_LABELS))
    model = BertForSequenceClassification.from_pretrained(
        minilm, num_labels=len(labels), id2label=labels, label2id={name: index for index, name in labels.items()}
    )
    heads = {key: tensor.float() for key, tensor in load_file(CLASSIFIER_HEAD).items()}
    if edit is not None:
        edit(heads)
    with torch.no_grad():
        for key, tensor in heads.items():
            model.get_parameter(key).copy_(tensor)
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(minilm).save_pretrained(target)
    return target


def minilm_plants(minilm: Path, folder: Path) -> dict[str, Path]:
    """The MiniLM copies: healthy controls first, then one fault each (docs/DESIGN.md §5)."""

    def copy(name: str, **edits: Any) -> Path:
        return plant_copy(minilm, folder / name, **edits)

    return {
        "minilm-float16": copy("minilm-float16", weights=in_float16),
        "minilm-perturbed": copy("minilm-perturbed", weights=perturbed),
        "minilm-cls-trained": declare_pooling(copy("minilm-cls-trained", weights=cls_trained), **CLS_POOLING),
        "minilm-random": copy("minilm-random", weights=freshly_initialised(minilm)),
        "minilm-layers-1-4": copy("minilm-layers-1-4", weights=swapped("encoder.layer.1.", "encoder.layer.4.")),
        "minilm-query-key-0": copy("minilm-query-key-0", weights=swapped("encoder.layer.0.attention.self.query.", "encoder.layer.0.attention.self.key.")),
        "minilm-layernorm": copy("minilm-layernorm", weights=weight_and_bias_swapped("embeddings.LayerNorm")),
        "minilm-relu": copy("minilm-relu", config={"hidden_act": "relu"}),
        "minilm-cls-declared": declare_pooling(copy("minilm-cls-declared"), **CLS_POOLING),
        "minilm-6-heads": copy("minilm-6-heads", config={"num_attention_heads": 6}),
    }  # fmt: skip


def classifier_plants(minilm: Path, folder: Path) -> dict[str, Path]:
    """The trained classifier and three degenerate copies: zeroed, shrunk 1000x, a bias of +50 on one label."""

    def scaled(factor: float) -> Callable[[Tensors], None]:
        def scale(heads: Tensors) -> None:
            for key in ("classifier.weight", "classifier.bias"):
                heads[key] = heads[key] * factor

        return scale

    def biased(heads: Tensors) -> None:
        import torch

        heads["classifier.bias"] = heads["classifier.bias"] + torch.tensor([0.0, 0.0, 50.0, 0.0])  # 'errors'

    return {
        "classifier": minilm_classifier(minilm, folder / "classifier"),
        "classifier-zeroed": minilm_classifier(minilm, folder / "classifier-zeroed", scaled(0.0)),
        "classifier-shrunk": minilm_classifier(minilm, folder / "classifier-shrunk", scaled(1e-3)),
        "classifier-biased": minilm_classifier(minilm, folder / "classifier-biased", biased),
    }


def minilm_masked_lm(minilm: Path, target: Path) -> Path:
    """A BertForMaskedLM: MiniLM's encoder and the masked-LM head trained on it by make_minilm_mlm_head.py."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertForMaskedLM

    model = BertForMaskedLM.from_pretrained(minilm)
    model.load_state_dict({key: tensor.float() for key, tensor in load_file(MLM_HEAD).items()}, strict=False)
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(minilm).save_pretrained(target)
    return target


def mlm_plants(minilm: Path, folder: Path) -> dict[str, Path]:
    """The MiniLM masked-LM, and copies whose encoder is not the one its head was trained with."""
    healthy = minilm_masked_lm(minilm, folder / "minilm-mlm")

    def copy(name: str, **edits: Any) -> Path:
        return plant_copy(healthy, folder / name, **edits)

    def encoder_reinitialised(tensors: Tensors) -> None:
        fresh: Tensors = {key.removeprefix("bert."): tensor for key, tensor in tensors.items() if key.startswith("bert.encoder.")}
        freshly_initialised(minilm)(fresh)
        tensors.update({f"bert.{key}": tensor for key, tensor in fresh.items()})

    return {
        "minilm-mlm": healthy,
        "minilm-mlm-encoder-random": copy("minilm-mlm-encoder-random", weights=encoder_reinitialised),
        "minilm-mlm-layers-1-4": copy("minilm-mlm-layers-1-4", weights=swapped("bert.encoder.layer.1.", "bert.encoder.layer.4.")),
        "minilm-mlm-relu": copy("minilm-mlm-relu", config={"hidden_act": "relu"}),
    }
