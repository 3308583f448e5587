"""Evaluation protocols on OphVL-mini's tiny benchmark with tiny random models, bad inputs, and oracle sanity checks.

Every protocol runs end to end with a tiny random OphCLIP and a tiny random CLIP (metric keys and ranges, the record
in results.jsonl, plots). Bad videos (undecodable, frame count off) are skipped and listed; a class without prompts
is a clear error. An oracle encoder that "sees" the true label in the pixels must score perfectly: that checks frame
sampling, label alignment, class embeddings, the decision rules and the metric wiring together.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("decord")
pytest.importorskip("av")
pytest.importorskip("evaluate")
pytest.importorskip("sklearn")

from ophclip_testing import OphCLIPModelTester, tiny_processor  # noqa: E402

from datasets_ophvl.media import encode_video  # noqa: E402
from datasets_ophvl.mini import generate_ophvl_mini  # noqa: E402
from evaluate_suite.loaders import phase_starts_layout, tool_presence_layout  # noqa: E402
from evaluate_suite.models import (  # noqa: E402
    OPENAI_CLIP_MEAN,
    CLIPEncoder,
    OphCLIPEncoder,
    VideoTextEncoder,
    clip_video_processor,
)
from evaluate_suite.protocols import (  # noqa: E402
    NEGATIVE_TEMPLATES,
    frame_count_problem,
    instrument_metrics,
    linear_probe,
    sample_frame_indices,
    smooth_probabilities,
    video_text_retrieval,
    zero_shot_instruments,
    zero_shot_phase,
)
from evaluate_suite.protocols.linear_probing import choose_videos, fraction_label, subset_size  # noqa: E402
from evaluate_suite.protocols.zero_shot import negative_texts  # noqa: E402
from evaluate_suite.registry import BenchmarkSpec  # noqa: E402
from modeling_ophclip import OphCLIPModel, OphCLIPVideoProcessor  # noqa: E402


# -- shared helpers (also used by test_eval_cli.py) ------------------------------------------------------------------

CLIP_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def write_tiny_clip_tokenizer_files(folder: Path) -> Path:
    """A byte-level BPE vocabulary of letters and a few merges: `vocab.json` + `merges.txt`, as CLIP ships them."""
    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["<|startoftext|>", "<|endoftext|>", *CLIP_LETTERS, *(c + "</w>" for c in CLIP_LETTERS),
              ".", ".</w>", ",</w>", "/", "-", "th", "the</w>", "in", "ing</w>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\nt h\nth e</w>\ni n\nin g</w>\n")
    return folder


def tiny_clip(folder: Path, seed: int = 0):
    """A tiny random `CLIPModel` (32 px, ViT with 8 px patches) and its tokenizer, built offline."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    write_tiny_clip_tokenizer_files(folder)
    tokenizer = CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=64, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(seed)
    return CLIPModel(config).eval(), tokenizer


def tiny_ophclip(seed: int = 0):
    torch.manual_seed(seed)
    return OphCLIPModel(OphCLIPModelTester().get_config()).eval(), tiny_processor()


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


# -- fixtures ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "mini"
    generate_ophvl_mini(out, size="tiny", progress=False)
    return out


@pytest.fixture(scope="module")
def bench(mini) -> Path:
    return mini / "benchmark"


@pytest.fixture(scope="module")
def ophclip():
    model, processor = tiny_ophclip()
    return OphCLIPEncoder(model, processor, model_id="tiny-ophclip")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    model, tokenizer = tiny_clip(tmp_path_factory.mktemp("clip"))
    return CLIPEncoder(model, tokenizer, model_id="tiny-clip")


@pytest.fixture(params=["ophclip", "clip"])
def encoder(request):
    return request.getfixturevalue(request.param)


# -- adapters ---------------------------------------------------------------------------------------------------------


