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

**Feeding a GPU** (then, in the same run): decoded-and-preprocessed training frames per second per core for the clip
pipeline, 4 frames x 224 px: decord decoding of the sampled frames plus `OphCLIPVideoProcessor` on the batch (resize,
center crop, normalise), as `OphVLCollator` does, on clips in OphVL's clip format (short side 224, 8 fps: the `encode`
stage's defaults, x264 veryfast crf 23 with its default GOP) and in cheaper-to-decode variants of the same frames
(GOP 8; all-intra; all-intra stored already cropped to 224x224; only the 4 frames training samples, as 224x224
JPEGs), side by side with their bytes per clip. The training
FLOPs per clip of ResNet-50 + BERT-base (forward + contrastive loss + backward, 4 frames, 64 text tokens) are counted
with `torch.utils.flop_counter.FlopCounterMode` on one real step of `OphCLIPModel(OphCLIPConfig())`, as
`bench_train.py` counts its MFU. From them: the clips/s one H100 trains at 40 % MFU, assuming the H100 SXM's dense BF16
peak of 989 TFLOP/s, and the CPU cores needed to decode and preprocess that many (and to decode alone, were the
preprocessing done on the GPU).

    python benchmarks/bench_data.py [--clips 24] [--repeats 7] [--num-frames 8] [--feed-frames 4] [--text-tokens 64]
    python benchmarks/bench_data.py --quick   # 4 clips, 1 repeat, a tiny model's FLOPs: only checks that it runs
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


# -- Feeding a GPU --------------------------------------------------------------------------------------------------

# Dense (no sparsity) BF16 tensor-core peak of an H100 SXM from NVIDIA's datasheet, in TFLOP/s.
H100_SXM_BF16_TFLOPS = 989.0
TARGET_MFU = 0.40


def cores_needed(flops_per_clip: float, cpu_seconds_per_clip: float, peak_tflops: float = H100_SXM_BF16_TFLOPS,
                 mfu: float = TARGET_MFU) -> float:
    """CPU cores whose clips keep a GPU at `mfu` of `peak_tflops`: the clips/s it trains x the CPU time per clip."""
    if flops_per_clip <= 0 or cpu_seconds_per_clip <= 0:
        raise ValueError(f"flops_per_clip and cpu_seconds_per_clip must be > 0, got {flops_per_clip}, "
                         f"{cpu_seconds_per_clip}")
    return mfu * peak_tflops * 1e12 / flops_per_clip * cpu_seconds_per_clip


def encode_variant(frames: np.ndarray, fps: int, gop: int | None) -> bytes:
    """H.264 like `media.encode_video` (x264 veryfast, crf 23, MB-tree off, one thread), with a fixed GOP if given.

    `gop=None` is OphVL's default format (x264's keyint 250: one keyframe per short clip); `gop=k` puts a keyframe
    every k frames (scene-cut keyframes off, so the spacing is exact); `gop=1` is all-intra.
    """
    import av

    if gop is None:
        from datasets_ophvl.media import encode_video

        return encode_video(frames, fps=fps)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast", "threads": "1",
                          "x264-params": f"mbtree=0:keyint={gop}:min-keyint={gop}:scenecut=0"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def encode_sampled_jpeg(frames: np.ndarray, processor, fps: int, quality: int = 90) -> list[bytes]:
    """Only the frames training reads (the processor's segment centres, deterministic), cropped to 224x224, as JPEGs.

    Valid only while training samples the same frames every epoch and keeps `num_frames` and the crop: a format
    made for one training setting, unlike a video.
    """
    from PIL import Image

    chosen = center_crop(frames[processor.sample_indices(len(frames), fps)], 224)
    images = []
    for frame in chosen:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
        images.append(buffer.getvalue())
    return images


def decode_jpegs(images: list[bytes], processor) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(image)).convert("RGB")) for image in images])


def center_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """The processor's center crop done at build time (the frames already have their short side at `size`)."""
    top, left = (frames.shape[1] - size) // 2, (frames.shape[2] - size) // 2
    return frames[:, top : top + size, left : left + size]


