"""`ophclip app`: the OphCLIP web app (Gradio) — phase timeline, text search and saliency maps of uploaded videos.

    ophclip app --model ophclip-demo/model            # http://127.0.0.1:7860
    python app.py                                     # on a Space: the folder `python -m model_cards.publish space` writes

Everything the page shows is computed by the library code the `ophclip` command uses: `zero_shot` (the classifier
from `modeling_ophclip.build_zero_shot_classifier`, frames decoded and classified in batches, the out-of-domain
signal), `search.top_matches` and `saliency.saliency_maps`. One pass over a video gives its timeline, its
out-of-domain signal and the frame embeddings that text search reuses (kept for the last few videos, keyed by the
file's content). Memory stays bounded on long videos: frames are decoded a batch at a time (fewer per batch for large
frames), only embeddings and probabilities are kept, and thumbnails are decoded again for the few frames shown.

Bad input (not a video, no video stream, too long, too large a frame, empty labels) is answered by a message in the
page's status line, never by a stack trace; unexpected failures are logged on the server and shown as one line.
gradio is imported only here, so `ophclip --help` does not load it.
"""

import functools
import hashlib
import html
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from .common import CLIError, DEFAULT_TEMPLATE, load_ophclip
from .saliency import saliency_maps
from .search import top_matches
from .video import open_video
from .zero_shot import (build_ood_reference, class_embeddings, default_ood_reference_path, frame_count,
                        iter_zero_shot_batches, load_ood_reference, out_of_domain_signal, parse_labels,
                        prediction_rows, write_predictions)


logger = logging.getLogger("ophclip.app")

DEFAULT_MODEL = "ophclip-demo/model"
DEFAULT_EXAMPLES = "ophclip-demo/ophvl-mini/benchmark"
EXAMPLES_BENCHMARK = "ophvl-mini-phase"
TYPED_LABELS = "typed labels"
PROMPT_SETS = ("ophvl-mini-phase", "cataract-1k-phase", "cataract-101-phase", "cataracts-phase", "cataract-21-phase")
FPS = 1.0  # the timeline is per second, as the zero-shot protocol samples frames
DECODED_BYTES_PER_BATCH = 256 * 2 ** 20  # large frames are decoded fewer at a time
CACHED_VIDEOS = 8
THUMBNAIL_WIDTH = 192
# tab10, then tab20's light tones: the colours matplotlib's timeline plot uses for up to 20 classes
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
           "#dbdb8d", "#9edae5")


class InputError(CLIError):
    """Bad input, reported in the page's status line."""


# ---------------------------------------------------------------------------------------------------------------------
# Checking an upload


def _human_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


@dataclass
class VideoInfo:
    path: Path
    name: str
    width: int
    height: int
    duration: float


