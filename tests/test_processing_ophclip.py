"""Video processor and processor: sampling, decoding, transforms, padding, save/load, bad input."""

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoProcessor

from modeling_ophclip import OphCLIPModel, OphCLIPProcessor, OphCLIPVideoProcessor
from modeling_ophclip.video_processing_ophclip import fps_frame_indices, uniform_frame_indices
from ophclip_testing import OphCLIPModelTester, tiny_processor, write_test_video


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    frames = write_test_video(path, num_frames=24, fps=12)
    return path, frames


def test_uniform_indices_are_segment_centres():
    assert uniform_frame_indices(80, 8) == [5, 15, 25, 35, 45, 55, 65, 75]
    assert uniform_frame_indices(3, 6) == [0, 0, 1, 1, 2, 2]  # short videos repeat frames
    with pytest.raises(ValueError, match="0 frames"):
        uniform_frame_indices(0, 4)


def test_fps_indices():
    assert fps_frame_indices(total_frames=100, video_fps=25.0, fps=1.0) == [0, 25, 50, 75]
    assert fps_frame_indices(total_frames=100, video_fps=25.0, fps=2.0, max_frames=4) == [12, 38, 62, 88]
    with pytest.raises(ValueError, match="frame rate"):
        fps_frame_indices(10, 0.0, 1.0)


def test_transform_matches_reference_math():
    processor = OphCLIPVideoProcessor(size=16, crop_size=16)
    frames = np.random.default_rng(0).integers(0, 256, (2, 24, 32, 3), dtype=np.uint8)
    out = processor(frames)["pixel_values_videos"]
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(16, 21), mode="bilinear", antialias=True)[..., :, 2:18] / 255
    mean, std = torch.tensor(processor.image_mean).view(1, 3, 1, 1), torch.tensor(processor.image_std).view(1, 3, 1, 1)
    torch.testing.assert_close(out[0], (x - mean) / std, atol=1e-5, rtol=1e-5)
    assert out.shape == (1, 2, 3, 16, 16) and out.dtype == torch.float32


def test_fixed_size_resize_like_the_predecessors():
    processor = OphCLIPVideoProcessor(size={"height": 36, "width": 64}, crop_size=24)
    out = processor(np.zeros((3, 50, 50, 3), dtype=np.uint8))
    assert out["pixel_values_videos"].shape == (1, 3, 3, 24, 24)


def test_input_forms_agree(video_file):
    path, _ = video_file
    processor = OphCLIPVideoProcessor(size=32, crop_size=32, num_frames=4)
    from_path = processor(str(path))["pixel_values_videos"]
    from_pathlike = processor(path)["pixel_values_videos"]
    data = path.read_bytes()
    from_bytes = processor(data)["pixel_values_videos"]
    from_file = processor(io.BytesIO(data))["pixel_values_videos"]
    decoded = processor.decode(str(path))
    from_array = processor(decoded)["pixel_values_videos"]
    from_tensor_tchw = processor(torch.from_numpy(decoded).permute(0, 3, 1, 2))["pixel_values_videos"]
    from_frame_list = processor(list(decoded))["pixel_values_videos"]
    for other in (from_pathlike, from_bytes, from_file, from_array, from_tensor_tchw, from_frame_list):
        assert torch.equal(from_path, other)
    assert from_path.shape == (1, 4, 3, 32, 32)


def test_decoding_samples_the_expected_frames(video_file):
    path, frames = video_file
    processor = OphCLIPVideoProcessor(num_frames=4)
    decoded = processor.decode(str(path)).astype(np.float32)
    expected = frames[uniform_frame_indices(24, 4)].astype(np.float32)
    assert decoded.shape == expected.shape
    assert np.abs(decoded - expected).mean() < 6  # lossy H.264 at crf 10
    at_fps = processor.decode(str(path), fps=2.0)  # 2 s at 12 fps -> frames at 0, 0.5, 1.0, 1.5 s
    assert len(at_fps) == 4
    assert np.abs(at_fps.astype(np.float32) - frames[[0, 6, 12, 18]].astype(np.float32)).mean() < 6


