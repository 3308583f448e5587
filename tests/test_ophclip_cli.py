"""Tests of the `ophclip` command (the `ophclip_cli` package) on a tiny random OphCLIP and a few small mp4 files."""

import csv
import json
from pathlib import Path
import subprocess
import sys

import pytest
import torch

from modeling_ophclip import OphCLIPModel
from ophclip_cli import build_parser, main
from ophclip_testing import save_tiny_model, tiny_processor, write_test_video


LABELS = ["lens", "iris", "cornea"]


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    root = tmp_path_factory.mktemp("ophclip_cli")
    resnet = Path(save_tiny_model(root / "tiny-resnet"))
    vit = Path(save_tiny_model(root / "tiny-vit", vision="clip"))
    from transformers import BertConfig, BertModel

    bert = root / "tiny-bert"
    BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=20)).save_pretrained(bert)
    videos = root / "videos"
    videos.mkdir()
    write_test_video(videos / "a.mp4", num_frames=24, fps=12)  # 2 s
    write_test_video(videos / "b.mp4", num_frames=36, fps=12)  # 3 s
    bad = root / "bad.mp4"
    bad.write_bytes(b"this is not a video")
    image = root / "frame.png"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    plt.imsave(image, np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8))
    return {"root": root, "resnet": str(resnet), "vit": str(vit), "bert": str(bert), "videos": videos,
            "a": str(videos / "a.mp4"), "b": str(videos / "b.mp4"), "bad": str(bad), "image": str(image)}


def run(argv):
    return main([*argv, "--device", "cpu"] if argv and argv[0] != "convert" else argv)


def one_line_error(capfd, command):
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"ophclip {command}: error: ")
    return err[0]