def probe_video(path, max_duration: float, max_pixels: int) -> VideoInfo:
    """Check an upload before decoding any frame (container metadata via PyAV when installed, else decord): it must
    be a readable video with a video stream, no longer than `max_duration` seconds, frames no larger than
    `max_pixels`. Raises `InputError` with a one-line reason."""
    if not path:
        raise InputError("upload a video first (or pick an example)")
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise InputError(f"{name!r} is not a file")
    width = height = 0
    duration = None
    try:
        import av
    except ImportError:
        av = None
    if av is not None:
        try:
            with av.open(str(path)) as container:
                streams = container.streams.video
                if not streams:
                    kinds = sorted({s.type for s in container.streams}) or ["no"]
                    raise InputError(f"{name!r} has no video stream ({', '.join(kinds)} streams only); expected a "
                                     "video file such as .mp4")
                stream = streams[0]
                width, height = stream.codec_context.width, stream.codec_context.height
                if stream.duration is not None and stream.time_base is not None:
                    duration = float(stream.duration * stream.time_base)
                elif container.duration is not None:
                    duration = container.duration / 1_000_000
        except InputError:
            raise
        except Exception as error:  # noqa: BLE001 - PyAV raises many kinds of errors for files that are not media
            reason = " ".join(str(error).replace(str(path), name).split())[:160]  # not the server's temp path
            raise InputError(f"{name!r} is not a readable video ({reason}); expected a video file such as .mp4") \
                from None
    if width * height > max_pixels:
        raise InputError(f"{name!r} has {width}x{height} frames ({width * height / 1e6:.1f} megapixels); this app "
                         f"accepts up to {max_pixels / 1e6:.1f} megapixels per frame (ophclip app --max-pixels)")
    if duration is not None and duration > max_duration:
        raise InputError(f"{name!r} lasts {_human_duration(duration)}; this app accepts videos up to "
                         f"{_human_duration(max_duration)} (ophclip app --max-duration)")
    try:
        reader = open_video(path)
    except CLIError as error:
        reason = str(error).replace(repr(str(path)), repr(name))
        raise InputError(f"{name!r} is not a readable video ({reason}); expected a video file such as .mp4") from None
    decoded_duration = len(reader) / reader.get_avg_fps()
    if decoded_duration > max_duration:
        raise InputError(f"{name!r} lasts {_human_duration(decoded_duration)}; this app accepts videos up to "
                         f"{_human_duration(max_duration)} (ophclip app --max-duration)")
    if not width:
        height, width = reader[0].shape[:2]
        if width * height > max_pixels:
            raise InputError(f"{name!r} has {width}x{height} frames; this app accepts up to "
                             f"{max_pixels / 1e6:.1f} megapixels per frame (ophclip app --max-pixels)")
    return VideoInfo(path, name, width, height, decoded_duration)


