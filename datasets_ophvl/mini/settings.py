"""The generator's settings: version, sizes, shard multiple, output names and random-stream numbers, plus the
progress-bar helper that every writer shares."""

GENERATOR_VERSION = 2

# Sizes. Clips are rendered at clip_fps, whole videos (videos, silent) at video_fps, benchmark videos at
# benchmark_fps; all at frame_size x frame_size pixels. `benchmark` and `benchmark_shifted` are the number of videos
# of `benchmark/` (clinic A) and `benchmark-shifted/` (clinic B); `silent_clinic_b` is the fraction of silent videos
# recorded in clinic B (the first round(fraction * silent) of them; the others are clinic A).
SIZES = {
    "default": {
        "videos": 40, "silent": 40, "benchmark": 12, "benchmark_shifted": 12, "silent_clinic_b": 1.0,
        "phase_seconds": (5.5, 9.0), "idle_seconds": (0.6, 1.4), "clip_seconds": (2.0, 4.0),
        "clips_per_phase": 2, "extra_clip_prob": 0.4,
        "frame_size": 64, "clip_fps": 8, "video_fps": 2, "benchmark_fps": 5,
        "shards": {"clips": 8, "videos": 4, "silent": 4},
    },
    "tiny": {
        "videos": 4, "silent": 4, "benchmark": 3, "benchmark_shifted": 3, "silent_clinic_b": 1.0,
        "phase_seconds": (2.5, 3.5), "idle_seconds": (0.4, 0.8), "clip_seconds": (1.5, 2.0),
        "clips_per_phase": 1, "extra_clip_prob": 0.0,
        "frame_size": 64, "clip_fps": 8, "video_fps": 2, "benchmark_fps": 4,
        "shards": {"clips": 4, "videos": 4, "silent": 4},
    },
}
SHARD_MULTIPLE = 4
BENCHMARK_FIRST_ID = 1001  # VideoIDs of benchmark/ (clinic A)
SHIFTED_FIRST_ID = 2001  # VideoIDs of benchmark-shifted/ (clinic B)
MARKER = ".ophvl-mini.json"  # written first into every output folder; --overwrite only replaces folders holding it

# Random streams (the second entry of every SeedSequence). Never renumber one: the same seed must keep giving the
# same files; add new streams with new numbers.
_STREAM = {"videos": 1, "silent": 2, "benchmark": 3, "clip_render": 4, "video_render": 5, "silent_render": 6,
           "benchmark_render": 7, "benchmark_shifted": 8, "benchmark_shifted_render": 9}


def _progress(iterable, enabled: bool, **kwargs):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)
