"""The `ophclip` command: zero-shot phase timelines, embeddings, moment search, saliency maps and conversion.

    ophclip zero-shot VIDEO --model DIR --labels "a,b,c" --output preds.csv [--timeline timeline.png]
    ophclip embed VIDEO... --model DIR --output embeddings.safetensors
    ophclip search "the surgeon tears the capsule" --videos FOLDER --model DIR [--top-k 5]
    ophclip attention VIDEO_OR_IMAGE --model DIR --text "..." --output-dir DIR
    ophclip convert --checkpoint surgvlp.pth --output DIR [...]

Every error is reported as one line on stderr (`ophclip <command>: error: ...`) with exit status 1; nothing is
overwritten unless `--overwrite` is given. torch, transformers, matplotlib and faiss are imported only when a
command needs them, so `--help` is fast. This module imports no other package of the project at import time
(`evaluate_suite` is imported only for `--benchmark`).
"""

import argparse
import csv
import hashlib
import json
import os
import sys
import textwrap
from pathlib import Path


VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DEFAULT_TEMPLATE = "a surgical video of {}."


class CLIError(Exception):
    """An error to report as one line and exit 1."""


# -- shared helpers --------------------------------------------------------------------------------------------------


def _progress(iterable=None, **kwargs):
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", None)  # hide when stderr is not a terminal
    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)


def _check_output(path, overwrite: bool, suffixes: tuple[str, ...] | None = None) -> Path:
    path = Path(path)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise CLIError(f"output {str(path)!r} must end with one of {', '.join(suffixes)}")
    if path.exists() and not overwrite:
        raise CLIError(f"output {str(path)!r} already exists; pass --overwrite to replace it")
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _device(name: str | None):
    import torch

    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_ophclip(model_id: str, device=None, attn_implementation: str | None = None):
    """Load an OphCLIP model and processor from a folder or Hub id; refuse checkpoints of other architectures."""
    from transformers import PretrainedConfig

    try:
        config_dict, _ = PretrainedConfig.get_config_dict(model_id)
    except Exception as error:  # OSError, EnvironmentError, HF hub errors, JSON errors
        raise CLIError(f"cannot read a model config from {model_id!r}: {error}") from None
    model_type = config_dict.get("model_type")
    if model_type != "ophclip":
        raise CLIError(f"{model_id!r} is not an OphCLIP checkpoint (config model_type is {model_type!r}, expected 'ophclip')")

    from . import OphCLIPModel, OphCLIPProcessor

    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        model = OphCLIPModel.from_pretrained(model_id, **kwargs)
    except Exception as error:
        raise CLIError(f"cannot load the OphCLIP model from {model_id!r}: {error}") from None
    try:
        processor = OphCLIPProcessor.from_pretrained(model_id)
    except Exception as error:
        raise CLIError(f"cannot load the OphCLIP processor (tokenizer + video processor) from {model_id!r}: {error}") from None
    model.to(_device(device)).eval()
    return model, processor


class _silence_stderr:
    """Send file descriptor 2 to /dev/null for a while: FFmpeg and decord log failures from C, on several lines."""

    def __enter__(self):
        try:
            sys.stderr.flush()
            self._saved = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        except (OSError, ValueError):
            self._saved = None
        return self

    def __exit__(self, *exc):
        if self._saved is not None:
            os.dup2(self._saved, 2)
            os.close(self._saved)
        return False


def open_video(path):
    """A decord `VideoReader` for `path`, or a CLIError that says why it cannot be read."""
    try:
        from decord import VideoReader, cpu
    except ImportError:
        raise CLIError("reading videos needs decord: pip install decord") from None
    path = str(path)
    if not os.path.isfile(path):
        raise CLIError(f"video {path!r} does not exist")
    try:
        with _silence_stderr():
            reader = VideoReader(path, ctx=cpu(0), num_threads=1)
        if len(reader) == 0:
            raise ValueError("no frames")
        fps = reader.get_avg_fps()
    except CLIError:
        raise
    except Exception as error:
        raise CLIError(f"cannot read video {path!r}: {' '.join(str(error).split())[:200]}") from None
    if not fps or fps <= 0:
        raise CLIError(f"video {path!r} reports a frame rate of {fps}")
    return reader