def test_batches_of_different_lengths_are_padded_and_masked(video_file):
    path, _ = video_file
    processor = OphCLIPVideoProcessor(size=32, crop_size=32, fps=6.0, max_frames=10)
    short = np.zeros((3, 40, 40, 3), dtype=np.uint8)
    out = processor([str(path), short])
    assert out["pixel_values_videos"].shape == (2, 10, 3, 32, 32)
    assert out["frame_mask"].tolist() == [[1] * 10, [1, 1, 1] + [0] * 7]
    assert torch.count_nonzero(out["pixel_values_videos"][1, 3:]) == 0


def test_padded_processor_batch_gives_per_video_embeddings(video_file):
    path, _ = video_file
    tester = OphCLIPModelTester()
    torch.manual_seed(0)
    model = OphCLIPModel(tester.get_config()).eval()
    processor = OphCLIPVideoProcessor(size=32, crop_size=32, fps=4.0)
    short = (np.random.default_rng(1).random((2, 40, 40, 3)) * 255).astype(np.uint8)
    with torch.no_grad():
        batch = model.get_video_features(**processor([str(path), short])).pooler_output
        alone = model.get_video_features(**processor(short)).pooler_output
    torch.testing.assert_close(batch[1], alone[0], atol=1e-5, rtol=1e-4)


def test_video_processor_save_load(tmp_path):
    processor = OphCLIPVideoProcessor(num_frames=6, fps=1.0, max_frames=32, size={"height": 36, "width": 64},
                                      crop_size=32, image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25])
    processor.save_pretrained(tmp_path)
    reloaded = OphCLIPVideoProcessor.from_pretrained(tmp_path)
    for key in ("num_frames", "fps", "max_frames", "size", "crop_size", "image_mean", "image_std"):
        assert getattr(reloaded, key) == getattr(processor, key)
    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 70, 3), dtype=np.uint8)
    assert torch.equal(processor(frames)["pixel_values_videos"], reloaded(frames)["pixel_values_videos"])


def test_processor_text_and_video(tmp_path, video_file):
    path, _ = video_file
    processor = tiny_processor(model_max_length=8)
    out = processor(text=["the surgeon makes a main incision into the cornea with the knife", "lens"],
                    videos=[str(path), str(path)])
    assert set(out) == {"input_ids", "token_type_ids", "attention_mask", "pixel_values_videos", "frame_mask"}
    assert out["input_ids"].shape == (2, 8)  # truncated to model_max_length, padded to the longest
    assert out["attention_mask"][1].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    text_only = processor(text="lens capsule")
    assert set(text_only) == {"input_ids", "token_type_ids", "attention_mask"}
    processor.save_pretrained(tmp_path)
    for reloaded in (OphCLIPProcessor.from_pretrained(tmp_path), AutoProcessor.from_pretrained(tmp_path)):
        assert isinstance(reloaded, OphCLIPProcessor)
        again = reloaded(text=["the surgeon makes a main incision into the cornea with the knife", "lens"],
                         videos=[str(path), str(path)])
        for key in out:
            assert torch.equal(out[key], again[key]), key
    tester = OphCLIPModelTester()
    model = OphCLIPModel(tester.get_config()).eval()
    with torch.no_grad():
        result = model(**out)
    assert result.logits_per_video.shape == (2, 2)


