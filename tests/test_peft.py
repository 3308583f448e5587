"""PEFT (LoRA) on OphCLIP with peft 0.21 through peft's own API (`get_peft_model`, `PeftModel.from_pretrained`).

transformers 5.24's built-in adapter methods need peft>=0.22, so they are not used here.

1. Round trip with a CLIP-ViT vision tower: inject LoRA into the q/k/v projections of both towers, train one step, save
   the adapter, reload it on a fresh base (identical outputs), merge, save the merged model and load it with
   `trust_remote_code=True` in a process where this project cannot be imported.
2. LoRA with activation checkpointing (CLIP-ViT and ResNet vision towers; enabled before or after `get_peft_model`,
   both work): the layers are really checkpointed and the loss and gradients equal those without checkpointing.
3. LoRA under CPU bf16 autocast: finite loss, finite non-zero LoRA gradients.
4. LoRA with a frozen ResNet tower: its BatchNorm layers stay in eval mode while the model trains (whether `train()` is
   called before or after `get_peft_model`), their running statistics do not move, and the adapter reloads exactly on
   a fresh base (whether the trained model is evaluated before or after saving). Linear probing and trainable
   BatchNorm layers behave as before.
"""

import copy
import json
from collections import Counter

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file
from torch.testing import assert_close
from transformers import BertConfig, CLIPVisionConfig, ResNetConfig

from modeling_ophclip import LORA_TARGET_MODULES, OphCLIPConfig, OphCLIPForVideoClassification, OphCLIPModel
from remote_code import run_without_project


# peft 0.21 reads the deprecated `is_gradient_checkpointing` property of transformers 5.24.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

BATCH_SIZE, NUM_FRAMES, SEQ_LENGTH, VOCAB_SIZE, IMAGE_SIZE = 3, 2, 7, 99, 32
NUM_TEXT_LAYERS, NUM_VISION_LAYERS = 4, 2
PROJECTIONS = ["text_projection", "visual_projection"]
OUTPUT_KEYS = ("logits_per_text", "text_embeds", "video_embeds", "text_hidden", "vision_hidden")


def make_config(vision: str = "clip") -> OphCLIPConfig:
    """A fresh tiny config (never share one config object between models: transformers writes into it)."""
    if vision == "clip":
        vision_config = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=NUM_VISION_LAYERS,
                                         num_attention_heads=4, image_size=IMAGE_SIZE, patch_size=8)
    else:
        vision_config = ResNetConfig(embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1])
    text_config = BertConfig(vocab_size=VOCAB_SIZE, hidden_size=32, num_hidden_layers=NUM_TEXT_LAYERS,
                             num_attention_heads=4, intermediate_size=37, hidden_dropout_prob=0.0,
                             attention_probs_dropout_prob=0.0)
    return OphCLIPConfig(vision_config=vision_config, text_config=text_config, projection_dim=16,
                         use_text_projection=True)


def make_inputs(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, VOCAB_SIZE, (BATCH_SIZE, SEQ_LENGTH), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[-1, -2:] = 0  # one padded text
    input_ids[attention_mask == 0] = 0
    videos = torch.randn(BATCH_SIZE, NUM_FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values_videos": videos}


def make_lora_config(modules_to_save=PROJECTIONS, **kwargs) -> LoraConfig:
    return LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGET_MODULES, modules_to_save=list(modules_to_save),
                      **kwargs)


@torch.no_grad()
def eval_outputs(model, inputs: dict) -> dict:
    """Eval-mode outputs, including the towers' hidden states (which only LoRA changes, not the projections)."""
    model.eval()
    out = model(**inputs)
    return {
        "logits_per_text": out.logits_per_text,
        "text_embeds": out.text_embeds,
        "video_embeds": out.video_embeds,
        "text_hidden": out.text_model_output.last_hidden_state,
        "vision_hidden": out.vision_model_output.last_hidden_state,
    }


def lora_layers(model) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, LoraLayer)]