def test_adapters_embed_normalised(ophclip, clip):
    for encoder in (ophclip, clip):
        frames = encoder.preprocess(np.random.default_rng(0).integers(0, 255, (3, 40, 56, 3), dtype=np.uint8))
        assert frames.shape == (3, 3, 32, 32) and frames.dtype == torch.float32
        image = encoder.encode_frames(frames)
        text = encoder.encode_texts(["the rhexis phase.", "a knife"] * 40)  # more than one text batch
        video = encoder.encode_videos(frames[None].repeat(2, 1, 1, 1, 1), torch.tensor([[1, 1, 1], [1, 0, 0]]))
        for embeds, rows in ((image, 3), (text, 80), (video, 2)):
            assert embeds.shape == (rows, 16) and embeds.dtype == torch.float32
            torch.testing.assert_close(embeds.norm(dim=-1), torch.ones(rows))
        torch.testing.assert_close(text[0], text[2])
        # A video of one real frame embeds like that frame (up to normalisation and the pooling of unprojected features)
        torch.testing.assert_close(video[1], image[0], atol=1e-5, rtol=1e-4)
        assert encoder.logit_scale > 0 and isinstance(encoder.weights_hash, str) and encoder.weights_hash
    assert ophclip.logit_scale == pytest.approx(10.0)
    with pytest.raises(ValueError, match="list of strings"):
        ophclip.encode_texts("a string, not a list")


def test_clip_preprocessing_uses_clip_statistics_and_224_crop():
    processor = clip_video_processor()
    assert processor.crop_size == {"height": 224, "width": 224} and processor.size == {"shortest_edge": 224}
    assert processor.image_mean == pytest.approx(OPENAI_CLIP_MEAN)
    pixels = processor.preprocess(np.full((2, 240, 320, 3), 128, np.uint8))["pixel_values_videos"][0]
    assert pixels.shape == (2, 3, 224, 224)
    custom = clip_video_processor(preprocessor_config={"crop_size": {"height": 336, "width": 336},
                                                       "size": {"shortest_edge": 336}})
    assert custom.crop_size == {"height": 336, "width": 336}


# -- small pieces ---------------------------------------------------------------------------------------------------


def test_sampling_is_one_frame_per_second_of_native_time():
    assert sample_frame_indices(100, 25.0, 1.0).tolist() == [0, 25, 50, 75]
    assert sample_frame_indices(10, 4.0, 1.0).tolist() == [0, 4, 8]
    assert sample_frame_indices(5, 2.0, None).tolist() == [0, 1, 2, 3, 4]


def test_frame_count_tolerance():
    assert frame_count_problem(100, 100) is None
    assert frame_count_problem(98, 100) is None and frame_count_problem(102, 100) is None
    assert "mismatch" in frame_count_problem(97, 100)
    assert frame_count_problem(4900, 5000) is None  # 2% of a long video
    assert "mismatch" in frame_count_problem(4890, 5000)
    assert "zero frames" in frame_count_problem(0, 10)


def test_smoothing_is_a_centred_moving_mean():
    probs = np.eye(3)[[0, 0, 1, 0, 0, 2, 2, 2]].astype(float)
    assert smooth_probabilities(probs, 0) is probs
    smoothed = smooth_probabilities(probs, 3)
    np.testing.assert_allclose(smoothed.sum(1), 1.0)
    np.testing.assert_allclose(smoothed[0], [1, 0, 0])  # window shrinks at the edges
    np.testing.assert_allclose(smoothed[2], [2 / 3, 1 / 3, 0])
    assert smoothed.argmax(1).tolist() == [0, 0, 0, 0, 0, 2, 2, 2]  # the one-frame blip is gone


def test_instrument_metrics_leave_unknown_labels_out_cell_by_cell():
    rng = np.random.default_rng(0)
    scores = rng.random((40, 3)).astype(np.float32)
    labels = (rng.random((40, 3)) > 0.5).astype(np.float32)
    labels[:, 2] = 0  # a class without positives
    unknown = labels.copy()
    unknown[[1, 5, 7], 0] = np.nan
    unknown[[2, 3], 1] = np.nan
    result = instrument_metrics(scores, unknown, ["a", "b", "c"])
    from evaluate_suite.protocols.common import metric

    for c, name in enumerate("ab"):
        known = ~np.isnan(unknown[:, c])
        alone = metric("multilabel_instruments").compute(predictions=scores[known, c:c + 1].tolist(),
                                                         references=labels[known, c:c + 1].astype(int).tolist())
        assert result["per_class_AP"][name] == pytest.approx(alone["mAP"])
    assert result["classes_without_positives"] == ["c"] and result["unknown_label_cells"] == 5
    negatives = (np.nan_to_num(unknown, nan=1) == 0)
    assert result["FPR"] == pytest.approx(((scores >= 0.5) & negatives).sum() / negatives.sum())
    full = instrument_metrics(scores, labels, ["a", "b", "c"])  # no NaN: one metric call, same keys
    assert {"mAP", "FPR", "FPR_macro", "per_class_AP"} <= set(full) and 0 <= full["mAP"] <= 1