def test_bad_inputs(tmp_path):
    processor = tiny_processor()
    with pytest.raises(ValueError, match="could not decode video"):
        processor(videos=b"this is not a video")
    missing = tmp_path / "missing.mp4"
    with pytest.raises(ValueError, match="could not decode video .*missing.mp4"):
        processor(videos=str(missing))
    with pytest.raises(ValueError, match="empty list"):
        processor(videos=[])
    with pytest.raises(ValueError, match="zero frames"):
        processor(videos=np.zeros((0, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="4 dimensions"):
        processor(videos=np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="3 colour channels"):
        processor(videos=np.zeros((2, 8, 8, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match="needs `text`, `videos` or both"):
        processor()
    with pytest.raises(ValueError, match="non-empty list of strings"):
        processor(text=[])
    with pytest.raises(ValueError, match="num_frames must be a positive integer"):
        OphCLIPVideoProcessor(num_frames=0)
    with pytest.raises(ValueError, match="size must be"):
        OphCLIPVideoProcessor(size={"longest_edge": 3})
    with pytest.raises(ValueError, match="produced frames of shape"):
        OphCLIPVideoProcessor(do_resize=False, do_center_crop=False)(
            [np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 9, 9, 3), np.uint8)])


# -- keyword arguments, merged the transformers v5 way ----------------------------------------------------------------


def test_processor_kwargs_reach_the_video_processor(video_file):
    path, _ = video_file
    processor = tiny_processor()
    frames = np.random.default_rng(0).integers(0, 256, (6, 40, 40, 3), dtype=np.uint8)
    video_processor = processor.video_processor
    default = processor(videos=frames)["pixel_values_videos"]
    # Flat keyword arguments go to the modality that accepts them ...
    raw = processor(videos=frames, do_normalize=False)["pixel_values_videos"]
    assert torch.equal(raw, video_processor(frames, do_normalize=False)["pixel_values_videos"])
    assert not torch.equal(raw, default) and raw.min() >= 0 and raw.max() <= 1
    unscaled = processor(videos=frames, do_normalize=False, rescale_factor=1.0)["pixel_values_videos"]
    torch.testing.assert_close(unscaled, raw * 255, rtol=1e-5, atol=1e-3)
    assert processor(videos=str(path), num_frames=3)["pixel_values_videos"].shape[1] == 3  # default 4
    assert processor(videos=str(path), fps=2.0)["pixel_values_videos"].shape[1] == 4  # 2 s at 2 fps
    assert processor(videos=frames, do_sample_frames=True, num_frames=2)["pixel_values_videos"].shape[1] == 2
    # ... or structured per modality, with the same result; the instance is never changed.
    structured = processor(videos=frames, videos_kwargs={"do_normalize": False})["pixel_values_videos"]
    assert torch.equal(structured, raw) and video_processor.do_normalize
    both = processor(text=["lens capsule", "lens"], videos=[frames, frames[:2]], padding="max_length", max_length=6,
                     do_normalize=False)
    assert both["input_ids"].shape == (2, 6) and torch.equal(both["pixel_values_videos"][0], raw[0])
    assert both["frame_mask"].tolist() == [[1] * 6, [1, 1, 0, 0, 0, 0]]
    assert isinstance(processor(text="lens", return_tensors="np")["input_ids"], np.ndarray)
    # The same argument twice, or conflicting text arguments, is an error.
    with pytest.raises(ValueError, match="passed two times"):
        processor(videos=frames, do_normalize=False, videos_kwargs={"do_normalize": True})
    with pytest.raises(ValueError, match="passed two times"):
        processor(text="lens", padding="max_length", text_kwargs={"padding": "do_not_pad"})


@pytest.mark.parametrize("loader", ["OphCLIPProcessor", "AutoProcessor"])
def test_from_pretrained_keyword_arguments_stick(tmp_path, loader):
    """`from_pretrained(folder, do_normalize=False)` reaches the video processor (and survives another save); the
    tokenizer's arguments reach the tokenizer."""
    tiny_processor().save_pretrained(tmp_path / "first")
    load = OphCLIPProcessor.from_pretrained if loader == "OphCLIPProcessor" else AutoProcessor.from_pretrained
    processor = load(tmp_path / "first", do_normalize=False, num_frames=2, model_max_length=5,
                     **({"trust_remote_code": True} if loader == "AutoProcessor" else {}))
    assert isinstance(processor, OphCLIPProcessor)
    assert processor.video_processor.do_normalize is False and processor.video_processor.num_frames == 2
    assert processor.tokenizer.model_max_length == 5
    assert "do_normalize" not in processor.tokenizer.init_kwargs  # video arguments do not leak into the tokenizer
    frames = np.full((3, 32, 32, 3), 255, dtype=np.uint8)
    assert float(processor(videos=frames)["pixel_values_videos"].max()) == pytest.approx(1.0)
    processor.save_pretrained(tmp_path / "second")
    again = OphCLIPProcessor.from_pretrained(tmp_path / "second")
    assert again.video_processor.do_normalize is False and again.video_processor.num_frames == 2
    assert again.to_dict() == processor.to_dict()


# -- a processor built from parts saves and reloads, without torchvision -----------------------------------------------

RELOAD_SCRIPT = """
import importlib.abc
import importlib.util
import sys

_BLOCKED = ("torchvision", "torchcodec")


class _NoTorchvision(importlib.abc.MetaPathFinder):  # importing them fails ...
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _BLOCKED:
            raise ImportError(f"{{name}} is blocked in this process")
        return None


_find_spec = importlib.util.find_spec


def _find_spec_without_blocked(name, package=None):  # ... and availability checks do not see them
    return None if name.partition(".")[0] in _BLOCKED else _find_spec(name, package)


sys.meta_path.insert(0, _NoTorchvision())
importlib.util.find_spec = _find_spec_without_blocked

import json

import numpy as np
from transformers import AutoProcessor

processor = AutoProcessor.from_pretrained({folder!r}, trust_remote_code=True)
frames = np.load({frames!r})
out = processor(text=["the lens capsule"], videos=[frames])
print(json.dumps({{
    "class": type(processor).__name__,
    "module": type(processor).__module__,
    "video_processor": type(processor.video_processor).__name__,
    "input_ids": out["input_ids"].tolist(),
    "pixels": float(out["pixel_values_videos"].sum()),
    "torchvision": [name for name in sys.modules if name.startswith("torchvision")],
}}))
"""


@pytest.mark.parametrize("vocabulary", ["vocab_file", "vocab_dict"])
def test_processor_built_from_parts_reloads_without_torchvision(tmp_path, vocabulary):
    """`OphCLIPProcessor(video_processor=OphCLIPVideoProcessor(), tokenizer=BertTokenizer(...))` (the README builds
    it with a vocabulary dict; a vocab file is the other usual way) saves and reloads with `OphCLIPProcessor` and
    `AutoProcessor(trust_remote_code=True)`, here and in a process where torchvision and this project cannot be
    imported (transformers' AutoVideoProcessor, which needs torchvision, is never used)."""
    import json

    from transformers import BertTokenizer

    from ophclip_testing import SPECIAL, WORDS
    from remote_code import run_without_project

    if vocabulary == "vocab_file":
        vocab_file = tmp_path / "vocab.txt"
        vocab_file.write_text("\n".join(SPECIAL + WORDS) + "\n")
        tokenizer = BertTokenizer(str(vocab_file))
    else:
        tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(SPECIAL + WORDS)})
    processor = OphCLIPProcessor(video_processor=OphCLIPVideoProcessor(), tokenizer=tokenizer)
    folder = tmp_path / "processor"
    processor.save_pretrained(folder)
    frames = np.random.default_rng(0).integers(0, 256, (3, 240, 320, 3), dtype=np.uint8)
    expected = processor(text=["the lens capsule"], videos=[frames])
    for reloaded in (OphCLIPProcessor.from_pretrained(folder), AutoProcessor.from_pretrained(folder),
                     AutoProcessor.from_pretrained(folder, trust_remote_code=True)):
        assert isinstance(reloaded, OphCLIPProcessor)
        assert reloaded.to_dict() == processor.to_dict()
        again = reloaded(text=["the lens capsule"], videos=[frames])
        for key in expected:
            assert torch.equal(again[key], expected[key]), key

    np.save(tmp_path / "frames.npy", frames)
    result = run_without_project(RELOAD_SCRIPT.format(folder=str(folder), frames=str(tmp_path / "frames.npy")),
                                 cwd=tmp_path, env_extra={"HF_MODULES_CACHE": str(tmp_path / "modules")})
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["class"] == "OphCLIPProcessor" and info["module"].startswith("transformers_modules.")
    assert info["video_processor"] == "OphCLIPVideoProcessor"
    assert info["torchvision"] == []
    assert info["input_ids"] == expected["input_ids"].tolist()
    assert info["pixels"] == pytest.approx(float(expected["pixel_values_videos"].sum()), rel=1e-6)