def lora_parameters(model) -> dict:
    return {name: param for name, param in model.named_parameters() if "lora_" in name}


def loss_and_grads(model, inputs: dict) -> tuple[torch.Tensor, dict]:
    model.train()
    model.zero_grad(set_to_none=True)
    loss = model(**inputs, return_loss=True).loss
    loss.backward()
    grads = {name: param.grad.detach().clone() for name, param in model.named_parameters() if param.requires_grad
             and param.grad is not None}
    return loss.detach(), grads


def count_checkpoint_calls(model) -> Counter:
    """Wrap every checkpointing function the model set so that calls are counted per module name."""
    calls = Counter()
    for name, module in model.named_modules():
        if getattr(module, "gradient_checkpointing", False) and hasattr(module, "_gradient_checkpointing_func"):
            def counting(*args, _func=module._gradient_checkpointing_func, _name=name, **kwargs):
                calls[_name] += 1
                return _func(*args, **kwargs)

            module._gradient_checkpointing_func = counting
    return calls


def assert_nonzero_finite(grads: dict, names):
    for name in names:
        assert name in grads, f"no gradient for {name}"
        assert torch.isfinite(grads[name]).all(), f"non-finite gradient for {name}"
        assert grads[name].abs().sum() > 0, f"zero gradient for {name}"


# ---------------------------------------------------------------------------------------------------------------------
# 1. Round trip: inject, train, save, reload, merge, load the merged folder as remote code
# ---------------------------------------------------------------------------------------------------------------------

CHILD_SCRIPT = """
import json
import sys

import torch
from transformers import AutoModel

try:
    import modeling_ophclip  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("modeling_ophclip is importable in the child process; the test would prove nothing")

model = AutoModel.from_pretrained({merged_dir!r}, trust_remote_code=True).eval()
inputs = torch.load({inputs_path!r})
with torch.no_grad():
    out = model(**inputs)
torch.save(
    {{
        "logits_per_text": out.logits_per_text,
        "text_embeds": out.text_embeds,
        "video_embeds": out.video_embeds,
        "text_hidden": out.text_model_output.last_hidden_state,
        "vision_hidden": out.vision_model_output.last_hidden_state,
    }},
    {outputs_path!r},
)
module = sys.modules[type(model).__module__]
print(json.dumps({{
    "class_name": type(model).__name__,
    "class_module": type(model).__module__,
    "class_file": module.__file__,
    "project_modules": sorted(name for name in sys.modules if name.partition(".")[0] in _BLOCKED),
}}))
"""