def _file_sha1(path) -> str:
    """The SHA-1 of a file's bytes (what the app keys videos by), read once per version of the file: a request asks
    for it several times (cache, ground truth, CSV name)."""
    path = Path(path).resolve()
    stat = path.stat()
    return _sha1_of_version(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha1_of_version(path: Path, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha1").hexdigest()


def _upload_paths(files) -> list[Path]:
    """The paths of what the file component holds (one path, a list of paths, or gradio's file objects)."""
    if not files:
        return []
    if not isinstance(files, (list, tuple)):
        files = [files]
    return [Path(getattr(f, "name", None) or getattr(f, "path", None) or f) for f in files]


# ---------------------------------------------------------------------------------------------------------------------
# What one pass over a video leaves


@dataclass
class VideoAnalysis:
    info: VideoInfo
    times: list
    frame_embeds: object  # torch (N, D), L2-normalised, CPU
    probs: object | None = None  # torch (N, C)
    labels: list = field(default_factory=list)


def _segments(names: list[str], starts: list[float], ends: list[float]) -> list[tuple[str, float, float]]:
    """Runs of the same label: `(label, start, end)`."""
    runs = []
    for name, start, end in zip(names, starts, ends):
        if runs and runs[-1][0] == name and abs(runs[-1][2] - start) < 1e-6:
            runs[-1] = (name, runs[-1][1], end)
        else:
            runs.append((name, start, end))
    return runs


def timeline_html(duration: float, tracks: list[tuple[str, list]], colours: dict[str, str]) -> str:
    """The timeline as HTML: one bar per track (`(track name, [(label, start, end), ...])`), a time axis and a legend
    of the labels shown. Each segment names its label and times in its tooltip; no script, inline styles only."""
    duration = max(duration, 1e-6)
    parts = ['<div class="ophclip-timeline" style="font-family:sans-serif;font-size:13px">']
    shown = []
    for track, segments in tracks:
        parts.append(f'<div class="ophclip-track" data-track="{html.escape(track)}" style="display:flex;'
                     'align-items:center;margin:4px 0">'
                     f'<span style="width:110px;flex:none">{html.escape(track)}</span>'
                     '<div style="display:flex;flex:1;height:28px;border:1px solid #999;border-radius:3px;'
                     'overflow:hidden">')
        for label, start, end in segments:
            if label not in shown and label is not None:
                shown.append(label)
            colour = colours.get(label, "#eeeeee") if label is not None else "#ffffff"
            title = f"{label if label is not None else 'unlabelled'}: {start:.0f}–{end:.0f} s"
            parts.append(f'<div class="ophclip-segment" data-label="{html.escape(str(label))}" '
                         f'title="{html.escape(title)}" style="width:{100 * (end - start) / duration:.4f}%;'
                         f'background:{colour}"></div>')
        parts.append("</div></div>")
    parts.append('<div style="display:flex;justify-content:space-between;margin-left:110px;color:#555">'
                 f'<span>0 s</span><span>{duration / 2:.0f} s</span><span>{duration:.0f} s</span></div>')
    parts.append('<div class="ophclip-legend" style="margin-top:6px">')
    for label in shown:
        parts.append(f'<span class="ophclip-legend-item" data-label="{html.escape(label)}" style="display:inline-block;'
                     'margin-right:14px"><span style="display:inline-block;width:12px;height:12px;'
                     f'background:{colours[label]};margin-right:4px;vertical-align:middle"></span>'
                     f"{html.escape(label)}</span>")
    parts.append("</div></div>")
    return "".join(parts)


def duration_table(rows, labels: list[str]) -> list[list]:
    """Per predicted phase: seconds, share of the video, number of segments, first start; longest first."""
    names = [labels[max(range(len(labels)), key=p.__getitem__)] for _, _, p in rows]
    total = sum(end - start for start, end, _ in rows) or 1.0
    table = {}
    for label, start, end in _segments(names, [r[0] for r in rows], [r[1] for r in rows]):
        entry = table.setdefault(label, [label, 0.0, 0.0, 0, start])
        entry[1] += end - start
        entry[3] += 1
    for entry in table.values():
        entry[2] = round(100 * entry[1] / total, 1)
        entry[1] = round(entry[1], 1)
        entry[4] = round(entry[4], 1)
    return sorted(table.values(), key=lambda e: (-e[1], e[4]))


# ---------------------------------------------------------------------------------------------------------------------
# The app's state (one per server: the model, the class embeddings of each prompt set, recent videos' embeddings)


class OphCLIPApp:
    """The computations behind the page, callable without a browser (the tests and the benchmark use it)."""

    def __init__(self, model_id: str, device=None, examples=None, ood_reference=None, max_duration: float = 3600.0,
                 max_pixels: int = 3840 * 2160, batch_size: int = 32):
        if batch_size < 1:
            raise CLIError(f"--batch-size must be at least 1, got {batch_size}")
        if max_duration <= 0 or max_pixels <= 0:
            raise CLIError("--max-duration and --max-pixels must be positive")
        self.model_id = model_id
        self.model, self.processor = load_ophclip(model_id, device, attn_implementation="eager")
        self.max_duration, self.max_pixels, self.batch_size = max_duration, max_pixels, batch_size
        self._lock = threading.Lock()  # one model, used by one request at a time
        self._class_cache: dict[tuple, tuple] = {}
        self._videos: OrderedDict[str, VideoAnalysis] = OrderedDict()
        self.examples, self.ground_truth, self.example_classes, self._reference_videos = [], {}, [], []
        if examples:
            self._load_examples(Path(examples))
        path = ood_reference or default_ood_reference_path(model_id)
        if path:
            self.ood_reference = load_ood_reference(path, self.model, self.processor)
            self.ood_source = str(path)
        elif self._reference_videos:
            self.ood_reference = self._reference_from_examples()
            self.ood_source = (f"computed at start from the {len(self._reference_videos)} training and validation "
                               f"videos of {examples}")
        else:
            self.ood_reference, self.ood_source = None, None

    # -- examples and their labels ------------------------------------------------------------------------------------

    def _load_examples(self, root: Path):
        """The test split of an OphVL-mini benchmark folder as examples (with their per-frame phase labels); its
        training and validation splits make the out-of-domain reference when no reference file is given."""
        from evaluate_suite.registry import get_benchmark

        if not root.is_dir():
            raise CLIError(f"--examples {str(root)!r} is not a folder")
        spec = get_benchmark(EXAMPLES_BENCHMARK)
        try:
            annotations, _ = spec.load(root, "test")
            reference = spec.load(root, "train")[0] + spec.load(root, "validation")[0]
        except (ValueError, OSError) as error:
            raise CLIError(f"--examples {str(root)!r} is not an OphVL-mini benchmark folder: {error}") from None
        self.example_classes = list(spec.classes)
        for annotation in annotations:
            self.examples.append(str(annotation.path))
            self.ground_truth[_file_sha1(Path(annotation.path))] = annotation
        self._reference_videos = [str(a.path) for a in reference]

    def _reference_from_examples(self) -> dict:
        import torch

        from .common import frame_embeddings

        labels, texts = self.prompt_texts(EXAMPLES_BENCHMARK, "")
        class_embeds = self.class_embeddings(EXAMPLES_BENCHMARK, "")
        embeds = [frame_embeddings(self.model, self.processor, open_video(path), FPS, self.batch_size)[0]
                  for path in self._reference_videos]
        return build_ood_reference(self.model, self.processor, torch.cat(embeds), class_embeds, labels,
                                   videos=len(self._reference_videos))

    def ground_truth_for(self, path: Path):
        if not self.ground_truth:
            return None
        return self.ground_truth.get(_file_sha1(path))

    # -- prompts ------------------------------------------------------------------------------------------------------

    def prompt_texts(self, prompt_set: str, typed: str) -> tuple[list[str], list[list[str]]]:
        if prompt_set == TYPED_LABELS or not prompt_set:
            if not typed or not typed.strip():
                raise InputError("type the labels, separated by commas (e.g. 'incision, capsulorhexis, "
                                 "phacoemulsification'), or pick a benchmark's prompt set")
            args = SimpleNamespace(benchmark=None, labels_file=None, labels=typed, template=DEFAULT_TEMPLATE)
        else:
            args = SimpleNamespace(benchmark=prompt_set, labels_file=None, labels=None, template=DEFAULT_TEMPLATE)
        try:
            return parse_labels(args)
        except CLIError as error:
            raise InputError(str(error)) from None

    def class_embeddings(self, prompt_set: str, typed: str):
        labels, texts = self.prompt_texts(prompt_set, typed)
        key = (tuple(labels), tuple(map(tuple, texts)))
        if key not in self._class_cache:
            self._class_cache[key] = class_embeddings(self.model, self.processor, texts)
        return self._class_cache[key]

    # -- one pass over a video ----------------------------------------------------------------------------------------

    def _batch_size_for(self, info: VideoInfo) -> int:
        return max(1, min(self.batch_size, DECODED_BYTES_PER_BATCH // max(1, info.width * info.height * 3)))

    def analyse(self, path, prompt_set: str, typed: str = "", progress=None) -> tuple[VideoAnalysis, list, dict]:
        """Classify a video's frames at 1 fps (batch by batch, `progress(done, total)` after each) and keep its frame
        embeddings for search. Returns the analysis, the per-second rows `(start, end, probs)` and the out-of-domain
        signal."""
        import torch

        info = probe_video(path, self.max_duration, self.max_pixels)
        labels, _ = self.prompt_texts(prompt_set, typed)
        with self._lock:
            class_embeds = self.class_embeddings(prompt_set, typed)
            reader = open_video(info.path)
            total = frame_count(reader, FPS)
            times, embeds, probs = [], [], []
            for batch_times, _, frame_embeds, batch_probs in iter_zero_shot_batches(
                    self.model, self.processor, reader, class_embeds, FPS, self._batch_size_for(info)):
                times.extend(batch_times)
                embeds.append(frame_embeds)
                probs.append(batch_probs)
                if progress is not None:
                    progress(len(times), total)
            del reader
        analysis = VideoAnalysis(info, times, torch.cat(embeds), torch.cat(probs), labels)
        self._remember(analysis)
        rows = prediction_rows(times, analysis.probs, info.duration, FPS, None)
        signal = out_of_domain_signal(analysis.frame_embeds, self.ood_reference, class_embeds, labels)
        return analysis, rows, signal

    def _remember(self, analysis: VideoAnalysis):
        key = _file_sha1(analysis.info.path)
        self._videos[key] = analysis
        self._videos.move_to_end(key)
        while len(self._videos) > CACHED_VIDEOS:
            self._videos.popitem(last=False)

    def frame_index(self, path, progress=None) -> VideoAnalysis:
        """The frame embeddings of a video at 1 fps: remembered from its analysis, else computed now."""
        path = Path(path)
        key = _file_sha1(path)
        if key in self._videos:
            return self._videos[key]
        info = probe_video(path, self.max_duration, self.max_pixels)
        from .common import frame_embeddings

        with self._lock:
            reader = open_video(info.path)
            total = frame_count(reader, FPS)
            embeds, times = frame_embeddings(self.model, self.processor, reader, FPS, self._batch_size_for(info),
                                             None if progress is None else lambda done: progress(done, total))
        analysis = VideoAnalysis(info, times, embeds)
        self._remember(analysis)
        return analysis

    # -- search and saliency ------------------------------------------------------------------------------------------

    def search(self, paths, query: str, top_k: int = 6, progress=None) -> list[dict]:
        """The `top_k` moments of the videos that best match `query`: `{rank, video, time, score, thumbnail}`."""
        import torch

        from .common import encode_texts

        if not query or not query.strip():
            raise InputError("type a sentence to search for, e.g. 'the surgeon tears the anterior capsule'")
        paths = [Path(p) for p in paths]
        if not paths:
            raise InputError("upload a video first (or pick an example)")
        indexed = [self.frame_index(p, progress) for p in paths]
        matrix = torch.cat([a.frame_embeds for a in indexed]).numpy()
        moments = [(a, t) for a in indexed for t in a.times]
        with self._lock:
            query_embed = encode_texts(self.model, self.processor, [query.strip()])[0].cpu().numpy()
        ids, scores = top_matches(matrix, query_embed, int(top_k))
        results = []
        for rank, (i, score) in enumerate(zip(ids, scores), start=1):
            analysis, time = moments[i]
            results.append({"rank": rank, "video": analysis.info.name, "time": round(time, 2),
                            "score": round(float(score), 4),
                            "thumbnail": self.frame_at(analysis.info.path, time, THUMBNAIL_WIDTH)})
        return results

    def frame_at(self, path, time: float, width: int | None = None):
        """The decoded RGB frame nearest `time` seconds (shrunk to `width` pixels wide when given)."""
        reader = open_video(path)
        index = min(len(reader) - 1, max(0, int(round(time * reader.get_avg_fps()))))
        frame = reader.get_batch([index]).asnumpy()[0]
        if width and frame.shape[1] > width:
            from PIL import Image

            height = max(1, round(frame.shape[0] * width / frame.shape[1]))
            import numpy as np

            frame = np.asarray(Image.fromarray(frame).resize((width, height), Image.BILINEAR))
        return frame

    def saliency(self, path, time: float, sentence: str, alpha: float = 0.5):
        """The Grad-CAM (ResNet) or attention-rollout (ViT) overlay of the frame at `time` for `sentence`, as an RGB
        picture, and a caption."""
        import numpy as np

        if not sentence or not sentence.strip():
            raise InputError("type the sentence whose saliency to draw, e.g. 'the phaco tip in the lens'")
        info = probe_video(path, self.max_duration, self.max_pixels)
        if time is None or time < 0 or time > info.duration:
            raise InputError(f"pick a time between 0 and {info.duration:.1f} s (the video's length), not {time}")
        frame = self.frame_at(info.path, float(time))
        with self._lock:
            images, maps, similarity, method = saliency_maps(self.model, self.processor, frame[None], sentence.strip())
        import matplotlib

        heat = matplotlib.colormaps["jet"](maps[0])[..., :3]
        overlay = (1 - alpha) * images[0].astype(np.float32) / 255 + alpha * heat
        picture = np.concatenate([images[0], (overlay.clip(0, 1) * 255).astype(np.uint8)], axis=1)
        return picture, f"{method} of {info.name} at {float(time):.1f} s for {sentence.strip()!r} (cosine " \
                        f"{similarity[0].item():.3f}); left the frame as the model sees it, right the saliency"


# ---------------------------------------------------------------------------------------------------------------------
# The page


def _colours(labels: list[str]) -> dict[str, str]:
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


_CSV_DIR = None


def _write_csv(analysis: VideoAnalysis, rows, signal, model_id: str) -> str:
    """The predictions in `ophclip zero-shot`'s CSV format for the download button: one file per video content and
    prompt set (a repeated analysis replaces its file, so the folder does not grow with requests)."""
    global _CSV_DIR
    if _CSV_DIR is None:
        _CSV_DIR = Path(tempfile.mkdtemp(prefix="ophclip-app-"))
    key = hashlib.sha1(repr((_file_sha1(analysis.info.path), analysis.labels)).encode()).hexdigest()[:16]
    path = _CSV_DIR / key / f"{Path(analysis.info.name).stem}_phases.csv"
    path.parent.mkdir(exist_ok=True)
    args = SimpleNamespace(model=model_id, fps=FPS, window=None)
    write_predictions(path, analysis.info.name, analysis.labels, rows, args, analysis.info.duration, signal)
    return str(path)


def _ground_truth_segments(annotation, rows, classes: list[str]):
    """The labelled phase of each second (the frame nearest its start), as segments; `None` where unlabelled."""
    names = []
    for start, _, _ in rows:
        index = min(annotation.num_frames - 1, int(round(start * annotation.fps)))
        label = int(annotation.phases[index])
        names.append(classes[label] if 0 <= label < len(classes) else None)
    return _segments(names, [r[0] for r in rows], [r[1] for r in rows])


def _status(kind: str, text: str) -> str:
    """The status line: green for done, red for what the user has to change (plain text: no emoji font needed)."""
    colour, word = {"ok": ("#1a7f37", "Done"), "error": ("#c62828", "Cannot do that")}[kind]
    return (f'<div class="ophclip-status ophclip-{kind}" style="color:{colour};font-weight:600">{word}: '
            f"{html.escape(text)}</div>")


def _report_unexpected(what: str, error: Exception) -> str:
    logger.exception("ophclip app: %s failed", what)
    reason = " ".join(str(error).split())[:200] or type(error).__name__
    return _status("error", f"{what} failed: {type(error).__name__}: {reason}")


def build_app(model: str | None = None, device=None, examples: str | None = None, ood_reference: str | None = None,
              max_duration: float = 3600.0, max_pixels: int = 3840 * 2160, batch_size: int = 32, core=None):
    """The Gradio Blocks of the app (not launched). `model` defaults to the demo's model folder; `examples` to the
    demo's benchmark folder when it exists."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    if core is None:
        model = model or DEFAULT_MODEL
        if model == DEFAULT_MODEL and not Path(DEFAULT_MODEL).is_dir():
            raise CLIError(f"no model given and the demo's model folder {DEFAULT_MODEL!r} does not exist: run `make "
                           "demo` to train it, or pass --model with an OphCLIP folder or Hub id")
        if examples is None and Path(DEFAULT_EXAMPLES).is_dir():
            examples = DEFAULT_EXAMPLES
        core = OphCLIPApp(model, device, examples, ood_reference, max_duration, max_pixels, batch_size)

    prompt_choices = [name for name in PROMPT_SETS if _benchmark_exists(name)] + [TYPED_LABELS]

    def analyse(files, prompt_set, typed, progress=gr.Progress()):
        empty = ("", None, None, "", None)
        try:
            paths = _upload_paths(files)
            if not paths:
                raise InputError("upload a video first (or pick an example)")
            progress(0, desc="decoding and classifying frames")
            analysis, rows, signal = core.analyse(
                paths[0], prompt_set, typed,
                progress=lambda done, total: progress((done, total), desc="frames classified", unit="frames"))
        except InputError as error:
            return (_status("error", str(error)), *empty)
        except Exception as error:  # noqa: BLE001 - the page shows one line; the server log has the traceback
            return (_report_unexpected("the analysis", error), *empty)
        labels = analysis.labels
        colours = _colours(labels)
        names = [labels[max(range(len(labels)), key=p.__getitem__)] for _, _, p in rows]
        tracks = [("prediction", _segments(names, [r[0] for r in rows], [r[1] for r in rows]))]
        annotation = core.ground_truth_for(analysis.info.path)
        if annotation is not None and annotation.phases is not None:
            gt_classes = core.example_classes
            colours.update({c: colours.get(c, PALETTE[(len(colours) + i) % len(PALETTE)])
                            for i, c in enumerate(gt_classes) if c not in colours})
            tracks.append(("ground truth", _ground_truth_segments(annotation, rows, gt_classes)))
        timeline = timeline_html(analysis.info.duration, tracks, colours)
        table = [[round(s, 1), round(e, 1), name, round(max(p), 4)] for (s, e, p), name in zip(rows, names)]
        csv_path = _write_csv(analysis, rows, signal, core.model_id)
        ood = signal["message"] + (f" (reference: {core.ood_source})" if core.ood_source else "")
        done = f"{analysis.info.name}: {len(rows)} seconds classified against {len(labels)} classes"
        if len(paths) > 1:
            done += f" (the timeline is of the first of {len(paths)} videos; search covers all of them)"
        return (_status("ok", done), timeline, table, duration_table(rows, labels), ood, csv_path)

    def search(files, query, top_k, progress=gr.Progress()):
        try:
            results = core.search(_upload_paths(files), query, int(top_k),
                                  progress=lambda done, total: progress((done, total), desc="frames indexed"))
        except InputError as error:
            return _status("error", str(error)), [], None
        except Exception as error:  # noqa: BLE001
            return _report_unexpected("the search", error), [], None
        gallery = [(r["thumbnail"], f"{r['rank']}. {r['video']} at {r['time']:.0f} s (score {r['score']:.3f})")
                   for r in results]
        table = [[r["rank"], r["video"], r["time"], r["score"]] for r in results]
        return _status("ok", f"{len(results)} moments for {query.strip()!r}"), gallery, table

    def saliency(files, time, sentence):
        try:
            paths = _upload_paths(files)
            if not paths:
                raise InputError("upload a video first (or pick an example)")
            picture, caption = core.saliency(paths[0], time, sentence)
        except InputError as error:
            return _status("error", str(error)), None
        except Exception as error:  # noqa: BLE001
            return _report_unexpected("the saliency map", error), None
        return _status("ok", caption), picture

    def show_video(files):
        paths = _upload_paths(files)
        try:  # the player gets only what passes the checks; the status line explains the rest on analysis
            return str(probe_video(paths[0], core.max_duration, core.max_pixels).path) if paths else None
        except InputError:
            return None

    def seek_to(event: gr.SelectData):
        return _time_from_caption(event.value)

    with gr.Blocks(title="OphCLIP") as demo:
        gr.Markdown(f"# OphCLIP: zero-shot phase timeline, text search and saliency\nModel: `{core.model_id}`. "
                    "Upload a surgical video (or pick an example), choose the phases to recognise, then search it "
                    "by text or look at where the model sees a sentence. Everything runs on this server; nothing is "
                    "sent elsewhere.")
        with gr.Row():
            with gr.Column(scale=1):
                files = gr.File(label="video(s)", file_count="multiple", elem_id="ophclip-upload")
                prompt_set = gr.Dropdown(prompt_choices, value=prompt_choices[0], label="prompt set",
                                         elem_id="ophclip-prompt-set")
                typed = gr.Textbox(label="labels (for 'typed labels'), comma-separated",
                                   placeholder="incision, capsulorhexis, phacoemulsification, lens implantation",
                                   elem_id="ophclip-labels")
                run = gr.Button("Phase timeline", variant="primary", elem_id="ophclip-analyse")
                if core.examples:
                    gr.Examples([[[path]] for path in core.examples], inputs=[files],
                                label="demo benchmark videos (with their phase labels)")
            with gr.Column(scale=1):
                player = gr.Video(label="player", interactive=False, elem_id="ophclip-player")
        with gr.Tab("Phase timeline"):
            status = gr.HTML(elem_id="ophclip-status")
            timeline = gr.HTML(elem_id="ophclip-timeline")
            ood = gr.Markdown(elem_id="ophclip-ood")
            with gr.Row():
                durations = gr.Dataframe(headers=["phase", "seconds", "share %", "segments", "first at (s)"],
                                         label="time per predicted phase", interactive=False,
                                         elem_id="ophclip-durations")
                csv_file = gr.File(label="predictions (CSV, as `ophclip zero-shot` writes it)",
                                   elem_id="ophclip-csv")
            rows = gr.Dataframe(headers=["start (s)", "end (s)", "phase", "probability"], label="per-second timeline",
                                interactive=False, max_height=300, elem_id="ophclip-rows")
        with gr.Tab("Text search"):
            query = gr.Textbox(label="sentence", placeholder="the surgeon tears the anterior capsule",
                               elem_id="ophclip-query")
            top_k = gr.Slider(1, 24, value=6, step=1, label="moments")
            find = gr.Button("Search", elem_id="ophclip-search")
            search_status = gr.HTML()
            gallery = gr.Gallery(label="best moments (click one to play the video from there)", columns=6,
                                 elem_id="ophclip-gallery")
            hits = gr.Dataframe(headers=["rank", "video", "time (s)", "score"], interactive=False)
            seek = gr.Number(visible=False)
        with gr.Tab("Saliency"):
            with gr.Row():
                at = gr.Number(value=0, label="time (s)", minimum=0)
                sentence = gr.Textbox(label="sentence", placeholder="the phaco tip emulsifies the lens nucleus")
            draw = gr.Button("Saliency map")
            saliency_status = gr.HTML()
            picture = gr.Image(label="saliency", type="numpy")

        files.change(show_video, inputs=files, outputs=player, api_name=False)
        run.click(analyse, inputs=[files, prompt_set, typed],
                  outputs=[status, timeline, rows, durations, ood, csv_file], api_name="analyse")
        find.click(search, inputs=[files, query, top_k], outputs=[search_status, gallery, hits], api_name="search")
        draw.click(saliency, inputs=[files, at, sentence], outputs=[saliency_status, picture], api_name="saliency")
        gallery.select(seek_to, inputs=None, outputs=seek, api_name=False).then(
            None, inputs=seek, outputs=None,
            js="(t) => { const v = document.querySelector('#ophclip-player video'); "
               "if (v && t !== null) { v.currentTime = t; v.play(); } }")
    demo.core = core
    return demo


def _time_from_caption(value) -> float | None:
    """The time in a gallery caption `'3. name.mp4 at 12 s (score ...)'`."""
    caption = value.get("caption") if isinstance(value, dict) else value
    if not isinstance(caption, str) or " at " not in caption:
        return None
    try:
        return float(caption.rsplit(" at ", 1)[1].split(" s", 1)[0])
    except ValueError:
        return None


def _benchmark_exists(name: str) -> bool:
    try:
        from evaluate_suite.registry import get_benchmark

        get_benchmark(name)
        return True
    except (ImportError, ValueError, KeyError):
        return False


def launch_kwargs(core) -> dict:
    """What `launch` needs besides the address: the example videos' folder may be served."""
    return {"allowed_paths": sorted({str(Path(p).parent) for p in core.examples}) or None}


def cmd_app(args) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise CLIError("the web app needs gradio: pip install \"ophclip[app]\" (or pip install gradio)") from None
    demo = build_app(args.model, args.device, args.examples, args.ood_reference, args.max_duration, args.max_pixels,
                     args.batch_size)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=args.host, server_port=args.port or None, show_error=False, quiet=True,
                prevent_thread_lock=True, **launch_kwargs(demo.core))
    # printed once the server listens: scripts (and the tests) wait for this line
    print(f"ophclip app: serving {demo.core.model_id} at {demo.local_url} (Ctrl+C stops it)", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
    return 0
