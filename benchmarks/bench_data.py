"""OphVL data loading speed per core: streaming + decoding + frame sampling vs decoding alone and a naive baseline.

Measured side by side in one run: every clip is handled by every variant back to back (their order rotated), so the
load of a shared machine falls on all of them alike; ratios are medians over repeats:

- `load_ophvl`: iterating `datasets_ophvl.load_ophvl` over local tar shards in one process: reading the tar stream,
  parsing and validating the json, the datasets pipeline, decoding with decord from the member bytes and sampling
  frames with `OphCLIPVideoProcessor.sample_indices`.
- `decord alone`: the same decoding (`VideoReader(BytesIO)` + `get_batch` of the same indices) on the same mp4 bytes,
  read into memory beforehand: the floor the loader can approach. Target: loader throughput >= 0.9x of it.
- `PyAV decode-all`: the straightforward way, decode every frame to RGB with PyAV, then pick the sampled ones.
  Target: the loader >= 2x faster.
- `load_ophvl(decoder="pyav")` (for information): the loader with its selective PyAV decoder, which decodes only the
  frames the sampled ones refer to and gives bit-identical frames.

Clips are generated in a temporary folder: 4.5 s at 25 fps, 224 x 400 px, H.264 (x264 veryfast, crf 23), panning
smooth textures with a moving instrument-like bar, 8 frames sampled per clip. Every decoder runs one thread.

    python benchmarks/bench_data.py [--clips 24] [--repeats 7] [--num-frames 8]
"""

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


# One core per variant: pin the libraries that would otherwise start thread pools before they are imported.
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402


