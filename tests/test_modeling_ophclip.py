"""Model tests in the style of transformers' own: a tester with tiny configs and common checks written here."""

import doctest
import json

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForVideoClassification,
    BertConfig,
    CLIPVisionConfig,
)

import modeling_ophclip
from modeling_ophclip import OphCLIPConfig, OphCLIPForVideoClassification, OphCLIPModel
from modeling_ophclip.modeling_ophclip import masked_mean_pooling, surgvlp_text_pooling
from ophclip_testing import LN10, OphCLIPModelTester


VISION_TOWERS = ["resnet", "clip"]


@pytest.fixture(params=VISION_TOWERS)
def tester(request):
    return OphCLIPModelTester(vision=request.param)


def _eval_model(config, **kwargs):
    torch.manual_seed(0)
    return OphCLIPModel._from_config(config, **kwargs).eval()


# -- configuration ---------------------------------------------------------------------------------------------------


def test_default_config_reproduces_predecessor_architecture():
    config = OphCLIPConfig()
    assert config.vision_config.model_type == "resnet"
    assert list(config.vision_config.depths) == [3, 4, 6, 3]
    assert config.vision_hidden_size == 2048
    assert config.text_config.model_type == "bert"
    assert (config.text_config.vocab_size, config.text_config.num_hidden_layers, config.text_config.hidden_size) == (
        28996, 12, 768)
    assert config.projection_dim == 768 and not config.use_text_projection and config.visual_projection_bias
    assert config.text_pooling == "surgvlp" and config.text_pooling_layers == 4
    assert config.logit_scale_init_value == pytest.approx(LN10)  # tau = 0.1
    assert not config.learnable_logit_scale


def test_config_round_trip(tmp_path, tester):
    config = tester.get_config(text_pooling="mean", logit_scale_init_value=2.0, learnable_logit_scale=True)
    config.save_pretrained(tmp_path)
    reloaded = OphCLIPConfig.from_pretrained(tmp_path)
    assert reloaded.to_dict() == config.to_dict()
    assert type(reloaded.vision_config) is type(config.vision_config)
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"]["AutoConfig"] == (
        "configuration_ophclip.OphCLIPConfig")
    from_dict = OphCLIPConfig(**json.loads(config.to_json_string()))
    assert from_dict.to_dict() == config.to_dict()
    # AutoConfig resolves the model type in-process
    assert isinstance(AutoConfig.for_model("ophclip"), OphCLIPConfig)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"text_pooling": "max"}, "text_pooling must be one of"),
        ({"frame_pooling": "attention"}, "frame_pooling must be one of"),
        ({"text_pooling_layers": 9}, "text_pooling_layers must be an integer between 1"),
        ({"text_pooling_layers": 0}, "text_pooling_layers must be an integer between 1"),
        ({"projection_dim": 0}, "projection_dim must be a positive integer"),
        ({"use_text_projection": False, "projection_dim": 16}, "use_text_projection=False requires"),
        ({"logit_scale_init_value": float("nan")}, "logit_scale_init_value must be a finite number"),
        ({"text_config": {"model_type": "clip_text_model"}}, "text_config must be a BERT config"),
    ],
)
def test_config_validation(overrides, message):
    tester = OphCLIPModelTester()
    with pytest.raises((ValueError, TypeError), match=message):
        tester.get_config(**overrides)


def test_text_projection_optional_when_widths_match():
    tester = OphCLIPModelTester(projection_dim=32)
    model = OphCLIPModel(tester.get_config(use_text_projection=False))
    assert isinstance(model.text_projection, torch.nn.Identity)


# -- shapes, loss, initialisation -------------------------------------------------------------------------------------