def test_linear_probe_fractions_are_chosen_by_video():
    assert [subset_size(f, 50) for f in (0.01, 0.1, 1.0)] == [1, 5, 50]
    assert subset_size(0.01, 3) == 1
    assert choose_videos(20, 0.1, seed=3).tolist() == choose_videos(20, 0.1, seed=3).tolist()
    assert choose_videos(20, 0.1, seed=3).tolist() != choose_videos(20, 0.1, seed=4).tolist()
    assert fraction_label(0.01) == "1%" and fraction_label(1.0) == "100%" and fraction_label(0.125) == "12.5%"
    with pytest.raises(ValueError, match="fractions"):
        subset_size(0.0, 10)


# -- every protocol, end to end, with both models --------------------------------------------------------------------


def test_zero_shot_phase(ophclip, bench, tmp_path):
    results = tmp_path / "results.jsonl"
    out = zero_shot_phase(ophclip, "ophvl-mini-phase", bench, smooth_window=3, num_workers=2,
                          plots_dir=tmp_path / "plots", results_file=results)
    m = out["metrics"]
    assert m["num_videos"] == 1 and m["num_skipped"] == 0 and out["skipped"] == {}  # the test split: 1003
    for key in ("accuracy", "f1", "accuracy_smoothed", "f1_smoothed"):
        assert 0.0 <= m[key] <= 1.0
    assert set(out["per_video"]) == {"1003"}
    # 76 frames at 4 fps: 19 sampled, the first in the unlabelled lead-in
    assert sum(len(p) for p in out["predictions"].values()) == 19
    assert m["frames"] == sum(v["frames"] for v in out["per_video"].values()) == 18
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert pngs == ["ophvl-mini-phase_confusion.png", "ophvl-mini-phase_timeline_1003.png"]
    assert all((tmp_path / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    (record,) = read_jsonl(results)
    assert record["benchmark"] == "ophvl-mini-phase" and record["protocol"] == "zero-shot"
    assert record["model_id"] == "tiny-ophclip" and record["weights_hash"] == ophclip.weights_hash
    assert record["metrics"]["accuracy"] == pytest.approx(m["accuracy"])
    assert record["prompts_hash"] == out["prompts_hash"] == out["record"].prompts_hash and record["skipped"] == {}


def test_zero_shot_phase_same_result_with_workers(clip, bench):
    serial = zero_shot_phase(clip, "ophvl-mini-phase", bench, num_workers=0, batch_size=7, results_file=None)
    parallel = zero_shot_phase(clip, "ophvl-mini-phase", bench, num_workers=2, batch_size=32, results_file=None)
    assert serial["metrics"] == parallel["metrics"]
    for vid, predictions in serial["predictions"].items():
        np.testing.assert_array_equal(predictions, parallel["predictions"][vid])


@pytest.mark.parametrize("rule", ["prompt-pair", "sigmoid"])
def test_zero_shot_instruments(encoder, bench, tmp_path, rule):
    results = tmp_path / "results.jsonl"
    out = zero_shot_instruments(encoder, "ophvl-mini-instruments", bench, rule=rule, results_file=results)
    m = out["metrics"]
    assert 0 <= m["mAP"] <= 1 and 0 <= m["FPR"] <= 1 and 0 <= m["FPR_macro"] <= 1
    assert m["num_classes"] == 6 and m["num_videos"] == 1 and m["num_frames"] == 19
    (record,) = read_jsonl(results)
    assert record["protocol"] == ("zero-shot" if rule == "prompt-pair" else "zero-shot-sigmoid")
    assert record["extra"]["rule"] == rule and record["extra"]["threshold"] == 0.5


def test_prompt_pair_hash_covers_negative_prompts(ophclip, bench):
    a = zero_shot_instruments(ophclip, "ophvl-mini-instruments", bench, results_file=None)
    b = zero_shot_instruments(ophclip, "ophvl-mini-instruments", bench, results_file=None,
                              negative_templates=["there is no {} in view."])
    assert a["record"] is None and a["prompts_hash"] != b["prompts_hash"]


@pytest.mark.parametrize("benchmark", ["ophvl-mini-phase", "ophvl-mini-instruments"])
def test_linear_probe(encoder, bench, tmp_path, benchmark):
    results = tmp_path / "results.jsonl"
    out = linear_probe(encoder, benchmark, bench, fractions=(0.01, 0.1, 1.0), seeds=(0, 1), results_file=results)
    assert list(out["results"]) == ["1%", "10%", "100%"]
    for label, values in out["results"].items():
        m = values["metrics"]
        assert m["train_videos"] == 1  # the tiny benchmark has one training video: at least one is always used
        headline = ("accuracy", "f1") if benchmark.endswith("phase") else ("mAP", "FPR")
        assert all(0 <= m[k] <= 1 for k in headline)
    records = read_jsonl(results)
    assert [r["protocol"] for r in records] == ["linear-probe-1%", "linear-probe-10%", "linear-probe-100%"]
    assert records[0]["extra"]["per_seed"][0]["train_videos"] == ["1001"]


def test_retrieval(encoder, mini, tmp_path):
    results = tmp_path / "results.jsonl"
    out = video_text_retrieval(encoder, mini, max_clips=12, num_workers=2, batch_size=5, results_file=results)
    m = out["metrics"]
    assert m["num_clips"] == 12 and out["similarity"].shape == (12, 12)
    for direction in ("t2v", "v2t"):
        assert 0 <= m[f"{direction}_R@1"] <= m[f"{direction}_R@5"] <= m[f"{direction}_R@10"] <= 1
        assert 1 <= m[f"{direction}_MedR"] <= 12
    (record,) = read_jsonl(results)
    assert record["protocol"] == "retrieval" and record["benchmark"] == "ophvl-clips:mini"
    videos = video_text_retrieval(encoder, mini, subset="videos", results_file=None)
    assert videos["metrics"]["num_clips"] == 4


# -- bad input --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def damaged(bench, tmp_path_factory):
    """The tiny benchmark with every video in the test split: 1001 two frames short (within tolerance), 1002
    unreadable, 1003 far shorter than its labels."""
    import decord

    root = tmp_path_factory.mktemp("damaged") / "benchmark"
    shutil.copytree(bench, root)
    meta = json.loads((root / "meta.json").read_text())
    meta["split"]["test"] = [1001, 1002, 1003]
    (root / "meta.json").write_text(json.dumps(meta))
    videos = root / "videos"
    frames = decord.VideoReader(str(videos / "case_1001.mp4")).get_batch(list(range(89))).asnumpy()
    (videos / "case_1001.mp4").write_bytes(encode_video(frames, 4))  # 89 of 91 frames
    (videos / "case_1002.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    (videos / "case_1003.mp4").write_bytes(encode_video(frames[:40], 4))  # 40 frames for 76 labels
    return root


def test_bad_videos_are_skipped_and_listed(ophclip, damaged, tmp_path):
    results = tmp_path / "results.jsonl"
    out = zero_shot_phase(ophclip, "ophvl-mini-phase", damaged, results_file=results)
    assert set(out["per_video"]) == {"1001"} and out["metrics"]["num_skipped"] == 2
    assert out["skipped"]["1002"].startswith("cannot decode the video")
    assert "frame count mismatch" in out["skipped"]["1003"] and "40 frames" in out["skipped"]["1003"]
    assert len(out["predictions"]["1001"]) == 23  # 1 fps: frames 0, 4, ..., 88 (89 decoded of 91 labelled)
    assert out["metrics"]["frames"] == 22  # frame 0 is in the unlabelled lead-in
    (record,) = read_jsonl(results)
    assert record["skipped"] == out["skipped"]

    tools = zero_shot_instruments(ophclip, "ophvl-mini-instruments", damaged, results_file=None)
    assert tools["skipped"] == out["skipped"]
    probe = linear_probe(ophclip, "ophvl-mini-phase", damaged, test_split="test", train_split="test",
                         fractions=(1.0,), results_file=None)
    assert set(probe["skipped"]) == {"test:1002", "test:1003"}


def test_sampled_frames_past_the_decoded_end_are_dropped_with_their_labels(damaged):
    from evaluate_suite.protocols.frames import FrameChunks

    path = damaged / "videos" / "case_1001.mp4"  # 89 decoded frames
    chunks = FrameChunks([path], [90], [[0, 44, 88, 89]], tiny_processor().video_processor, chunk_size=3)
    first, second = chunks[0], chunks[1]
    assert first["positions"].tolist() == [0, 1, 2] and first["pixel_values"].shape == (3, 3, 32, 32)
    assert second["positions"].tolist() == [] and second["pixel_values"] is None  # frame 89 does not exist
    assert "mismatch" in FrameChunks([path], [95], [[0]], tiny_processor().video_processor)[0]["error"]


def test_all_videos_bad_is_an_error(ophclip, damaged):
    spec = BenchmarkSpec(name="damaged-only", task="phase", classes=("Incision", "Viscous agent injection", "Rhexis",
                         "Phacoemulsification", "Irrigation and aspiration", "Lens implant setting-up"),
                         loader=phase_starts_layout, prompts="ophvl_mini_phase.json", splits={"test": ["1002"]})
    with pytest.raises(ValueError, match="every video .* was skipped.*cannot decode"):
        zero_shot_phase(ophclip, spec, damaged, results_file=None)


def test_classes_without_prompts_are_a_clear_error(ophclip, bench, tmp_path):
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"sentences": {"Incision": ["a knife cuts the cornea."]}}))
    spec = BenchmarkSpec(name="no-prompts", task="phase", classes=("Incision", "Rhexis"), loader=phase_starts_layout,
                         prompts=str(prompts))
    with pytest.raises(ValueError, match=r"no prompt for class\(es\) \['Rhexis'\]"):
        zero_shot_phase(ophclip, spec, bench, results_file=None)
    with pytest.raises(ValueError, match="is a 'phase' benchmark"):
        zero_shot_instruments(ophclip, "ophvl-mini-phase", bench, results_file=None)