# -- --help -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command,options", [
    ("zero-shot", ["--model", "--labels", "--labels-file", "--benchmark", "--fps", "--window", "--template", "--output",
                   "--timeline", "--overwrite", "--device", "--batch-size"]),
    ("embed", ["--model", "--output", "--num-frames", "--overwrite"]),
    ("search", ["--videos", "--model", "--fps", "--top-k", "--index-cache", "--output", "--json"]),
    ("attention", ["--model", "--text", "--output-dir", "--frames", "--alpha"]),
    ("convert", ["--checkpoint", "--output", "--tokenizer", "--overwrite"]),
])
def test_help(command, options, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in options:
        assert option in out, option


def test_top_level_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("zero-shot", "embed", "search", "attention", "convert"):
        assert command in out
    # every option of every subcommand carries a help text
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            assert action.help, (name, action.dest)


def test_help_imports_no_heavy_library():
    """`ophclip --help` is fast because building the parser imports neither torch nor transformers (checked by what
    is imported, not by a clock)."""
    code = ("import sys; from ophclip_cli import build_parser; build_parser(); "
            "print(sorted({'torch', 'transformers', 'decord', 'matplotlib', 'modeling_ophclip'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_module_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "ophclip_cli", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "zero-shot" in result.stdout


# -- zero-shot --------------------------------------------------------------------------------------------------------


def test_zero_shot_csv_per_frame_and_timeline(fixtures, tmp_path):
    out, png = tmp_path / "preds.csv", tmp_path / "timeline.png"
    assert run(["zero-shot", fixtures["b"], "--model", fixtures["resnet"], "--labels", ",".join(LABELS),
                "--fps", "2", "--output", str(out), "--timeline", str(png), "--batch-size", "4"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6  # 3 s at 2 fps, decoded in batches of 4
    assert list(rows[0]) == ["start", "end", "label", "score", *(f"prob_{l}" for l in LABELS)]
    for row in rows:
        probs = [float(row[f"prob_{l}"]) for l in LABELS]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert row["label"] == LABELS[probs.index(max(probs))]
    assert [float(r["start"]) for r in rows] == pytest.approx([0, 0.5, 1, 1.5, 2, 2.5])
    assert png.stat().st_size > 0 and png.read_bytes()[:4] == b"\x89PNG"


def test_zero_shot_json_windows_labels_file(fixtures, tmp_path):
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("# phases\nlens\n\niris\n")
    out = tmp_path / "preds.json"
    assert run(["zero-shot", fixtures["b"], "--model", fixtures["resnet"], "--labels-file", str(labels_file),
                "--fps", "4", "--window", "1.5", "--template", "the {} is visible", "--output", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["labels"] == ["lens", "iris"]
    assert len(data["predictions"]) == 2  # 3 s in windows of 1.5 s
    first = data["predictions"][0]
    assert (first["start"], first["end"]) == (0.0, 1.5)
    assert sum(first["probs"].values()) == pytest.approx(1.0, abs=1e-4)


def test_zero_shot_benchmark_prompts(fixtures, tmp_path):
    from evaluate_suite.registry import get_benchmark

    classes = list(get_benchmark("ophvl-mini-phase").class_texts())
    out = tmp_path / "preds.json"
    assert run(["zero-shot", fixtures["a"], "--model", fixtures["resnet"], "--benchmark", "ophvl-mini-phase",
                "--output", str(out)]) == 0
    assert json.loads(out.read_text())["labels"] == classes


def test_zero_shot_unreadable_video(fixtures, tmp_path, capfd):
    out = tmp_path / "p.csv"
    assert run(["zero-shot", fixtures["bad"], "--model", fixtures["resnet"], "--labels", "a,b", "--output", str(out)]) == 1
    assert "cannot read video" in one_line_error(capfd, "zero-shot")
    assert not out.exists()


@pytest.mark.parametrize("labels", ["", " , ,"])
def test_zero_shot_empty_labels(fixtures, tmp_path, capfd, labels):
    assert run(["zero-shot", fixtures["a"], "--model", fixtures["resnet"], "--labels", labels,
                "--output", str(tmp_path / "p.csv")]) == 1
    assert "label list is empty" in one_line_error(capfd, "zero-shot")


def test_zero_shot_empty_labels_file(fixtures, tmp_path, capfd):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    assert run(["zero-shot", fixtures["a"], "--model", fixtures["resnet"], "--labels-file", str(empty),
                "--output", str(tmp_path / "p.csv")]) == 1
    one_line_error(capfd, "zero-shot")


def test_zero_shot_not_ophclip(fixtures, tmp_path, capfd):
    assert run(["zero-shot", fixtures["a"], "--model", fixtures["bert"], "--labels", "a,b",
                "--output", str(tmp_path / "p.csv")]) == 1
    assert "not an OphCLIP checkpoint" in one_line_error(capfd, "zero-shot")


def test_zero_shot_existing_output(fixtures, tmp_path, capfd):
    out = tmp_path / "p.csv"
    out.write_text("keep me")
    argv = ["zero-shot", fixtures["a"], "--model", fixtures["resnet"], "--labels", "a,b", "--output", str(out)]
    assert run(argv) == 1
    assert "already exists" in one_line_error(capfd, "zero-shot")
    assert out.read_text() == "keep me"
    assert run([*argv, "--overwrite"]) == 0
    assert out.read_text().startswith("start,end,label")


# -- embed ------------------------------------------------------------------------------------------------------------


def test_embed_safetensors(fixtures, tmp_path):
    from safetensors import safe_open

    out = tmp_path / "emb.safetensors"
    assert run(["embed", fixtures["a"], fixtures["b"], "--model", fixtures["resnet"], "--output", str(out),
                "--num-frames", "4"]) == 0
    with safe_open(str(out), "pt") as handle:
        embeddings = handle.get_tensor("embeddings")
        metadata = handle.metadata()
    assert embeddings.shape == (2, 16)
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert json.loads(metadata["paths"]) == [fixtures["a"], fixtures["b"]]
    assert json.loads(metadata["keys"]) == ["a", "b"]
    # the same embedding as the model's own video path
    model = OphCLIPModel.from_pretrained(fixtures["resnet"]).eval()
    inputs = tiny_processor()(videos=fixtures["a"], num_frames=4)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model.get_video_features(**inputs).pooler_output, dim=-1)[0]
    torch.testing.assert_close(embeddings[0], expected, atol=1e-5, rtol=1e-4)


def test_embed_parquet_folder(fixtures, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "emb.parquet"
    assert run(["embed", str(fixtures["videos"]), "--model", fixtures["resnet"], "--output", str(out)]) == 0
    table = pq.read_table(out)
    assert table.column_names == ["key", "path", "embedding"]
    assert table.column("key").to_pylist() == ["a", "b"]
    assert all(len(e) == 16 for e in table.column("embedding").to_pylist())


def test_embed_skips_unreadable_videos_and_duplicates(fixtures, tmp_path, capfd):
    """An unreadable file among good ones is skipped with a warning naming it and counted in the summary; a file given
    together with its folder is embedded once; only when nothing is readable is it an error."""
    from safetensors import safe_open

    out = tmp_path / "emb.safetensors"
    folder = Path(fixtures["a"]).parent
    assert run(["embed", fixtures["a"], str(folder), fixtures["bad"], "--model", fixtures["resnet"],
                "--output", str(out)]) == 0
    captured = capfd.readouterr()
    assert f"ophclip embed: warning: skipping cannot read video {fixtures['bad']!r}" in captured.err
    assert f"skipped 1 unreadable video(s): {fixtures['bad']}" in captured.out
    with safe_open(str(out), "pt") as f:
        paths = json.loads(f.metadata()["paths"])
    assert fixtures["bad"] not in paths and len(paths) == len(set(Path(p).resolve() for p in paths))
    assert paths[0] == fixtures["a"] and paths.count(fixtures["a"]) == 1
    out.unlink()
    assert run(["embed", fixtures["bad"], "--model", fixtures["resnet"], "--output", str(out)]) == 1
    assert "none of the 1 input video(s) could be read" in one_line_error(capfd, "embed")
    assert run(["embed", fixtures["a"], "--model", fixtures["bert"], "--output", str(out)]) == 1
    one_line_error(capfd, "embed")
    out.write_bytes(b"old")
    assert run(["embed", fixtures["a"], "--model", fixtures["resnet"], "--output", str(out)]) == 1
    one_line_error(capfd, "embed")
    assert out.read_bytes() == b"old"


# -- search -----------------------------------------------------------------------------------------------------------


def test_search_with_cache_and_outputs(fixtures, tmp_path, capsys):
    cache, out = tmp_path / "cache", tmp_path / "hits.json"
    argv = ["search", "lens capsule", "--videos", str(fixtures["videos"]), "--model", fixtures["resnet"],
            "--top-k", "3", "--fps", "2", "--index-cache", str(cache), "--json"]
    assert run([*argv, "--output", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    results = json.loads(out.read_text())["results"]
    assert printed["results"] == results
    assert len(results) == 3 and [r["rank"] for r in results] == [1, 2, 3]
    assert {r["video"] for r in results} <= {"a.mp4", "b.mp4"}
    assert all(0 <= r["time"] < 3 for r in results)
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert len(list(cache.glob("*.safetensors"))) == 2
    # a second run reads the cache and gives the same answer, printed as a table
    assert run(argv[:-1]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["rank", "video"] and len(table) == 4


def test_search_skips_unreadable_and_rejects_empty_folder(fixtures, tmp_path, capfd):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "bad.mp4").write_bytes(b"nope")
    assert run(["search", "lens", "--videos", str(folder), "--model", fixtures["resnet"]]) == 1
    assert "could be read" in capfd.readouterr().err.strip().splitlines()[-1]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(["search", "lens", "--videos", str(empty), "--model", fixtures["resnet"]]) == 1
    assert "holds no video" in one_line_error(capfd, "search")


# -- attention --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tower", ["resnet", "vit"])
def test_attention_video(fixtures, tmp_path, tower, capsys):
    out = tmp_path / f"att-{tower}"
    assert run(["attention", fixtures["a"], "--model", fixtures[tower], "--text", "the lens capsule",
                "--output-dir", str(out), "--frames", "2"]) == 0
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 2 and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    assert ("Grad-CAM" if tower == "resnet" else "attention rollout") in capsys.readouterr().out


def test_attention_maps_are_text_dependent(fixtures):
    from ophclip_cli.common import encode_texts, load_ophclip
    from ophclip_cli.saliency import attention_vit, gradcam_resnet

    for tower, fn in (("resnet", gradcam_resnet), ("vit", attention_vit)):
        model, processor = load_ophclip(fixtures[tower], "cpu", attn_implementation="eager")
        pixels = torch.randn(2, 3, 32, 32)
        text = encode_texts(model, processor, ["lens capsule", "iris forceps"])
        maps_a, sim_a = fn(model, pixels, text[0])
        maps_b, _ = fn(model, pixels, text[1])
        assert maps_a.shape[0] == 2 and maps_a.dim() == 3 and torch.isfinite(maps_a).all()
        assert sim_a.shape == (2,)
        assert not torch.allclose(maps_a, maps_b)


def test_attention_image_and_bad_inputs(fixtures, tmp_path, capfd):
    out = tmp_path / "att-image"
    assert run(["attention", fixtures["image"], "--model", fixtures["resnet"], "--text", "iris",
                "--output-dir", str(out)]) == 0
    assert len(list(out.glob("*.png"))) == 1
    capfd.readouterr()
    # the folder is now not empty
    assert run(["attention", fixtures["image"], "--model", fixtures["resnet"], "--text", "iris",
                "--output-dir", str(out)]) == 1
    assert "not empty" in one_line_error(capfd, "attention")
    assert run(["attention", fixtures["bad"], "--model", fixtures["resnet"], "--text", "iris",
                "--output-dir", str(tmp_path / "x")]) == 1
    assert "cannot read video" in one_line_error(capfd, "attention")


# -- convert ----------------------------------------------------------------------------------------------------------


def test_convert_delegates(tmp_path, capfd):
    assert main(["convert", "--checkpoint", str(tmp_path / "missing.pth"), "--output", str(tmp_path / "out")]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ophclip-convert: error:")
