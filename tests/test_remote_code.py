"""A folder written by save_pretrained loads with trust_remote_code=True where this project is not importable."""

import numpy as np
import pytest
import torch

from modeling_ophclip import OphCLIPForVideoClassification, OphCLIPModel
from ophclip_testing import OphCLIPModelTester, tiny_processor
from remote_code import run_without_project


CHILD = """
import numpy as np
import torch
from transformers import AutoModel, AutoModelForVideoClassification, AutoProcessor

torch.set_num_threads(1)  # as the parent computed the expected outputs: bit-identity does not depend on the threads

try:
    import modeling_ophclip
except ImportError:
    pass
else:
    raise SystemExit("the project is importable in the child")

model = AutoModel.from_pretrained("model", trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained("model", trust_remote_code=True)
classifier = AutoModelForVideoClassification.from_pretrained("classifier", trust_remote_code=True).eval()
for obj in (model, processor, processor.video_processor, classifier):
    assert type(obj).__module__.startswith("transformers_modules."), type(obj).__module__

expected = torch.load("expected.pt")
frames = np.load("frames.npy")
inputs = processor(text=expected["texts"], videos=[frames, frames[:2]])
for key, value in expected["inputs"].items():
    assert torch.equal(inputs[key], value), key
with torch.no_grad():
    out = model(**inputs)
    logits = classifier(pixel_values_videos=inputs["pixel_values_videos"], frame_mask=inputs["frame_mask"]).logits
assert torch.equal(out.logits_per_text, expected["logits_per_text"])
assert torch.equal(out.video_embeds, expected["video_embeds"])
assert torch.equal(out.text_embeds, expected["text_embeds"])
assert torch.equal(logits, expected["classifier_logits"])
print("REMOTE-CODE-OK", type(model).__module__)
"""


@pytest.mark.parametrize("vision", ["resnet", "clip"])
def test_trust_remote_code_in_a_process_without_the_project(tmp_path, vision):
    tester = OphCLIPModelTester(vision=vision)
    torch.manual_seed(0)
    model = OphCLIPModel(tester.get_config()).eval()
    classifier = OphCLIPForVideoClassification(tester.get_config(num_labels=3)).eval()
    processor = tiny_processor(size=tester.image_size)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    classifier.save_pretrained(tmp_path / "classifier")

    frames = np.random.default_rng(0).integers(0, 256, (4, 40, 56, 3), dtype=np.uint8)
    texts = ["the surgeon makes a main incision", "capsulorhexis with forceps"]
    inputs = processor(text=texts, videos=[frames, frames[:2]])
    # One thread here and in the child: the outputs are compared bit for bit, and how a reduction is split between
    # threads can change its last bits (with the default thread count the comparison failed once on a loaded machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            out = model(**inputs)
            logits = classifier(pixel_values_videos=inputs["pixel_values_videos"],
                                frame_mask=inputs["frame_mask"]).logits
    finally:
        torch.set_num_threads(threads)
    np.save(tmp_path / "frames.npy", frames)
    torch.save({"texts": texts, "inputs": dict(inputs), "logits_per_text": out.logits_per_text,
                "video_embeds": out.video_embeds, "text_embeds": out.text_embeds, "classifier_logits": logits},
               tmp_path / "expected.pt")

    result = run_without_project(CHILD, cwd=tmp_path)
    assert "REMOTE-CODE-OK transformers_modules." in result.stdout
