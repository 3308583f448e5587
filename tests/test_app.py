"""The web app (`ophclip app`, ophclip_cli/app.py) through its HTTP API with gradio_client, on a tiny random OphCLIP
and a tiny OphVL-mini benchmark; and the out-of-domain signal that it shares with `ophclip zero-shot`."""

import csv
import json
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest


gradio = pytest.importorskip("gradio", reason="the web app needs gradio (pip install -e '.[test]')")
av = pytest.importorskip("av")

from ophclip_cli import main  # noqa: E402
from ophclip_testing import free_port, launch_app, save_tiny_model, write_test_video  # noqa: E402


def _encode(path, frames, rate=4):
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_street_video(path, seconds: int = 20, fps: int = 4, size: int = 64):
    """A clearly non-surgical scene: sky, road with a lane marking, a building and a car driving by."""
    frames = []
    for i in range(seconds * fps):
        frame = np.zeros((size, size, 3), dtype=np.uint8)
        frame[: size // 2] = (135, 190, 235)
        frame[size // 2 :] = (90, 90, 90)
        lane = (i * 2) % size
        frame[3 * size // 4 - 1 : 3 * size // 4 + 1, lane : lane + 8] = 255
        car = (i * 3) % (size - 16)
        frame[size // 2 - 10 : size // 2 + 2, car : car + 16] = (200, 30, 30)
        frame[10 : size // 2, 50:58] = (120, 100, 80)
        frames.append(frame)
    _encode(path, frames, fps)


def write_audio_only(path):
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = (np.sin(np.linspace(0, 2000, 16000)) * 0.3).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_four_hour_video(path):
    """240 tiny frames, one a minute: four hours of video in a few kilobytes."""
    frames = [np.full((32, 32, 3), i % 256, dtype=np.uint8) for i in range(240)]
    _encode(path, frames, rate=Fraction(1, 60))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from datasets_ophvl import generate_ophvl_mini

    root = tmp_path_factory.mktemp("app")
    model = save_tiny_model(root / "tiny-resnet")
    generate_ophvl_mini(root / "mini", size="tiny", progress=False, benchmark=8)
    media = root / "media"
    media.mkdir()
    write_test_video(media / "bars.mp4", num_frames=48, fps=12)  # 4 s
    write_street_video(media / "street.mp4")
    (media / "notes.mp4").write_text("this is not a video\n")
    write_audio_only(media / "voice.m4a")
    write_four_hour_video(media / "long.mp4")
    _encode(media / "huge.mp4", [np.zeros((2304, 4096, 3), dtype=np.uint8)], rate=1)
    return {"root": root, "model": model, "examples": str(root / "mini" / "benchmark"), "media": media}


@pytest.fixture(scope="module")
def server(setup, tmp_path_factory):
    """The app on a free loopback port, and a gradio_client connected to it."""
    import os

    os.environ["GRADIO_TEMP_DIR"] = str(tmp_path_factory.mktemp("gradio_tmp"))
    from gradio_client import Client

    from ophclip_cli.app import build_app

    demo = build_app(setup["model"], "cpu", setup["examples"], batch_size=4)
    url = launch_app(demo)
    try:
        yield demo, Client(url, verbose=False)
    finally:
        demo.close()


def _analyse(client, path, prompt_set="ophvl-mini-phase", typed=""):
    from gradio_client import handle_file

    return client.predict([handle_file(str(path))], prompt_set, typed, api_name="/analyse")


# -- the phase timeline -----------------------------------------------------------------------------------------------


def test_timeline_rows_durations_and_csv_match_the_command(setup, server, tmp_path):
    from evaluate_suite.registry import get_benchmark

    _, client = server
    video = setup["media"] / "bars.mp4"
    status, timeline, rows, durations, ood, csv_path = _analyse(client, video)
    assert "ophclip-ok" in status and "4 seconds classified against 6 classes" in status
    classes = list(get_benchmark("ophvl-mini-phase").classes)
    data = rows["data"]
    assert [r[0] for r in data] == [0.0, 1.0, 2.0, 3.0] and all(r[2] in classes for r in data)
    predicted = {r[2] for r in data}
    assert {d[0] for d in durations["data"]} == predicted
    assert sum(d[1] for d in durations["data"]) == pytest.approx(4.0)
    for label in predicted:  # every predicted phase is drawn and named in the legend
        assert f'data-label="{label}"' in timeline
    assert 'data-track="ground truth"' not in timeline  # an upload of its own has no labels
    assert "out-of-domain signal" in ood
    # the CSV is the one `ophclip zero-shot` writes for the same video and prompts
    expected = tmp_path / "cli.csv"
    assert main(["zero-shot", str(video), "--model", setup["model"], "--benchmark", "ophvl-mini-phase",
                 "--output", str(expected), "--device", "cpu"]) == 0
    with open(csv_path, newline="") as app_csv, expected.open(newline="") as cli_csv:
        app_rows, cli_rows = list(csv.reader(app_csv)), list(csv.reader(cli_csv))
    assert app_rows[0] == cli_rows[0] and [r[2] for r in app_rows[1:]] == [r[2] for r in cli_rows[1:]]
    assert np.allclose(np.array([r[3:] for r in app_rows[1:]], float), np.array([r[3:] for r in cli_rows[1:]], float),
                       atol=1e-5)
    assert [r[2] for r in app_rows[1:]] == [r[2] for r in data]


def test_an_example_shows_its_ground_truth(setup, server):
    demo, client = server
    example = demo.core.examples[0]
    status, timeline, rows, _, _, _ = _analyse(client, example)
    assert "ophclip-ok" in status
    assert 'data-track="ground truth"' in timeline
    annotation = demo.core.ground_truth_for(example)
    from evaluate_suite.registry import get_benchmark

    classes = get_benchmark("ophvl-mini-phase").classes
    labelled = {classes[int(c)] for c in annotation.phases if int(c) >= 0}
    assert any(f'data-label="{name}"' in timeline for name in labelled)


def test_typed_labels(setup, server):
    _, client = server
    status, _, rows, _, _, _ = _analyse(client, setup["media"] / "bars.mp4", "typed labels", "lens, iris , cornea")
    assert "against 3 classes" in status
    assert {r[2] for r in rows["data"]} <= {"lens", "iris", "cornea"}
    status, timeline, rows, _, _, csv_path = _analyse(client, setup["media"] / "bars.mp4", "typed labels", " , ")
    assert "ophclip-error" in status and "the label list is empty" in status
    assert timeline == "" and csv_path is None


@pytest.mark.parametrize("name,message", [
    ("notes.mp4", "'notes.mp4' is not a readable video"),
    ("voice.m4a", "'voice.m4a' has no video stream (audio streams only)"),
    ("long.mp4", "'long.mp4' lasts 4 h 00 min; this app accepts videos up to 1 h 00 min"),
    ("huge.mp4", "'huge.mp4' has 4096x2304 frames (9.4 megapixels); this app accepts up to 8.3 megapixels"),
])
def test_bad_uploads_get_a_message_in_the_page(setup, server, name, message):
    _, client = server
    status, timeline, rows, durations, ood, csv_path = _analyse(client, setup["media"] / name)
    assert "ophclip-error" in status
    assert message.replace("'", "&#x27;") in status
    assert "Traceback" not in status and "/tmp" not in status.replace("&#x27;", "'").split("(", 1)[0]
    assert timeline == "" and csv_path is None and ood == ""


def test_progress_is_reported_batch_by_batch(setup, server):
    demo, _ = server
    calls = []
    demo.core.analyse(setup["media"] / "bars.mp4", "ophvl-mini-phase", progress=lambda done, total: calls.append(
        (done, total)))
    assert calls == [(4, 4)]  # 4 frames at 1 fps, batch size 4
    calls.clear()
    demo.core.analyse(setup["media"] / "street.mp4", "ophvl-mini-phase", progress=lambda done, total: calls.append(
        (done, total)))
    assert calls == [(4, 20), (8, 20), (12, 20), (16, 20), (20, 20)]


def test_large_frames_are_decoded_fewer_at_a_time(setup, server):
    from ophclip_cli.app import DECODED_BYTES_PER_BATCH, VideoInfo

    demo, _ = server
    big = VideoInfo(setup["media"] / "x.mp4", "x.mp4", 3840, 2160, 10.0)
    assert demo.core._batch_size_for(big) * 3840 * 2160 * 3 <= DECODED_BYTES_PER_BATCH
    assert demo.core._batch_size_for(VideoInfo(big.path, "x.mp4", 64, 64, 10.0)) == 4


# -- search and saliency ----------------------------------------------------------------------------------------------


def test_search_over_the_uploaded_videos(setup, server):
    from pathlib import Path

    from gradio_client import handle_file

    _, client = server
    files = [handle_file(str(setup["media"] / "bars.mp4")), handle_file(str(setup["media"] / "street.mp4"))]
    status, gallery, hits = client.predict(files, "the surgeon makes the main incision", 5, api_name="/search")
    assert "5 moments" in status
    assert [h[0] for h in hits["data"]] == [1, 2, 3, 4, 5]
    scores = [h[3] for h in hits["data"]]
    assert scores == sorted(scores, reverse=True)
    assert all(h[1] in ("bars.mp4", "street.mp4") for h in hits["data"])
    assert all(0 <= h[2] <= 20 for h in hits["data"])
    assert len(gallery) == 5 and all(Path(item["image"]).is_file() for item in gallery)
    assert gallery[0]["caption"].startswith(f"1. {hits['data'][0][1]} at ")
    status, gallery, _ = client.predict(files, "   ", 5, api_name="/search")
    assert "ophclip-error" in status and "type a sentence" in status and gallery == []


def test_saliency_of_a_chosen_frame(setup, server):
    from PIL import Image
    from gradio_client import handle_file

    _, client = server
    status, picture = client.predict([handle_file(str(setup["media"] / "bars.mp4"))], 2.0, "the lens capsule",
                                     api_name="/saliency")
    assert "Grad-CAM" in status and "at 2.0 s" in status
    with Image.open(picture) as image:
        assert image.size == (64, 32)  # the 32x32 model input and its overlay side by side
    status, picture = client.predict([handle_file(str(setup["media"] / "bars.mp4"))], 99.0, "lens",
                                     api_name="/saliency")
    assert "ophclip-error" in status and "pick a time between 0 and 4.0 s" in status and picture is None


# -- the out-of-domain signal ------------------------------------------------------------------------------------------


def test_out_of_domain_signal_separates_surgical_from_street_video(setup, server):
    """The reference is computed at start from the demo benchmark's training and validation videos; every held-out
    test video of the benchmark is in domain, the street scene and the moving-bar video are flagged."""
    demo, client = server
    core = demo.core
    assert core.ood_reference is not None and "computed at start" in core.ood_source
    for example in core.examples:
        _, _, signal = core.analyse(example, "ophvl-mini-phase")
        assert not signal["flagged"], (example, signal)
        assert signal["fraction_unlike"] < 0.5
    for name in ("street.mp4", "bars.mp4"):
        _, _, signal = core.analyse(setup["media"] / name, "ophvl-mini-phase")
        assert signal["flagged"] and signal["fraction_unlike"] > 0.9, (name, signal)
        assert signal["median_distance"] > signal["threshold"]
    *_, ood, _ = _analyse(client, setup["media"] / "street.mp4")
    assert "OUT OF DOMAIN" in ood


def test_ood_reference_command_and_zero_shot_output(setup, tmp_path, capsys):
    from evaluate_suite.registry import get_benchmark

    spec = get_benchmark("ophvl-mini-phase")
    reference_videos = [str(a.path) for split in ("train", "validation") for a in spec.load(setup["examples"], split)[0]]
    reference = tmp_path / "ood_reference.json"
    assert main(["ood-reference", *reference_videos, "--model", setup["model"], "--benchmark", "ophvl-mini-phase",
                 "--output", str(reference), "--device", "cpu"]) == 0
    stored = json.loads(reference.read_text())
    assert stored["videos"] == len(reference_videos) and stored["text"]["classes"] == list(spec.classes)
    out = tmp_path / "street.json"
    capsys.readouterr()
    assert main(["zero-shot", str(setup["media"] / "street.mp4"), "--model", setup["model"], "--benchmark",
                 "ophvl-mini-phase", "--output", str(out), "--ood-reference", str(reference), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "out-of-domain signal: 100% of frames" in printed and "OUT OF DOMAIN" in printed
    signal = json.loads(out.read_text())["out_of_domain"]
    assert signal["flagged"] is True and signal["text_fraction"] is not None
    test_video = str(spec.load(setup["examples"], "test")[0][0].path)
    assert main(["zero-shot", test_video, "--model", setup["model"], "--benchmark", "ophvl-mini-phase",
                 "--output", str(tmp_path / "in.json"), "--ood-reference", str(reference), "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "in.json").read_text())["out_of_domain"]["flagged"] is False
    # without a reference the command says how to make one
    assert main(["zero-shot", test_video, "--model", setup["model"], "--labels", "a,b", "--output",
                 str(tmp_path / "none.json"), "--device", "cpu"]) == 0
    assert "no reference for this model" in capsys.readouterr().out


def test_a_reference_of_another_model_is_refused(setup, tmp_path, capfd):
    other = tmp_path / "other"
    save_tiny_model(other, seed=1)
    reference = tmp_path / "ref.json"
    assert main(["ood-reference", setup["examples"] + "/videos", "--model", str(other), "--output", str(reference),
                 "--device", "cpu"]) == 0
    capfd.readouterr()
    assert main(["zero-shot", str(setup["media"] / "bars.mp4"), "--model", setup["model"], "--labels", "a,b",
                 "--output", str(tmp_path / "p.csv"), "--ood-reference", str(reference), "--device", "cpu"]) == 1
    err = [line for line in capfd.readouterr().err.strip().splitlines() if not line.startswith("Loading weights")]
    assert len(err) == 1 and err[0].startswith("ophclip zero-shot: error: ") and "another model" in err[0], err


# -- the command ------------------------------------------------------------------------------------------------------


def test_app_command_help_and_missing_default_model(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit):
        main(["app", "--help"])
    out = capsys.readouterr().out
    for option in ("--model", "--examples", "--ood-reference", "--host", "--port", "--max-duration", "--max-pixels"):
        assert option in out
    monkeypatch.chdir(tmp_path)  # no ophclip-demo/model here
    assert main(["app"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "make demo" in err[0] and "--model" in err[0]


def test_help_does_not_import_gradio():
    code = ("import sys; from ophclip_cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('gradio', 'torch', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


def test_app_command_serves_the_page(setup, tmp_path):
    """`ophclip app` as a user starts it: the page answers on the port it was given."""
    import os
    import urllib.request

    port = free_port()
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    process = subprocess.Popen([sys.executable, "-m", "ophclip_cli", "app", "--model", setup["model"], "--port",
                                str(port), "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env)
    try:
        output = []
        for line in process.stdout:  # until the line printed once the server listens (or the process ends)
            output.append(line)
            if "ophclip app: serving" in line:
                break
        assert f"serving {setup['model']} at http://127.0.0.1:{port}/" in output[-1], "".join(output)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as response:
            page = response.read().decode()
        assert "OphCLIP" in page
    finally:
        process.terminate()
        process.wait(timeout=30)