def test_output_shapes(tester):
    model = _eval_model(tester.get_config())
    inputs = tester.prepare_inputs()
    with torch.no_grad():
        out = model(**inputs)
    b, d = tester.batch_size, tester.projection_dim
    assert out.logits_per_video.shape == (b, b) and out.logits_per_text.shape == (b, b)
    assert out.text_embeds.shape == (b, d) and out.video_embeds.shape == (b, d)
    torch.testing.assert_close(out.logits_per_video, out.logits_per_text.t())
    torch.testing.assert_close(out.text_embeds.norm(dim=-1), torch.ones(b))
    torch.testing.assert_close(out.video_embeds.norm(dim=-1), torch.ones(b))
    assert out.loss is None
    # texts and videos need not be the same number
    with torch.no_grad():
        more = model(input_ids=inputs["input_ids"][:2], attention_mask=inputs["attention_mask"][:2],
                     pixel_values_videos=inputs["pixel_values_videos"])
    assert more.logits_per_video.shape == (b, 2)
    with torch.no_grad():
        frames = model.get_image_features(inputs["pixel_values_videos"][0]).pooler_output
    assert frames.shape == (tester.num_frames, d)
    as_tuple = model(**inputs, return_dict=False)
    assert isinstance(as_tuple, tuple)


def test_return_loss_is_symmetric_infonce(tester):
    model = _eval_model(tester.get_config())
    inputs = tester.prepare_inputs()
    out = model(**inputs, return_loss=True)
    labels = torch.arange(tester.batch_size)
    expected = (F.cross_entropy(out.logits_per_text, labels) + F.cross_entropy(out.logits_per_video, labels)) / 2
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert model.visual_projection.weight.grad is not None and model.text_projection.weight.grad is not None


def test_logit_scale_initialisation(tmp_path):
    tester = OphCLIPModelTester()
    model = OphCLIPModel(tester.get_config())
    assert model.logit_scale.item() == pytest.approx(LN10)
    assert not model.logit_scale.requires_grad  # the predecessors' fixed tau = 0.1
    with torch.no_grad():
        out = model(**tester.prepare_inputs())
    ratio = out.logits_per_text / (out.text_embeds @ out.video_embeds.t())
    torch.testing.assert_close(ratio, torch.full_like(ratio, 10.0))
    learnable = OphCLIPModel(tester.get_config(learnable_logit_scale=True, logit_scale_init_value=2.6592))
    assert learnable.logit_scale.requires_grad and learnable.logit_scale.item() == pytest.approx(2.6592)
    # a loaded value is not re-initialised
    with torch.no_grad():
        learnable.logit_scale.fill_(3.0)
    learnable.save_pretrained(tmp_path / "learnable")
    reloaded = OphCLIPModel.from_pretrained(tmp_path / "learnable")
    assert reloaded.logit_scale.item() == pytest.approx(3.0) and reloaded.logit_scale.requires_grad
    # a fixed temperature stays fixed after a reload (and keeps a loaded value)
    with torch.no_grad():
        model.logit_scale.fill_(2.5)
    model.save_pretrained(tmp_path / "fixed")
    reloaded = OphCLIPModel.from_pretrained(tmp_path / "fixed")
    assert reloaded.logit_scale.item() == pytest.approx(2.5) and not reloaded.logit_scale.requires_grad
    assert "logit_scale" not in dict(reloaded.named_parameters())


def test_projection_initialisation():
    config = OphCLIPModelTester().get_config(initializer_range=0.02)
    model = OphCLIPModel(config)
    weight = model.visual_projection.weight
    assert abs(weight.mean().item()) < 0.01 and weight.std().item() == pytest.approx(0.02, rel=0.2)
    assert torch.count_nonzero(model.visual_projection.bias) == 0