def iter_fps_frames(reader, fps: float, batch_size: int):
    """Yield `(indices, times, frames)` batches of the frames at 0, 1/fps, 2/fps, ... without decoding them all."""
    from .video_processing_ophclip import fps_frame_indices

    video_fps = reader.get_avg_fps()
    indices = fps_frame_indices(len(reader), video_fps, fps)
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        frames = reader.get_batch(chunk).asnumpy()
        yield chunk, [i / video_fps for i in chunk], frames


def _frames_to_pixels(processor, frames, model):
    """Decoded `(T, H, W, 3)` frames -> preprocessed `(T, 3, h, w)` on the model's device."""
    pixel_values = processor.video_processor(frames, return_tensors="pt")["pixel_values_videos"][0]
    return pixel_values.to(device=model.device, dtype=model.dtype)


def encode_texts(model, processor, texts: list[str]):
    """L2-normalised text embeddings `(len(texts), D)`."""
    import torch
    import torch.nn.functional as F

    inputs = processor(text=texts, return_tensors="pt")
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    with torch.no_grad():
        return F.normalize(model.get_text_features(**inputs).pooler_output.float(), dim=-1)


def encode_frames(model, processor, frames):
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        pixels = _frames_to_pixels(processor, frames, model)
        return F.normalize(model.get_image_features(pixels).pooler_output.float(), dim=-1)


def parse_labels(args) -> tuple[list[str], list[list[str]]]:
    """Class names and, per class, the texts whose mean embedding represents it."""
    if args.benchmark:
        try:
            from evaluate_suite.registry import get_benchmark
        except ImportError:
            raise CLIError("--benchmark needs the evaluate_suite package of the OphCLIP project") from None
        try:
            class_texts = get_benchmark(args.benchmark).class_texts()
        except (ValueError, OSError) as error:
            raise CLIError(str(error)) from None
        return list(class_texts), [list(texts) for texts in class_texts.values()]
    if args.labels_file:
        try:
            lines = Path(args.labels_file).read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise CLIError(f"cannot read labels file {args.labels_file!r}: {error.strerror or error}") from None
        labels = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    else:
        labels = [label.strip() for label in args.labels.split(",") if label.strip()]
    if not labels:
        raise CLIError("the label list is empty; give at least one label")
    if len(set(labels)) != len(labels):
        raise CLIError(f"the label list has duplicates: {sorted({l for l in labels if labels.count(l) > 1})}")
    if "{}" not in args.template:
        raise CLIError(f"--template must contain '{{}}' where the label goes, got {args.template!r}")
    return labels, [[args.template.format(label)] for label in labels]


def class_embeddings(model, processor, texts_per_class: list[list[str]]):
    """One L2-normalised embedding per class: the normalised mean of its prompts' embeddings."""
    import torch
    import torch.nn.functional as F

    flat = [text for texts in texts_per_class for text in texts]
    embeds = encode_texts(model, processor, flat)
    out, start = [], 0
    for texts in texts_per_class:
        out.append(embeds[start : start + len(texts)].mean(dim=0))
        start += len(texts)
    return F.normalize(torch.stack(out), dim=-1)


# -- zero-shot -------------------------------------------------------------------------------------------------------