# -- oracle: a model that sees the label must score perfectly ---------------------------------------------------------

ORACLE_PHASES = ("Alpha", "Beta", "Gamma", "Delta")
ORACLE_TOOLS = ("Red tool", "Green tool", "Blue tool")
ORACLE_FPS = 5


class OracleEncoder(VideoTextEncoder):
    """Reads the label from the pixels: phase k is a grey frame of level 40 + 50k, instrument c is colour channel c
    switched on. Frame embeddings: the one-hot phase (phase mode), or the presence vector plus a constant "absence"
    coordinate (instrument mode). Text embeddings: the one-hot of the class a prompt describes (negative prompts:
    the absence coordinate)."""

    model_id = "oracle"
    weights_hash = "oracle"
    logit_scale = 100.0

    def __init__(self, spec: BenchmarkSpec):
        self.spec = spec
        self.video_processor = OphCLIPVideoProcessor(do_resize=False, do_center_crop=False, do_rescale=False,
                                                     do_normalize=False)
        classes = len(spec.classes)
        self.dim = classes if spec.task == "phase" else classes + 1
        self.text_class = {t: c for c, texts in enumerate(spec.class_texts().values()) for t in texts}
        if spec.task == "instruments":
            self.text_class.update({t: classes for texts in negative_texts(spec.classes).values() for t in texts})

    def encode_frames(self, pixel_values):
        if self.spec.task == "phase":
            level = pixel_values.mean(dim=(1, 2, 3))
            k = ((level - 40) / 50).round().long().clamp(0, self.dim - 1)
            return torch.nn.functional.one_hot(k, self.dim).float()
        present = (pixel_values.mean(dim=(2, 3)) > 100).float()
        vectors = torch.cat([present, torch.full((len(present), 1), 0.5)], dim=1)
        return torch.nn.functional.normalize(vectors, dim=-1)

    def encode_texts(self, texts):
        return torch.nn.functional.one_hot(torch.tensor([self.text_class[t] for t in texts]), self.dim).float()