def training_flops_per_clip(quick: bool, frames: int, text_tokens: int) -> tuple[float, str]:
    """Forward + contrastive loss + backward FLOPs of one clip, counted by `FlopCounterMode` on one real step.

    The default-size model (`OphCLIPConfig()`: ResNet-50 + BERT-base) runs a batch of 2 clips on the CPU (meta tensors
    cannot run the model: its loss reads a scalar); the count depends on shapes only, and the 2x2 similarity matrix is
    negligible, so FLOPs per clip = total / 2. Matrix products and convolutions, 2 FLOPs per multiply-add, the same
    counting as `bench_train.py`'s MFU. `quick` counts a tiny model instead (the line says so).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from modeling_ophclip import OphCLIPConfig, OphCLIPModel

    if quick:
        from transformers import BertConfig, ResNetConfig

        config = OphCLIPConfig(text_config=BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
                                                      num_attention_heads=4, intermediate_size=37),
                               text_pooling_layers=1,
                               vision_config=ResNetConfig(embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1]),
                               projection_dim=16, use_text_projection=True)
        label = "tiny model (--quick; not ResNet-50 + BERT-base)"
    else:
        config = OphCLIPConfig()
        label = "ResNet-50 + BERT-base (OphCLIPConfig())"
    torch.manual_seed(0)
    model = OphCLIPModel(config).train()
    batch = 2
    input_ids = torch.randint(5, config.text_config.vocab_size, (batch, text_tokens))
    pixels = torch.randn(batch, frames, 3, 224, 224)
    counter = FlopCounterMode(display=False)
    with counter:
        output = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), pixel_values_videos=pixels,
                       return_loss=True)
        output.loss.backward()
    return counter.get_total_flops() / batch, label


def measure_feed(args, processor) -> list[dict]:
    """Decode + preprocess of clips in each storage format, interleaved batch by batch; bytes per clip.

    Per batch of clips (as one DataLoader worker makes a batch): decode each clip's sampled frames with decord (the
    loader's decoder, from bytes in memory: shard reading was measured above at >= 0.9x of it), then the video
    processor on the batch, as `OphVLCollator` calls it (resize to short side 224, center crop 224, rescale,
    normalise, to a float32 tensor). Each format's batch runs back to back with the others (order rotated) so the
    load of a shared machine falls on all alike.
    """
    num_frames = int(round(args.seconds * args.feed_fps))
    sources = [make_clip(1000 + i, num_frames, 224, args.width) for i in range(args.clips)]
    # name: (build-time encoder of one clip's frames, training-time decoder of its stored bytes)
    formats = {
        "OphVL default (224 short side, GOP 250)": (lambda f: encode_variant(f, args.feed_fps, None), decode_decord),
        "GOP 8": (lambda f: encode_variant(f, args.feed_fps, 8), decode_decord),
        "all-intra (GOP 1)": (lambda f: encode_variant(f, args.feed_fps, 1), decode_decord),
        "all-intra, stored 224x224 (cropped at build)": (
            lambda f: encode_variant(center_crop(f, 224), args.feed_fps, 1), decode_decord),
        "only the sampled frames, 224x224 JPEG q90": (
            lambda f: encode_sampled_jpeg(f, processor, args.feed_fps), decode_jpegs),
    }
    encoded = {name: [encode(f) for f in sources] for name, (encode, _) in formats.items()}
    names = list(formats)
    decode = {name: [] for name in names}
    preprocess = {name: [] for name in names}
    batch = args.feed_batch
    for repeat in range(args.repeats + 1):  # the first pass warms up and is not kept
        for step, start in enumerate(range(0, args.clips, batch)):
            shift = (repeat + step) % len(names)
            for name in names[shift:] + names[:shift]:
                started = time.perf_counter()
                decoder = formats[name][1]
                clips = [decoder(video, processor) for video in encoded[name][start : start + batch]]
                decoded = time.perf_counter()
                pixels = processor(clips, return_tensors="pt")["pixel_values_videos"]
                done = time.perf_counter()
                assert tuple(pixels.shape[1:]) == (args.feed_frames, 3, 224, 224), (name, pixels.shape)
                if repeat:
                    decode[name].append((decoded - started) / len(clips))
                    preprocess[name].append((done - decoded) / len(clips))
    def stored_bytes(stored) -> int:
        return sum(map(len, stored)) if isinstance(stored, list) else len(stored)

    return [{"name": name, "bytes": statistics.median(stored_bytes(v) for v in encoded[name]),
             "decode": statistics.median(decode[name]), "preprocess": statistics.median(preprocess[name])}
            for name in names]


def print_feed(args) -> None:
    import torch

    from modeling_ophclip import OphCLIPVideoProcessor

    processor = OphCLIPVideoProcessor(num_frames=args.feed_frames)
    rows = measure_feed(args, processor)
    flops, label = training_flops_per_clip(args.quick, args.feed_frames, args.text_tokens)
    target = TARGET_MFU * H100_SXM_BF16_TFLOPS * 1e12
    clips_needed = target / flops
    print()
    print(f"Feeding a GPU: {args.feed_frames} frames x 224 px per clip, clips of {args.seconds} s at "
          f"{args.feed_fps} fps, 224x{args.width} source, {args.clips} clips in batches of {args.feed_batch}, {args.repeats} repeats, "
          f"1 core (torch threads {torch.get_num_threads()})")
    print(f"training FLOPs per clip (forward + loss + backward, FlopCounterMode, {args.text_tokens} text tokens): "
          f"{flops / 1e9:.1f} GFLOP, {label}")
    print(f"H100 SXM dense BF16 peak assumed: {H100_SXM_BF16_TFLOPS:g} TFLOP/s; at {TARGET_MFU:.0%} MFU the GPU "
          f"trains {clips_needed:,.0f} clips/s = {clips_needed * args.feed_frames:,.0f} frames/s")
    print()
    print("| storage format | KiB / clip | decode ms / clip | preprocess ms / clip | frames / s / core | "
          "cores for 1 H100 at 40 % MFU | cores if preprocessing moves to the GPU |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        per_clip = row["decode"] + row["preprocess"]
        row["cores"] = cores_needed(flops, per_clip)
        print(f"| {row['name']} | {row['bytes'] / 1024:.1f} | {row['decode'] * 1e3:.2f} | "
              f"{row['preprocess'] * 1e3:.2f} | {args.feed_frames / per_clip:.0f} | {row['cores']:.0f} | "
              f"{cores_needed(flops, row['decode']):.0f} |")
    default = rows[0]
    print()
    print(f"cores needed to keep one H100 busy at 40 % MFU (OphVL default format, decode + preprocess): "
          f"{default['cores']:.0f}" + (" (> 16)" if default["cores"] > 16 else " (<= 16)"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.5)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--height", type=int, default=224)
    parser.add_argument("--width", type=int, default=400)
    parser.add_argument("--feed-frames", type=int, default=4, help="frames per clip of the GPU-feed section")
    parser.add_argument("--feed-fps", type=int, default=8, help="clip rate of the GPU-feed section (OphVL's cap)")
    parser.add_argument("--feed-batch", type=int, default=8, help="clips per collated batch in the GPU-feed section")
    parser.add_argument("--text-tokens", type=int, default=64, help="narration length assumed for the FLOP count")
    parser.add_argument("--quick", action="store_true",
                        help="4 clips, 1 repeat, a tiny model's FLOPs: checks that it runs (targets not judged)")
    args = parser.parse_args(argv)
    if args.quick:
        args.clips, args.repeats = 4, 1
    for name in ("clips", "repeats", "feed_frames", "feed_fps", "feed_batch", "text_tokens"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.width < 224 or args.text_tokens > 512:
        parser.error(f"the GPU-feed section needs --width >= 224 (the 224 px crop) and --text-tokens <= 512 (BERT's "
                     f"positions), got {args.width} and {args.text_tokens}")

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
    print_feed(args)
    if args.quick:
        return 0
    return 0 if all(ratio >= target for _, ratio, target in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