def make_clip(seed: int, num_frames: int, height: int, width: int) -> np.ndarray:
    """Frames of a slowly panning smooth texture with a bar sweeping across it and a little sensor noise."""
    rng = np.random.default_rng(seed)
    # A smooth texture twice the frame size, made by upsampling coarse noise (cheap and H.264-realistic).
    coarse = rng.integers(0, 256, (height // 16 + 2, width // 8 + 2, 3)).astype(np.float32)
    texture = np.kron(coarse, np.ones((32, 32, 1), np.float32))[: 2 * height, : 2 * width]
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        dy, dx = int(t * 0.6) % height, int(t * 1.3) % width
        frame = texture[dy : dy + height, dx : dx + width].copy()
        bar = np.abs((x - (t * 3) % width) + 0.4 * (y - height / 2)) < 6
        frame[bar] = (200, 200, 210)
        frame += rng.normal(0, 4, frame.shape).astype(np.float32)
        frames[t] = np.clip(frame, 0, 255)
    return frames


def build_shards(root: Path, clips: int, seconds: float, fps: int, height: int, width: int) -> None:
    from datasets_ophvl.card import write_dataset_card
    from datasets_ophvl.media import encode_video
    from datasets_ophvl.shards import ShardWriter

    writer = ShardWriter(root, "clips", samples_per_part=max(1, clips // 4))
    num_frames = int(round(seconds * fps))
    for i in range(clips):
        video = encode_video(make_clip(i, num_frames, height, width), fps=fps)
        record = {"video_id": f"case{i // 6}", "start": 10.0 * i, "end": 10.0 * i + seconds,
                  "narration": f"the surgeon performs capsulorhexis with forceps, step {i}", "sentence_ids": [i]}
        writer.write(f"clip{i:04d}", video, record)
    shards = writer.finalize(shard_multiple=4)
    write_dataset_card(root, stats={"clips": {"samples": clips, "shards": len(shards)}})


def read_member_bytes(root: Path) -> dict[str, bytes]:
    from datasets_ophvl.shards import read_whole_shard

    videos = {}
    for shard in sorted((root / "data" / "clips").glob("train-*.tar")):
        for key, sample in read_whole_shard(shard):
            videos[key] = sample["mp4"]
    return videos


def decode_decord(video: bytes, processor) -> np.ndarray:
    from decord import VideoReader, cpu

    reader = VideoReader(io.BytesIO(video), ctx=cpu(0), num_threads=1)
    return reader.get_batch(processor.sample_indices(len(reader), reader.get_avg_fps())).asnumpy()


def decode_pyav_all(video: bytes, processor) -> np.ndarray:
    import av

    with av.open(io.BytesIO(video)) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1  # per core, like the others
        fps = float(stream.average_rate)
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    return np.stack([frames[i] for i in processor.sample_indices(len(frames), fps)])


def run_repeat(loaders: dict, decoders: dict, videos: dict[str, bytes], processor, rotate: int) -> dict:
    """One pass over every clip; for each clip, every variant runs back to back (order rotated).

    Interleaving at the clip level (tens of ms) rather than per pass (seconds) means the load of a shared machine
    falls on every variant alike. The loaders are not shuffled, so they yield the clips in file order, the order of
    `videos`. Returns `{variant: (seconds, {key: frames})}`.
    """
    iterators = {name: iter(dataset) for name, dataset in loaders.items()}
    names = list(loaders) + list(decoders)
    seconds = dict.fromkeys(names, 0.0)
    outputs = {name: {} for name in names}
    for step, key in enumerate(videos):
        shift = (rotate + step) % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            if name in iterators:
                example = next(iterators[name])
                frames = example["frames"]
            else:
                frames = decoders[name](videos[key], processor)
            seconds[name] += time.perf_counter() - started
            if name in iterators:
                assert example["key"] == key, (name, example["key"], key)
            outputs[name][key] = frames
    return {name: (seconds[name], outputs[name]) for name in names}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.5)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--height", type=int, default=224)
    parser.add_argument("--width", type=int, default=400)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from datasets_ophvl import load_ophvl
    from modeling_ophclip import OphCLIPVideoProcessor

    processor = OphCLIPVideoProcessor(num_frames=args.num_frames)
    with tempfile.TemporaryDirectory(prefix="bench-ophvl-") as tmp:
        root = Path(tmp) / "ophvl"
        started = time.perf_counter()
        build_shards(root, args.clips, args.seconds, args.fps, args.height, args.width)
        print(f"generated {args.clips} clips ({args.seconds} s, {args.fps} fps, {args.height}x{args.width}) in "
              f"{time.perf_counter() - started:.1f} s; mp4 sizes "
              f"{statistics.median(len(v) for v in read_member_bytes(root).values()) / 1024:.0f} KiB median")

        cache = str(Path(tmp) / "cache")
        loaders = {
            "load_ophvl (stream + decode + sample)": load_ophvl(root, "clips", processor=processor, cache_dir=cache),
            'load_ophvl, decoder="pyav"': load_ophvl(root, "clips", processor=processor, decoder="pyav",
                                                     cache_dir=cache),
        }
        decoders = {"decord alone (bytes in memory)": decode_decord, "PyAV decode-all, then pick": decode_pyav_all}
        videos = read_member_bytes(root)
        # Warm up (imports, first-call costs) and check that every variant produces the same frames.
        warm = run_repeat(loaders, decoders, videos, processor, rotate=0)
        reference = warm["decord alone (bytes in memory)"][1]
        for name, (_, frames) in warm.items():
            assert frames.keys() == reference.keys(), name
            assert all(frames[key].shape == reference[key].shape for key in reference), name
            if name in loaders:
                assert all(np.array_equal(frames[key], reference[key]) for key in reference), name

        names = ["load_ophvl (stream + decode + sample)", "decord alone (bytes in memory)",
                 "PyAV decode-all, then pick", 'load_ophvl, decoder="pyav"']
        times = {name: [] for name in names}
        for repeat in range(args.repeats):
            for name, (seconds, _) in run_repeat(loaders, decoders, videos, processor, rotate=repeat + 1).items():
                times[name].append(seconds / args.clips)

    median = {name: statistics.median(values) for name, values in times.items()}
    print()
    print(f"{args.num_frames} frames per clip, {args.clips} clips, {args.repeats} repeats interleaved clip by clip, "
          "1 core; ratios: median over repeats of the per-repeat ratio")
    print()
    print("| variant | ms / clip (median) | clips / s | min..max ms |")
    print("|---|---:|---:|---:|")
    for name in names:
        print(f"| {name} | {median[name] * 1e3:.1f} | {1 / median[name]:.1f} | "
              f"{min(times[name]) * 1e3:.1f}..{max(times[name]) * 1e3:.1f} |")
    print()
    # Ratios are taken within each repeat (the variants ran back to back, under the same load), then the median.
    def paired(numerator: str, denominator: str) -> float:
        return statistics.median(n / d for n, d in zip(times[numerator], times[denominator]))

    checks = [
        ("load_ophvl throughput / decord alone", paired(names[1], names[0]), 0.9),
        ("load_ophvl speed-up over PyAV decode-all", paired(names[2], names[0]), 2.0),
    ]
    print("| check | ratio | target | result |")
    print("|---|---:|---:|---|")
    for label, ratio, target in checks:
        print(f"| {label} | {ratio:.2f}x | >= {target}x | {'PASS' if ratio >= target else 'FAIL'} |")
    print(f'| load_ophvl decoder="pyav" throughput / decord alone | {paired(names[1], names[3]):.2f}x | (info) | |')
    print(f'| load_ophvl decoder="pyav" speed-up over PyAV decode-all | {paired(names[2], names[3]):.2f}x | (info) | |')
    return 0 if all(ratio >= target for _, ratio, target in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
