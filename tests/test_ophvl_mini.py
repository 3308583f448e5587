"""OphVL-mini: the synthetic generator writes a valid OphVL folder, narrations that name what is visible, benchmarks in
the Cataract-101 / CATARACTS layouts for two clinics, a hidden ground truth, deterministically, with structure a pixel
probe can learn; clinic B looks different but means the same."""

import copy
import csv
import hashlib
import inspect
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
decord = pytest.importorskip("decord")

from datasets_ophvl import mini  # noqa: E402
from datasets_ophvl.format import SUBSETS, TITLE_SUMMARY_FIELDS, validate_record  # noqa: E402
from datasets_ophvl.shards import read_whole_shard  # noqa: E402


REPO_ROOT = Path(__file__).resolve().parent.parent
TINY = mini.SIZES["tiny"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("mini") / "seed0"
    summary = mini.generate_ophvl_mini(out, seed=0, size="tiny", progress=False)
    return out, summary


def _samples(root: Path, subset: str):
    for shard in sorted((root / "data" / subset).glob("train-*.tar")):
        for key, sample in read_whole_shard(shard):
            yield key, json.loads(sample["json"]), sample["mp4"]


def _decode(source) -> np.ndarray:
    reader = decord.VideoReader(io.BytesIO(source) if isinstance(source, bytes) else str(source))
    return reader, reader.get_batch(list(range(len(reader)))).asnumpy()


def _file_hashes(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------------------------------


def test_folder_is_a_valid_ophvl_dataset(tiny):
    root, summary = tiny
    videos = {}
    for subset in SUBSETS:
        shards = sorted((root / "data" / subset).glob("train-*.tar"))
        assert len(shards) == summary[subset]["shards"] and len(shards) % mini.SHARD_MULTIPLE == 0
        assert not list((root / "data" / subset).glob("part-*"))
        count = 0
        for key, record, mp4 in _samples(root, subset):
            assert validate_record(subset, record) is None, (key, record)
            reader, frames = _decode(mp4)
            fps = TINY["clip_fps"] if subset == "clips" else TINY["video_fps"]
            assert reader.get_avg_fps() == pytest.approx(fps)
            assert frames.shape[1:] == (TINY["frame_size"], TINY["frame_size"], 3) and frames.dtype == np.uint8
            if subset == "clips":
                assert len(frames) == round((record["end"] - record["start"]) * fps)
                assert record["sentence_ids"] and all(isinstance(i, int) for i in record["sentence_ids"])
                assert record["phase"] in mini.PHASE_NAMES and set(record["instruments"]) <= set(mini.INSTRUMENT_NAMES)
            else:
                assert len(frames) == round(record["duration"] * fps)
                assert isinstance(record["title"], str) and record["title"]
            if subset == "videos":
                attributes = record["title_summary"]
                assert all(attributes[f] for f in TITLE_SUMMARY_FIELDS)
                assert attributes["phases"][0] == "Incision" and attributes["phases"][-1] == "Lens implant setting-up"
                videos[record["video_id"]] = record["duration"]
            count += 1
        assert count == summary[subset]["samples"] > 0
    # Clips are cut from the titled videos: their video ids and times fall inside them.
    for _, record, _ in _samples(root, "clips"):
        assert record["end"] <= videos[record["video_id"]] + 1e-6

    card = (root / "README.md").read_text()
    front = card.split("---")[1]
    assert "configs:" in front
    for subset in SUBSETS:
        assert f"config_name: {subset}" in front and f"path: data/{subset}/train-*.tar" in front


def test_plain_load_dataset_streams_every_subset(tiny):
    datasets = pytest.importorskip("datasets")
    root, summary = tiny
    for subset in SUBSETS:
        stream = datasets.load_dataset(str(root), subset, split="train", streaming=True).decode(False)
        rows = list(stream)
        assert len(rows) == summary[subset]["samples"]
        assert isinstance(rows[0]["json"], dict) and rows[0]["json"]["video_id"]


def _strip(text: str, phrases) -> str:
    for phrase in sorted(phrases, key=len, reverse=True):
        text = text.replace(phrase.lower(), " ")
    return text


def test_narrations_name_phase_instruments_and_action_in_varied_wording(tiny):
    root, _ = tiny
    by_name = {i["name"]: i for i in mini.INSTRUMENTS}
    instrument_words = [s.lower() for i in mini.INSTRUMENTS for s in i["synonyms"]]
    all_phrases = [s.lower() for p in mini.PHASES for s in p["synonyms"]] + instrument_words + [
        a.lower() for p in mini.PHASES for triple in p["actions"] for a in triple]
    skeletons, narrations, phase_first = set(), [], set()
    synonyms_used = {}
    for _, record, _ in _samples(root, "clips"):
        text = record["narration"].lower()
        narrations.append(text)
        phase = next(p for p in mini.PHASES if p["name"] == record["phase"])
        # The phase is named in its own words, not only through an instrument's name ("incision knife").
        without_tools = _strip(text, instrument_words)
        named = [s for s in phase["synonyms"] if s.lower() in without_tools]
        assert named, record["narration"]
        synonyms_used.setdefault(phase["name"], set()).update(named)
        # The action is stated (infinitive, gerund or third person form).
        assert any(form.lower() in text for triple in phase["actions"] for form in triple), record["narration"]
        # Every instrument in view is named.
        assert record["instruments"]
        for name in record["instruments"]:
            assert any(s.lower() in text for s in by_name[name]["synonyms"]), (name, record["narration"])
        first_tool = min(text.find(s.lower()) for name in record["instruments"] for s in by_name[name]["synonyms"]
                         if s.lower() in text)
        phase_first.add(without_tools.find(named[0].lower()) < first_tool)
        skeleton = re.sub(r"\b(the|a)\b", "", _strip(text, all_phrases))
        skeletons.add(re.sub(r"\s+", " ", skeleton).strip())
    assert len(set(narrations)) == len(narrations)
    assert len(skeletons) >= 8, skeletons  # different sentence patterns, not one template
    assert phase_first == {True, False}  # the phase is named both before and after the instruments
    assert sum(len(used) > 1 for used in synonyms_used.values()) >= 3  # synonyms, not one fixed name per phase


def test_same_seed_is_byte_identical_and_seeds_differ(tiny, tmp_path):
    root, _ = tiny
    reference = _file_hashes(root)
    for folder in ("data/clips/", "data/silent/", "benchmark/", "benchmark-shifted/", "hidden/"):
        assert any(p.startswith(folder) for p in reference), folder

    mini.generate_ophvl_mini(tmp_path / "again", seed=0, size="tiny", progress=False)
    assert _file_hashes(tmp_path / "again") == reference

    mini.generate_ophvl_mini(tmp_path / "other", seed=1, size="tiny", progress=False)
    other = _file_hashes(tmp_path / "other")
    tars = [p for p in reference if p.endswith(".tar")]
    assert tars and all(other.get(p) != reference[p] for p in tars)
    assert other["benchmark/annotations.csv"] != reference["benchmark/annotations.csv"]
    assert other["benchmark-shifted/annotations.csv"] != reference["benchmark-shifted/annotations.csv"]
    assert other["hidden/ground_truth.jsonl"] != reference["hidden/ground_truth.jsonl"]

    # --overwrite replaces a previous generation (here with seed 0 again: identical to the reference).
    mini.generate_ophvl_mini(tmp_path / "other", seed=0, size="tiny", progress=False, overwrite=True)
    assert _file_hashes(tmp_path / "other") == reference


def _read_semicolon(path: Path, header: list[str]) -> list[list[str]]:
    lines = path.read_text().splitlines()
    assert lines[0] == ";".join(header), lines[0]
    return [line.split(";") for line in lines[1:]]


def _benchmark(root: Path, folder: str = "benchmark"):
    """Read a benchmark like a Cataract-101 / CATARACTS loader: per video, frames, fps, per-frame phase, tools."""
    bench = root / folder
    phases = {int(i): name for i, name in _read_semicolon(bench / "phases.csv", ["Phase", "Meaning"])}
    videos = {int(v): (int(n), float(fps), int(s), int(e)) for v, n, fps, s, e in
              _read_semicolon(bench / "videos.csv", ["VideoID", "Frames", "FPS", "Surgeon", "Experience"])}
    starts = {}
    for v, frame, phase in _read_semicolon(bench / "annotations.csv", ["VideoID", "FrameNo", "Phase"]):
        starts.setdefault(int(v), []).append((int(frame), int(phase)))
    out = {}
    for vid, (frames, fps, surgeon, experience) in videos.items():
        rows = starts[vid]
        assert [f for f, _ in rows] == sorted(f for f, _ in rows)
        labels = np.zeros(frames, int)  # 0: before the first annotated phase (idle, unannotated)
        for frame, phase in rows:
            labels[frame:] = phase
        with open(bench / "tool_annotations" / f"case_{vid}.csv", newline="") as f:
            table = list(csv.reader(f))
        tools = np.array([[int(x) for x in row[1:]] for row in table[1:]])
        frame_numbers = [int(row[0]) for row in table[1:]]
        out[vid] = {"frames": frames, "fps": fps, "surgeon": surgeon, "experience": experience, "labels": labels,
                    "header": table[0], "frame_numbers": frame_numbers, "tools": tools,
                    "video": bench / "videos" / f"case_{vid}.mp4"}
    return phases, out


@pytest.mark.parametrize("folder, key, clinic", [("benchmark", "benchmark", "A"),
                                                  ("benchmark-shifted", "benchmark_shifted", "B")])
def test_benchmark_is_in_the_cataract101_and_cataracts_layouts(tiny, folder, key, clinic):
    root, summary = tiny
    phases, videos = _benchmark(root, folder)
    assert phases == {p["id"]: p["name"] for p in mini.PHASES} and sorted(phases) == list(range(1, 7))
    assert len(videos) == summary[key]["videos"] == TINY[key] and summary[key]["clinic"] == clinic
    assert sum(v["frames"] for v in videos.values()) == summary[key]["frames"]
    main = {p["id"]: mini.INSTRUMENT_NAMES.index(next(i["name"] for i in mini.INSTRUMENTS if i["key"] == p["main"]))
            for p in mini.PHASES}
    for vid, v in videos.items():
        reader, frames = _decode(v["video"])
        assert len(frames) == v["frames"] and reader.get_avg_fps() == pytest.approx(v["fps"])
        assert v["surgeon"] in (1, 2, 3, 4) and v["experience"] in (1, 2)
        # Phases: all six, in surgical order, an unannotated idle lead-in, the last phase to the end.
        labels = v["labels"]
        assert labels[0] == 0 and labels[-1] == 6 and set(labels[labels > 0]) == set(range(1, 7))
        firsts = [int(np.argmax(labels == p)) for p in range(1, 7)]
        assert firsts == sorted(firsts)
        # Tools: CATARACTS header, one row per video frame numbered from 1, 0/1 values.
        assert v["header"] == ["Frame", *mini.INSTRUMENT_NAMES]
        assert v["frame_numbers"] == list(range(1, v["frames"] + 1))
        assert v["tools"].shape == (v["frames"], len(mini.INSTRUMENT_NAMES)) and set(np.unique(v["tools"])) <= {0, 1}
        assert not v["tools"][labels == 0].any()  # nothing in view during the idle lead-in
        for phase, column in main.items():  # each phase's main instrument is in view for most of it
            assert v["tools"][labels == phase, column].mean() > 0.6
    meta = json.loads((root / folder / "meta.json").read_text())
    assert meta["instruments"] == list(mini.INSTRUMENT_NAMES) and meta["clinic"] == clinic
    assert meta["frame_no_base"] == 0 and meta["tool_frame_base"] == 1
    # train / validation / test: the first n//3 videos, the next n//3, the rest (the tiny size's 3 videos: 1/1/1).
    assert {name: len(ids) for name, ids in meta["split"].items()} == {"train": 1, "validation": 1, "test": 1}
    assert meta["split"]["train"] + meta["split"]["validation"] + meta["split"]["test"] == sorted(videos)
    assert mini.split_ids(list(range(12))) == {"train": [0, 1, 2, 3], "validation": [4, 5, 6, 7],
                                                "test": [8, 9, 10, 11]}
    readme = (root / folder / "README.md").read_text()
    assert "VideoID;FrameNo;Phase" in readme and "`Frame`" in readme
    assert "`validation`" in readme and "Never tune on the test split" in readme and f"clinic {clinic}" in readme


def _pool(frames: np.ndarray, cells: int = 8) -> np.ndarray:
    t, h, w, c = frames.shape
    return frames.reshape(t, cells, h // cells, cells, w // cells, c).mean(axis=(2, 4)).reshape(t, -1) / 255.0


def _linear_probe(train_x, train_y, test_x, ridge: float = 100.0):
    """A ridge-regression classifier (least squares onto one-hot targets) on standardized features: a linear probe."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-3
    design = np.hstack([(train_x - mean) / std, np.ones((len(train_x), 1))])
    classes = np.unique(train_y)
    targets = (train_y[:, None] == classes[None]).astype(float)
    weights = np.linalg.solve(design.T @ design + ridge * np.eye(design.shape[1]), design.T @ targets)
    return classes[(np.hstack([(test_x - mean) / std, np.ones((len(test_x), 1))]) @ weights).argmax(1)]


def test_phases_and_instruments_are_learnable_from_pixels(tiny):
    root, _ = tiny
    # Phase: a linear probe on 8x8 mean-pooled frames, trained on the narrated clips' frames (labelled with the clip's
    # phase), tested on the held-out benchmark's annotated frames. (Seeds 0-15 measured 0.76-0.95; chance is 1/6.)
    train_x, train_y = [], []
    for _, record, mp4 in _samples(root, "clips"):
        features = _pool(_decode(mp4)[1])
        train_x.append(features)
        train_y += [record["phase_id"]] * len(features)
    _, videos = _benchmark(root)
    test_x = np.concatenate([_pool(_decode(v["video"])[1]) for v in videos.values()])
    labels = np.concatenate([v["labels"] for v in videos.values()])
    tools = np.concatenate([v["tools"] for v in videos.values()])
    ids = np.concatenate([[vid] * v["frames"] for vid, v in videos.items()])
    annotated = labels > 0
    predicted = _linear_probe(np.concatenate(train_x), np.array(train_y), test_x[annotated])
    accuracy = (predicted == labels[annotated]).mean()
    assert accuracy >= 3 / len(mini.PHASES), accuracy

    # Instruments: per tool, a present/absent linear probe, leave-one-video-out on the benchmark (seeds 0-15: mean
    # balanced accuracy over tools 0.79-0.97, worst tool 0.60-0.87; chance is 0.5).
    balanced = []
    for column in range(tools.shape[1]):
        guess = np.zeros(len(ids), int)
        for vid in videos:
            held = ids == vid
            guess[held] = _linear_probe(test_x[~held], tools[~held, column], test_x[held])
        truth = tools[:, column]
        balanced.append(((guess[truth == 1] == 1).mean() + (guess[truth == 0] == 0).mean()) / 2)
    assert np.mean(balanced) >= 0.75 and min(balanced) >= 0.55, balanced


def test_existing_folder_is_refused(tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("keep me")
    result = subprocess.run([sys.executable, "-m", "datasets_ophvl.mini", str(taken), "--size", "tiny", "--quiet"],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "--overwrite" in result.stderr, result.stderr
    assert sorted(p.name for p in taken.iterdir()) == ["notes.txt"]
    # --overwrite replaces only a previous OphVL-mini folder, never someone's other files or another dataset.
    with pytest.raises(FileExistsError, match="notes.txt"):
        mini.generate_ophvl_mini(taken, size="tiny", progress=False, overwrite=True)
    assert (taken / "notes.txt").read_text() == "keep me"
    other_dataset = tmp_path / "other-dataset"
    (other_dataset / "data" / "clips").mkdir(parents=True)
    (other_dataset / "README.md").write_text("a real OphVL build")
    with pytest.raises(FileExistsError, match="marker"):
        mini.generate_ophvl_mini(other_dataset, size="tiny", progress=False, overwrite=True)
    assert (other_dataset / "README.md").read_text() == "a real OphVL build"


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="size"):
        mini.generate_ophvl_mini(tmp_path / "a", size="huge", progress=False)
    with pytest.raises(TypeError, match="colour"):
        mini.generate_ophvl_mini(tmp_path / "b", size="tiny", progress=False, colour=3)


# -- two clinics: visibly different, semantically identical ----------------------------------------------------------


def _subset_frames(root: Path, subset: str) -> np.ndarray:
    return np.concatenate([_decode(mp4)[1] for _, _, mp4 in _samples(root, subset)]).astype(np.float64)


def test_clinic_b_is_visibly_different(tiny):
    root, summary = tiny
    assert summary["silent_clinic_b"] == TINY["silent"]  # silent_clinic_b = 1.0: every silent video is clinic B
    narrated, silent = _subset_frames(root, "videos"), _subset_frames(root, "silent")  # clinic A, clinic B
    # The colour cast: the mean blue-minus-red difference over all frames moves by more than 25 grey levels (clinic
    # B's cool blue-green cast; seeds 0-3 of the tiny size measured 33-68, seed 0: about 51).
    blue_minus_red = [f[..., 2].mean() - f[..., 0].mean() for f in (narrated, silent)]
    assert blue_minus_red[1] - blue_minus_red[0] > 25, blue_minus_red

    # Vignetting (and the off-centre eye): the corners are darker relative to the whole frame (seeds 0-3: about 0.6
    # in clinic A, 0.35-0.4 in clinic B).
    def corner_ratio(frames):
        c = frames.shape[1] // 8
        corners = np.concatenate([frames[:, :c, :c], frames[:, :c, -c:], frames[:, -c:, :c], frames[:, -c:, -c:]], 1)
        return corners.mean() / frames.mean()

    assert corner_ratio(silent) < corner_ratio(narrated) - 0.1


def test_the_clinic_changes_the_look_never_the_labels():
    cfg = mini.SIZES["default"]
    times = mini._frame_times(0.0, 2.0, 40)
    for clinic in ("A", "B"):
        proc = mini._plan_procedure(mini._rng(7, 99, 0), cfg, "case", clinic=clinic)
        assert proc.clinic == clinic
        planned = copy.deepcopy(proc)
        labels = [(mini.phase_at(proc, float(t)), mini.instruments_at(proc, float(t))) for t in times]
        frames = {look: mini.render(proc, times, 64, mini._rng(1), clinic=look) for look in ("A", "B")}
        assert proc == planned  # rendering reads the scene, it never changes it
        assert [(mini.phase_at(proc, float(t)), mini.instruments_at(proc, float(t))) for t in times] == labels
        assert {p for p, _ in labels} >= {0, 1, 2} and any(tools for _, tools in labels)
        # The same planned scene, drawn by two microscopes with two instrument makes: different pixels.
        assert np.abs(frames["A"].astype(int) - frames["B"].astype(int)).mean() > 10
        assert (mini.render(proc, times, 64, mini._rng(1)) == frames[clinic]).all()  # default: where it was recorded
    # The labels take the scene and a time, nothing else.
    for label in (mini.phase_at, mini.instruments_at):
        assert list(inspect.signature(label).parameters) == ["proc", "t"]


def test_clinic_b_keeps_what_identifies_the_cataract():
    cast = np.array(mini.CLINICS["B"].cast)
    assert (cast > 0).all()  # a positive per-channel gain keeps each channel's ordering of the lens colours ...
    lenses = np.array([c["lens"] for c in mini.CATARACTS.values()], float)
    for channel in range(3):
        assert (np.argsort(lenses[:, channel], kind="stable")
                == np.argsort(lenses[:, channel] * cast[channel], kind="stable")).all()
    luminance = np.array((0.299, 0.587, 0.114))  # ... and here their brightness ordering too
    assert (np.argsort(lenses @ luminance) == np.argsort((lenses * cast) @ luminance)).all()
    # Spokes (cortical) and the plaque (posterior subcapsular) are drawn in clinic B's magnified, off-centre eye: the
    # pupil's colour, radial shading divided out, varies there and is flat for a plain nuclear cataract.
    proc = mini._plan_procedure(mini._rng(3, 99, 1), mini.SIZES["default"], "case", clinic="B")
    for cataract, texture in (("nuclear", False), ("cortical", True), ("psc", True)):
        proc.cataract = cataract
        canvas = mini._Canvas(proc, 64)
        rel = np.clip(canvas.R / canvas.pupil_r, 0, 1)
        flat = canvas.lens / (1.05 - 0.25 * rel ** 2)[..., None]
        spread = flat[canvas.pupil_mask[..., 0] > 0.99].std(0).max()
        assert (spread > 10) if texture else (spread < 0.5), (cataract, spread)


def test_clinic_b_works_at_another_pace_and_geometry():
    cfg = mini.SIZES["default"]
    plans = {clinic: [mini._plan_procedure(mini._rng(0, 99, i), cfg, "case", clinic=clinic) for i in range(60)]
             for clinic in ("A", "B")}
    # With the same draws, clinic B's phases are 1.2x longer, its lead-in 1.8x, its eye 1.25x larger and off centre,
    # its instruments enter 25 degrees further round (the draws after the phases match when the phase lists do).
    compared = 0
    for a, b in zip(plans["A"], plans["B"]):
        assert b.segments[0].start == pytest.approx(1.8 * a.segments[0].start)
        assert 0.08 <= np.hypot(b.eye["cx"], b.eye["cy"]) <= 0.15 and max(abs(a.eye["cx"]), abs(a.eye["cy"])) <= 0.05
        if len(a.segments) != len(b.segments):
            continue
        compared += 1
        lengths = [(sa.end - sa.start, sb.end - sb.start) for sa, sb in zip(a.segments, b.segments)]
        assert all(lb == pytest.approx(1.2 * la) for la, lb in lengths)
        assert b.eye["iris_r"] == pytest.approx(1.25 * a.eye["iris_r"])
        shift = np.degrees(np.array([b.angles[k] - a.angles[k] for k in a.angles]))
        assert np.allclose(shift, 25)
    assert compared >= 20
    assert mini.CLINICS["B"].phase_scale == 1.2 and mini.CLINICS["A"].phase_scale == 1.0
    # The second viscous agent injection: probability 0.4 in clinic A, 0.7 in clinic B.
    again = {clinic: np.mean([len(p.segments) == 7 for p in procs]) for clinic, procs in plans.items()}
    assert again["B"] > again["A"] + 0.15, again
    # Same instrument types, other looks: each colour moved part of the way toward the clinic's palette colour.
    for info in mini.INSTRUMENTS:
        colour, width, body = mini.CLINICS["B"].instrument_look(info["key"])
        assert mini.CLINICS["A"].instrument_look(info["key"]) == (info["colour"], info["width"], info["body"])
        moved = np.array(colour) - np.array(info["colour"])
        toward = np.array(mini.CLINICS["B"].palette[info["key"]]) - np.array(info["colour"])
        assert np.allclose(moved, 0.45 * toward) and width > info["width"] and body < info["body"]


def test_silent_videos_clinic_fraction():
    cfg = {**TINY, "silent": 10}
    assert [mini.silent_clinic(i, {**cfg, "silent_clinic_b": 1.0}) for i in range(10)] == ["B"] * 10
    assert [mini.silent_clinic(i, {**cfg, "silent_clinic_b": 0.3}) for i in range(10)] == ["B"] * 3 + ["A"] * 7
    assert [mini.silent_clinic(i, {**cfg, "silent_clinic_b": 0.0}) for i in range(10)] == ["A"] * 10
    with pytest.raises(ValueError, match="silent_clinic_b"):
        mini.generate_ophvl_mini("/nonexistent/never-written", size="tiny", progress=False, silent_clinic_b=1.5)


def test_shifted_benchmark_loads_through_the_evaluation_suite(tiny):
    from evaluate_suite.registry import get_benchmark

    root, _ = tiny
    ids = {}
    for folder, prefix in (("benchmark", "ophvl-mini"), ("benchmark-shifted", "ophvl-mini-shifted")):
        meta = json.loads((root / folder / "meta.json").read_text())
        assert list(meta["split"]) == ["train", "validation", "test"]
        splits = {}
        for split in ("train", "validation", "test"):
            phase_videos, report = get_benchmark(f"{prefix}-phase").load(root / folder, split)
            tool_videos, tool_report = get_benchmark(f"{prefix}-instruments").load(root / folder, split)
            assert not report.skipped and not tool_report.skipped
            splits[split] = [v.video_id for v in phase_videos]
            assert splits[split] == [v.video_id for v in tool_videos] == [str(v) for v in meta["split"][split]]
            assert all(v.path.is_file() and (v.phases >= 0).any() for v in phase_videos)
        every = [vid for split in splits.values() for vid in split]
        assert every and len(every) == len(set(every))  # the three splits are disjoint and together all videos
        assert len(every) == len(_read_semicolon(root / folder / "videos.csv", ["VideoID", "Frames", "FPS", "Surgeon",
                                                                               "Experience"]))
        ids[folder] = set(every)
    assert not ids["benchmark"] & ids["benchmark-shifted"]  # VideoIDs 1001... and 2001...


def test_hidden_ground_truth(tiny):
    root, summary = tiny
    truth = mini.read_ground_truth(root)
    assert truth == mini.read_ground_truth(root / "hidden" / "ground_truth.jsonl")
    lines = (root / "hidden" / "ground_truth.jsonl").read_text().splitlines()
    assert len(lines) == len(truth) == summary["videos"]["samples"] + summary["silent"]["samples"]
    narrated = {record["video_id"]: record for _, record, _ in _samples(root, "videos")}
    silent = {record["video_id"]: record for _, record, _ in _samples(root, "silent")}
    assert set(truth) == set(narrated) | set(silent)
    for vid, record in truth.items():
        assert list(record) == list(mini.GROUND_TRUTH_FIELDS)
        assert record["subset"] == ("videos" if vid in narrated else "silent")
        assert record["clinic"] == ("A" if vid in narrated else "B")
        assert record["cataract"] in mini.CATARACTS
        assert record["phases"][0] == "Incision" and record["phases"][-1] == "Lens implant setting-up"
        assert set(record["phases"]) == set(mini.PHASE_NAMES) and len(record["phases"]) in (6, 7)
        assert record["phases"].count("Viscous agent injection") == len(record["phases"]) - 5  # repeats are kept
        assert sorted(record["instruments"]) == sorted(set(record["instruments"]))
        assert set(record["instruments"]) <= set(mini.INSTRUMENT_NAMES)
        if vid in narrated:  # the titled videos' summaries say the same
            summary_fields = narrated[vid]["title_summary"]
            assert record["phases"] == summary_fields["phases"]
            assert record["instruments"] == summary_fields["instruments"]
            assert mini.CATARACTS[record["cataract"]]["cause"] == summary_fields["disease_cause"]
    # What training sees of a silent video: its id, duration and a short noisy title, no narration, no ground truth.
    for vid, record in silent.items():
        assert set(record) == {"video_id", "duration", "title"}
        assert not any(name.lower() in record["title"].lower() for name in mini.PHASE_NAMES)
        assert truth[vid]["cataract"] not in record["title"].lower()
    # The card records where it is; no OphVL subset reads it.
    card = (root / "README.md").read_text()
    assert "hidden/ground_truth.jsonl" in card and "benchmark-shifted/" in card
    assert not list((root / "data").rglob("*ground_truth*"))


def test_ground_truth_reader_names_bad_lines(tmp_path):
    path = tmp_path / "truth.jsonl"
    good = {"video_id": "a", "subset": "silent", "clinic": "B", "cataract": "psc", "phases": [], "instruments": []}
    path.write_text(json.dumps(good) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"truth.jsonl:2: not JSON"):
        mini.read_ground_truth(path)
    path.write_text(json.dumps({"video_id": "a"}) + "\n")
    with pytest.raises(ValueError, match=r"truth.jsonl:1: missing subset, clinic"):
        mini.read_ground_truth(path)
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(good) + "\n")
    with pytest.raises(ValueError, match=r"truth.jsonl:3: video_id 'a' repeated"):
        mini.read_ground_truth(path)