def test_lora_round_trip_and_merged_remote_code(tmp_path):
    torch.manual_seed(0)
    base = OphCLIPModel(make_config("clip")).eval()
    base_dir, adapter_dir, merged_dir = tmp_path / "base", tmp_path / "adapter", tmp_path / "merged"
    base.save_pretrained(base_dir)
    inputs = make_inputs()
    base_out = eval_outputs(base, inputs)

    model = get_peft_model(base, make_lora_config())
    assert isinstance(model, PeftModel)

    # LoRA went into the q/k/v projections of both towers, and nowhere else.
    layers = lora_layers(model)
    text_layers = [name for name in layers if ".text_model." in name]
    vision_layers = [name for name in layers if ".vision_model." in name]
    assert len(text_layers) == 3 * NUM_TEXT_LAYERS and len(vision_layers) == 3 * NUM_VISION_LAYERS, layers
    assert len(layers) == len(text_layers) + len(vision_layers)
    assert {name.rsplit(".", 1)[-1] for name in text_layers} == {"query", "key", "value"}
    assert {name.rsplit(".", 1)[-1] for name in vision_layers} == {"q_proj", "k_proj", "v_proj"}
    trainable = [name for name, param in model.named_parameters() if param.requires_grad]
    assert all("lora_" in name or ".modules_to_save." in name for name in trainable), trainable
    for projection in PROJECTIONS:
        assert any(f"{projection}.modules_to_save." in name for name in trainable), projection
    # B starts at zero: the wrapped model computes what the base computed.
    for key in OUTPUT_KEYS:
        assert_close(eval_outputs(model, inputs)[key], base_out[key], atol=1e-6, rtol=0)

    # One optimizer step.
    model.train()
    one_training_step(model, inputs)
    lora_b = {name: param for name, param in lora_parameters(model).items() if "lora_B" in name}
    assert len(lora_b) == len(layers)
    for name, param in lora_b.items():
        assert param.abs().sum() > 0, f"{name} is still zero after a step"

    trained_out = eval_outputs(model, inputs)
    for key in OUTPUT_KEYS:  # the hidden states show that LoRA changed each tower, not just the projections
        assert not torch.allclose(trained_out[key], base_out[key], atol=1e-4), f"{key} did not change"
    with model.disable_adapter():
        disabled_out = eval_outputs(model, inputs)
    for key in OUTPUT_KEYS:
        assert_close(disabled_out[key], base_out[key], atol=1e-6, rtol=0)

    # The adapter file holds the LoRA matrices of both towers and the two projections, and no base weight.
    model.save_pretrained(adapter_dir)
    saved = load_file(adapter_dir / "adapter_model.safetensors")
    assert sum(".text_model." in key and "lora_" in key for key in saved) == 2 * len(text_layers)
    assert sum(".vision_model." in key and "lora_" in key for key in saved) == 2 * len(vision_layers)
    for projection in PROJECTIONS:
        assert any(projection in key for key in saved), projection
    assert all("lora_" in key or any(p in key for p in PROJECTIONS) for key in saved), sorted(saved)

    # Reload on a fresh base: identical outputs.
    fresh = OphCLIPModel.from_pretrained(base_dir)
    for key in OUTPUT_KEYS:
        assert_close(eval_outputs(fresh, inputs)[key], base_out[key], atol=1e-6, rtol=0)
    reloaded = PeftModel.from_pretrained(fresh, adapter_dir)
    reloaded_out = eval_outputs(reloaded, inputs)
    for key in OUTPUT_KEYS:
        assert_close(reloaded_out[key], trained_out[key], atol=1e-6, rtol=0)

    # Merge into a plain OphCLIPModel and save it with its code.
    merged = reloaded.merge_and_unload()
    assert type(merged) is OphCLIPModel
    assert not lora_layers(merged)
    merged_out = eval_outputs(merged, inputs)
    for key in OUTPUT_KEYS:
        assert_close(merged_out[key], trained_out[key], atol=1e-5, rtol=1e-5)
    merged.save_pretrained(merged_dir)
    for filename in ("config.json", "model.safetensors", "modeling_ophclip.py", "configuration_ophclip.py"):
        assert (merged_dir / filename).is_file(), filename
    assert json.loads((merged_dir / "config.json").read_text())["auto_map"]["AutoModel"].endswith(".OphCLIPModel")

    # Load it where the project is not importable: the class must come from the copied code.
    inputs_path, outputs_path = tmp_path / "inputs.pt", tmp_path / "child_outputs.pt"
    torch.save(inputs, inputs_path)
    modules_cache = tmp_path / "hf_modules_cache"
    result = run_without_project(
        CHILD_SCRIPT.format(merged_dir=str(merged_dir), inputs_path=str(inputs_path), outputs_path=str(outputs_path)),
        cwd=tmp_path,
        env_extra={"HF_MODULES_CACHE": str(modules_cache)},
    )
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["class_name"] == "OphCLIPModel"
    assert info["class_module"].startswith("transformers_modules."), info
    assert info["class_file"].startswith(str(modules_cache)), info
    assert info["project_modules"] == [], info
    child_out = torch.load(outputs_path)
    for key in OUTPUT_KEYS:
        assert_close(child_out[key], merged_out[key], atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# 2. LoRA + activation checkpointing
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("order", ["before_get_peft_model", "after_get_peft_model"])
@pytest.mark.parametrize("vision", ["clip", "resnet"])
def test_lora_with_activation_checkpointing(vision, order):
    """`activation_checkpointing_enable()` on the base model works before `get_peft_model` and after it (then on
    `peft_model.get_base_model()`); transformers' default `use_reentrant=False` needs no input-grad hooks.

    The ResNet tower has no q/k/v projections, so LoRA is only in the text tower; the ResNet stem (`embedder`) is
    trained in full (`modules_to_save=[..., "vision_model.embedder"]`; a bare `"embedder"` would also match the
    stem's inner `embedder` conv layer and nest two wrappers) so that gradients have to flow back through the checkpointed ResNet stages.
    """
    modules_to_save = PROJECTIONS + (["vision_model.embedder"] if vision == "resnet" else [])
    # Random B (init_lora_weights=False) so that the A matrices get non-zero gradients too.
    lora_config = dict(modules_to_save=modules_to_save, init_lora_weights=False)
    torch.manual_seed(0)
    reference_base = OphCLIPModel(make_config(vision))
    checkpointed_base = copy.deepcopy(reference_base)
    if order == "before_get_peft_model":
        checkpointed_base.activation_checkpointing_enable()
    reference = get_peft_model(reference_base, make_lora_config(**lora_config))
    checkpointed = get_peft_model(checkpointed_base, make_lora_config(**lora_config))
    checkpointed.load_state_dict(reference.state_dict())  # the same weights, LoRA included
    if order == "after_get_peft_model":
        checkpointed.get_base_model().activation_checkpointing_enable()
    assert checkpointed.get_base_model().is_activation_checkpointing
    assert not reference.get_base_model().is_activation_checkpointing
    calls = count_checkpoint_calls(checkpointed)

    layers = lora_layers(checkpointed)
    text_layers = [name for name in layers if ".text_model." in name]
    vision_layers = [name for name in layers if ".vision_model." in name]
    assert len(text_layers) == 3 * NUM_TEXT_LAYERS
    assert len(vision_layers) == (3 * NUM_VISION_LAYERS if vision == "clip" else 0)

    inputs = make_inputs()
    reference_loss, reference_grads = loss_and_grads(reference, inputs)
    loss, grads = loss_and_grads(checkpointed, inputs)

    # Every text layer and every vision layer (ViT encoder layers, or ResNet stages run by OphCLIPModel) went through
    # the checkpointing function once.
    text_calls = {name: n for name, n in calls.items() if ".text_model.encoder.layer." in name}
    assert len(text_calls) == NUM_TEXT_LAYERS and set(text_calls.values()) == {1}, calls
    if vision == "clip":
        vision_calls = {name: n for name, n in calls.items() if ".vision_model.encoder.layers." in name}
        assert len(vision_calls) == NUM_VISION_LAYERS and set(vision_calls.values()) == {1}, calls
    else:
        num_stages = len(checkpointed.get_base_model().vision_model.encoder.stages)
        assert calls["base_model.model"] == num_stages, calls

    assert torch.isfinite(loss)
    assert_close(loss, reference_loss)
    assert grads.keys() == reference_grads.keys()
    for name in grads:
        assert_close(grads[name], reference_grads[name], msg=lambda m, name=name: f"{name}: {m}")

    lora_names = [name for name in lora_parameters(checkpointed) if "lora_A" in name or "lora_B" in name]
    assert len(lora_names) == 2 * len(layers)
    assert_nonzero_finite(grads, lora_names)
    saved_names = [name for name in grads if ".modules_to_save." in name]
    for module_name in modules_to_save:
        assert any(f"{module_name}.modules_to_save." in name for name in saved_names), module_name
    assert_nonzero_finite(grads, saved_names)


# ---------------------------------------------------------------------------------------------------------------------
# 3. LoRA under bf16 autocast on CPU
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("vision", ["clip", "resnet"])
def test_lora_bf16_autocast(vision):
    torch.manual_seed(0)
    model = get_peft_model(OphCLIPModel(make_config(vision)), make_lora_config(init_lora_weights=False))
    inputs = make_inputs()
    fp32_loss, _ = loss_and_grads(model, inputs)

    model.train()
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**inputs, return_loss=True)
    assert out.logits_per_text.dtype == torch.bfloat16  # autocast really ran the matmuls in bf16
    assert torch.isfinite(out.loss)
    assert abs(out.loss.float().item() - fp32_loss.item()) < 0.1  # bf16 rounding, not garbage
    out.loss.backward()

    lora = lora_parameters(model)
    towers = {name.split(".")[2] for name in lora}
    assert towers == ({"text_model", "vision_model"} if vision == "clip" else {"text_model"}), towers
    for name, param in lora.items():
        assert param.dtype == torch.float32, name  # autocast leaves the trainable weights in fp32
        assert param.grad is not None, f"no gradient for {name}"
        assert param.grad.dtype == torch.float32, name
    assert_nonzero_finite({name: param.grad for name, param in lora.items()}, lora)


