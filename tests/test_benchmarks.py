"""The benchmark registry and its loaders: every registered benchmark reads a tiny copy of its dataset's own published
layout (written here in `tmp_path`: synthetic rows with the real headers, delimiters, units and spellings) into the
right per-frame labels, skips broken videos with a reason, rejects broken annotation files with the file and line, and
has a prompt for every class. The four OphVL-mini benchmarks (clinic A and the shifted clinic B) read the output of
`datasets_ophvl.mini`. Also: one split vocabulary, the OphNet fillers, prompt modes, Cataract-101's end marker and
Cataract-1K's frames-vs-seconds check (issue 17)."""

import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from evaluate_suite.loaders import AnnotationError, find_by_pattern, probe_video, read_mask
from evaluate_suite.registry import IGNORE_INDEX, SPLITS, get_benchmark, list_benchmarks, load_prompts


IGNORE = IGNORE_INDEX
REAL = {"cataract-1k-phase", "cataract-1k-instruments", "cataract-101-phase", "cataract-21-phase", "cataracts-tools",
        "cataracts2020-steps", "ophnet-phase", "ophnet-operation", "cadis-instruments", "sics-155-phase",
        "cataract-lmm-phase"}
SYNTHETIC = {"ophvl-mini-phase", "ophvl-mini-instruments", "ophvl-mini-shifted-phase", "ophvl-mini-shifted-instruments"}
REGISTERED = REAL | SYNTHETIC
# The exact prompt texts of each benchmark in its default prompt mode, as hashed into every result. A change here
# means the prompts changed: update the value only together with the prompt file, on purpose.
PROMPT_HASHES = {
    "cadis-instruments": "390afd23295b", "cataract-101-phase": "f800a7ea298b", "cataract-1k-phase": "8b669d84edb7",
    "cataract-21-phase": "f800a7ea298b", "cataracts-tools": "1e9008cf2a0d", "cataracts2020-steps": "e847e9b51c94",
    "ophnet-operation": "dcb02bafc38b", "ophnet-phase": "6cb084ce4774", "cataract-1k-instruments": "23b9fa3b818f",
    "sics-155-phase": "5f9d6ff8300d", "cataract-lmm-phase": "35001a00e6b4",
    # OphVL-mini keeps its ensemble default: these are the hashes from before issue 17.
    "ophvl-mini-instruments": "8c7b35425a17", "ophvl-mini-phase": "a1101fe53058",
    "ophvl-mini-shifted-instruments": "8c7b35425a17", "ophvl-mini-shifted-phase": "a1101fe53058",  # the same prompts
}
# The ensemble texts of the real benchmarks are those hashed before issue 17 (OphNet's with every label scored).
ENSEMBLE_HASHES = {
    "cadis-instruments": "499d22076918", "cataract-101-phase": "3a020d2e81f9", "cataract-1k-phase": "dc60c89a47da",
    "cataract-21-phase": "3a020d2e81f9", "cataracts-tools": "7b6472d5030b", "cataracts2020-steps": "21d17e95fa43",
}


