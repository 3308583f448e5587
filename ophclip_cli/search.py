"""`ophclip embed` and `ophclip search`: video embeddings, and text-to-moment search over a folder."""

import csv
import hashlib
import json
import sys
from pathlib import Path

from evaluate_suite.progress import progress_bar
from .common import CLIError, VIDEO_EXTENSIONS, _check_output, encode_texts, frame_embeddings, load_ophclip
from .video import _collect_videos, open_video


def cmd_embed(args) -> int:
    import numpy as np
    import torch
    import torch.nn.functional as F

    if args.num_frames < 1:
        raise CLIError(f"--num-frames must be at least 1, got {args.num_frames}")
    output = _check_output(args.output, args.overwrite, (".safetensors", ".parquet"))
    readable, skipped, reasons = [], [], []
    for video in _collect_videos(args.inputs):  # unreadable inputs are skipped, named and counted, before any work
        try:
            open_video(video)
            readable.append(video)
        except CLIError as error:
            skipped.append(video)
            reasons.append(str(error))
    if not readable:
        raise CLIError(f"none of the {len(skipped)} input video(s) could be read ({reasons[0]})")
    for reason in reasons:
        print(f"ophclip embed: warning: skipping {reason}", file=sys.stderr)
    model, processor = load_ophclip(args.model, args.device)
    videos, embeddings = [], []
    for video in progress_bar(readable, desc="embed", unit="video"):
        try:
            inputs = processor(videos=str(video), num_frames=args.num_frames, return_tensors="pt")
        except ValueError as error:
            skipped.append(video)
            print(f"ophclip embed: warning: skipping {str(video)!r}: {' '.join(str(error).split())}", file=sys.stderr)
            continue
        videos.append(video)
        with torch.no_grad():
            features = model.get_video_features(
                inputs["pixel_values_videos"].to(device=model.device, dtype=model.dtype),
                inputs["frame_mask"].to(model.device),
            ).pooler_output
        embeddings.append(F.normalize(features.float(), dim=-1)[0].cpu())
    if not embeddings:
        raise CLIError(f"none of the {len(skipped)} input video(s) could be decoded")
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
    print(f"ophclip embed: wrote {len(paths)} embeddings of dimension {matrix.shape[1]} to {output}"
          + (f"; skipped {len(skipped)} unreadable video(s): {', '.join(str(v) for v in skipped)}" if skipped else ""))
    return 0


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
    embeds, times = frame_embeddings(model, processor, open_video(video), fps, batch_size)
    embeds = embeds.contiguous()
    if cache is not None:
        save_file({"embeddings": embeds, "times": torch.tensor(times, dtype=torch.float64)}, str(cache))
    return embeds, times


def top_matches(matrix, query, top_k: int) -> tuple[list[int], list[float]]:
    """The rows of `matrix` `(N, D)` with the largest inner product with `query` `(D,)`, best first: their indices and
    scores (exact; one query against the frames of a few videos needs no index)."""
    import numpy as np

    matrix = np.asarray(matrix, dtype=np.float32)
    sims = matrix @ np.asarray(query, dtype=np.float32).reshape(-1)
    k = min(top_k, len(matrix))
    ids = np.argsort(-sims, kind="stable")[:k].tolist()
    return ids, sims[ids].tolist()


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
    for video in progress_bar(videos, desc="index", unit="video"):
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
    ids, scores = top_matches(matrix, query[0], args.top_k)
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
