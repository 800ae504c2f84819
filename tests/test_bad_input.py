"""Bad input and untrusted checkpoints: one clear line, exit code 4, nothing executed that was not allowed."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import assert_usage_error, edit_json

Factory = Callable[..., Path]


def test_missing_path(pytester: pytest.Pytester, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "checkpoint"
    assert_usage_error(pytester.runpytest(f"--bert-model={missing}"), f"--bert-model '{missing}': no such folder")


def test_empty_folder(pytester: pytest.Pytester, tmp_path: Path) -> None:
    assert_usage_error(pytester.runpytest(f"--bert-model={tmp_path}"), f"--bert-model '{tmp_path}': folder is empty; *")


def test_folder_without_config(pytester: pytest.Pytester, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a checkpoint", encoding="utf-8")
    assert_usage_error(
        pytester.runpytest(f"--bert-model={tmp_path}"),
        f"--bert-model '{tmp_path}': folder has no config.json, so it is not a checkpoint",
    )


def test_folder_without_tokenizer(pytester: pytest.Pytester, bert_copy: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (bert_copy / name).unlink(missing_ok=True)
    assert_usage_error(pytester.runpytest(f"--bert-model={bert_copy}"), "*: folder has no tokenizer (none of *")


def test_an_image_model_without_a_tokenizer_is_told_it_is_not_a_text_encoder(pytester: pytest.Pytester, tmp_path: Path) -> None:
    # A ViT as save_pretrained writes it: its image processor where a text model keeps its tokenizer.
    (tmp_path / "config.json").write_text('{"model_type": "vit", "image_size": 224, "patch_size": 16, "num_channels": 3}', encoding="utf-8")
    (tmp_path / "preprocessor_config.json").write_text('{"image_processor_type": "ViTImageProcessor"}', encoding="utf-8")
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert_usage_error(
        pytester.runpytest(f"--bert-model={tmp_path}"),
        f"--bert-model '{tmp_path}': model_type 'vit' is not a text encoder (preprocessor_config.json names ViTImageProcessor), "
        "and the folder has no tokenizer; pytest-bertprobe audits bidirectional text encoders over input_ids *",
    )


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_safetensors(pytester: pytest.Pytester, bert_copy: Path, damage: str) -> None:
    weights = bert_copy / "model.safetensors"
    content = weights.read_bytes()
    weights.write_bytes(content[: len(content) // 2] if damage == "truncated" else b"\x00garbage" * 100)
    assert_usage_error(
        pytester.runpytest(f"--bert-model={bert_copy}"),
        "*: model.safetensors is corrupt (*); re-download or re-save the checkpoint",
    )


def test_unreachable_hub_id(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert_usage_error(
        pytester.runpytest_subprocess("--bert-model=bertprobe-tests/does-not-exist"),
        "--bert-model 'bertprobe-tests/does-not-exist': no such local folder, and the hub id could not be fetched *"
        "; check the path, or run where the Hugging Face Hub is reachable",
    )


_NOT_ENCODERS = {
    # caught before any weight loads: the meta build's attention says causal
    "gpt2": ("GPT2Config", "GPT2Model", {"n_layer": 1, "n_embd": 16, "n_head": 2},
             "*: model_type 'gpt2' is a decoder: GPT2Attention.is_causal is set, so no token sees the tokens after it; *"),
    # caught after loading, by one pass: its code says nothing, its first hidden state ignores later tokens
    "openai-gpt": ("OpenAIGPTConfig", "OpenAIGPTModel", {"n_layer": 1, "n_embd": 16, "n_head": 2},
                   "*: model_type 'openai-gpt' is a decoder: changing the last of 8 tokens moves OpenAIGPTModel's hidden states before it by 0, *"),
    "mamba": ("MambaConfig", "MambaModel", {"hidden_size": 16, "num_hidden_layers": 1, "state_size": 4},
              "*: model_type 'mamba' is a decoder: changing the last of 8 tokens moves MambaModel's hidden states before it by 0, *"),
    "bart": ("BartConfig", "BartModel", {"encoder_layers": 1, "decoder_layers": 1, "d_model": 16, "encoder_attention_heads": 2,
                                         "decoder_attention_heads": 2, "encoder_ffn_dim": 16, "decoder_ffn_dim": 16},
             "*: model_type 'bart' is an encoder-decoder (config.is_encoder_decoder); *"),
    # a generation cache and no attention mask: its passes look bidirectional to the probe, it encodes no padded batch
    "cpmant": ("CpmAntConfig", "CpmAntModel", {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "dim_head": 8,
                                               "dim_ff": 16, "prompt_length": 4, "prompt_types": 3},
               "*: model_type 'cpmant' is a decoder: CpmAntModel.forward keeps a generation cache (use_cache) and takes no attention_mask, *"),
    "xlstm": ("xLSTMConfig", "xLSTMModel", {"hidden_size": 64, "embedding_dim": 64, "num_hidden_layers": 1, "num_heads": 4, "num_blocks": 1},
              "*: model_type 'xlstm' is a decoder: xLSTMModel.forward keeps a generation cache (use_cache) and takes no attention_mask, *"),
    "layoutlm": ("LayoutLMConfig", "LayoutLMModel", {"num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 16},
                 "*: model_type 'layoutlm': LayoutLMModel reads non-text inputs (bbox), so it is no text encoder; *"),
}  # fmt: skip


@pytest.mark.parametrize("model_type", _NOT_ENCODERS)
def test_not_a_text_encoder_is_refused_saying_which_and_why(
    pytester: pytest.Pytester, tmp_path: Path, tiny_checkpoint: Callable[..., Path], model_type: str
) -> None:
    import transformers

    config_class, model_class, sizes, message = _NOT_ENCODERS[model_type]
    if not hasattr(transformers, model_class):
        pytest.skip(f"transformers {transformers.__version__} has no {model_class}")
    folder = tmp_path / model_type
    getattr(transformers, model_class)(getattr(transformers, config_class)(vocab_size=256, **sizes)).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_checkpoint("bert") / name, folder / name)
    assert_usage_error(pytester.runpytest(f"--bert-model={folder}"), message)


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("--bert-dtype=float64", "--bert-dtype=float64: not a dtype; use one of float32, bfloat16, float16"),
        ("--bert-device=gpu", "--bert-device=gpu: not a device; use auto, cpu, cuda or cuda:N"),
        ("--bert-embedding=max", "--bert-embedding=max: use one of auto, cls, pooler, mean"),
        ("--bert-checks=padding_invarience", "--bert-checks=padding_invarience: no check is named 'padding_invarience'; did you mean padding_invariance or *"),
        ("--bert-skip-checks=pooler,speed", "--bert-skip-checks=pooler,speed: no check is named 'pooler'; did you mean pooler_range*"),
        ("--bert-checks=xyzzy", "--bert-checks=xyzzy: no check is named 'xyzzy'; the checks are pooler_relation, *, golden_snapshot"),
    ],
)
def test_invalid_option_values(pytester: pytest.Pytester, argument: str, message: str) -> None:
    assert_usage_error(pytester.runpytest(argument), message)


def test_cuda_where_there_is_none(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert_usage_error(
        pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", "--bert-device=cuda"),
        "--bert-device=cuda: CUDA is not available on this machine; use cpu or auto",
    )


ANNOUNCING_MODULE = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")
raise SystemExit("custom code ran")
"""


