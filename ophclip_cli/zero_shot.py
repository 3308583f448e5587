"""`ophclip zero-shot`: per-second class probabilities of one video against text labels."""

import csv
import json
from pathlib import Path

from .common import CLIError, _check_output, _progress, encode_frames, encode_texts, load_ophclip
from .plots import plot_timeline
from .video import iter_fps_frames, open_video


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
    """One L2-normalised embedding per class (`modeling_ophclip.build_zero_shot_classifier`)."""
    from modeling_ophclip import build_zero_shot_classifier

    return build_zero_shot_classifier(lambda texts: encode_texts(model, processor, texts), texts_per_class)


def zero_shot_predictions(model, processor, video, class_embeds, fps: float, window: float | None, batch_size: int):
    """Per-frame (or per-window) class probabilities: a list of `(start, end, probs)`; also returns the duration."""
    import torch

    reader = open_video(video)
    video_fps = reader.get_avg_fps()
    duration = len(reader) / video_fps
    scale = model.logit_scale.exp().float().item()
    times, probs = [], []
    from modeling_ophclip.video_processing_ophclip import fps_frame_indices

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