def _write_csv(path, rows, delimiter=";"):
    path.write_text("\n".join(delimiter.join(str(v) for v in row) for row in rows) + "\n")


@pytest.fixture(scope="module")
def oracle_benchmarks(tmp_path_factory):
    """Four phase videos (5 fps, 40 frames, 1 s unlabelled lead-in, phase starts on and off the 1-fps grid) in the
    Cataract-101 layout and four instrument videos (30 frames) in the CATARACTS layout; videos 1-2 train, 3-4 test."""
    root = tmp_path_factory.mktemp("oracle")
    (root / "videos").mkdir()
    (root / "tool_videos").mkdir()
    (root / "tool_annotations").mkdir()
    prompts = root / "prompts.json"
    prompts.write_text(json.dumps({"templates": ["the {} phase.", "surgery with a {}."]}))
    rng = np.random.default_rng(0)
    videos, annotations = [("VideoID", "Frames", "FPS")], [("VideoID", "FrameNo", "Phase")]
    for vid in (1, 2, 3, 4):
        starts = [5, 10 + vid, 20, 30 - vid % 2]
        levels = np.zeros(40)
        for k, (start, end) in enumerate(zip(starts, starts[1:] + [40])):
            levels[start:end] = 40 + 50 * k
            annotations.append((vid, start, k + 1))
        frames = np.broadcast_to(levels[:, None, None, None], (40, 32, 32, 3)).astype(np.uint8)
        (root / "videos" / f"case_{vid}.mp4").write_bytes(encode_video(np.ascontiguousarray(frames), ORACLE_FPS))
        videos.append((vid, 40, ORACLE_FPS))

        patterns = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0], [1, 0, 1]], bool)
        present = np.repeat(patterns[rng.permutation(6)], 5, axis=0)  # 30 frames, a new set of tools every second
        tool_frames = np.broadcast_to((present * 200).astype(np.uint8)[:, None, None, :], (30, 32, 32, 3))
        tool_frames = np.ascontiguousarray(tool_frames)  # channel c lit while tool c is in view
        (root / "tool_videos" / f"case_{vid}.mp4").write_bytes(encode_video(tool_frames, ORACLE_FPS))
        _write_csv(root / "tool_annotations" / f"case_{vid}.csv",
                   [("Frame", *ORACLE_TOOLS)] + [(f + 1, *present[f].astype(int)) for f in range(30)], ",")
    _write_csv(root / "videos.csv", videos)
    _write_csv(root / "annotations.csv", annotations)
    _write_csv(root / "phases.csv", [("Phase", "Meaning")] + [(k + 1, n) for k, n in enumerate(ORACLE_PHASES)])
    splits = {"train": ["1", "2"], "test": ["3", "4"]}
    phase = BenchmarkSpec(name="oracle-phase", task="phase", classes=ORACLE_PHASES, loader=phase_starts_layout,
                          prompts=str(prompts), splits=splits)
    tools = BenchmarkSpec(name="oracle-tools", task="instruments", classes=ORACLE_TOOLS, loader=tool_presence_layout,
                          prompts=str(prompts), splits=splits,
                          loader_options={"file_pattern": "case_{id}.csv", "video_path": "tool_videos/case_{id}.mp4",
                                          "fps": float(ORACLE_FPS)})
    return root, phase, tools