# -- helpers -----------------------------------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def touch_video(path: Path) -> Path:
    """A stand-in video file: loaders that are given the frame rate only check that the file exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00" * 16)
    return path


def real_video(path: Path, frames: int, fps: float) -> Path:
    from datasets_ophvl.media import encode_video

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_video(np.zeros((frames, 16, 16, 3), dtype=np.uint8), fps))
    return path


def write_png(path: Path, pixels: np.ndarray) -> Path:
    """An 8-bit greyscale PNG (a CaDIS-style label mask) written with zlib only."""
    height, width = pixels.shape
    raw = b"".join(b"\x00" + pixels[row].astype(np.uint8).tobytes() for row in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def labels(*runs):
    """`labels((2, IGNORE), (3, 0))` -> [-1, -1, 0, 0, 0]."""
    return [value for count, value in runs for _ in range(count)]


def location(path: Path, line: int) -> str:
    return re.escape(f"{path}:{line}")


# -- registry and prompts ----------------------------------------------------------------------------------------------


def test_the_registry_holds_every_benchmark():
    assert set(list_benchmarks()) == REGISTERED
    assert set(list_benchmarks(real=True)) == REAL and len(REAL) >= 11
    assert set(list_benchmarks(real=False)) == SYNTHETIC


def test_registry_and_benchmarks_import_one_way():
    """No import cycle inside evaluate_suite (every import statement, at module level or in a function, counts):
    registry -> benchmarks -> loaders -> spec."""
    import ast

    package = Path(__file__).resolve().parent.parent / "evaluate_suite"
    graph = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        is_package = path.name == "__init__.py"
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".")
                    base = base[: len(base) - node.level + (1 if is_package else 0)]
                    name = ".".join(base + ([node.module] if node.module else []))
                else:
                    name = node.module or ""
                targets.add(name)
                targets.update(f"{name}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[module] = {t for t in targets if t.startswith("evaluate_suite")}
    modules = set(graph)
    graph = {m: {t for t in targets if t in modules and t != m} for m, targets in graph.items()}

    def reaches(start, goal, seen=()):
        return any(t == goal or (t not in seen and reaches(t, goal, (*seen, t))) for t in graph[start])

    assert "evaluate_suite.benchmarks" in graph["evaluate_suite.registry"]
    assert not reaches("evaluate_suite.benchmarks", "evaluate_suite.registry")
    assert not reaches("evaluate_suite.loaders", "evaluate_suite.registry")
    cycles = sorted(m for m in modules if reaches(m, m))
    assert cycles == [], f"modules on an import cycle: {cycles}"


@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_every_class_has_prompts(name):
    spec = get_benchmark(name)
    prompts = load_prompts(spec.prompts)
    ensemble, sentence = spec.class_texts("ensemble"), spec.class_texts("sentence")
    assert list(ensemble) == list(sentence) == list(spec.classes)
    assert set(prompts["sentences"]) == set(spec.all_labels()), "a sentence per label and none for other names"
    assert len(prompts["templates"]) >= 2
    for cls in spec.classes:
        own = prompts["sentences"][cls]
        assert len(own) == 1 and own[0].endswith(".") and len(own[0].split()) >= 4
        assert ensemble[cls] == own + [t.format(cls) for t in prompts["templates"]]
        assert sentence[cls] == own  # SurgVLP style: the one sentence
    assert spec.class_texts() == (sentence if spec.prompt_mode == "sentence" else ensemble)
    if spec.real:
        assert spec.prompt_mode == "sentence", "comparison runs on real benchmarks use one sentence per class"
        assert spec.description and spec.homepage and spec.citation and spec.scoring and spec.folder
    else:
        assert spec.prompt_mode == "ensemble", "OphVL-mini keeps its ensemble default"


@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_the_prompts_hash_is_stable(name):
    spec = get_benchmark(name)
    assert spec.prompts_hash() == spec.prompts_hash() == PROMPT_HASHES[name]
    if name in ENSEMBLE_HASHES:
        assert spec.prompts_hash("ensemble") == ENSEMBLE_HASHES[name]
    assert get_benchmark("ophnet-phase").with_unlabelled(()).prompts_hash("ensemble") == "bd1a911fde32"
    assert get_benchmark("ophnet-operation").with_unlabelled(()).prompts_hash("ensemble") == "39583431e474"


def test_a_prompts_file_without_a_sentence_falls_back_to_the_first_template(tmp_path):
    from evaluate_suite.registry import class_texts

    prompts = {"sentences": {"A": ["first sentence of a.", "second."]}, "templates": ["t1 {}.", "t2 {}."]}
    assert class_texts(("A", "B"), prompts, mode="sentence") == {"A": ["first sentence of a."], "B": ["t1 B."]}
    assert class_texts(("A", "B"), prompts) == {"A": ["first sentence of a.", "second.", "t1 A.", "t2 A."],
                                                "B": ["t1 B.", "t2 B."]}
    with pytest.raises(ValueError, match="prompt mode"):
        class_texts(("A",), prompts, mode="best")


@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_one_split_vocabulary(name):
    spec = get_benchmark(name)
    for split in SPLITS:
        assert spec.canonical_split(split) == split
    for canonical, own in spec.split_names.items():
        assert spec.canonical_split(own) == canonical and spec.dataset_split(canonical) == own
    with pytest.raises(ValueError, match="has splits"):
        spec.canonical_split("dev")
    if spec.splits is not None:
        assert set(spec.splits) <= set(SPLITS)


def test_benchmark_cards_say_what_is_scored_and_ignored():
    from evaluate_suite.cards import benchmark_card

    ophnet = benchmark_card(get_benchmark("ophnet-phase"))
    assert "## Scored" in ophnet and "Step Interval" in ophnet and "Non-functional Segment" in ophnet
    assert "Others" in ophnet and "unlabelled" in ophnet.lower() and "`val`" in ophnet
    assert "sentence" in ophnet
    assert "labelled frames" in benchmark_card(get_benchmark("cadis-instruments"))
    assert "end-of-annotation" in benchmark_card(get_benchmark("cataract-101-phase"))
    assert "sec" in benchmark_card(get_benchmark("cataract-1k-phase"))
    for name in REGISTERED:
        card = benchmark_card(get_benchmark(name))
        assert card.startswith(f"# {name}") and "## Scored" in card and "## Classes" in card


def test_the_prompts_hash_follows_the_texts(tmp_path):
    from dataclasses import replace

    spec = get_benchmark("cataract-101-phase")
    prompts = load_prompts(spec.prompts)
    prompts["sentences"]["Rhexis"] = ["A different sentence about the capsulorhexis."]
    changed = replace(spec, prompts=str(write(tmp_path / "p.json", json.dumps(prompts))))
    assert changed.prompts_hash() != spec.prompts_hash()


def test_published_class_lists():
    assert len(get_benchmark("cataract-1k-phase").classes) == 12
    assert len(get_benchmark("cataract-101-phase").classes) == 10
    assert get_benchmark("cataract-21-phase").classes == get_benchmark("cataract-101-phase").classes
    tools = get_benchmark("cataracts-tools").classes
    assert len(tools) == 21 and tools[0] == "biomarker" and tools[-1] == "Vannas scissors"
    assert len(get_benchmark("cataracts2020-steps").classes) == 18
    phases, operations = get_benchmark("ophnet-phase").label_names, get_benchmark("ophnet-operation").label_names
    assert len(phases) == 52 and phases[0] == "Viscoelastic Injection" and phases[51] == "Others"
    assert len(operations) == 107 and operations[10].startswith("Hydrodissection") and operations[106] == "Others"
    assert len(get_benchmark("cadis-instruments").classes) == 21
    assert len(get_benchmark("sics-155-phase").classes) == 18 and len(get_benchmark("cataract-lmm-phase").classes) == 12
    assert len(get_benchmark("cataract-1k-instruments").classes) == 9


# -- Cataract-101 ------------------------------------------------------------------------------------------------------


def cataract101(root: Path) -> Path:
    write(root / "phases.csv", "Phase;Meaning\n1;Incision\n2;Viscous agent injection\n3;Rhexis\n4;Hydrodissection\n"
          "5;Phacoemulsificiation\n6;Irrigation and aspiration\n7;Capsule polishing\n8;Lens implant setting-up\n"
          "9;Viscous agent removal\n10;Tonifying and antibiotics\n")
    write(root / "videos.csv", "VideoID;Frames;FPS;Surgeon;Experience\n269;10;25;4;1\n270;8;25;4;1\n"
          "271;6;25;3;2\n272;5;25;3;2\n")
    write(root / "annotations.csv", "VideoID;FrameNo;Phase\n269;2;1\n269;4;5\n269;7;2\n270;0;3\n"
          "271;1;1\n272;1;1\n272;5;2\n")
    for video in (269, 270, 272):  # 271's video file is missing
        touch_video(root / "videos" / f"case_{video}.mp4")
    return root


def test_cataract101_layout(tmp_path):
    spec = get_benchmark("cataract-101-phase")
    videos, report = spec.load(cataract101(tmp_path), "test")
    assert [v.video_id for v in videos] == ["269", "270"]
    first = videos[0]
    assert (first.fps, first.num_frames, first.path.name) == (25.0, 10, "case_269.mp4")
    # Starts at 2 (Incision), 4 ("Phacoemulsificiation" in phases.csv), 7 (viscous agent injection); lead-in unlabelled.
    assert first.phases.tolist() == labels((2, IGNORE), (2, 0), (3, 4), (3, 1))
    assert videos[1].phases.tolist() == [2] * 8
    assert "271" in report.skipped and "missing" in report.skipped["271"]
    assert "outside" in report.skipped["272"]


def test_cataract101_errors(tmp_path):
    spec = get_benchmark("cataract-101-phase")
    root = cataract101(tmp_path)
    (root / "videos.csv").unlink()
    with pytest.raises(FileNotFoundError, match="videos.csv"):
        spec.load(root, "test")
    root = cataract101(tmp_path / "b")
    write(root / "annotations.csv", "VideoID;FrameNo;Phase\n269;2;1\n269;two;5\n")
    with pytest.raises(AnnotationError, match=location(root / "annotations.csv", 3)):
        spec.load(root, "test")
    root = cataract101(tmp_path / "c")
    write(root / "phases.csv", "Phase;Meaning\n1;Incision\n2;Lens polishing\n")
    with pytest.raises(AnnotationError, match=location(root / "phases.csv", 3) + ".*Lens polishing"):
        spec.load(root, "test")
    root = cataract101(tmp_path / "d")
    write(root / "annotations.csv", "VideoID;FrameNo;Phase\n269;2;1\n269;4;11\n")
    with pytest.raises(AnnotationError, match=location(root / "annotations.csv", 3)):
        spec.load(root, "test")


def test_cataract101_trailing_repeated_phase_ends_the_annotation(tmp_path):
    """Most Cataract-101 videos end with a row repeating the last phase: the end of the annotation (inclusive), not a
    new start. A repeat elsewhere, or the OphVL-mini benchmark (same layout), keeps the old reading."""
    spec = get_benchmark("cataract-101-phase")
    root = cataract101(tmp_path)
    write(root / "annotations.csv", "VideoID;FrameNo;Phase\n269;2;1\n269;4;5\n269;7;5\n270;0;3\n270;2;3\n270;5;4\n"
          "272;1;1\n272;5;1\n")
    videos, report = spec.load(root, "test")
    first, second, third = videos
    assert first.phases.tolist() == labels((2, IGNORE), (2, 0), (4, 4), (2, IGNORE))  # frame 7 ends phase 5
    assert second.phases.tolist() == labels((5, 2), (3, 3))  # 3, 3 then 4: a repeat not at the end is a restart
    assert third.phases.tolist() == labels((1, IGNORE), (4, 0))  # marker on frame 5 == Frames: one past the end
    write(root / "annotations.csv", "VideoID;FrameNo;Phase\n269;2;1\n269;11;1\n")
    assert "end-of-annotation row (frame 11)" in spec.load(root, "test")[1].skipped["269"]
    mini = get_benchmark("ophvl-mini-phase")
    assert "trailing_repeat_ends" not in mini.loader_options
    write(root / "annotations.csv", "VideoID;FrameNo;Phase\n269;2;1\n269;7;1\n")
    from dataclasses import replace

    plain = replace(spec, loader_options={"label_map": spec.loader_options["label_map"]})
    assert plain.load(root, "test")[0][0].phases.tolist() == labels((2, IGNORE), (8, 0))


# -- Cataract-21 -------------------------------------------------------------------------------------------------------


def cataract21(root: Path) -> Path:
    write(root / "training" / "case01.csv", "0,not_initialized\n1,not_initialized\n2,Incision\n3,Incision\n"
          "4,Phacoemulsificiation\n5,Phacoemulsification\n")
    touch_video(root / "training" / "case01.mp4")
    write(root / "training" / "case02.csv", "0,Rhexis\n")  # no video file
    write(root / "validation" / "case03.csv", "frame;label\n0;Rhexis\n1;Rhexis\n3;Tonifying and antibiotics\n")
    touch_video(root / "validation" / "case03.mp4")
    write(root / "validation" / "case04.csv", "0,Rhexis\n2,Rhexis\n1,Rhexis\n")
    touch_video(root / "validation" / "case04.mp4")
    return root


def test_cataract21_layout(tmp_path):
    spec = get_benchmark("cataract-21-phase")
    root = cataract21(tmp_path)
    train, report = spec.load(root, "train")
    assert [v.video_id for v in train] == ["case01"] and "missing" in report.skipped["case02"]
    assert train[0].fps == 25.0 and train[0].phases.tolist() == [IGNORE, IGNORE, 0, 0, 4, 4]
    test, report = spec.load(root, "test")
    assert [v.video_id for v in test] == ["case03"]
    assert test[0].phases.tolist() == [2, 2, IGNORE, 9]  # a header row and ';' are detected; frame 2 has no row
    assert "not increasing" in report.skipped["case04"]
    assert {v.video_id for v in spec.load(root, "all")[0]} == {"case01", "case03"}
    with pytest.raises(ValueError, match="splits"):
        spec.load(root, "val")


def test_cataract21_errors(tmp_path):
    spec = get_benchmark("cataract-21-phase")
    root = cataract21(tmp_path)
    write(root / "training" / "case01.csv", "0,Incision\n1,Capsulorhexis\n")
    with pytest.raises(AnnotationError, match=location(root / "training" / "case01.csv", 2) + ".*Capsulorhexis"):
        spec.load(root, "train")
    write(root / "training" / "case01.csv", "0,Incision\nx1,Incision\n")
    with pytest.raises(AnnotationError, match=location(root / "training" / "case01.csv", 2)):
        spec.load(root, "train")
    with pytest.raises(FileNotFoundError, match="no annotation files"):
        spec.load(tmp_path / "training", "train")


# -- Cataract-1K -------------------------------------------------------------------------------------------------------


def cataract1k_case(root: Path, case: str, rows: list[str], fps: float = 30, frames: int | None = 12,
                    video: bool = True):
    folder = root / "annotations" / f"case_{case}"
    write(folder / f"case_{case}_annotations_phases.csv",
          "caseId,comment,frame,endFrame,sec,endSec\n" + "".join(f"{case},{row}\n" for row in rows))
    if fps is not None:
        columns = "caseId,width,height,duration,fps" + (",total_frames" if frames is not None else "")
        values = f"{case},1024,768,0.4,{fps}" + (f",{frames}" if frames is not None else "")
        write(folder / f"case_{case}_video.csv", f"{columns}\n{values}\n")
    if video:
        touch_video(root / "videos" / f"case_{case}.mp4")


def test_cataract1k_layout(tmp_path):
    spec = get_benchmark("cataract-1k-phase")
    cataract1k_case(tmp_path, "4687", ["Incision,1,2,0.03,0.07", "Capsule Pulishing,4,6,0.13,0.2",
                                       "Anterior_Chamber Flushing,9,11,0.3,0.37"])
    cataract1k_case(tmp_path, "4693", ["Lens positioning,0,3,0,0.1"], video=False)
    cataract1k_case(tmp_path, "4700", ["Viscoelastic_Suction,20,50,0.7,1.7"])  # past its 12 frames
    cataract1k_case(tmp_path, "4701", ["Irrigation/Aspiration,0,1,0,0.03"], fps=None)  # no metadata, fake video
    videos, report = spec.load(tmp_path, "test")
    assert [v.video_id for v in videos] == ["4687"]
    video = videos[0]
    assert (video.fps, video.num_frames, video.path.name) == (30.0, 12, "case_4687.mp4")
    # endFrame is inclusive; the spellings of the annotation files map onto the published names.
    assert video.phases.tolist() == labels((1, IGNORE), (2, 0), (1, IGNORE), (3, 6), (2, IGNORE), (3, 10))
    assert "missing" in report.skipped["4693"]
    assert "outside" in report.skipped["4700"]
    assert "no frame rate" in report.skipped["4701"]


def test_cataract1k_frames_are_cross_checked_with_seconds(tmp_path):
    """Frame numbers vs the `sec` columns at the video's rate (issue 17): agreement is silent; a disagreement is noted
    per video with the rate the frames imply and the column used; a video is skipped only when neither column fits."""
    spec = get_benchmark("cataract-1k-phase")
    # 4690: frames agree with seconds at 10 fps.
    cataract1k_case(tmp_path, "4690", ["Incision,0,9,0,0.9", "Capsule Pulishing,20,29,2,2.9"], fps=10, frames=40)
    # 4691: the frames imply 20 fps (twice the video's 10); they fit the 40 frames, so they are used, with a note.
    cataract1k_case(tmp_path, "4691", ["Incision,0,19,0,0.95", "Capsule Pulishing,20,39,1,1.95"], fps=10, frames=40)
    # 4692: frames counted at 20 fps overrun the 10 fps video; the seconds fit and place the labels.
    cataract1k_case(tmp_path, "4692", ["Incision,0,19,0,0.9", "Capsule Pulishing,40,79,2,3.9"], fps=10, frames=40)
    # 4693: neither fits.
    cataract1k_case(tmp_path, "4693", ["Incision,0,19,0,0.95", "Capsule Pulishing,60,99,7,9.9"], fps=10, frames=40)
    videos, report = spec.load(tmp_path, "test")
    by_id = {v.video_id: v for v in videos}
    assert sorted(by_id) == ["4690", "4691", "4692"]
    assert "4690" not in report.notes
    assert by_id["4691"].phases.tolist() == labels((20, 0), (20, 6))
    assert "imply 20 fps" in report.notes["4691"] and "placed by the frame numbers" in report.notes["4691"]
    assert by_id["4692"].phases.tolist() == labels((10, 0), (10, IGNORE), (20, 6))
    assert "placed by the seconds" in report.notes["4692"] and "overrun" in report.notes["4692"]
    assert "neither fits" in report.skipped["4693"] and "seconds" in report.skipped["4693"]


def test_cataract1k_errors(tmp_path):
    spec = get_benchmark("cataract-1k-phase")
    cataract1k_case(tmp_path, "1", ["Incision,1,2,0,0", "Idle,3,4,0,0"])
    path = tmp_path / "annotations" / "case_1" / "case_1_annotations_phases.csv"
    with pytest.raises(AnnotationError, match=location(path, 3) + ".*Idle"):
        spec.load(tmp_path, "test")
    cataract1k_case(tmp_path, "1", ["Incision,1,x,0,0"])
    with pytest.raises(AnnotationError, match=location(path, 2) + ".*endFrame"):
        spec.load(tmp_path, "test")
    cataract1k_case(tmp_path, "1", ["Incision,5,2,0,0"])
    with pytest.raises(AnnotationError, match=location(path, 2)):
        spec.load(tmp_path, "test")
    write(path, "caseId,phase,frame\n1,Incision,2\n")
    with pytest.raises(AnnotationError, match=location(path, 1) + ".*comment"):
        spec.load(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="no annotation files"):
        spec.load(tmp_path / "videos", "test")


# -- CATARACTS tools ---------------------------------------------------------------------------------------------------


def cataracts_tools_file(root: Path, video: str, rows: list[dict], header_case=str.lower, extra: str = ""):
    tools = get_benchmark("cataracts-tools").classes
    header = ["Frame", *(header_case(t) for t in tools)] + ([extra] if extra else [])
    lines = [",".join(header)]
    for i, row in enumerate(rows):
        values = [str(row.get(t, 0)) for t in tools] + ([str(row.get(extra, 1))] if extra else [])
        lines.append(",".join([str(i + 1), *values]))
    return write(root / "tool_annotations" / f"{video}.csv", "\n".join(lines) + "\n")


def test_cataracts_tools_layout(tmp_path):
    spec = get_benchmark("cataracts-tools")
    # Headers in another case; the third row is marked as not to be evaluated.
    cataracts_tools_file(tmp_path, "test01", [{"cotton": 1}, {"cotton": 0.5, "Bonn forceps": 1},
                                              {"cotton": 1, "to_be_evaluated": 0}],
                         header_case=str.upper, extra="to_be_evaluated")
    cataracts_tools_file(tmp_path, "test02", [{"implant injector": 1}])  # video missing
    cataracts_tools_file(tmp_path, "train01", [{"biomarker": 1}])
    touch_video(tmp_path / "videos" / "test01.mp4")
    touch_video(tmp_path / "videos" / "train01.mp4")
    videos, report = spec.load(tmp_path, "test")
    assert [v.video_id for v in videos] == ["test01"]
    video = videos[0]
    assert (video.fps, video.num_frames, video.instruments.shape) == (30.0, 3, (3, 21))
    cotton, bonn = spec.classes.index("cotton"), spec.classes.index("Bonn forceps")
    assert video.instruments[0, cotton] == 1 and video.instruments[0].sum() == 1
    assert np.isnan(video.instruments[1, cotton]) and video.instruments[1, bonn] == 1  # 0.5 is ambiguous
    assert np.isnan(video.instruments[2]).all()  # to_be_evaluated = 0
    assert "missing" in report.skipped["test02"]
    assert "in the split but not in the annotations" in report.skipped["test03"]
    assert [v.video_id for v in spec.load(tmp_path, "train")[0]] == ["train01"]


def test_cataracts_tools_errors(tmp_path):
    spec = get_benchmark("cataracts-tools")
    path = cataracts_tools_file(tmp_path, "test01", [{"cotton": 2}])
    touch_video(tmp_path / "videos" / "test01.mp4")
    with pytest.raises(AnnotationError, match=location(path, 2) + ".*cotton"):
        spec.load(tmp_path, "test")
    path = cataracts_tools_file(tmp_path, "test01", [{}], extra="scalpel")
    with pytest.raises(AnnotationError, match=location(path, 1) + ".*scalpel"):
        spec.load(tmp_path, "test")
    write(path, "Frame,cotton\n1,0\n")
    with pytest.raises(AnnotationError, match=location(path, 1) + ".*lacks"):
        spec.load(tmp_path, "test")
    path = cataracts_tools_file(tmp_path, "test01", [{}, {}])
    write(path, path.read_text() + "3,0,1\n")
    with pytest.raises(AnnotationError, match=location(path, 4)):
        spec.load(tmp_path, "test")
    path = cataracts_tools_file(tmp_path, "test01", [{}, {}])
    write(path, path.read_text().replace("\n2,", "\n5,"))
    assert "not consecutive" in spec.load(tmp_path, "test")[1].skipped["test01"]
    with pytest.raises(FileNotFoundError, match="tool_annotations"):
        spec.load(tmp_path / "videos", "test")


# -- CATARACTS 2020 steps ----------------------------------------------------------------------------------------------


def test_cataracts2020_steps_layout(tmp_path):
    spec = get_benchmark("cataracts2020-steps")
    write(tmp_path / "phase_annotations" / "test01.csv", "Frame,Steps\n1,0\n2,3\n3,3.0\n4,18\n5,0.0\n")
    write(tmp_path / "phase_annotations" / "test02.csv", "Frame,Steps\n1,0\n2,0\n")
    write(tmp_path / "phase_annotations" / "test03.csv", "Frame,Steps\n1,1\n")  # video missing
    write(tmp_path / "phase_annotations" / "train01.csv", "Frame,Steps\n1,1\n")
    for video in ("test01", "test02", "train01"):
        touch_video(tmp_path / "videos" / f"{video}.mp4")
    videos, report = spec.load(tmp_path, "test")
    assert [v.video_id for v in videos] == ["test01"]
    assert (videos[0].fps, videos[0].num_frames) == (30.0, 5)
    assert videos[0].phases.tolist() == [IGNORE, 2, 2, 17, IGNORE]  # 0 is Idle; ids 1-18 are classes 0-17
    assert spec.classes[2] == "Incision" and spec.classes[17] == "Wound Hydration"
    assert "no frame with a class" in report.skipped["test02"] and "missing" in report.skipped["test03"]
    assert [v.video_id for v in spec.load(tmp_path, "train")[0]] == ["train01"]


def test_cataracts2020_steps_errors(tmp_path):
    spec = get_benchmark("cataracts2020-steps")
    path = write(tmp_path / "phase_annotations" / "test01.csv", "Frame,Steps\n1,0\n2,19\n")
    touch_video(tmp_path / "videos" / "test01.mp4")
    with pytest.raises(AnnotationError, match=location(path, 3) + ".*19"):
        spec.load(tmp_path, "test")
    write(path, "Frame,Step\n1,0\n")
    with pytest.raises(AnnotationError, match=location(path, 1) + ".*Steps"):
        spec.load(tmp_path, "test")
    write(path, "Frame,Steps\n1,0\n2\n")
    with pytest.raises(AnnotationError, match=location(path, 3)):
        spec.load(tmp_path, "test")
    write(path, "1,0\n2,3\n")  # no header: the named columns cannot be found
    with pytest.raises(AnnotationError, match=location(path, 1) + ".*header"):
        spec.load(tmp_path, "test")


# -- OphNet ------------------------------------------------------------------------------------------------------------

OPHNET_HEADER = "video_id,start,end,split,surgery_id,phase_id"


def ophnet(root: Path) -> Path:
    rows = [
        "case_0001,0,1,test,5,3",  # frames 0-9 at 10 fps
        "case_0001,1.2,2.05,test,0,6",  # frames 12-20
        "case_0001,2,3.04,test,0,51",  # overlaps the previous one at frames 20; runs 0.04 s past the end (kept, cut)
        "case_0002,0,0.5,train,0,7",
        "case_0003,0,0.4,test,0,0",  # no metadata entry: the frame rate comes from the video container
        "case_0004,0,5,test,0,0",  # ends 2 s after the video
        "case_0005,0,1,val,0,0",
    ]
    write(root / "OphNet2024_loca_challenge_phase.csv", OPHNET_HEADER + "\n" + "\n".join(rows) + "\n")
    database = {"case_0001": {"fps": 10, "duration": 3.0, "subset": "test"},
                "case_0002": {"fps": 25, "duration": 1.0, "subset": "train"},
                "case_0004": {"fps": 10, "duration": 3.0, "subset": "test"},
                "case_0005": {"fps": 10, "duration": 3.0, "subset": "val"}}
    write(root / "OphNet2024_phase.json", json.dumps({"database": database}))
    for case in ("case_0001", "case_0002", "case_0004"):  # case_0005's video is missing
        touch_video(root / "OphNet2024_all" / f"{case}.mp4")
    real_video(root / "OphNet2024_all" / "case_0003.mp4", frames=6, fps=5)
    return root


def test_ophnet_phase_layout(tmp_path):
    spec = get_benchmark("ophnet-phase").with_unlabelled(())  # every label a class, as before issue 17
    assert spec.name == "ophnet-phase-all-labels" and spec.classes == get_benchmark("ophnet-phase").label_names
    root = ophnet(tmp_path)
    videos, report = spec.load(root, "test")
    assert [v.video_id for v in videos] == ["case_0001", "case_0003"]
    first = videos[0]
    assert (first.fps, first.num_frames) == (10.0, 30)
    # Seconds -> frames at 10 fps; the gap at frames 10-11 and the disputed frame 20 are unlabelled.
    assert first.phases.tolist() == labels((10, 3), (2, IGNORE), (8, 6), (1, IGNORE), (9, 51))
    probed = videos[1]
    assert (probed.fps, probed.num_frames) == (5.0, 6) and probed.phases.tolist() == [0, 0, IGNORE, IGNORE,
                                                                                      IGNORE, IGNORE]
    assert "outside" in report.skipped["case_0004"]
    assert set(report.skipped) == {"case_0004"}
    spec = get_benchmark("ophnet-phase")
    train, _ = spec.load(root, "train")
    assert [(v.video_id, v.fps, v.num_frames) for v in train] == [("case_0002", 25.0, 25)]
    # One vocabulary: the registry's "validation" is the file's "val", and the file's own name is accepted too.
    assert "missing" in spec.load(root, "val")[1].skipped["case_0005"]
    assert "missing" in spec.load(root, "validation")[1].skipped["case_0005"]
    with pytest.raises(ValueError, match="has splits.*'validation'.*'val'"):
        spec.load(root, "dev")


def test_ophnet_fillers_are_unlabelled_by_default(tmp_path):
    """'Step Interval' (2), 'Non-functional Segment' (3) and 'Others' (51) are neither prompted nor scored; the other
    ids keep their names (the class index skips the fillers)."""
    spec = get_benchmark("ophnet-phase")
    assert spec.unlabelled == ("Step Interval", "Non-functional Segment", "Others") and len(spec.classes) == 49
    assert not set(spec.unlabelled) & set(spec.class_texts("ensemble"))  # never prompted
    videos, _ = spec.load(ophnet(tmp_path), "test")
    first = videos[0]
    incision = spec.classes.index("Corneal Incision Creation")
    assert spec.label_names[6] == "Corneal Incision Creation" and incision == 4
    # id 3 (frames 0-9) and id 51 (frames 20-29) are unlabelled; frame 20 keeps the one class that claims it.
    assert first.phases.tolist() == labels((12, IGNORE), (9, incision), (9, IGNORE))
    assert videos[1].phases.tolist()[:2] == [0, 0]
    with pytest.raises(ValueError, match="not labels of the dataset"):
        spec.with_unlabelled(("Idle",))
    custom = spec.with_unlabelled(("Others",))
    assert custom.name == "ophnet-phase-custom-labels" and "Step Interval" in custom.classes
    assert custom.load(tmp_path, "test")[0][0].phases.tolist()[:10] == [custom.classes.index(
        "Non-functional Segment")] * 10


def test_ophnet_operation_layout(tmp_path):
    spec = get_benchmark("ophnet-operation")
    write(tmp_path / "OphNet2024_loca_challenge.csv", OPHNET_HEADER + ",operation_id\n"
          "case_0001,0,0.5,test,0,0,13\ncase_0001,0.5,1,test,0,0,106\n")
    write(tmp_path / "OphNet2024_phase.json", json.dumps({"database": {"case_0001": {"fps": 10, "duration": 1.0}}}))
    touch_video(tmp_path / "OphNet2024_all" / "case_0001.mp4")
    videos, _ = spec.load(tmp_path, "test")
    incision = spec.classes.index("Main Corneal Incision Creation")
    assert videos[0].phases.tolist() == [incision] * 5 + [IGNORE] * 5  # 106 is 'Others': unlabelled
    assert spec.label_names[13] == "Main Corneal Incision Creation" and len(spec.classes) == 104
    everything = spec.with_unlabelled(())
    assert everything.load(tmp_path, "test")[0][0].phases.tolist() == [13] * 5 + [106] * 5


def test_ophnet_errors(tmp_path):
    spec = get_benchmark("ophnet-phase")
    root = ophnet(tmp_path)
    path = root / "OphNet2024_loca_challenge_phase.csv"
    write(path, path.read_text() + "case_0001,3,3.5,test,0,52\n")
    with pytest.raises(AnnotationError, match=location(path, 9) + ".*52"):
        spec.load(root, "test")
    write(path, OPHNET_HEADER + "\ncase_0001,0,,test,0,3\n")
    with pytest.raises(AnnotationError, match=location(path, 2)):
        spec.load(root, "test")
    write(path, OPHNET_HEADER + "\ncase_0001,0,a,test,0,3\n")
    with pytest.raises(AnnotationError, match=location(path, 2) + ".*end"):
        spec.load(root, "test")
    write(root / "OphNet2024_phase.json", "{\"database\": ")
    write(path, OPHNET_HEADER + "\ncase_0001,0,1,test,0,3\n")
    with pytest.raises(AnnotationError, match="OphNet2024_phase.json:1"):
        spec.load(root, "test")
    path.unlink()
    with pytest.raises(FileNotFoundError, match="OphNet2024_loca_challenge_phase.csv"):
        spec.load(root, "test")


# -- CaDIS -------------------------------------------------------------------------------------------------------------


def test_cadis_layout(tmp_path):
    spec = get_benchmark("cadis-instruments")
    mask = np.zeros((4, 6), dtype=np.uint8)
    mask[0, :2] = 4  # iris: not an instrument
    mask[1, 1] = 13  # phaco handpiece
    mask[2, 3] = 18  # I/A handpiece *handle* counts as the I/A handpiece
    write_png(tmp_path / "Video02" / "Labels" / "Video2_frame000030.png", mask)
    write_png(tmp_path / "Video02" / "Labels" / "Video2_frame000010.png", np.full((4, 6), 34, dtype=np.uint8))
    write_png(tmp_path / "Video12" / "Labels" / "Video12_frame000020.png", mask)  # no source video
    write_png(tmp_path / "Video01" / "Labels" / "Video1_frame000000.png", mask)  # a training video
    touch_video(tmp_path / "videos" / "train02.mp4")
    touch_video(tmp_path / "videos" / "train01.mp4")
    videos, report = spec.load(tmp_path, "test")
    assert [v.video_id for v in videos] == ["Video02"]
    video = videos[0]
    assert (video.fps, video.num_frames, video.path.name) == (30.0, 31, "train02.mp4")
    labelled = ~np.isnan(video.instruments).all(axis=1)
    assert np.flatnonzero(labelled).tolist() == [10, 30]
    present = lambda frame: {spec.classes[c] for c in np.flatnonzero(video.instruments[frame] == 1)}  # noqa: E731
    assert present(10) == {"Cotton"}
    assert present(30) == {"Phacoemulsifier Handpiece", "I/A Handpiece"}
    assert "missing" in report.skipped["Video12"] and "not in the annotations" in report.skipped["Video22"]
    assert [v.video_id for v in spec.load(tmp_path, "train")[0]] == ["Video01"]


def test_cadis_errors(tmp_path):
    spec = get_benchmark("cadis-instruments")
    path = write(tmp_path / "Video02" / "Labels" / "Video2_frame000030.png", "not a png")
    touch_video(tmp_path / "videos" / "train02.mp4")
    with pytest.raises(AnnotationError, match=location(path, 1)):
        spec.load(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="no video folders"):
        spec.load(tmp_path / "videos", "test")


def test_read_mask_and_probe_video(tmp_path):
    pixels = np.arange(24, dtype=np.uint8).reshape(4, 6)
    assert (read_mask(write_png(tmp_path / "m.png", pixels)) == pixels).all()
    assert probe_video(real_video(tmp_path / "v.mp4", frames=7, fps=12)) == (12.0, 7)
    with pytest.raises(ValueError, match="cannot read"):
        probe_video(touch_video(tmp_path / "fake.mp4"))


def test_find_by_pattern_repeats_the_id(tmp_path):
    write(tmp_path / "a" / "case_7" / "case_7_x.csv", "")
    write(tmp_path / "a" / "case_8" / "case_9_x.csv", "")  # the two ids disagree: not a match
    write(tmp_path / "a" / "case_10" / "case_10_x.csv", "")
    assert list(find_by_pattern(tmp_path, "a/case_{id}/case_{id}_x.csv")) == ["7", "10"]


# -- SICS-155 ----------------------------------------------------------------------------------------------------------

SICS_MAPPING = ("0 background\n1 peritomy\n2 cautery\n3 scleral_groove\n4 incision\n5 tunnel\n6 sideport\n"
                "7 AB_injection_and_wash\n8 OVD_injection\n9 capsulorrhexis\n10 main_incision_entry\n"
                "11 hydroprocedure\n12 nucleus_prolapse\n13 nucleus_delivery\n14 cortical_wash\n15 OVD_IOL_insertion\n"
                "16 OVD_wash\n17 stromal_hydration\n18 tunnel_suture\n")  # as in the challenge's mapping.txt


def test_sics155_layout(tmp_path):
    spec = get_benchmark("sics-155-phase")
    write(tmp_path / "mapping.txt", SICS_MAPPING)
    write(tmp_path / "train" / "groundTruth" / "sics_001.txt",
          "background\nperitomy\nperitomy\ncapsulorrhexis\nOVD_IOL_insertion\ntunnel_suture\n\n")
    touch_video(tmp_path / "train" / "videos" / "sics_001.mp4")
    write(tmp_path / "train" / "groundTruth" / "sics_002.txt", "background\nbackground\n")
    touch_video(tmp_path / "train" / "videos" / "sics_002.mp4")
    write(tmp_path / "validation" / "groundTruth" / "sics_101.txt", "incision\n")  # its video is missing
    videos, report = spec.load(tmp_path, "train")
    assert [v.video_id for v in videos] == ["sics_001"]
    video = videos[0]
    assert (video.fps, video.num_frames) == (30.0, 6)
    assert video.phases.tolist() == [IGNORE, 0, 0, 8, 14, 17]
    assert spec.classes[8] == "Capsulorhexis" and spec.classes[17] == "Tunnel Suture"
    assert "no frame with a class" in report.skipped["sics_002"]
    assert "missing" in spec.load(tmp_path, "validation")[1].skipped["sics_101"]
    write(tmp_path / "train" / "groundTruth" / "sics_001.txt", "peritomy\nconjunctival_cautery\n")
    with pytest.raises(AnnotationError, match=location(tmp_path / "train" / "groundTruth" / "sics_001.txt", 2)):
        spec.load(tmp_path, "train")
    write(tmp_path / "mapping.txt", SICS_MAPPING + "19 iris_hooks\n")
    with pytest.raises(AnnotationError, match=location(tmp_path / "mapping.txt", 20) + ".*iris_hooks"):
        spec.load(tmp_path, "train")


def test_sics155_video_longer_than_labels(tmp_path):
    from dataclasses import replace

    spec = get_benchmark("sics-155-phase")
    spec = replace(spec, loader_options={**spec.loader_options, "fps": None})
    write(tmp_path / "train" / "groundTruth" / "a.txt", "peritomy\ncautery\n")
    real_video(tmp_path / "train" / "videos" / "a.mp4", frames=4, fps=30)
    write(tmp_path / "train" / "groundTruth" / "b.txt", "peritomy\n" * 6)
    real_video(tmp_path / "train" / "videos" / "b.mp4", frames=4, fps=30)
    videos, report = spec.load(tmp_path, "train")
    assert [v.video_id for v in videos] == ["a"] and videos[0].phases.tolist() == [0, 1, IGNORE, IGNORE]
    assert "labels 6 frames, the video has 4" in report.skipped["b"]


# -- Cataract-LMM ------------------------------------------------------------------------------------------------------

LMM_HEADER = "Video Name,comment,sec,end_sec,frame,end_frame"


def test_cataract_lmm_layout(tmp_path):
    from dataclasses import replace

    spec = get_benchmark("cataract-lmm-phase")
    write(tmp_path / "annotations_full_video" / "PH_0001_0002_S1.csv", LMM_HEADER + "\n"
          "PH_0001_0002_S1,Incision,0,0.2,0,2\n"
          "PH_0001_0002_S1,Idle,0.3,0.4,3,4\n"
          "PH_0001_0002_S1,Viscoelastic_Suction,0.5,0.7,5,7\n"
          "PH_0001_0002_S1,tonifying/antibiotics,0.8,0.9,8,9\n")
    real_video(tmp_path / "videos" / "PH_0001_0002_S1.mp4", frames=10, fps=10)  # the rate comes from the video
    write(tmp_path / "annotations_full_video" / "PH_0002_0007_S2.csv", LMM_HEADER + "\nPH_0002_0007_S2,Idle,0,1,0,9\n")
    real_video(tmp_path / "videos" / "PH_0002_0007_S2.mp4", frames=10, fps=10)
    videos, report = spec.load(tmp_path, "test")
    assert [v.video_id for v in videos] == ["PH_0001_0002_S1"] and not report.notes
    assert (videos[0].fps, videos[0].num_frames) == (10.0, 10)
    # Idle is unlabelled; spellings match ignoring case and separators.
    assert videos[0].phases.tolist() == labels((3, 0), (2, IGNORE), (3, 9), (2, 11))
    assert "no frame carries a class label" in report.skipped["PH_0002_0007_S2"]
    everything = spec.with_unlabelled(())
    assert everything.classes[-1] == "Idle" and everything.load(tmp_path, "test")[0][1].phases.tolist() == [12] * 10
    path = write(tmp_path / "annotations_full_video" / "PH_0003_0009_S1.csv", LMM_HEADER + "\nx,Suture,0,1,0,9\n")
    with pytest.raises(AnnotationError, match=location(path, 2) + ".*Suture"):
        replace(spec).load(tmp_path, "test")


# -- Cataract-1K instruments (segmentation frames, Supervisely JSON) ---------------------------------------------------


def supervisely(path: Path, titles: list[str]) -> Path:
    objects = [{"classTitle": t, "points": {"exterior": [[1, 1], [5, 1], [5, 5]], "interior": []}} for t in titles]
    return write(path, json.dumps({"description": "", "tags": [], "size": {"height": 8, "width": 8},
                                   "objects": objects}))


def test_cataract1k_instruments_layout(tmp_path):
    spec = get_benchmark("cataract-1k-instruments")
    case = tmp_path / "case_5013"
    for n in (1, 2, 3, 10):
        write_png(case / "img" / f"case5013_{n:02d}.png", np.full((8, 8), 20 * n, dtype=np.uint8))
    supervisely(case / "ann" / "case5013_01.png.json", ["pupil", "slit knife", "Iris"])
    supervisely(case / "ann" / "case5013_02.png.json", ["incision knife", "cartridge", "rhexis forceps"])
    supervisely(case / "ann" / "case5013_10.png.json", ["IA", "scalpel"])  # case5013_03 has no annotation file
    (tmp_path / "case_5014" / "img").mkdir(parents=True)
    videos, report = spec.load(tmp_path, "test")
    assert [v.video_id for v in videos] == ["5013"] and "no images" in report.skipped["5014"]
    video = videos[0]
    assert video.num_frames == 4 and [p.name for p in video.frame_files] == [
        "case5013_01.png", "case5013_02.png", "case5013_03.png", "case5013_10.png"]  # natural order
    present = lambda frame: {spec.classes[c] for c in np.flatnonzero(video.instruments[frame] == 1)}  # noqa: E731
    assert present(0) == {"Slit/Incision Knife"}
    assert present(1) == {"Slit/Incision Knife", "Lens Injector", "Capsulorhexis Forceps"}
    assert np.isnan(video.instruments[2]).all() and present(3) == {"Irrigation-Aspiration"}
    assert (video.instruments[0] == 0).sum() == 8  # the other instruments are absent, not unknown
    assert "scalpel" in report.notes["5013"]
    assert video.labelled_frames().tolist() == [0, 1, 3] and spec.sparse_labels
    write(case / "ann" / "case5013_01.png.json", "{\"objects\": 3}")
    with pytest.raises(AnnotationError, match=location(case / "ann" / "case5013_01.png.json", 1)):
        spec.load(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="no case folders"):
        spec.load(case, "test")


# -- OphVL-mini --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mini_output(tmp_path_factory):
    from datasets_ophvl.mini import generate_ophvl_mini

    out = tmp_path_factory.mktemp("ophvl_mini") / "out"
    generate_ophvl_mini(out, size="tiny", progress=False)
    return out


# clinic A in `benchmark/`, clinic B in `benchmark-shifted/`: the same layouts, loaders and prompts
MINI_BENCHMARKS = [("ophvl-mini", "benchmark"), ("ophvl-mini-shifted", "benchmark-shifted")]


@pytest.mark.parametrize("prefix, folder", MINI_BENCHMARKS)
def test_ophvl_mini_phase(mini_output, prefix, folder):
    mini_benchmark = mini_output / folder
    spec = get_benchmark(f"{prefix}-phase")
    meta = json.loads((mini_benchmark / "meta.json").read_text())
    names = meta["phases"]
    table = (mini_benchmark / "videos.csv").read_text().split()[1:]
    videos_table = {row.split(";")[0]: row.split(";") for row in table}
    starts = {}
    for row in (mini_benchmark / "annotations.csv").read_text().split()[1:]:
        video, frame, phase = row.split(";")
        starts.setdefault(video, []).append((int(frame), spec.classes.index(names[phase])))
    for split in ("train", "validation", "test"):
        videos, report = spec.load(mini_benchmark, split)
        assert [v.video_id for v in videos] == [str(v) for v in meta["split"][split]] and not report.skipped
        for video in videos:
            assert video.num_frames == int(videos_table[video.video_id][1]) and video.fps == meta["fps"]
            events = starts[video.video_id]
            assert (video.phases[: events[0][0]] == IGNORE).all()
            for (start, label), (end, _) in zip(events, events[1:] + [(video.num_frames, None)]):
                assert (video.phases[start:end] == label).all()
            assert video.path.is_file()


@pytest.mark.parametrize("prefix, folder", MINI_BENCHMARKS)
def test_ophvl_mini_instruments(mini_output, prefix, folder):
    mini_benchmark = mini_output / folder
    spec = get_benchmark(f"{prefix}-instruments")
    meta = json.loads((mini_benchmark / "meta.json").read_text())
    assert list(spec.classes) == meta["instruments"]
    for split in ("train", "validation", "test"):
        videos, report = spec.load(mini_benchmark, split)
        assert [v.video_id for v in videos] == [str(v) for v in meta["split"][split]] and not report.skipped
        for video in videos:
            rows = (mini_benchmark / "tool_annotations" / f"case_{video.video_id}.csv").read_text().splitlines()[1:]
            expected = np.array([[float(x) for x in row.split(",")[1:]] for row in rows], dtype=np.float32)
            assert video.instruments.shape == (video.num_frames, len(spec.classes))
            assert (video.instruments == expected).all() and video.fps == meta["fps"]
