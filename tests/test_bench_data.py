"""`benchmarks/bench_data.py`'s GPU-feed section (issue 20 item 6): the core-count arithmetic, the storage variants it
compares (their GOPs really are what the table says), and that `--quick` runs and prints the cores line."""

import importlib.util
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_data", ROOT / "benchmarks" / "bench_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cores_needed_is_gpu_clip_rate_times_cpu_time_per_clip(bench):
    # 100 GFLOP per clip at 40 % of 1000 TFLOP/s = 4000 clips/s; 10 ms of one core per clip -> 40 cores.
    assert bench.cores_needed(100e9, 0.010, peak_tflops=1000.0, mfu=0.4) == pytest.approx(40.0)
    # The defaults: an H100's 989 dense BF16 TFLOP/s at 40 % -> 3956 clips/s -> 39.56 cores.
    assert bench.cores_needed(100e9, 0.010) == pytest.approx(39.56)
    with pytest.raises(ValueError, match="cpu_seconds_per_clip must be > 0"):
        bench.cores_needed(100e9, 0.0)


@pytest.mark.parametrize("gop", [1, 4])
def test_encode_variant_puts_a_keyframe_every_gop_frames(bench, gop):
    import av

    frames = bench.make_clip(0, 12, 32, 48)
    video = bench.encode_variant(frames, fps=8, gop=gop)
    with av.open(io.BytesIO(video)) as container:
        keyframes = [frame.key_frame for frame in container.decode(video=0)]
    assert len(keyframes) == 12
    assert [i for i, key in enumerate(keyframes) if key] == list(range(0, 12, gop))


def test_center_crop_matches_the_processors_crop_position(bench):
    frames = np.arange(2 * 4 * 8 * 3, dtype=np.uint8).reshape(2, 4, 8, 3)
    assert np.array_equal(bench.center_crop(frames, 4), frames[:, :, 2:6])


def test_quick_run_prints_the_cores_line():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_data.py"), "--quick"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "H100 SXM dense BF16 peak assumed: 989 TFLOP/s" in out
    assert re.search(r"cores needed to keep one H100 busy at 40 % MFU \(OphVL default format, decode \+ "
                     r"preprocess\): \d+", out), out[-2000:]
    rows = [line for line in out.splitlines() if line.startswith("| ") and "KiB" not in line and "---" not in line
            and ("GOP" in line or "intra" in line or "JPEG" in line)]
    assert len(rows) == 5, rows


def test_sampled_jpeg_format_holds_the_frames_training_reads(bench):
    from modeling_ophclip import OphCLIPVideoProcessor

    processor = OphCLIPVideoProcessor(num_frames=4)
    frames = bench.make_clip(1, 36, 224, 256)
    images = bench.encode_sampled_jpeg(frames, processor, fps=8)
    decoded = bench.decode_jpegs(images, processor)
    assert decoded.shape == (4, 224, 224, 3)
    sampled = processor.sample_indices(36, 8)
    crops = frames[:, :, 16:240].astype(int)
    # JPEG is lossy (and the clip has sensor noise): each stored frame is nearest to the crop of its sampled frame.
    nearest = [int(np.argmin([np.abs(image.astype(int) - crop).mean() for crop in crops])) for image in decoded]
    assert nearest == list(sampled)


def test_bad_arguments_are_refused_in_one_line(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--feed-frames", "0"])
    assert "--feed-frames must be >= 1, got 0" in capsys.readouterr().err