def test_oracle_phase_scores_perfectly(oracle_benchmarks):
    root, spec, _ = oracle_benchmarks
    oracle = OracleEncoder(spec)
    zero_shot = zero_shot_phase(oracle, spec, root, smooth_window=1, results_file=None)
    assert zero_shot["metrics"]["accuracy"] == 1.0 and zero_shot["metrics"]["f1"] == 1.0
    assert zero_shot["metrics"]["num_videos"] == 2 and zero_shot["metrics"]["frames"] == 2 * 7  # 8 samples - lead-in
    probe = linear_probe(oracle, spec, root, results_file=None)
    for label in ("1%", "10%", "100%"):
        assert probe["results"][label]["metrics"]["accuracy"] == 1.0
        assert probe["results"][label]["metrics"]["f1"] == 1.0


def test_oracle_sampling_misaligned_by_a_frame_is_caught(oracle_benchmarks):
    """The oracle is sensitive to label alignment: labels shifted by one frame against the video lose accuracy."""
    root, spec, _ = oracle_benchmarks
    original = spec.loader

    def shifted(*args, **kwargs):
        annotations, report = original(*args, **kwargs)
        for a in annotations:
            a.phases = np.roll(a.phases, 1)
        return annotations, report

    spec_shifted = BenchmarkSpec(name="oracle-shifted", task="phase", classes=spec.classes, loader=shifted,
                                 prompts=spec.prompts, splits=spec.splits)
    assert zero_shot_phase(OracleEncoder(spec), spec_shifted, root, results_file=None)["metrics"]["accuracy"] < 1.0