@pytest.mark.parametrize("config_name", ["config.json", "tokenizer_config.json"])
def test_remote_code_is_refused_before_it_is_imported(
    pytester: pytest.Pytester, bert_copy: Path, tmp_path: Path, config_name: str
) -> None:
    marker = tmp_path / "custom-code-was-imported"
    (bert_copy / "modeling_planted.py").write_text(ANNOUNCING_MODULE.format(marker=str(marker)), encoding="utf-8")
    key = "AutoModel" if config_name == "config.json" else "AutoTokenizer"
    edit_json(bert_copy / config_name, auto_map={key: "modeling_planted.PlantedModel"})
    result = pytester.runpytest_subprocess(f"--bert-model={bert_copy}")
    assert_usage_error(
        result,
        f"*: {config_name} asks for custom code (auto_map); it was not imported. "
        "Pass --bert-trust-remote-code if you trust this checkpoint",
    )
    assert not marker.exists()


def test_pickle_only_weights_are_refused_without_unpickling(
    pytester: pytest.Pytester, bert_copy: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pickle-was-loaded"
    (bert_copy / "model.safetensors").unlink()
    # A pickle whose loading would leave a marker file behind.
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    (bert_copy / "pytorch_model.bin").write_bytes(payload)
    result = pytester.runpytest_subprocess(f"--bert-model={bert_copy}")
    assert_usage_error(
        result,
        "*: weights are pickle only (pytorch_model.bin), which can run code when loaded; it was not opened. "
        "Convert to safetensors, or pass --bert-allow-pickle if you trust it",
    )
    assert not marker.exists()


def test_pickle_weights_load_when_allowed(pytester: pytest.Pytester, tiny_checkpoint: Factory, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    folder = Path(shutil.copytree(tiny_checkpoint("bert"), tmp_path / "pickled"))
    # transformers 5 only writes safetensors, so write the legacy pickle by hand.
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    assert (folder / "pytorch_model.bin").is_file() and not list(folder.glob("*.safetensors"))
    result = pytester.runpytest(f"--bert-model={folder}", "--bert-allow-pickle", "-k", "pooler_is_dense")
    result.assert_outcomes(passed=1)


def test_broken_but_loadable_checkpoint_is_not_a_usage_error(pytester: pytest.Pytester, bert_copy: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(bert_copy / "model.safetensors")
    name = next(key for key in tensors if "pooler.dense.weight" in key)
    tensors[name][0, 0] = float("nan")
    save_file(tensors, bert_copy / "model.safetensors", metadata={"format": "pt"})
    result = pytester.runpytest(f"--bert-model={bert_copy}", "-k", "pooler_is_dense or stored_tensor_is_finite")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1, skipped=1)  # weights_finite owns the NaN; the pooler relation it explains skips


def test_weights_that_do_not_fit_the_config_stop_the_run_with_one_line(pytester: pytest.Pytester, bert_copy: Path) -> None:
    edit_json(bert_copy / "config.json", intermediate_size=40)
    result = pytester.runpytest(f"--bert-model={bert_copy}")
    assert_usage_error(
        result,
        f"--bert-model '{bert_copy}': config.json's sizes disagree with the weights: encoder.layer.0.intermediate.dense.weight "
        "is [[]40, 32] by the config (intermediate_size: 40), [[]37, 32] in the file (and 5 more tensors); nothing was loaded. *",
    )
    result.assert_outcomes()