# -- save / load ------------------------------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path, tester):
    model = _eval_model(tester.get_config())
    inputs = tester.prepare_inputs()
    model.save_pretrained(tmp_path)
    for loaded in (OphCLIPModel.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
        assert type(loaded) is OphCLIPModel
        loaded.eval()
        with torch.no_grad():
            a, b = model(**inputs), loaded(**inputs)
        assert torch.equal(a.logits_per_text, b.logits_per_text)
        assert torch.equal(a.video_embeds, b.video_embeds)
    for name in ("configuration_ophclip.py", "modeling_ophclip.py"):
        assert (tmp_path / name).exists()


def test_classifier_loads_vision_weights_of_a_dual_encoder(tmp_path, tester):
    model = _eval_model(tester.get_config())
    model.save_pretrained(tmp_path)
    classifier = AutoModelForVideoClassification.from_pretrained(tmp_path, num_labels=5).eval()
    assert isinstance(classifier, OphCLIPForVideoClassification)
    assert not hasattr(classifier, "text_model")
    videos = tester.prepare_inputs()["pixel_values_videos"]
    with torch.no_grad():
        expected = model.get_video_features(videos).pooler_output
        out = classifier(pixel_values_videos=videos)
    assert torch.equal(out.video_embeds, expected)
    assert out.logits.shape == (tester.batch_size, 5)


def test_classifier_losses():
    tester = OphCLIPModelTester()
    videos = tester.prepare_inputs()["pixel_values_videos"]
    single = OphCLIPForVideoClassification(tester.get_config(num_labels=4))
    out = single(pixel_values_videos=videos, labels=torch.tensor([0, 3, 1]))
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, torch.tensor([0, 3, 1])))
    multi = OphCLIPForVideoClassification(tester.get_config(num_labels=4, problem_type="multi_label_classification"))
    targets = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 1]], dtype=torch.float)
    out = multi(pixel_values_videos=videos, labels=targets)
    torch.testing.assert_close(out.loss, F.binary_cross_entropy_with_logits(out.logits, targets))
    out.loss.backward()
    with pytest.raises(ValueError, match="labels has 2 rows"):
        single(pixel_values_videos=videos, labels=torch.tensor([0, 1]))


# -- invariances ------------------------------------------------------------------------------------------------------