def test_oracle_instruments_score_perfectly(oracle_benchmarks):
    root, _, spec = oracle_benchmarks
    oracle = OracleEncoder(spec)
    out = zero_shot_instruments(oracle, spec, root, results_file=None)
    assert out["metrics"]["mAP"] == 1.0 and out["metrics"]["FPR"] == 0.0
    assert out["metrics"]["num_frames"] == 2 * 6
    probe = linear_probe(oracle, spec, root, fractions=(1.0,), results_file=None)
    assert probe["results"]["100%"]["metrics"]["mAP"] == 1.0
    assert set(NEGATIVE_TEMPLATES) and oracle.logit_scale == 100.0


# -- issue 17: prompt modes, sparse labels, still frames, loader notes -------------------------------------------------


class CountingEncoder(VideoTextEncoder):
    """Wraps an encoder and remembers every text it embedded."""

    def __init__(self, inner):
        self.inner, self.texts = inner, []
        self.model_id, self.video_processor = inner.model_id, inner.video_processor

    @property
    def logit_scale(self):
        return self.inner.logit_scale

    @property
    def weights_hash(self):
        return self.inner.weights_hash

    def describe(self):
        return self.inner.describe()

    def encode_frames(self, pixel_values):
        return self.inner.encode_frames(pixel_values)

    def encode_texts(self, texts):
        self.texts.extend(texts)
        return self.inner.encode_texts(texts)


def test_prompt_modes_are_recorded_and_named(ophclip, bench, tmp_path):
    """OphVL-mini keeps its ensemble default (protocol 'zero-shot', hash unchanged); the single-sentence mode embeds
    one text per class, is named in the protocol and recorded."""
    from evaluate_suite.registry import get_benchmark

    spec = get_benchmark("ophvl-mini-phase")
    results = tmp_path / "results.jsonl"
    default = CountingEncoder(ophclip)
    out = zero_shot_phase(default, spec.name, bench, results_file=results)
    assert out["protocol"] == "zero-shot" and out["prompt_mode"] == "ensemble"
    assert out["prompts_hash"] == "a1101fe53058" and len(default.texts) == 6 * 3
    single = CountingEncoder(ophclip)
    one = zero_shot_phase(single, spec.name, bench, results_file=results, prompts="sentence")
    assert one["protocol"] == "zero-shot-sentence" and single.texts == [t[0] for t in spec.class_texts().values()]
    assert one["prompts_hash"] == spec.prompts_hash("sentence") != out["prompts_hash"]
    records = read_jsonl(results)
    assert [(r["protocol"], r["extra"]["prompt_mode"]) for r in records] == [("zero-shot", "ensemble"),
                                                                             ("zero-shot-sentence", "sentence")]
    assert records[0]["extra"]["sampling"] == "fps" and records[0]["extra"]["split"] == "test"
    tools = zero_shot_instruments(ophclip, "ophvl-mini-instruments", bench, results_file=None, prompts="sentence")
    assert tools["protocol"] == "zero-shot-sentence"
    with pytest.raises(ValueError, match="prompt mode"):
        zero_shot_phase(ophclip, spec.name, bench, results_file=None, prompts="best")


