"""Text <-> video retrieval on OphVL clips (or whole videos) read straight from the dataset's tar shards.

Every sample of the selected shards (sorted by name, at most `max_clips`, first come first served) contributes one
video and its text (`narration` for clips, the title summary for videos; `datasets_ophvl.format.record_text`). Each
video is decoded in DataLoader workers with `num_frames` frames spread uniformly over it (the processor's
`sample_indices`), embedded with the encoder's `encode_videos` (OphCLIP: `get_video_features`, the mean of the frame
features before the projection; other models: the mean of the normalised frame embeddings), and compared with every
text by cosine similarity. Text i belongs to video i, so the `retrieval` metric scores the similarity matrix as is
(text -> video) and transposed (video -> text): R@1/5/10 as fractions in [0, 1], median and mean rank.

Samples whose json is invalid or whose mp4 cannot be decoded are skipped and listed with the reason.

Use held-out shards: OphVL-mini writes only a training split, so point `shards` at shards the checkpoint has not
seen (or build a held-out set with the OphVL builder); retrieval on training clips measures memorisation.
"""

import io
from pathlib import Path

import numpy as np
import torch
from modeling_ophclip.video_processing_ophclip import uniform_frame_indices

from ..models import preprocess_frames
from ..progress import progress_bar
from .common import DEFAULT_RESULTS_FILE, metric, save_record
from .defaults import DEFAULT_MAX_CLIPS
from .frames import _short


def find_shards(root, subset: str = "clips", shards: str | None = None) -> list[Path]:
    """The tar shards to read: `root/<shards>` (a glob relative to `root`), by default `data/<subset>/*.tar`."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"OphVL folder {str(root)!r} does not exist")
    pattern = shards or f"data/{subset}/*.tar"
    found = sorted(p for p in root.glob(pattern) if p.is_file())
    if not found:
        raise FileNotFoundError(f"no shard matches {pattern!r} under {str(root)!r}")
    return found


def read_samples(shard_paths, subset: str = "clips", max_clips: int | None = DEFAULT_MAX_CLIPS):
    """`(samples, skipped)`: samples are `(key, mp4 bytes, text)`, at most `max_clips` valid ones, in shard order;
    `skipped` maps each skipped sample's key (or an unreadable shard's name) to the reason. Shards are read and checked
    by OphVL's one reader (`datasets_ophvl.reader`), so a sample training skips is skipped here too."""
    from datasets_ophvl.reader import SkipRecorder, iter_shard_examples

    samples, recorder = [], SkipRecorder()
    for shard in shard_paths:
        for example in iter_shard_examples(subset, str(shard), counter=recorder, source=Path(shard).name):
            if max_clips is not None and len(samples) >= max_clips:
                return samples, recorder.skipped
            samples.append((example["key"], example["video"], example["text"]))
    return samples, recorder.skipped


class ClipVideos(torch.utils.data.Dataset):
    """Item i: `{"index": i, "pixel_values": (T, 3, H, W)}` from sample i's mp4 bytes (`num_frames` frames at the
    centres of equal segments, whatever the processor's own sampling settings), or `{"index", "error"}`."""

    def __init__(self, videos: list[bytes], video_processor, num_frames: int = 8):
        self.videos = videos
        self.video_processor = video_processor
        self.num_frames = num_frames

    def __len__(self):
        return len(self.videos)

    def __getitem__(self, i):
        from decord import VideoReader, cpu

        try:
            reader = VideoReader(io.BytesIO(self.videos[i]), ctx=cpu(0), num_threads=1)
            if len(reader) == 0:
                return {"index": i, "error": "the video decodes to zero frames"}
            frames = reader.get_batch(uniform_frame_indices(len(reader), self.num_frames)).asnumpy()
        except Exception as error:  # decord raises RuntimeError/DECORDError for unreadable bytes
            return {"index": i, "error": f"cannot decode the video: {_short(error)}"}
        return {"index": i, "pixel_values": preprocess_frames(self.video_processor, frames)}