def zero_shot_predictions(model, processor, video, class_embeds, fps: float, window: float | None, batch_size: int):
    """Per-frame (or per-window) class probabilities: a list of `(start, end, probs)`; also returns the duration."""
    import torch

    reader = open_video(video)
    video_fps = reader.get_avg_fps()
    duration = len(reader) / video_fps
    scale = model.logit_scale.exp().float().item()
    times, probs = [], []
    from .video_processing_ophclip import fps_frame_indices

    total = len(fps_frame_indices(len(reader), video_fps, fps))
    with _progress(total=total, desc=f"zero-shot {Path(video).name}", unit="frame") as bar:
        for _, batch_times, frames in iter_fps_frames(reader, fps, batch_size):
            frame_embeds = encode_frames(model, processor, frames)
            probs.append((scale * frame_embeds @ class_embeds.t()).softmax(dim=-1).cpu())
            times.extend(batch_times)
            bar.update(len(batch_times))
    probs = torch.cat(probs)
    step = 1.0 / fps
    if not window:
        return [(t, min(t + step, duration), p.tolist()) for t, p in zip(times, probs)], duration
    rows = []
    bins = [int(t // window) for t in times]
    for b in sorted(set(bins)):
        members = [i for i, x in enumerate(bins) if x == b]
        rows.append((b * window, min((b + 1) * window, duration), probs[members].mean(dim=0).tolist()))
    return rows, duration


def write_predictions(path: Path, video: str, labels: list[str], rows, args, duration: float):
    if path.suffix.lower() == ".csv":
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["start", "end", "label", "score", *(f"prob_{label}" for label in labels)])
            for start, end, probs in rows:
                best = max(range(len(labels)), key=probs.__getitem__)
                writer.writerow([f"{start:.3f}", f"{end:.3f}", labels[best], f"{probs[best]:.6f}",
                                 *(f"{p:.6f}" for p in probs)])
    else:
        predictions = []
        for start, end, probs in rows:
            best = max(range(len(labels)), key=probs.__getitem__)
            predictions.append({"start": round(start, 3), "end": round(end, 3), "label": labels[best],
                                "score": probs[best], "probs": dict(zip(labels, probs))})
        payload = {"video": str(video), "model": args.model, "labels": labels, "fps": args.fps,
                   "window": args.window, "duration": duration, "predictions": predictions}
        path.write_text(json.dumps(payload, indent=2), encoding="utf-8")


def plot_timeline(path: Path, labels: list[str], rows, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    starts = np.array([r[0] for r in rows])
    ends = np.array([r[1] for r in rows])
    probs = np.array([r[2] for r in rows])  # (T, C)
    predicted = probs.argmax(axis=1)
    cmap = plt.get_cmap("tab20" if len(labels) > 10 else "tab10")
    fig, (ax_bar, ax_prob) = plt.subplots(
        2, 1, figsize=(10, 1.6 + 0.25 * len(labels)), sharex=True, gridspec_kw={"height_ratios": [1, 3]}
    )
    for start, end, cls in zip(starts, ends, predicted):
        ax_bar.axvspan(start, max(end, start + 1e-3), color=cmap(cls % cmap.N), linewidth=0)
    ax_bar.set_yticks([])
    ax_bar.set_title(title, fontsize=9)
    handles = [matplotlib.patches.Patch(color=cmap(i % cmap.N), label=label) for i, label in enumerate(labels)]
    ax_bar.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    edges = np.append(starts, ends[-1] if len(ends) else 0.0)
    ax_prob.pcolormesh(edges, np.arange(len(labels) + 1), probs.T, cmap="viridis", vmin=0, vmax=1, shading="flat")
    ax_prob.set_yticks(np.arange(len(labels)) + 0.5, labels, fontsize=7)
    ax_prob.set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cmd_zero_shot(args) -> int:
    if args.fps <= 0:
        raise CLIError(f"--fps must be positive, got {args.fps}")
    if args.window is not None and args.window <= 0:
        raise CLIError(f"--window must be positive, got {args.window}")
    labels, texts = parse_labels(args)
    output = _check_output(args.output, args.overwrite, (".csv", ".json"))
    timeline = _check_output(args.timeline, args.overwrite, (".png",)) if args.timeline else None
    open_video(args.video)  # fail on an unreadable video before loading the model
    model, processor = load_ophclip(args.model, args.device)
    class_embeds = class_embeddings(model, processor, texts)
    rows, duration = zero_shot_predictions(model, processor, args.video, class_embeds, args.fps, args.window,
                                           args.batch_size)
    write_predictions(output, args.video, labels, rows, args, duration)
    if timeline is not None:
        plot_timeline(timeline, labels, rows, f"{Path(args.video).name} — {args.model}")
    print(f"ophclip zero-shot: wrote {len(rows)} predictions to {output}" + (f" and {timeline}" if timeline else ""))
    return 0


# -- embed -----------------------------------------------------------------------------------------------------------


def _collect_videos(inputs: list[str]) -> list[Path]:
    videos = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                raise CLIError(f"folder {item!r} holds no video ({', '.join(VIDEO_EXTENSIONS)})")
            videos.extend(found)
        else:
            videos.append(path)
    return videos


def cmd_embed(args) -> int:
    import numpy as np
    import torch
    import torch.nn.functional as F

    if args.num_frames < 1:
        raise CLIError(f"--num-frames must be at least 1, got {args.num_frames}")
    output = _check_output(args.output, args.overwrite, (".safetensors", ".parquet"))
    videos = _collect_videos(args.inputs)
    for video in videos:  # fail on any unreadable input before spending time on the others
        open_video(video)
    model, processor = load_ophclip(args.model, args.device)
    embeddings = []
    for video in _progress(videos, desc="embed", unit="video"):
        try:
            inputs = processor(videos=str(video), num_frames=args.num_frames, return_tensors="pt")
        except ValueError as error:
            raise CLIError(" ".join(str(error).split())) from None
        with torch.no_grad():
            features = model.get_video_features(
                inputs["pixel_values_videos"].to(device=model.device, dtype=model.dtype),
                inputs["frame_mask"].to(model.device),
            ).pooler_output
        embeddings.append(F.normalize(features.float(), dim=-1)[0].cpu())
    matrix = torch.stack(embeddings).contiguous()
    paths = [str(v) for v in videos]
    keys = [v.stem for v in videos]
    if output.suffix.lower() == ".safetensors":
        from safetensors.torch import save_file

        save_file({"embeddings": matrix}, str(output),
                  metadata={"paths": json.dumps(paths), "keys": json.dumps(keys), "model": args.model,
                            "num_frames": str(args.num_frames)})
    else:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise CLIError("writing .parquet needs pyarrow: pip install pyarrow") from None
        table = pa.table({"key": keys, "path": paths,
                          "embedding": pa.array(list(matrix.numpy().astype(np.float32)), type=pa.list_(pa.float32()))})
        table = table.replace_schema_metadata({"model": args.model, "num_frames": str(args.num_frames)})
        pq.write_table(table, str(output))
    print(f"ophclip embed: wrote {len(paths)} embeddings of dimension {matrix.shape[1]} to {output}")
    return 0


# -- search ----------------------------------------------------------------------------------------------------------


def _cache_file(cache_dir: Path, video: Path, model_id: str, fps: float) -> Path:
    stat = video.stat()
    model_path = Path(model_id)
    model_stamp = ""
    for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"):
        if (model_path / name).exists():
            model_stamp = str((model_path / name).stat().st_mtime_ns)
            break
    key = json.dumps([str(video.resolve()), stat.st_size, stat.st_mtime_ns,
                      str(model_path.resolve()) if model_path.exists() else model_id, model_stamp, fps])
    return cache_dir / f"{video.stem}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.safetensors"


def _video_frame_embeddings(model, processor, video: Path, fps: float, batch_size: int, cache_dir: Path | None):
    import torch
    from safetensors.torch import load_file, save_file

    cache = _cache_file(cache_dir, video, str(model.name_or_path), fps) if cache_dir else None
    if cache is not None and cache.exists():
        data = load_file(str(cache))
        return data["embeddings"], data["times"].tolist()
    reader = open_video(video)
    embeds, times = [], []
    for _, batch_times, frames in iter_fps_frames(reader, fps, batch_size):
        embeds.append(encode_frames(model, processor, frames).cpu())
        times.extend(batch_times)
    embeds = torch.cat(embeds).contiguous()
    if cache is not None:
        save_file({"embeddings": embeds, "times": torch.tensor(times, dtype=torch.float64)}, str(cache))
    return embeds, times


def cmd_search(args) -> int:
    import numpy as np
    import torch

    if args.fps <= 0:
        raise CLIError(f"--fps must be positive, got {args.fps}")
    if args.top_k < 1:
        raise CLIError(f"--top-k must be at least 1, got {args.top_k}")
    if not args.query.strip():
        raise CLIError("the query is empty")
    folder = Path(args.videos)
    if not folder.is_dir():
        raise CLIError(f"--videos {args.videos!r} is not a folder")
    videos = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not videos:
        raise CLIError(f"folder {args.videos!r} holds no video ({', '.join(VIDEO_EXTENSIONS)})")
    output = _check_output(args.output, args.overwrite, (".json", ".csv")) if args.output else None
    cache_dir = Path(args.index_cache) if args.index_cache else None
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
    model, processor = load_ophclip(args.model, args.device)
    model.name_or_path = args.model
    all_embeds, moments, skipped = [], [], []
    for video in _progress(videos, desc="index", unit="video"):
        try:
            embeds, times = _video_frame_embeddings(model, processor, video, args.fps, args.batch_size, cache_dir)
        except CLIError as error:
            skipped.append(video)
            print(f"ophclip search: warning: skipping {error}", file=sys.stderr)
            continue
        all_embeds.append(embeds)
        moments.extend((str(video.relative_to(folder)), t) for t in times)
    if not all_embeds:
        raise CLIError(f"no video in {args.videos!r} could be read")
    matrix = torch.cat(all_embeds).numpy().astype(np.float32)
    query = encode_texts(model, processor, [args.query]).cpu().numpy().astype(np.float32)
    k = min(args.top_k, len(matrix))
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is not None:
        index = faiss.IndexFlatIP(matrix.shape[1])
        index.add(matrix)
        scores, ids = index.search(query, k)
        scores, ids = scores[0].tolist(), ids[0].tolist()
    else:  # exact inner product with numpy
        sims = matrix @ query[0]
        ids = np.argsort(-sims)[:k].tolist()
        scores = sims[ids].tolist()
    results = [{"rank": r + 1, "video": moments[i][0], "time": round(moments[i][1], 3), "score": round(s, 6)}
               for r, (i, s) in enumerate(zip(ids, scores))]
    if output is not None:
        if output.suffix.lower() == ".json":
            output.write_text(json.dumps({"query": args.query, "results": results}, indent=2), encoding="utf-8")
        else:
            with output.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=["rank", "video", "time", "score"])
                writer.writeheader()
                writer.writerows(results)
    if args.json:
        print(json.dumps({"query": args.query, "results": results}, indent=2))
    else:
        width = max(len("video"), *(len(r["video"]) for r in results))
        print(f"{'rank':>4}  {'video':<{width}}  {'time (s)':>8}  {'score':>8}")
        for r in results:
            print(f"{r['rank']:>4}  {r['video']:<{width}}  {r['time']:>8.2f}  {r['score']:>8.4f}")
    return 0


# -- attention -------------------------------------------------------------------------------------------------------


def _read_image(path: Path):
    import numpy as np

    try:
        from PIL import Image

        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except ImportError:
        pass
    except Exception as error:
        raise CLIError(f"cannot read image {str(path)!r}: {error}") from None
    try:
        import matplotlib.image as mpimg

        image = mpimg.imread(str(path))
    except Exception as error:
        raise CLIError(f"cannot read image {str(path)!r}: {' '.join(str(error).split())}") from None
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return image[..., :3]


def gradcam_resnet(model, pixels, text_embed):
    """Grad-CAM of the frame–text similarity on the last ResNet stage: `(T, h, w)` maps in [0, 1]."""
    import torch
    import torch.nn.functional as F

    captured = {}

    def hook(_module, _inputs, output):
        output.retain_grad()
        captured["activations"] = output

    handle = model.vision_model.encoder.stages[-1].register_forward_hook(hook)
    try:
        with torch.enable_grad():
            pixels = pixels.detach().requires_grad_(False)
            embeds = F.normalize(model.get_image_features(pixels).pooler_output.float(), dim=-1)
            similarity = (embeds * text_embed).sum(dim=-1)
            model.zero_grad(set_to_none=True)
            similarity.sum().backward()
    finally:
        handle.remove()
    activations = captured["activations"]
    weights = activations.grad.mean(dim=(2, 3), keepdim=True)
    cams = F.relu((weights * activations).sum(dim=1)).detach()
    return cams, similarity.detach()


def attention_vit(model, pixels, text_embed):
    """Gradient-weighted attention rollout (Chefer et al., 2021) for a ViT tower: `(T, g, g)` maps over patches."""
    import torch
    import torch.nn.functional as F

    with torch.enable_grad():
        outputs = model.vision_model(pixel_values=pixels, output_attentions=True, return_dict=True)
        attentions = outputs.attentions
        if not attentions or attentions[0] is None:
            raise CLIError("the vision tower returned no attentions; load it with attn_implementation='eager'")
        for attention in attentions:
            attention.retain_grad()
        embeds = F.normalize(model.visual_projection(outputs.pooler_output.flatten(1)).float(), dim=-1)
        similarity = (embeds * text_embed).sum(dim=-1)
        model.zero_grad(set_to_none=True)
        similarity.sum().backward()
    num_tokens = attentions[0].shape[-1]
    rollout = torch.eye(num_tokens).unsqueeze(0).repeat(pixels.shape[0], 1, 1).to(attentions[0].device)
    for attention in attentions:
        weighted = F.relu(attention.grad * attention).mean(dim=1).detach().float()  # (T, N, N)
        rollout = rollout + weighted @ rollout
    cls_to_patches = rollout[:, 0, 1:]
    side = int(round(cls_to_patches.shape[-1] ** 0.5))
    if side * side != cls_to_patches.shape[-1]:
        raise CLIError(f"cannot arrange {cls_to_patches.shape[-1]} patch tokens in a square grid")
    return cls_to_patches.view(-1, side, side), similarity.detach()


def _save_overlay(path: Path, image, heatmap, title: str, alpha: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(6, 3.2))
    axes[0].imshow(image)
    axes[0].set_title("frame", fontsize=8)
    axes[1].imshow(image)
    axes[1].imshow(heatmap, cmap="jet", alpha=alpha, vmin=0, vmax=1)
    axes[1].set_title("saliency", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(textwrap.fill(title, 90), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cmd_attention(args) -> int:
    import numpy as np
    import torch
    import torch.nn.functional as F

    if args.frames < 1:
        raise CLIError(f"--frames must be at least 1, got {args.frames}")
    if not args.text.strip():
        raise CLIError("--text is empty")
    output_dir = Path(args.output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not args.overwrite:
        raise CLIError(f"output folder {str(output_dir)!r} exists and is not empty; pass --overwrite to write into it")
    source = Path(args.input)
    if source.suffix.lower() in IMAGE_EXTENSIONS:
        if not source.is_file():
            raise CLIError(f"image {str(source)!r} does not exist")
        frames, times = _read_image(source)[None], [0.0]
    else:
        from .video_processing_ophclip import uniform_frame_indices

        reader = open_video(source)
        indices = uniform_frame_indices(len(reader), min(args.frames, len(reader)))
        frames = reader.get_batch(indices).asnumpy()
        times = [i / reader.get_avg_fps() for i in indices]
    model, processor = load_ophclip(args.model, args.device, attn_implementation="eager")
    tower = model.config.vision_config.model_type
    text_embed = encode_texts(model, processor, [args.text])[0]
    pixels = _frames_to_pixels(processor, frames, model)
    if tower == "resnet":
        maps, similarity = gradcam_resnet(model, pixels, text_embed)
        method = "Grad-CAM (last ResNet stage)"
    elif hasattr(model.vision_model, "encoder") and hasattr(model.vision_model.config, "patch_size"):
        maps, similarity = attention_vit(model, pixels, text_embed)
        method = "gradient-weighted attention rollout"
    else:
        raise CLIError(f"saliency maps support ResNet and ViT (CLIP vision) towers, not {tower!r}")
    height, width = pixels.shape[-2:]
    maps = F.interpolate(maps[:, None].float(), size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    lo = maps.flatten(1).min(dim=1).values.view(-1, 1, 1)
    hi = maps.flatten(1).max(dim=1).values.view(-1, 1, 1)
    maps = ((maps - lo) / (hi - lo).clamp(min=1e-8)).cpu().numpy()
    vp = processor.video_processor
    mean = torch.tensor(vp.image_mean).view(3, 1, 1) if vp.do_normalize else torch.zeros(3, 1, 1)
    std = torch.tensor(vp.image_std).view(3, 1, 1) if vp.do_normalize else torch.ones(3, 1, 1)
    scale = vp.rescale_factor if vp.do_rescale else 1.0
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i in _progress(range(len(pixels)), desc="attention", unit="frame"):
        image = ((pixels[i].detach().float().cpu() * std + mean) / scale).clamp(0, 255).byte().permute(1, 2, 0).numpy()
        path = output_dir / f"frame_{i:03d}_t{times[i]:.2f}s.png"
        _save_overlay(path, np.ascontiguousarray(image), maps[i],
                      f"{args.text!r} — {method}, t={times[i]:.2f}s, cos={similarity[i].item():.3f}", args.alpha)
        written.append(path)
    print(f"ophclip attention: wrote {len(written)} overlays ({method}) to {output_dir}")
    return 0


# -- convert ---------------------------------------------------------------------------------------------------------


def cmd_convert(args) -> int:
    from .convert import main as convert_main

    return convert_main(args.convert_args)


# -- parser ----------------------------------------------------------------------------------------------------------


def _add_common(parser, overwrite_help="Replace the output if it exists."):
    parser.add_argument("--model", required=True, metavar="DIR_OR_ID",
                        help="OphCLIP folder (saved with save_pretrained, with its processor) or Hub id.")
    parser.add_argument("--device", metavar="DEVICE", default=None,
                        help="torch device, e.g. cpu or cuda:0 (default: cuda if available, else cpu).")
    parser.add_argument("--overwrite", action="store_true", help=overwrite_help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ophclip",
        description="OphCLIP video-language model for ophthalmic surgery: zero-shot recognition, embeddings, "
                    "text-to-moment search, saliency maps and checkpoint conversion.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    zs = sub.add_parser(
        "zero-shot", help="Per-second (or per-window) zero-shot class probabilities of one video.",
        description="Classify every sampled frame of VIDEO against text labels (CLIP-style softmax over the scaled "
                    "cosine similarities); with --window, average the frame probabilities over windows. The video "
                    "is decoded in batches, never whole.",
    )
    zs.add_argument("video", metavar="VIDEO", help="Video file to classify.")
    _add_common(zs, "Replace --output / --timeline if they exist.")
    labels = zs.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", metavar="A,B,C", help="Comma-separated class names.")
    labels.add_argument("--labels-file", metavar="FILE", help="Text file with one class name per line ('#' comments).")
    labels.add_argument("--benchmark", metavar="NAME",
                        help="Use the classes and prompts of a registered evaluate_suite benchmark, in its default "
                             "prompt mode (one sentence per class on the real datasets, the ensemble on OphVL-mini; "
                             "e.g. cataract-1k-phase); --template is then ignored.")
    zs.add_argument("--fps", type=float, default=1.0, help="Frames classified per second of video (default: 1).")
    zs.add_argument("--window", type=float, default=None, metavar="SECONDS",
                    help="Average frame probabilities over windows of this many seconds (default: one row per frame).")
    zs.add_argument("--template", default=DEFAULT_TEMPLATE,
                    help=f"Prompt each label is written into; must contain '{{}}' (default: {DEFAULT_TEMPLATE!r}).")
    zs.add_argument("--output", required=True, metavar="OUT.csv|OUT.json",
                    help="Predictions: CSV (start, end, label, score, prob_<class>...) or JSON.")
    zs.add_argument("--timeline", metavar="OUT.png", help="Also draw the predicted class over time as a PNG.")
    zs.add_argument("--batch-size", type=int, default=32, help="Frames decoded and embedded at once (default: 32).")
    zs.set_defaults(func=cmd_zero_shot)

    em = sub.add_parser(
        "embed", help="One L2-normalised embedding per video.",
        description="Embed each video (frames sampled uniformly, frame embeddings averaged, projected and "
                    "L2-normalised) and save them with their paths.",
    )
    em.add_argument("inputs", nargs="+", metavar="INPUT", help="Video files, or folders searched for videos.")
    _add_common(em, "Replace --output if it exists.")
    em.add_argument("--output", required=True, metavar="OUT.safetensors|OUT.parquet",
                    help="safetensors: tensor 'embeddings' (N, D), metadata 'paths'/'keys' as JSON lists; "
                         "parquet: columns key, path, embedding.")
    em.add_argument("--num-frames", type=int, default=8, help="Frames sampled per video (default: 8).")
    em.set_defaults(func=cmd_embed)

    se = sub.add_parser(
        "search", help="Find the moments of a video collection that best match a text query.",
        description="Embed the frames sampled at --fps of every video under --videos, index them with faiss "
                    "(inner product of L2-normalised embeddings; numpy if faiss is missing) and print the best "
                    "matches. Unreadable videos are skipped with a warning.",
    )
    se.add_argument("query", metavar="QUERY", help="Text to search for.")
    _add_common(se, "Replace --output if it exists.")
    se.add_argument("--videos", required=True, metavar="FOLDER", help="Folder searched (recursively) for videos.")
    se.add_argument("--fps", type=float, default=1.0, help="Frames indexed per second of video (default: 1).")
    se.add_argument("--top-k", type=int, default=5, help="Number of moments returned (default: 5).")
    se.add_argument("--index-cache", metavar="DIR",
                    help="Folder that caches each video's frame embeddings (keyed by video, model and fps).")
    se.add_argument("--output", metavar="OUT.json|OUT.csv", help="Also write the results to a file.")
    se.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    se.add_argument("--batch-size", type=int, default=32, help="Frames decoded and embedded at once (default: 32).")
    se.set_defaults(func=cmd_search)

    at = sub.add_parser(
        "attention", help="Text-conditioned saliency maps on frames, as PNG overlays.",
        description="Where in the frame does the model see TEXT? ResNet towers: Grad-CAM of the frame-text cosine "
                    "similarity on the last stage; ViT (CLIP vision) towers: gradient-weighted attention rollout.",
    )
    at.add_argument("input", metavar="VIDEO_OR_IMAGE", help="Video file, or an image (.png/.jpg/...).")
    _add_common(at, "Write into --output-dir even if it is not empty.")
    at.add_argument("--text", required=True, help="Text the saliency is computed for.")
    at.add_argument("--output-dir", required=True, metavar="DIR", help="Folder for the PNG overlays.")
    at.add_argument("--frames", type=int, default=4, help="Frames sampled uniformly from a video (default: 4).")
    at.add_argument("--alpha", type=float, default=0.5, help="Opacity of the heat map (default: 0.5).")
    at.set_defaults(func=cmd_attention)

    cv = sub.add_parser(
        "convert", help="Convert a SurgVLP/HecVL/PeskaVLP checkpoint (same options as ophclip-convert).",
        description="Runs ophclip-convert with the remaining arguments; see `ophclip convert --help`.",
        add_help=False,
    )
    cv.add_argument("convert_args", nargs=argparse.REMAINDER, help="Arguments of ophclip-convert.")
    cv.set_defaults(func=cmd_convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ophclip` console command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "convert":  # every option, --help included, belongs to ophclip-convert
        from .convert import main as convert_main

        return convert_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CLIError as error:
        message = " ".join(str(error).split())
    except (ValueError, OSError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
    print(f"ophclip {args.command}: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