def _cadis_fixture(root: Path) -> Path:
    """A CaDIS test video (`train02`, 35 frames at 30 fps) with masks on frames 0, 10, 20 and 30."""
    from test_benchmarks import write_png

    mask = np.zeros((4, 6), dtype=np.uint8)
    for frame, pixel in ((0, 13), (10, 34), (20, 13), (30, 4)):
        mask[:] = pixel
        write_png(root / "Video02" / "Labels" / f"Video2_frame{frame:06d}.png", mask)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "videos" / "train02.mp4").write_bytes(encode_video(np.zeros((35, 32, 32, 3), dtype=np.uint8), 30))
    return root


def test_sparse_labels_score_exactly_the_labelled_frames(ophclip, tmp_path):
    """CaDIS: every mask is one scored frame (a 1-fps grid would keep 2 of the 4 here, and one in three in the real
    data). The labels end at the last mask, so the video may be longer than them."""
    root = _cadis_fixture(tmp_path)
    results = tmp_path / "results.jsonl"
    out = zero_shot_instruments(ophclip, "cadis-instruments", root, "test", results_file=results)
    assert out["metrics"]["num_frames"] == 4 and out["skipped"] == {"Video12": "in the split but not in the "
                                                                              "annotations",
                                                                    "Video22": "in the split but not in the "
                                                                               "annotations"}
    (record,) = read_jsonl(results)
    assert record["extra"]["sampling"] == "labelled" and record["extra"]["fps"] is None
    assert record["extra"]["prompt_mode"] == "sentence" and record["protocol"] == "zero-shot"
    # 35 decoded frames for labels ending at frame 30: fine for sparse labels, a mismatch for dense ones.
    assert frame_count_problem(35, 31, at_least=True) is None and "mismatch" in frame_count_problem(35, 31)
    assert "mismatch" in frame_count_problem(20, 31, at_least=True)


def test_still_frame_datasets_are_read_image_by_image(ophclip, tmp_path):
    from test_benchmarks import supervisely, write_png

    case = tmp_path / "case_7"
    for n, size in ((1, (8, 8)), (2, (12, 10)), (3, (8, 8))):
        write_png(case / "img" / f"case7_{n:02d}.png", np.full(size, 60 * n, dtype=np.uint8))
    supervisely(case / "ann" / "case7_01.png.json", ["phaco tip"])
    supervisely(case / "ann" / "case7_03.png.json", ["IA", "gauge"])
    out = zero_shot_instruments(ophclip, "cataract-1k-instruments", tmp_path, "test", results_file=None)
    assert out["metrics"]["num_frames"] == 2 and out["skipped"] == {}  # image 2 has no annotation: not scored
    probe = linear_probe(ophclip, "cataract-1k-instruments", tmp_path, train_split="test", test_split="test",
                         fractions=(1.0,), results_file=None)
    assert probe["results"]["100%"]["metrics"]["num_frames"] == 2
    with pytest.raises(ValueError, match="share 1 video"):
        linear_probe(ophclip, "cataract-1k-instruments", tmp_path, fractions=(1.0,), results_file=None)


def test_loader_notes_are_recorded(ophclip, tmp_path):
    """A Cataract-1K video whose frame numbers disagree with its seconds is scored, and the disagreement is in the
    result record."""
    from test_benchmarks import cataract1k_case

    cataract1k_case(tmp_path, "9", ["Incision,0,19,0,0.95", "Capsule Pulishing,20,39,1,1.95"], fps=10, frames=40,
                    video=False)
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "case_9.mp4").write_bytes(encode_video(np.zeros((40, 32, 32, 3), dtype=np.uint8), 10))
    results = tmp_path / "results.jsonl"
    out = zero_shot_phase(ophclip, "cataract-1k-phase", tmp_path, results_file=results)
    assert "imply 20 fps" in out["load_notes"]["9"] and out["skipped"] == {}
    (record,) = read_jsonl(results)
    assert record["extra"]["load_notes"] == out["load_notes"] and record["extra"]["prompt_mode"] == "sentence"
