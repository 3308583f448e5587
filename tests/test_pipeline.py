"""Tests of the zero-shot video classification pipeline (modeling_ophclip/pipeline_ophclip.py)."""

import numpy as np
import pytest
import torch
from transformers import pipeline

import modeling_ophclip.pipeline_ophclip  # noqa: F401  (registers "zero-shot-video-classification")
from modeling_ophclip import OphCLIPModel
from modeling_ophclip.pipeline_ophclip import OphCLIPZeroShotVideoClassificationPipeline
from ophclip_testing import OphCLIPModelTester, tiny_processor, write_test_video


LABELS = ["lens", "iris", "cornea", "forceps"]
TEMPLATE = "a surgical video of {}."


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    torch.manual_seed(0)
    model = OphCLIPModel(OphCLIPModelTester().get_config()).eval()
    folder = root / "tiny-ophclip"
    model.save_pretrained(folder)
    tiny_processor().save_pretrained(folder)
    video = root / "clip.mp4"
    frames = write_test_video(video, num_frames=24, fps=12)
    classifier = pipeline("zero-shot-video-classification", model=str(folder), device="cpu")
    return {"folder": folder, "video": video, "frames": frames, "classifier": classifier, "model": model}


def check(result, labels=LABELS):
    assert [set(r) for r in result] == [{"label", "score"}] * len(labels)
    assert sorted(r["label"] for r in result) == sorted(labels)
    scores = [r["score"] for r in result]
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1.0, abs=1e-5)


def test_pipeline_from_folder(setup):
    classifier = setup["classifier"]
    assert isinstance(classifier, OphCLIPZeroShotVideoClassificationPipeline)
    check(classifier(str(setup["video"]), candidate_labels=LABELS, hypothesis_template=TEMPLATE))


def test_pipeline_matches_model(setup):
    """The scores are the softmax of the model's logits_per_video for the same inputs."""
    result = setup["classifier"](str(setup["video"]), candidate_labels=LABELS, hypothesis_template=TEMPLATE,
                                 num_frames=4)
    inputs = tiny_processor()(text=[TEMPLATE.format(l) for l in LABELS], videos=str(setup["video"]), num_frames=4)
    with torch.no_grad():
        probs = setup["model"](**inputs).logits_per_video[0].softmax(-1)
    expected = dict(zip(LABELS, probs.tolist()))
    for r in result:
        assert r["score"] == pytest.approx(expected[r["label"]], abs=1e-5)


def test_pipeline_frames_bytes_and_batches(setup):
    classifier = setup["classifier"]
    frames = setup["frames"][::6]  # (4, H, W, 3) uint8
    from_array = classifier(frames, candidate_labels=LABELS)
    check(from_array)
    from_list = classifier(list(frames), candidate_labels=LABELS)
    assert [r["label"] for r in from_list] == [r["label"] for r in from_array]
    check(classifier(torch.from_numpy(np.ascontiguousarray(frames)), candidate_labels=LABELS))
    check(classifier(setup["video"].read_bytes(), candidate_labels=LABELS, fps=2))
    batch = classifier([str(setup["video"]), str(setup["video"])], candidate_labels=LABELS[:2])
    assert len(batch) == 2
    for result in batch:
        check(result, LABELS[:2])


def test_pipeline_with_model_instance(setup):
    classifier = pipeline("zero-shot-video-classification", model=setup["model"], processor=tiny_processor(),
                          device="cpu")
    check(classifier(str(setup["video"]), candidate_labels=LABELS, hypothesis_template="{}"))


def test_pipeline_errors(setup):
    with pytest.raises(ValueError, match="candidate_labels"):
        setup["classifier"](str(setup["video"]), candidate_labels=[])
    with pytest.raises(ValueError, match="could not decode"):
        setup["classifier"](b"not a video", candidate_labels=LABELS)