# ---------------------------------------------------------------------------------------------------------------------
# 4. LoRA with a frozen ResNet tower: BatchNorm statistics do not drift, the adapter reloads exactly
# ---------------------------------------------------------------------------------------------------------------------

def batchnorm_layers(module) -> dict:
    return {name: layer for name, layer in module.named_modules() if isinstance(layer, torch.nn.BatchNorm2d)}


def batchnorm_buffers(module) -> dict:
    return {f"{name}.{key}": buffer.detach().clone() for name, layer in batchnorm_layers(module).items()
            for key, buffer in layer.named_buffers(recurse=False)}


def one_training_step(model, inputs: dict) -> None:
    optimizer = torch.optim.AdamW([param for param in model.parameters() if param.requires_grad], lr=1e-2)
    loss = model(**inputs, return_loss=True).loss
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("when_eval", ["eval_then_save", "save_then_eval"])
@pytest.mark.parametrize("when_train", ["train_before_get_peft_model", "train_after_get_peft_model"])
def test_lora_with_frozen_resnet_tower_reloads_exactly(tmp_path, when_train, when_eval):
    """The recipe of a user: LoRA on the text tower's query/value (a ResNet has no q/k/v), one step in train mode,
    `save_pretrained`, `PeftModel.from_pretrained(fresh_base, ...)`. The ResNet tower is frozen, so its BatchNorm
    running statistics (buffers that the adapter does not save) must not move."""
    torch.manual_seed(0)
    base = OphCLIPModel(make_config("resnet"))  # a model built from a config starts in train mode
    base_dir, adapter_dir = tmp_path / "base", tmp_path / "adapter"
    base.save_pretrained(base_dir)
    statistics = batchnorm_buffers(base.vision_model)
    assert statistics
    inputs = make_inputs()
    lora_config = LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], init_lora_weights=False)

    if when_train == "train_before_get_peft_model":
        base.train()  # every parameter still trainable here: the BatchNorm layers are in train mode
        assert all(layer.training for layer in batchnorm_layers(base).values())
        model = get_peft_model(base, lora_config)  # freezes the tower after train() was called
    else:
        model = get_peft_model(base, lora_config)
        model.train()
        assert not any(layer.training for layer in batchnorm_layers(model).values())
    assert lora_layers(model) and all(".text_model." in name for name in lora_layers(model))
    assert not any(param.requires_grad for param in model.get_base_model().vision_model.parameters())

    one_training_step(model, inputs)
    assert model.training and model.get_base_model().text_model.training
    assert not any(layer.training for layer in batchnorm_layers(model).values())  # frozen: eval mode
    after = batchnorm_buffers(model.get_base_model().vision_model)
    for name, value in statistics.items():
        assert torch.equal(after[name], value), f"{name} moved during training"

    if when_eval == "eval_then_save":
        trained_out = eval_outputs(model, inputs)
        model.save_pretrained(adapter_dir)
    else:
        model.save_pretrained(adapter_dir)
        trained_out = eval_outputs(model, inputs)
    assert not torch.allclose(trained_out["text_embeds"], eval_outputs(OphCLIPModel.from_pretrained(base_dir), inputs)[
        "text_embeds"], atol=1e-4)  # the step changed the model

    reloaded = PeftModel.from_pretrained(OphCLIPModel.from_pretrained(base_dir), adapter_dir)
    reloaded_out = eval_outputs(reloaded, inputs)
    for key in OUTPUT_KEYS:
        assert_close(reloaded_out[key], trained_out[key], atol=0, rtol=0, msg=lambda m, key=key: f"{key}: {m}")