def test_batch_composition_invariance(tester):
    """In eval mode an item's embedding does not depend on what else is in the batch."""
    model = _eval_model(tester.get_config())
    inputs = tester.prepare_inputs()
    with torch.no_grad():
        full = model(**inputs)
        for i in range(tester.batch_size):
            single = model(input_ids=inputs["input_ids"][i : i + 1], attention_mask=inputs["attention_mask"][i : i + 1],
                           pixel_values_videos=inputs["pixel_values_videos"][i : i + 1])
            torch.testing.assert_close(single.text_embeds[0], full.text_embeds[i], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(single.video_embeds[0], full.video_embeds[i], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("pooling", ["surgvlp", "cls", "mean"])
def test_text_padding_invariance(pooling):
    tester = OphCLIPModelTester(text_pooling=pooling)
    model = _eval_model(tester.get_config())
    inputs = tester.prepare_inputs()
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    padded_ids = torch.cat([ids, torch.zeros(ids.shape[0], 5, dtype=ids.dtype)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros_like(padded_ids[:, :5])], dim=1)
    with torch.no_grad():
        a = model.get_text_features(ids, mask).pooler_output
        b = model.get_text_features(padded_ids, padded_mask).pooler_output
    # The SurgVLP pooling divides by the padded length, so only its direction is padding-invariant.
    torch.testing.assert_close(F.normalize(a, dim=-1), F.normalize(b, dim=-1), atol=1e-5, rtol=1e-4)
    if pooling != "surgvlp":
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    else:
        torch.testing.assert_close(a * ids.shape[1], b * padded_ids.shape[1], atol=1e-4, rtol=1e-4)


def test_frame_mask_invariance(tester):
    """Padded frames, whatever they contain, do not change a video's embedding."""
    model = _eval_model(tester.get_config())
    videos = tester.prepare_inputs()["pixel_values_videos"]
    short = videos[:, :2]
    padded = torch.cat([short, 100 * torch.randn_like(videos[:, :3])], dim=1)
    mask = torch.tensor([[1, 1, 0, 0, 0]] * tester.batch_size)
    with torch.no_grad():
        a = model.get_video_features(short).pooler_output
        b = model.get_video_features(padded, frame_mask=mask).pooler_output
        c = model.get_video_features(short, frame_mask=torch.ones(tester.batch_size, 2, dtype=torch.long)).pooler_output
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-4)
    # mixed lengths in one batch equal each video on its own
    mixed_mask = torch.tensor([[1, 1, 1, 1]] + [[1, 1, 0, 0]] * (tester.batch_size - 1))
    with torch.no_grad():
        mixed = model.get_video_features(videos, frame_mask=mixed_mask).pooler_output
        first = model.get_video_features(videos[:1]).pooler_output
        second = model.get_video_features(videos[1:2, :2]).pooler_output
    torch.testing.assert_close(mixed[0], first[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(mixed[1], second[0], atol=1e-5, rtol=1e-4)


def test_video_embedding_is_mean_of_frame_embeddings(tester):
    model = _eval_model(tester.get_config())
    videos = tester.prepare_inputs()["pixel_values_videos"]
    with torch.no_grad():
        video = model.get_video_features(videos[:1]).pooler_output[0]
        frames = model.get_image_features(videos[0]).pooler_output
    torch.testing.assert_close(video, frames.mean(dim=0), atol=1e-5, rtol=1e-4)


def test_sdpa_matches_eager(tester):
    config = tester.get_config()
    inputs = tester.prepare_inputs()
    eager = _eval_model(config, attn_implementation="eager")
    sdpa = _eval_model(tester.get_config(), attn_implementation="sdpa")
    sdpa.load_state_dict(eager.state_dict())
    assert eager.text_model.config._attn_implementation == "eager"
    assert sdpa.text_model.config._attn_implementation == "sdpa"
    with torch.no_grad():
        a, b = eager(**inputs), sdpa(**inputs)
    torch.testing.assert_close(a.logits_per_text, b.logits_per_text, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a.text_embeds, b.text_embeds, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("implementation", ["eager", "sdpa", "flex_attention"])
def test_attention_implementation_reaches_the_towers(tester, implementation):
    """The request is passed on to each tower: BERT and CLIP-ViT use it, a ResNet (no attention) stays eager."""
    model = OphCLIPModel._from_config(tester.get_config(), attn_implementation=implementation)
    assert model.config._attn_implementation == implementation
    assert model.text_model.config._attn_implementation == implementation
    expected_vision = implementation if tester.vision == "clip" else "eager"
    assert model.vision_model.config._attn_implementation == expected_vision
    default = OphCLIPModel(tester.get_config())  # SDPA by default where the tower supports it
    assert default.text_model.config._attn_implementation == "sdpa"
    assert default.vision_model.config._attn_implementation == ("sdpa" if tester.vision == "clip" else "eager")


# -- pooling functions ------------------------------------------------------------------------------------------------


def test_surgvlp_pooling_formula():
    hidden = tuple(torch.randn(2, 6, 8) for _ in range(5))
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    expected = sum((h * mask[..., None]).sum(1) for h in hidden[-4:]) / 6
    torch.testing.assert_close(surgvlp_text_pooling(hidden, mask, 4), expected)
    torch.testing.assert_close(masked_mean_pooling(hidden[-1], mask), (hidden[-1] * mask[..., None]).sum(1) / mask.sum(1, keepdim=True))


# -- transformers conventions: output flags, tuples, main input, per-video hidden states ------------------------------


def _frame_mask(tester):
    mask = torch.ones(tester.batch_size, tester.num_frames, dtype=torch.long)
    mask[-1, tester.num_frames // 2:] = 0  # the last video is padded
    return mask


def test_main_input_name_is_the_first_forward_argument():
    import inspect

    for model_class, expected in ((OphCLIPModel, "input_ids"), (OphCLIPForVideoClassification, "pixel_values_videos")):
        names = [name for name in inspect.signature(model_class.forward).parameters if name != "self"]
        assert model_class.main_input_name == names[0] == expected, (model_class, names[:2])


def test_feature_methods_take_output_flags_and_return_tuples(tester):
    config = tester.get_config()
    model = _eval_model(config, attn_implementation="eager")
    inputs = tester.prepare_inputs()
    ids, mask, videos = inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values_videos"]
    num_text_layers = config.text_config.num_hidden_layers
    num_vision_states = (len(config.vision_config.depths) if tester.vision == "resnet"
                         else config.vision_config.num_hidden_layers) + 1
    with torch.no_grad():
        # Text: hidden states only when asked, even though the SurgVLP pooling reads the last layers.
        text = model.get_text_features(ids, mask)
        assert text.hidden_states is None and text.attentions is None
        text = model.get_text_features(ids, mask, output_hidden_states=True, output_attentions=True)
        assert len(text.hidden_states) == num_text_layers + 1 and len(text.attentions) == num_text_layers
        torch.testing.assert_close(text.pooler_output, model.get_text_features(ids, mask).pooler_output)
        selected = model.get_text_features(ids, mask, output_hidden_states=[0, -1]).hidden_states
        assert len(selected) == num_text_layers + 1
        assert [state is None for state in selected] == [False] + [True] * (num_text_layers - 1) + [False]
        torch.testing.assert_close(selected[0], text.hidden_states[0])
        as_tuple = model.get_text_features(ids, mask, return_dict=False)
        assert isinstance(as_tuple, tuple)
        torch.testing.assert_close(as_tuple[1], text.pooler_output)

        # Frames and videos
        frames = model.get_image_features(videos[0], output_hidden_states=True)
        assert len(frames.hidden_states) == num_vision_states
        assert isinstance(model.get_image_features(videos[0], return_dict=False), tuple)
        video = model.get_video_features(videos, output_hidden_states=True, output_attentions=True)
        assert len(video.hidden_states) == num_vision_states
        assert all(state.shape[0] == tester.batch_size * tester.num_frames for state in video.hidden_states)
        if tester.vision == "clip":
            assert len(video.attentions) == config.vision_config.num_hidden_layers
        else:
            assert video.attentions is None  # a ResNet has no attention layers
        assert model.get_video_features(videos).hidden_states is None
        video_tuple = model.get_video_features(videos, return_dict=False)
        assert isinstance(video_tuple, tuple)
        torch.testing.assert_close(video_tuple[1], video.pooler_output)


def test_forward_honours_output_flags(tester):
    config = tester.get_config()
    model = _eval_model(config, attn_implementation="eager")
    inputs = tester.prepare_inputs()
    num_text_layers = config.text_config.num_hidden_layers
    with torch.no_grad():
        plain = model(**inputs)
        assert plain.text_model_output.hidden_states is None and plain.vision_model_output.hidden_states is None
        full = model(**inputs, output_hidden_states=True, output_attentions=True)
        assert len(full.text_model_output.hidden_states) == num_text_layers + 1
        assert len(full.text_model_output.attentions) == num_text_layers
        assert full.vision_model_output.hidden_states is not None
        torch.testing.assert_close(full.logits_per_text, plain.logits_per_text)
        model.config.output_hidden_states = True  # the config flag works too
        assert model(**inputs).text_model_output.hidden_states is not None
        model.config.output_hidden_states = False
        as_tuple = model(**inputs, return_dict=False)
        assert isinstance(as_tuple, tuple) and isinstance(as_tuple[-1], tuple)  # nested outputs become tuples
        torch.testing.assert_close(as_tuple[0], plain.logits_per_video)

    classifier = OphCLIPForVideoClassification._from_config(tester.get_config(num_labels=3),
                                                             attn_implementation="eager").eval()
    videos = inputs["pixel_values_videos"]
    with torch.no_grad():
        out = classifier(pixel_values_videos=videos)
        assert out.hidden_states is None and out.attentions is None
        out = classifier(pixel_values_videos=videos, output_hidden_states=True, output_attentions=True)
    assert out.hidden_states is not None
    assert (out.attentions is not None) == (tester.vision == "clip")
    with torch.no_grad():
        as_tuple = classifier(pixel_values_videos=videos, labels=torch.tensor([0, 1, 2]), return_dict=False)
    assert isinstance(as_tuple, tuple) and as_tuple[0].dim() == 0  # (loss, logits, video_embeds)


def test_video_last_hidden_state_is_per_video(tester):
    model = _eval_model(tester.get_config())
    videos = tester.prepare_inputs()["pixel_values_videos"]
    mask = _frame_mask(tester)
    with torch.no_grad():
        out = model.get_video_features(videos, frame_mask=mask)
        frames = model.get_image_features(videos.flatten(0, 1)).last_hidden_state
    assert out.last_hidden_state.shape[:2] == (tester.batch_size, tester.num_frames)
    # last_hidden_state[i, t] is frame t of video i (padded positions hold the tower's output on the padding)
    torch.testing.assert_close(out.last_hidden_state, frames.unflatten(0, (tester.batch_size, tester.num_frames)))


def test_export_and_compile_with_frame_mask(tester):
    """No data-dependent branch on frame_mask: torch.export (with dynamic batch and frame counts) and
    torch.compile(fullgraph=True) of get_video_features / the classifier work with a mask and match eager mode."""
    from torch.export import Dim

    config = tester.get_config(num_labels=3)
    model = _eval_model(config)
    classifier = OphCLIPForVideoClassification(tester.get_config(num_labels=3)).eval()
    videos = tester.prepare_inputs()["pixel_values_videos"]
    mask = _frame_mask(tester)
    batch, frames = Dim("batch", min=1, max=64), Dim("frames", min=1, max=64)
    exported = torch.export.export(classifier, (), {"pixel_values_videos": videos, "frame_mask": mask},
                                   dynamic_shapes={"pixel_values_videos": {0: batch, 1: frames},
                                                   "frame_mask": {0: batch, 1: frames}})
    other_videos = torch.randn(2, tester.num_frames + 2, 3, tester.image_size, tester.image_size)
    other_mask = torch.tensor([[1] * (tester.num_frames + 2), [1, 1] + [0] * tester.num_frames])
    with torch.no_grad():
        for v, m in ((videos, mask), (other_videos, other_mask)):
            torch.testing.assert_close(exported.module()(pixel_values_videos=v, frame_mask=m).logits,
                                       classifier(pixel_values_videos=v, frame_mask=m).logits)
        compiled = torch.compile(model.get_video_features, fullgraph=True, backend="eager")
        torch.testing.assert_close(compiled(videos, frame_mask=mask).pooler_output,
                                   model.get_video_features(videos, frame_mask=mask).pooler_output)
        inputs = dict(tester.prepare_inputs(), frame_mask=mask)
        compiled_model = torch.compile(model, fullgraph=True, backend="eager")
        torch.testing.assert_close(compiled_model(**inputs).logits_per_text, model(**inputs).logits_per_text)


def test_resize_token_embeddings_extends_the_text_vocabulary():
    tester = OphCLIPModelTester()
    model = _eval_model(tester.get_config())
    old = model.get_input_embeddings().weight.detach().clone()
    model.resize_token_embeddings(tester.vocab_size + 3)
    assert model.get_input_embeddings().weight.shape[0] == tester.vocab_size + 3
    assert model.config.text_config.vocab_size == tester.vocab_size + 3
    torch.testing.assert_close(model.get_input_embeddings().weight[: tester.vocab_size], old)


def test_towers_initialise_missing_weights_with_their_own_scheme(tester):
    """Weights missing from a checkpoint are initialised as a freshly built model's: each tower with its own
    `_init_weights` (CLIP's scaled attention/MLP init, ResNet's Kaiming), OphCLIP's layers with OphCLIP's."""
    from transformers import set_seed

    config = tester.get_config()
    set_seed(0)
    built = OphCLIPModel(config)
    set_seed(0)
    loaded = OphCLIPModel.from_pretrained(None, config=tester.get_config(), state_dict={})
    loaded_state = loaded.state_dict()
    for name, tensor in built.state_dict().items():
        if tensor.numel() < 2 or not tensor.is_floating_point() or tensor.std() == 0:
            continue
        assert loaded_state[name].std().item() == pytest.approx(tensor.std().item(), rel=0.5), name


# -- bad input --------------------------------------------------------------------------------------------------------


def test_bad_video_inputs():
    tester = OphCLIPModelTester()
    model = _eval_model(tester.get_config())
    videos = tester.prepare_inputs()["pixel_values_videos"]
    cases = [
        (videos[0], "pixel_values_videos must be a tensor of shape \\(batch_size, num_frames"),
        (videos[:, :0], "at least one frame"),
        (videos[:, :, :2], "must have 3 channels"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            model.get_video_features(bad)
    with pytest.raises(ValueError, match="frame_mask must have shape"):
        model.get_video_features(videos, frame_mask=torch.ones(3, 2))
    with pytest.raises(ValueError, match="marks no real frame for video\\(s\\) \\[1\\]"):
        model.get_video_features(videos, frame_mask=torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]]))
    with pytest.raises(ValueError, match="pixel_values must be a tensor of shape \\(num_frames"):
        model.get_image_features(videos)


def test_bad_text_inputs():
    tester = OphCLIPModelTester()
    model = _eval_model(tester.get_config())
    inputs = tester.prepare_inputs()
    with pytest.raises(ValueError, match="input_ids must be a tensor of shape \\(batch_size, sequence_length\\)"):
        model.get_text_features(inputs["input_ids"][0])
    with pytest.raises(ValueError, match="has 70 tokens but the text tower has 64 positions"):
        model.get_text_features(torch.ones(1, 70, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask must have the shape of input_ids"):
        model.get_text_features(inputs["input_ids"], inputs["attention_mask"][:, :3])
    with pytest.raises(ValueError, match="batch sizes must match; got 2 texts and 3 videos"):
        model(input_ids=inputs["input_ids"][:2], pixel_values_videos=inputs["pixel_values_videos"], return_loss=True)
    with pytest.raises(ValueError, match="needs both input_ids and pixel_values_videos"):
        model(input_ids=inputs["input_ids"])


# -- docs -------------------------------------------------------------------------------------------------------------


class _MarkdownDocTestParser(doctest.DocTestParser):
    """Reads examples inside markdown code fences, as transformers' docstrings write them (output, then ```)."""

    def parse(self, string, name="<string>"):
        return super().parse("\n".join("" if line.strip().startswith("```") else line for line in string.split("\n")), name)


@pytest.mark.parametrize("module_name", ["configuration_ophclip", "modeling_ophclip", "processing_ophclip"])
def test_docstring_examples_run(module_name):
    module = getattr(modeling_ophclip, module_name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    tests = doctest.DocTestFinder(parser=_MarkdownDocTestParser()).find(module)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_vit_tower_names_for_lora():
    model = OphCLIPModel(OphCLIPModelTester(vision="clip").get_config())
    import re

    names = [n for n, m in model.named_modules() if re.fullmatch(modeling_ophclip.LORA_TARGET_MODULES, n)]
    assert any(n.startswith("text_model.") for n in names) and any(n.startswith("vision_model.") for n in names)
    assert all(isinstance(model.get_submodule(n), torch.nn.Linear) for n in names)
    assert {n.rsplit(".", 1)[-1] for n in names} == {"query", "key", "value", "q_proj", "k_proj", "v_proj"}


def test_vit_config_through_dicts():
    config = OphCLIPConfig(
        vision_config={"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 37,
                       "num_hidden_layers": 1, "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
        text_config=BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                               intermediate_size=37),
        projection_dim=32)
    assert isinstance(config.vision_config, CLIPVisionConfig) and config.vision_hidden_size == 32


def test_build_zero_shot_classifier_names_times_templates_and_prompt_lists():
    """Class names × templates (or per-class prompt lists) -> normalised mean of the normalised prompt embeddings,
    batched; the same classifier whichever way the prompts are given."""
    from modeling_ophclip import build_zero_shot_classifier

    table = {}
    calls = []

    def encode(texts):
        calls.append(len(texts))
        return torch.stack([table.setdefault(t, torch.randn(6, generator=torch.Generator().manual_seed(len(table))))
                            for t in texts]) * 3.0  # un-normalised on purpose

    templates = ["a video of {}.", "the {} phase."]
    by_names = build_zero_shot_classifier(encode, ["rhexis", "phaco", "incision"], templates, batch_size=4)
    assert by_names.shape == (3, 6) and by_names.dtype == torch.float32
    assert calls == [4, 2]  # 6 prompts in batches of 4
    expected = F.normalize(torch.stack([F.normalize(torch.stack([table[t.format(n)] for t in templates]), dim=-1)
                                        .mean(0) for n in ["rhexis", "phaco", "incision"]]), dim=-1)
    torch.testing.assert_close(by_names, expected)
    as_lists = build_zero_shot_classifier(encode, {n: [t.format(n) for t in templates] for n in ["rhexis", "phaco",
                                                                                              "incision"]})
    torch.testing.assert_close(as_lists, by_names)
    with pytest.raises(ValueError, match="need templates"):
        build_zero_shot_classifier(encode, ["rhexis"])
    with pytest.raises(ValueError, match="no prompt for class"):
        build_zero_shot_classifier(encode, [["a"], []])