def collate_videos(items: list[dict]) -> dict:
    """Pad decoded videos to the longest: `pixel_values_videos (B, T, 3, H, W)`, `frame_mask (B, T)`, plus errors."""
    good = [item for item in items if "error" not in item]
    errors = [(item["index"], item["error"]) for item in items if "error" in item]
    batch = {"index": [item["index"] for item in good], "errors": errors}
    if good:
        longest = max(len(item["pixel_values"]) for item in good)
        first = good[0]["pixel_values"]
        pixels = first.new_zeros((len(good), longest, *first.shape[1:]))
        mask = torch.zeros(len(good), longest, dtype=torch.long)
        for row, item in enumerate(good):
            pixels[row, : len(item["pixel_values"])] = item["pixel_values"]
            mask[row, : len(item["pixel_values"])] = 1
        batch.update(pixel_values_videos=pixels, frame_mask=mask)
    return batch


def video_text_retrieval(encoder, root, *, subset: str = "clips", shards: str | None = None,
                         max_clips: int | None = DEFAULT_MAX_CLIPS, num_frames: int = 8, batch_size: int = 8,
                         num_workers: int = 0, name: str | None = None, results_file=DEFAULT_RESULTS_FILE) -> dict:
    """Text -> video and video -> text retrieval over the samples of an OphVL folder (see the module docstring).

    Metrics: `t2v_R@1`, `t2v_R@5`, `t2v_R@10`, `t2v_MedR`, `t2v_MnR` and the same with `v2t_`, plus `num_clips`.
    The record's benchmark is `name` (default `ophvl-<subset>:<folder name>`).
    """
    shard_paths = find_shards(root, subset, shards)
    samples, skipped = read_samples(shard_paths, subset, max_clips)
    loader = torch.utils.data.DataLoader(
        ClipVideos([s[1] for s in samples], encoder.video_processor, num_frames), batch_size=batch_size,
        shuffle=False, num_workers=num_workers, collate_fn=collate_videos,
    )
    video_embeds = {}
    for batch in progress_bar(loader, total=len(loader), desc=f"videos of {len(samples)} samples", unit="batch"):
        for index, error in batch["errors"]:
            skipped[samples[index][0]] = error
        if batch["index"]:
            embeds = encoder.encode_videos(batch["pixel_values_videos"], batch["frame_mask"]).numpy()
            video_embeds.update(zip(batch["index"], embeds))
    kept = sorted(video_embeds)
    if len(kept) < 2:
        raise ValueError(f"retrieval needs at least 2 usable samples under {str(root)!r}, got {len(kept)}; "
                         f"skipped: {skipped}")
    videos = np.stack([video_embeds[i] for i in kept])
    texts = encoder.encode_texts([samples[i][2] for i in kept]).numpy()
    similarity = texts @ videos.T  # (texts, videos); the pair of text i is video i

    metrics = {}
    targets = list(range(len(kept)))
    for direction, matrix in (("t2v", similarity), ("v2t", similarity.T)):
        scores = metric("retrieval").compute(predictions=matrix.tolist(), references=targets, ks=(1, 5, 10))
        metrics.update({f"{direction}_{k}": v for k, v in scores.items() if k not in ("num_queries", "num_candidates")})
    metrics.update({"num_clips": len(kept), "num_skipped": len(skipped)})
    benchmark = name or f"ophvl-{subset}:{Path(root).resolve().name}"
    extra = {"root": str(root), "subset": subset, "shards": [p.name for p in shard_paths], "max_clips": max_clips,
             "num_frames": num_frames, "keys": [samples[i][0] for i in kept], "model": encoder.describe()}
    record = save_record(results_file, encoder, benchmark, "retrieval", metrics, None, skipped, extra)
    return {"benchmark": benchmark, "protocol": "retrieval", "model_id": encoder.model_id, "metrics": metrics,
            "skipped": skipped, "similarity": similarity, "record": record}


__all__ = ["ClipVideos", "DEFAULT_MAX_CLIPS", "collate_videos", "find_shards", "read_samples", "video_text_retrieval"]