def test_batchnorm_statistics_move_only_when_trainable_or_allowed():
    """Trainable BatchNorm layers (full fine-tuning, `modules_to_save`) keep updating their statistics; a frozen one
    can be allowed to with `keep_frozen_batchnorm_in_eval = False`; linear probing keeps the tower fixed."""
    torch.manual_seed(0)
    inputs = make_inputs()

    full = OphCLIPModel(make_config("resnet")).train()  # full fine-tuning: nothing frozen
    before = batchnorm_buffers(full.vision_model)
    full(**inputs, return_loss=True)
    after = batchnorm_buffers(full.vision_model)
    assert all(layer.training for layer in batchnorm_layers(full).values())
    assert any(not torch.equal(after[name], value) for name, value in before.items())

    # The stem trained in full (a trainable copy of its BatchNorm) while the rest of the tower is frozen.
    model = get_peft_model(OphCLIPModel(make_config("resnet")),
                           LoraConfig(r=4, target_modules=["query"], modules_to_save=["vision_model.embedder"]))
    model.train()
    trainable = {name for name, layer in batchnorm_layers(model).items() if layer.training}
    assert trainable and all(".modules_to_save." in name for name in trainable), trainable

    allowed = get_peft_model(OphCLIPModel(make_config("resnet")), LoraConfig(r=4, target_modules=["query"]))
    allowed.get_base_model().keep_frozen_batchnorm_in_eval = False
    allowed.train()
    before = batchnorm_buffers(allowed.get_base_model().vision_model)
    allowed(**inputs, return_loss=True)
    after = batchnorm_buffers(allowed.get_base_model().vision_model)
    assert any(not torch.equal(after[name], value) for name, value in before.items())

    config = make_config("resnet")
    config.num_labels = 3
    probe = OphCLIPForVideoClassification(config)
    probe.vision_model.requires_grad_(False)
    probe.train()
    before = batchnorm_buffers(probe.vision_model)
    loss = probe(pixel_values_videos=inputs["pixel_values_videos"], labels=torch.tensor([0, 1, 2])).loss
    loss.backward()
    assert probe.classifier.weight.grad is not None and probe.visual_projection.weight.grad is not None
    after = batchnorm_buffers(probe.vision_model)
    assert all(torch.equal(after[name], value) for name, value in before.items())
    probe.eval()
    assert not any(layer.training for layer in batchnorm_layers(probe).values())
    probe.train()
    assert probe.visual_projection.training and not any(layer.training for layer in batchnorm_layers(probe).values())


# ---------------------------------------------------------------------------------------------------------------------
# The helper that test 1 relies on
# ---------------------------------------------------------------------------------------------------------------------

def test_run_without_project_blocks_the_project(tmp_path):
    """Even with the repository root forced onto PYTHONPATH, the child cannot import any project package."""
    from remote_code import PROJECT_PACKAGES, REPO_ROOT

    script = f"""
    import sys
    blocked = []
    for name in {PROJECT_PACKAGES!r}:
        try:
            __import__(name)
        except ImportError:
            blocked.append(name)
    print(",".join(blocked))
    print(any(entry and entry.rstrip("/") == {str(REPO_ROOT)!r} for entry in sys.path))
    """
    result = run_without_project(script, cwd=tmp_path, env_extra={"PYTHONPATH": str(REPO_ROOT)})
    blocked, repo_on_path = result.stdout.split()
    assert blocked.split(",") == list(PROJECT_PACKAGES)
    assert repo_on_path == "False"
