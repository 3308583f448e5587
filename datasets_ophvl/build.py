"""Build an OphVL-format dataset from a folder of your own videos.

    python -m datasets_ophvl.build SRC OUT [options]

SRC holds videos (any folder depth) and, optionally, for `case.mp4`: a transcript `case.vtt`, `case.srt` or
`case.json` (`[{"start", "end", "text"}, ...]`), and a title in `case.title.txt` or in a `titles.json` /
`titles.csv` table. OUT receives WebDataset shards (`data/clips`, `data/videos`, `data/silent`) and a dataset card
(`README.md`) that `datasets.load_dataset(OUT, "clips", split="train", streaming=True).decode(False)` (raw bytes; without
`.decode(False)` datasets asks for torchcodec to decode the videos) and `datasets_ophvl.load_ophvl` read.

Before any video is processed, every model a stage will load is looked for: a local folder, or the Hugging Face
cache for a Hub id (then loaded from there, without the network). Whisper is looked for only when some video has
audio and no usable transcript. A model that is not there stops the build at once with one line saying what to do
(download it, `--set STAGE.FIELD=PATH`, or `--skip-stage STAGE`); with `HF_HUB_OFFLINE=1` nothing goes to the
network, otherwise the Hub is asked once, briefly, whether it has the model. A build that stops before it built
anything (a missing model, a bad option) leaves nothing that a rerun with other options must `--overwrite`.

Every video goes through the curation stages of `datasets_ophvl.curation` (probe, ASR for videos without a
transcript, sentence splitting, silent detection, narrative filter, term denoising, clip segmentation, optional LLM
rewriting, title summary, re-encoding, shard writing). Any stage can be skipped (`--skip-stage`) or the list given
(`--stages`); every stage setting can be changed with `--set STAGE.FIELD=VALUE` (listed below).

The build is resumable: kill it at any point and run the same command again; finished videos are not redone, no
sample is lost or written twice. Nothing is written outside OUT (model weights aside: Hub models are read through
the usual Hugging Face cache). A finished OUT is only replaced with `--overwrite`, which removes only what a build
writes. Refused with a one-line error: SRC and OUT that overlap (one inside the other, links resolved), an SRC without
media files, a README.md in OUT that is not an OphVL dataset card (with `--overwrite`).

Several processes, on one machine or many (OUT on a file system that all of them share):
`accelerate launch --multi_gpu --num_processes N [--num_machines M --machine_rank R --main_process_ip HOST] -m
datasets_ophvl.build SRC OUT [options]` (or `torchrun`). The videos are assigned to processes once, largest first to
the least loaded, and keep their process on resume; each process runs the stages on its own device (Whisper on its
GPU) and writes its own parts and progress log under `OUT/.ophvl-build/processes/`; once all are done the main process
renames every part into one set of shards and writes the card. The dataset is the one a single process builds from
the same folder. A killed build is resumed with the same number of processes.

One bad input never stops the build: a transcript that cannot be read or used (malformed or deeply nested JSON, wrong
types, non-finite times, no permission) is treated as missing; a sub-folder that cannot be listed, a title file,
titles table or info.json that cannot be read is left out; a video that cannot be read (`permission denied`), that
probing refuses (frames above `probe.max_pixels`, among others) or that a stage fails on is skipped. Each is logged
with its path, counted by reason in the report and the dataset card, and named under `problems` in the report.

At the end a summary table shows the videos kept (narrated, silent), the hours, the clips, and what was skipped by
reason with the first file names (`--json` prints the report instead); `OUT/.ophvl-build/report.json` holds every
count and every name (`skipped_files`).
"""

import argparse
import json
import logging
import os
import re
import shutil
import sys
import textwrap
import traceback
from collections import Counter
from pathlib import Path

from .curation import (
    STAGE_ORDER, STAGES, Skip, StageSetupError, VideoItem, build_stages, describe_settings, resolve_stage_names,
    stage_config,
)
from .curation.base import describe_os_error
from .curation.sources import VIDEO_SUFFIXES, Source, SourceProblem, assignments, discover, find_media
from .curation.state import STATE_DIR, BuildState
from .curation.transcripts import TranscriptError, read_transcript
from .format import SUBSETS
from .shards import MANIFEST, SHARD_NAME, ShardWriter, atomic_write_bytes


logger = logging.getLogger("datasets_ophvl.build")


class BuildError(RuntimeError):
    """The build cannot start or go on (bad arguments, an OUT it must not touch)."""


class SharedBuildError(BuildError):
    """A `BuildError` that every process of a distributed build raises alike (the main process prints it once)."""


# --------------------------------------------------------------------------------------------------------------------
# Several processes


# Where each process of a distributed build keeps its own progress log and tar parts: `OUT/.ophvl-build/processes/
# 00001-of-00002/` holds `.ophvl-build/progress.jsonl` and `data/<subset>/part-*.tar` (the same layout as OUT itself,
# so the one-process bookkeeping classes serve each process unchanged).
PROCESSES_DIR = "processes"
PROCESSES_FILE = "processes.json"


class Processes:
    """The processes a launcher (`accelerate launch`, `torchrun`) started for one build, as this one sees them: its
    `index`, their `count` and its `device`. A plain `python -m datasets_ophvl.build` is one process, without a process
    group."""

    def __init__(self, index: int = 0, count: int = 1, device: str | None = None, group=None):
        self.index, self.count, self.device, self._group = index, count, device, group

    @classmethod
    def from_environment(cls) -> "Processes":
        """One process unless a launcher set `WORLD_SIZE` above 1; then the process group Accelerate sets up (gloo
        on CPUs, NCCL on GPUs, across machines as the launcher says) and this process's device."""
        if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
            return cls()
        from datetime import timedelta

        import torch
        import torch.distributed as dist
        from accelerate import PartialState

        # Without a GPU, Accelerate starts the gloo group only when told the processes are CPU ones.
        state = PartialState(cpu=not torch.cuda.is_available())
        # The processes wait for each other before the shards are finalized, and the last one may finish its videos
        # hours after the first: that wait runs on the CPU (gloo), whatever backend serves the GPUs, with a timeout
        # longer than any build.
        group = dist.new_group(backend="gloo", timeout=timedelta(days=30))
        device = None if state.device.type == "cpu" else str(state.device)  # CPU processes: the stages' default
        return cls(state.process_index, state.num_processes, device, group)

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def wait_all(self) -> None:
        """Return once every process has called it."""
        if self.count > 1:
            import torch.distributed as dist

            dist.barrier(group=self._group)

    def gather_text(self, text: str) -> list[str]:
        """Every process's `text`, in process order (UTF-8 bytes in tensors: nothing is pickled)."""
        if self.count == 1:
            return [text]
        import torch
        import torch.distributed as dist

        data = torch.tensor(list(text.encode()), dtype=torch.uint8)
        sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(self.count)]
        dist.all_gather(sizes, torch.tensor([len(data)]), group=self._group)
        longest = max(int(size) for size in sizes)
        padded = torch.zeros(longest, dtype=torch.uint8)
        padded[:len(data)] = data
        gathered = [torch.zeros(longest, dtype=torch.uint8) for _ in range(self.count)]
        dist.all_gather(gathered, padded, group=self._group)
        return [bytes(t[:int(size)].tolist()).decode() for t, size in zip(gathered, sizes)]

    def agree(self, failure: Exception | None) -> None:
        """Raise on every process when the checks failed on any (a process alone would leave the others waiting for
        it): the first process's message, prefixed with its index when the processes failed differently."""
        if self.count == 1:
            if failure is not None:
                raise failure
            return
        messages = self.gather_text("" if failure is None else str(failure))
        failed = [(index, message) for index, message in enumerate(messages) if message]
        if failed:
            index, message = failed[0]
            alike = len(failed) == self.count and len(set(messages)) == 1
            raise SharedBuildError(message if alike else f"process {index} of {self.count}: {message}")

    def close(self) -> None:
        if self.count > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def worker_root(out: Path, index: int, count: int) -> Path:
    """The folder where process `index` of `count` writes its parts and its progress log."""
    return Path(out) / STATE_DIR / PROCESSES_DIR / f"{index:05d}-of-{count:05d}"


def worker_roots(out: Path, count: int | None = None) -> list[Path]:
    """The process folders in OUT (those of `count` processes, or all), in process order."""
    folder = Path(out) / STATE_DIR / PROCESSES_DIR
    if not folder.is_dir():
        return []
    pattern = re.compile(r"\d{5}-of-" + (f"{count:05d}" if count else r"\d{5}"))
    return sorted(path for path in folder.iterdir() if path.is_dir() and pattern.fullmatch(path.name))


def saved_processes(out: Path) -> tuple[int, dict[str, int]]:
    """How many processes the build in OUT was started with, and which video each was given (1 and none for a
    one-process build)."""
    path = Path(out) / STATE_DIR / PROCESSES_FILE
    if not path.exists():
        return 1, {}
    saved = json.loads(path.read_text())
    return int(saved["processes"]), {video_id: int(index) for video_id, index in saved["assignment"].items()}


def assign_videos(sources, count: int, assigned: dict[str, int] | None = None) -> dict[str, int]:
    """`{video_id: process index}` for `sources`, the same on every process. Videos an earlier run assigned keep their
    process (its parts may already hold some of their samples); the others go, largest file first, to the process with
    the fewest bytes so far (ties: the lower index), so that the processes finish at about the same time."""
    def size(source) -> int:
        try:
            return source.path.stat().st_size
        except OSError:
            return 0  # the probe stage reports a file it cannot read

    plan = {video_id: index for video_id, index in (assigned or {}).items() if 0 <= index < count}
    load = [0] * count
    new = []
    for source in sources:
        if source.video_id in plan:
            load[plan[source.video_id]] += size(source)
        else:
            new.append((size(source), source.video_id))
    for nbytes, video_id in sorted(new, key=lambda pair: (-pair[0], pair[1])):
        index = min(range(count), key=lambda i: (load[i], i))
        plan[video_id] = index
        load[index] += nbytes
    return plan


def record_processes(out: Path, count: int, plan: dict[str, int]) -> None:
    """Keep the process count and the assignment with the build (before any video is processed), and drop the
    process folders of a start with another count (which built nothing: `check_output` refuses it otherwise)."""
    for root in worker_roots(out):
        if not root.name.endswith(f"-of-{count:05d}"):
            shutil.rmtree(root)
    path = Path(out) / STATE_DIR / PROCESSES_FILE
    if count == 1:
        if path.exists():
            path.unlink()
        return
    atomic_write_bytes(path, json.dumps({"processes": count, "assignment": plan}, indent=1, sort_keys=True).encode())


def load_progress(state: BuildState, order=()) -> BuildState:
    """Load the videos finished so far into `state.videos`: OUT's own progress log and every process folder's
    (writes nothing). `order` (video ids) puts those entries first, in that order, so that the statistics of a
    distributed build list the videos as a one-process build would."""
    state.load()
    for root in worker_roots(state.out):
        worker = BuildState(root)
        worker.load()
        state.videos.update(worker.videos)
    if order:
        rank = {video_id: i for i, video_id in enumerate(order)}
        state.videos = dict(sorted(state.videos.items(), key=lambda item: rank.get(item[0], len(rank))))
    return state


# --------------------------------------------------------------------------------------------------------------------
# Output folder


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def check_folders(src: Path, out: Path) -> None:
    """Refuse SRC and OUT that are the same folder or lie one inside the other (after resolving links): the build
    writes (and `--overwrite` removes) in OUT, and reads SRC."""
    real_src, real_out = src.resolve(), out.resolve()
    if real_src == real_out:
        raise BuildError(f"SRC and OUT are the same folder ({real_src}); expected an OUT of its own, outside SRC")
    if real_out in real_src.parents:
        raise BuildError(f"SRC {src} lies inside OUT {out} (resolved: {real_src} in {real_out}); expected an OUT "
                         "outside the source videos, which a rebuild must never touch")
    if real_src in real_out.parents:
        raise BuildError(f"OUT {out} lies inside SRC {src} (resolved: {real_out} in {real_src}); expected an OUT "
                         "outside the source folder")
    # The folders the build writes into must not lead into SRC either (a link inside OUT).
    for folder in [out / "data", *(out / "data" / subset for subset in SUBSETS), out / STATE_DIR]:
        if (folder.exists() or folder.is_symlink()) and _overlaps(folder.resolve(), real_src):
            raise BuildError(f"{folder} leads to {folder.resolve()}, which overlaps SRC {src}; expected OUT's own "
                             "folder (the build writes and --overwrite removes files there)")


def _is_build_file(path: Path) -> bool:
    """A file that `ShardWriter` writes in `data/<subset>/` (parts, shards, their temporary files, the manifest)."""
    name = path.name
    return (name in (MANIFEST, MANIFEST + ".tmp") or bool(SHARD_NAME.match(name))
            or bool(re.fullmatch(r"part-\d{5,}\.tar(\.tmp)?", name)))


def check_removable(out: Path) -> None:
    """Refuse an OUT that `--overwrite` must not clean: a `README.md` that is not an OphVL card, links where the
    build's folders are. Removes nothing."""
    from .card import is_ophvl_card

    readme = out / "README.md"
    if (readme.exists() or readme.is_symlink()) and not (readme.is_file() and not readme.is_symlink()
                                                          and is_ophvl_card(readme)):
        raise BuildError(f"{readme} is not an OphVL dataset card (expected one a build wrote, with a configs: block "
                         "for clips, videos, silent); --overwrite would replace it: move it or choose another OUT")
    for folder in [out / "data" / subset for subset in SUBSETS] + [out / "data", out / STATE_DIR]:
        if folder.is_symlink():
            raise BuildError(f"{folder} is a link; expected a folder the build made (--overwrite removes files there)")


def remove_build_output(out: Path) -> None:
    """What `--overwrite` removes: the files a build writes (shards and parts in `data/<subset>/`, the build's
    bookkeeping in `.ophvl-build/`, a `README.md` that is an OphVL dataset card) and the folders they leave empty.
    Anything else in OUT stays. A `README.md` that is not an OphVL card is refused rather than replaced."""
    check_removable(out)
    readme = out / "README.md"
    for subset in SUBSETS:
        folder = out / "data" / subset
        if folder.is_dir():
            for path in folder.iterdir():
                if _is_build_file(path) and (path.is_file() or path.is_symlink()):
                    path.unlink()
            if not any(folder.iterdir()):
                folder.rmdir()
    if (out / "data").is_dir() and not any((out / "data").iterdir()):
        (out / "data").rmdir()
    if (out / STATE_DIR).is_dir():
        shutil.rmtree(out / STATE_DIR)
    if readme.is_file():
        readme.unlink()


def nothing_built(state: BuildState) -> bool:
    """Whether an unfinished build in `state.out` stopped before it built anything: no video recorded in its progress
    logs (`load_progress(state)` first) and no tar part or shard recorded in a subset's manifest, its own or a
    process folder's. Such a build (a failed start) may be started again with other stages, settings or processes."""
    if state.videos:
        return False
    for subset, root in ((subset, root) for root in [state.out, *worker_roots(state.out)] for subset in SUBSETS):
        manifest = root / "data" / subset / MANIFEST
        if manifest.exists():
            try:
                recorded = json.loads(manifest.read_text())
            except (OSError, ValueError):
                return False
            if not isinstance(recorded, dict) or recorded.get("parts") or recorded.get("shards"):
                return False
    return True


def check_output(out: Path, config: dict, overwrite: bool, processes: int = 1) -> BuildState:
    """Check OUT without writing anything: refuse a finished build, a foreign folder, or an unfinished build with
    other settings or another number of `processes` that already built something, unless `overwrite`. Returns its
    state, with the videos finished so far (by every process) loaded (none when `overwrite`: the old build will be
    removed)."""
    state = BuildState(out)
    finished = state.finalized or (not state.exists and (out / "README.md").exists() and (out / "data").exists())
    if overwrite:
        check_removable(out)
        return state
    if finished:
        raise BuildError(f"{out} holds a finished OphVL dataset; pass --overwrite to rebuild it")
    if out.exists() and any(out.iterdir()) and not state.exists:
        raise BuildError(f"{out} is not empty and holds no unfinished build; choose an empty folder or pass --overwrite")
    load_progress(state)
    if state.exists and state.saved_config() not in (None, config):
        if not nothing_built(state):
            raise BuildError(
                f"{out} holds an unfinished build with other stages or settings; rerun it with the same options "
                "or pass --overwrite to start over"
            )
        logger.info("%s holds a build that stopped before building anything; starting it with these settings", out)
    started_with = saved_processes(out)[0] if state.exists else processes
    if started_with != processes and not nothing_built(state):
        # Each process resumes its own videos from its own parts: another count would orphan or duplicate them.
        how = "with plain python -m datasets_ophvl.build" if started_with == 1 else \
            f"with accelerate launch --num_processes {started_with} (over all machines)"
        raise BuildError(f"{out} holds an unfinished build started by {started_with} process"
                         f"{'es' if started_with != 1 else ''}, not {processes}; resume it {how}, or pass --overwrite "
                         "to start over")
    return state


def start_output(out: Path, config: dict, overwrite: bool, processes: int = 1,
                 plan: dict[str, int] | None = None) -> BuildState:
    """The first writes of a build, once every check has passed: remove the old build (`overwrite`), create OUT and
    its bookkeeping (with several `processes`, their count and `plan`, which process builds which video)."""
    if overwrite:
        remove_build_output(out)  # only what a build writes; anything else the user keeps in OUT stays
    out.mkdir(parents=True, exist_ok=True)
    state = BuildState(out)
    state.start(config)
    record_processes(out, processes, plan or {})
    return state


# --------------------------------------------------------------------------------------------------------------------
# Models, before any video


# What the error says to do when a stage's model is not available: `(flag, how to do without it)`.
MODEL_REMEDIES = {
    ("asr", "model"): ("--asr-model", "--skip-stage asr (videos without a transcript are then built as silent videos)"),
    ("denoise", "fill_mask_model"): (
        "--fill-mask-model", "--set denoise.fill_mask_model=none (the lexicon rules alone correct terms)"),
    ("rewrite", "model"): ("--llm-model", "--skip-stage rewrite"),
}


def _has_audio_and_video(path: Path) -> bool:
    """Whether the container has a video and an audio stream (headers only; False when it cannot be opened)."""
    import av

    try:
        with av.open(str(path)) as container:
            return bool(container.streams.video) and bool(container.streams.audio)
    except Exception:  # noqa: BLE001 - the probe stage reports files it cannot open
        return False


def asr_candidates(sources) -> tuple[int, Source | None]:
    """How many of `sources` come without a usable transcript, and the first of them with an audio track (the
    ones the `asr` stage would transcribe), or None when no video needs it."""
    without = []
    for source in sources:
        if source.transcript is not None:
            try:
                read_transcript(source.transcript)
                continue
            except Exception:  # noqa: BLE001 - an unreadable transcript is treated as missing (see make_item)
                pass
        without.append(source)
    return len(without), next((s for s in without if _has_audio_and_video(s.path)), None)


def check_models(stages, todo, src: Path) -> None:
    """Before any video is processed: find every model that a stage will load for the videos in `todo` (locally or
    in the Hugging Face cache; one quick Hub request at most when online, none under `HF_HUB_OFFLINE`) and tell each
    stage where it is. Raises `StageSetupError`, one line saying what to do, for the first that is not available."""
    from .curation.models import ModelUnavailable, locate_model, looks_like_repo_id

    if not todo:
        return
    for stage in stages:
        needs = stage.models() if hasattr(stage, "models") else []
        if not needs:
            continue
        because = ""
        if stage.name == "asr":
            count, first = asr_candidates(todo)
            if first is None:
                continue  # every video has a transcript (or no audio): Whisper is never loaded
            because = (f" for {count} media file{'s' if count != 1 else ''} without a transcript, e.g. "
                       f"{_relative(first.path, src)}")
        for field, task in needs:
            model = getattr(stage.settings, field)
            try:
                found = locate_model(model, task)
                if isinstance(getattr(stage, "model_folders", None), dict):
                    stage.model_folders[field] = found
            except ModelUnavailable as error:
                flag, skip = MODEL_REMEDIES.get((stage.name, field), (None, f"--skip-stage {stage.name}"))
                download = f"download it first (hf download {model}), " if looks_like_repo_id(model) else ""
                local = f"--set {stage.name}.{field}=PATH" + (f" (or {flag} PATH)" if flag else "")
                raise StageSetupError(
                    f"stage {stage.name} needs the {task} model {model!r}{because}, but {error}; {download}"
                    f"give a local model folder with {local}, or pass {skip}"
                ) from None


# --------------------------------------------------------------------------------------------------------------------
# One video


def make_item(source: Source) -> VideoItem:
    """The item for a source file, with its transcript read. A transcript that cannot be read or used (malformed,
    too deeply nested, a bad timestamp, wrong types, not permitted) is treated as missing: counted, logged and listed
    in the video's `problems` with its path and what is wrong; the build goes on. Such a video is transcribed by the
    `asr` stage when it runs; otherwise the `silent` stage skips it (it is not filed as silent for want of text)."""
    item = VideoItem(path=source.path, video_id=source.video_id, key=source.key, title=source.title,
                     title_source=source.title_source)
    if source.transcript is not None:
        try:
            item.segments = read_transcript(source.transcript)
            item.transcript_source = source.transcript.suffix.lstrip(".").lower()
        except (TranscriptError, OSError, UnicodeError, RecursionError) as error:
            reason = "unreadable transcript file (treated as missing)"
            if isinstance(error, TranscriptError):
                problem = " ".join(str(error).split())  # one line that starts with the path
            elif isinstance(error, OSError):
                problem = f"{source.transcript}: {describe_os_error(error)}"
                if describe_os_error(error) == "permission denied":
                    reason = "unreadable transcript file (permission denied; treated as missing)"
            else:
                problem = f"{source.transcript}: {type(error).__name__}: {' '.join(str(error).split())[:200]}"
            logger.warning("%s (transcript treated as missing)", problem)
            item.stage = "transcript"
            item.drop(reason)
            item.stage = ""
            item.problems.append(f"{problem} (transcript treated as missing)")
            item.transcript_problem = problem  # the silent stage then skips the video instead of filing it silent
    return item


def run_stages(item: VideoItem, stages, fail_fast: bool = False) -> tuple[VideoItem, Skip | None]:
    """Pass `item` through `stages`; stop at the first `Skip`. An error in a stage other than `write` skips the video
    (counted, traceback logged) unless `fail_fast`; errors while writing always propagate (the shards' state is at
    stake), and so does `StageSetupError` (a model that does not load; the build can be resumed once it does)."""
    for stage in stages:
        item.stage = stage.name
        try:
            result = stage(item)
        except StageSetupError:
            raise  # a model that does not load fails every video alike: stop with its message
        except Exception as error:  # noqa: BLE001 - one bad video must not end a long build
            if fail_fast or stage.name == "write":
                raise
            logger.warning("%s: stage %s failed:\n%s", item.path, stage.name, traceback.format_exc())
            return item, Skip(f"error ({type(error).__name__})")
        if isinstance(result, Skip):
            logger.info("%s: skipped at %s: %s", item.path, stage.name, result.reason)
            return item, result
        item = result
    item.stage = ""
    return item, None


def video_entry(item: VideoItem, skip: Skip | None, write) -> dict:
    """What the progress log keeps about a finished video (enough to rebuild the card's statistics)."""
    entry = {
        "video_id": item.video_id,
        "key": item.key,
        "status": "skipped" if skip else "ok",
        "counts": dict(item.counts),
        "tallies": dict(item.tallies),
    }
    problems = list(item.problems)
    if skip:
        entry["reason"] = f"{item.stage}: {skip.reason}"
        problems.append(f"{item.path}: video skipped, {entry['reason']}")
    if problems:
        entry["problems"] = problems
    if skip:
        return entry
    in_shards = [r for r in item.requests if write is None or write.contains(r.subset, r.key)]
    entry.update(
        duration=round(item.duration, 3),
        silent=item.silent,
        transcript=item.transcript_source or "none",
        title=item.title_source or "file name",
        summary=item.summary_source,
        speech_coverage=None if item.speech_coverage is None else round(item.speech_coverage, 4),
        samples=dict(Counter(r.subset for r in in_shards)),
        clip_seconds=round(sum(r.end - r.start for r in in_shards if r.subset == "clips"), 3),
        keys=[[r.subset, r.key] for r in in_shards],
    )
    return entry


# --------------------------------------------------------------------------------------------------------------------
# Whole build


def summarize(state: BuildState, source_problems=()) -> tuple[dict, dict, list[str]]:
    """Statistics, skip counts and the named problems (`"<path>: <what is wrong>"`) over every finished video and
    the `SourceProblem`s of this run's discovery (folders and title sources that could not be read)."""
    entries = list(state.videos.values())
    kept = [e for e in entries if e["status"] == "ok"]
    skipped = Counter()
    tallies = Counter()
    for entry in entries:
        if entry["status"] == "skipped":
            skipped[f"video skipped, {entry['reason']}"] += 1
        skipped.update(entry.get("counts", {}))
        tallies.update(entry.get("tallies", {}))
    clips = sum(e.get("samples", {}).get("clips", 0) for e in kept)
    clip_seconds = sum(e.get("clip_seconds", 0.0) for e in kept)
    stats = {
        "media files": len(entries),
        "videos kept": len(kept),
        "videos skipped": len(entries) - len(kept),
        "narrated videos": sum(not e["silent"] for e in kept),
        "silent videos": sum(e["silent"] for e in kept),
        "hours kept": round(sum(e["duration"] for e in kept) / 3600, 4),
        "transcripts": dict(Counter(e["transcript"] for e in kept)),
        "titles": dict(Counter(e["title"] for e in kept)),
        "title summaries": dict(Counter(e["summary"] or "none" for e in kept if not e["silent"])),
        "clips": clips,
        "mean clip seconds": round(clip_seconds / clips, 2) if clips else 0.0,
        "stage tallies": dict(sorted(tallies.items())),
    }
    problems = [problem for entry in entries for problem in entry.get("problems", [])]
    for problem in source_problems:
        skipped[f"source: {problem.reason}"] += 1
        problems.append(str(problem))
    return stats, dict(sorted(skipped.items())), problems


def _relative(path: Path, root: Path | None) -> str:
    """`path` relative to `root` (posix), or as given when it lies elsewhere."""
    try:
        return Path(path).relative_to(root).as_posix() if root is not None else str(path)
    except ValueError:
        return str(path)


def skipped_files(state: BuildState, source_problems=(), sources=(), src: Path | None = None) -> dict[str, list[str]]:
    """`{reason: [file, ...]}` for every reason in the skip counts that names whole files: skipped videos (the video
    file), transcripts treated as missing (the transcript file) and what discovery could not read. Paths are relative
    to `src`; a video recorded by an earlier run whose file is gone is named by its id."""
    by_id = {source.video_id: source for source in sources}
    files_by_id = {video_id: path for path, (video_id, _) in state.saved_sources().items()}
    files: dict[str, list[str]] = {}
    for video_id, entry in state.videos.items():
        source = by_id.get(video_id)
        video = _relative(source.path, src) if source else files_by_id.get(video_id, video_id)
        if entry["status"] == "skipped":
            files.setdefault(f"video skipped, {entry['reason']}", []).append(video)
        for reason in entry.get("counts", {}):
            if reason.startswith("transcript: "):
                transcript = source.transcript if source is not None else None
                files.setdefault(reason, []).append(_relative(transcript, src) if transcript else f"{video} (transcript)")
    for problem in source_problems:
        files.setdefault(f"source: {problem.reason}", []).append(_relative(problem.path, src))
    return {reason: sorted(names) for reason, names in sorted(files.items())}


def _hours(hours: float) -> str:
    seconds = round(hours * 3600)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d} (h:mm:ss)"


def summary_table(report: dict, out=None, shown: int = 3) -> str:
    """The end-of-build summary a person reads: videos kept, skipped by reason with the first `shown` file names
    (then how many more), clips, hours. The numbers are the report's (`report.json` holds every name)."""
    stats, skipped, files = report["stats"], report["skipped"], report.get("skipped_files", {})
    subsets = report.get("subsets") or {}
    rows: list[tuple[str, str, str]] = []

    def names(reason: str) -> str:
        listed = files.get(reason, [])
        more = len(listed) - shown
        return ", ".join(listed[:shown]) + (f" and {more} more" if more > 0 else "")

    rows.append(("videos kept", str(stats["videos kept"]),
                 f"{stats['narrated videos']} narrated, {stats['silent videos']} silent"))
    rows.append(("hours kept", f"{stats['hours kept']:.2f}", _hours(stats["hours kept"])))
    rows.append(("clips", str(stats["clips"]), f"mean {stats['mean clip seconds']:.1f} s" if stats["clips"] else ""))
    if subsets:
        rows.append(("samples written", str(sum(s["samples"] for s in subsets.values())),
                     ", ".join(f"{name} {s['samples']} in {s['shards']} shard{'s' if s['shards'] != 1 else ''}"
                               for name, s in subsets.items())))
    video_reasons = [r for r in skipped if r.startswith("video skipped, ")]
    rows.append(("videos skipped", str(stats["videos skipped"]), "by reason:" if video_reasons else ""))
    for reason in video_reasons:
        rows.append(("  " + reason[len("video skipped, "):], str(skipped[reason]), names(reason)))
    file_reasons = [r for r in skipped if r in files and not r.startswith("video skipped, ")]
    if file_reasons:
        rows.append(("files left out", str(sum(skipped[r] for r in file_reasons)), "each file named"))
        for reason in file_reasons:
            rows.append(("  " + reason, str(skipped[reason]), names(reason)))
    other = sum(count for reason, count in skipped.items() if reason not in video_reasons and reason not in files)
    if other:
        rows.append(("other drops", str(other), "sentences, segments, clips: by reason in the report"))
    width = max(len(what) for what, _, _ in rows)
    digits = max(len(count) for _, count, _ in [*rows, ("", "count", "")])
    title = f"OphVL build summary{f' ({out})' if out else ''}"
    lines = [title, f"{'':<{width}}  {'count':>{digits}}  files / details", "-" * (width + digits + 20)]
    lines += [f"{what:<{width}}  {count:>{digits}}  {note}".rstrip() for what, count, note in rows]
    if out:
        lines.append(f"every count and name: {Path(out) / STATE_DIR / 'report.json'}")
    return "\n".join(lines)


def finalize_processes(out: Path, write, count: int, shard_multiple: int) -> dict:
    """The main process's last step of a distributed build: take every process's finished parts into OUT's own
    `data/<subset>/` (renamed in process order, recorded before they move), then finalize them as one set of
    `train-XXXXX-of-NNNNN.tar` shards. Rerun after a kill, it takes only what it had not taken yet. Returns
    `{subset: {"samples": n, "shards": n}}`, as `WriteStage.finalize` does."""
    stats = {}
    for subset in SUBSETS:
        writer = ShardWriter(out, subset, write.settings.samples_per_part)
        if not writer.finalized:
            for root in worker_roots(out, count):
                writer.adopt_parts(root / "data" / subset)
        shards = writer.finalize(shard_multiple)
        stats[subset] = {"samples": len(writer.done_keys), "shards": len(shards)}
    return stats


def build(src, out, stages, *, overwrite: bool = False, shard_multiple: int = 1, pretty_name: str | None = None,
          license: str = "other", progress: bool = True, fail_fast: bool = False,
          processes: Processes | None = None) -> dict | None:
    """Build an OphVL dataset in `out` from the media under `src` with `stages` (instances, in pipeline order).

    With several `processes` (default: those a launcher started, see `Processes.from_environment`) each process builds
    its share of the videos into its own folder under `OUT/.ophvl-build/processes/`, on its own device, and the main
    process finalizes them all into one dataset once every process is done.

    Returns the report: statistics, per-subset sample and shard counts, skip counts by reason, stage settings (None
    on the processes other than the main one)."""
    processes = processes or Processes.from_environment()
    src, out = Path(src), Path(out)
    source_problems: list[SourceProblem] = []  # what discovery could not read: logged, counted, named in the report
    failure = None
    try:
        if not src.is_dir():
            raise BuildError(f"source folder {src} does not exist")
        check_folders(src, out)
        if shard_multiple < 1:
            raise BuildError(f"--shard-multiple must be >= 1, got {shard_multiple}")
        names = [stage.name for stage in stages]
        if names != [n for n in STAGE_ORDER if n in names]:
            raise BuildError(f"stages must be in pipeline order {STAGE_ORDER}, got {names}")
        media = find_media(src, exclude=out, problems=source_problems)
        if not media:
            unread = ""
            if source_problems:
                shown = "; ".join(str(problem) for problem in source_problems[:3])
                more = f" and {len(source_problems) - 3} more" if len(source_problems) > 3 else ""
                unread = f"; could not read {shown}{more}"
            raise BuildError(f"{src} holds no media files: expected videos ending in {', '.join(VIDEO_SUFFIXES)} "
                             f"(searched in all sub-folders except hidden ones){unread}")
        config = json.loads(json.dumps({"stages": stage_config(stages)}))  # as it reads back from config.json
        # Everything that can refuse the build runs before OUT is written: a failed start leaves OUT as it was. Every
        # process checks (reading only) and they agree before the main process writes.
        state = check_output(out, config, overwrite, processes.count)

        # Ids and keys given by earlier runs stay with their files; new files get others (see `discover`).
        assigned = state.saved_sources() if not overwrite else {}
        sources = discover(src, exclude=out, paths=media, assigned=assigned, reserved=state.recorded_keys(),
                           problems=source_problems)
        todo = [source for source in sources if source.video_id not in state]
        check_models(stages, todo, src)
        plan = {}
        if processes.count > 1:
            planned = saved_processes(out) if state.exists and not overwrite else (processes.count, {})
            plan = assign_videos(sources, processes.count, planned[1] if planned[0] == processes.count else {})
    except (BuildError, StageSetupError) as error:
        failure = error
    processes.agree(failure)

    if processes.is_main:
        state = start_output(out, config, overwrite, processes.count, plan)
        given = {**assigned, **assignments(src, sources)}
        if given != state.saved_sources():
            state.save_sources(given)  # before any video is processed: a kill cannot lose them
    processes.wait_all()  # OUT is ready (and an old build removed) before any process writes in it
    if processes.count > 1:
        root = worker_root(out, processes.index, processes.count)
        log = BuildState(root)  # this process's own progress log, beside its own parts
        log.start(config)
        mine = [source for source in todo if plan[source.video_id] == processes.index]
        for stage in stages:
            settings = getattr(stage, "settings", None)
            if processes.device and hasattr(settings, "device") and settings.device is None:
                settings.device = processes.device  # its own GPU (the default would be the first); not in config
    else:
        root, log, mine = out, state, todo
    write = next((stage for stage in stages if stage.name == "write"), None)
    if write is not None:
        write.open(root)
    bars = progress and processes.is_main  # one set of progress bars, the main process's
    for stage in stages:
        if hasattr(stage, "progress"):
            stage.progress = bars
    logger.info("%d media files in %s, %d already done, %d to do in process %d of %d", len(sources), src,
                len(sources) - len(todo), len(mine), processes.index, processes.count)
    pending: list[dict] = []  # written, but not all in finished parts yet

    def commit(force: bool = False):
        for entry in list(pending):
            if force or all(write.flushed(subset, key) for subset, key in entry["keys"]):
                log.record(entry)
                pending.remove(entry)

    from tqdm.auto import tqdm

    desc = "videos" if processes.count == 1 else f"videos (process 0 of {processes.count})"
    try:
        for source in tqdm(mine, desc=desc, unit="video", disable=not bars):
            item = make_item(source)
            if write is not None:
                item.already_written = write.contains
            item, skip = run_stages(item, stages, fail_fast)
            entry = video_entry(item, skip, write)
            if skip or write is None or not entry["keys"]:
                log.record(entry)
            else:
                pending.append(entry)
            if write is not None:
                commit()
        if write is not None:
            write.flush()
        commit(force=True)
    finally:
        for stage in stages:
            getattr(stage, "close", lambda: None)()

    if processes.count > 1:
        processes.wait_all()  # every process has recorded its videos in finished parts
        if not processes.is_main:
            processes.wait_all()  # until the main process has finalized the dataset
            return None
        state = load_progress(BuildState(out), order=[source.video_id for source in sources])
        missing = [source.video_id for source in sources if source.video_id not in state]
        if missing:
            # Another process's folder is not where this one looks: OUT is a folder of each machine's own disk.
            first = worker_root(out, plan[missing[0]], processes.count)
            raise BuildError(f"{len(missing)} video(s) that other processes built are not recorded in {out}, e.g. "
                             f"{missing[0]!r} in {first}; expected OUT on a file system that every machine shares")
        subsets = finalize_processes(out, write, processes.count, shard_multiple) if write is not None else {}
    else:
        subsets = write.finalize(shard_multiple) if write is not None else {}
    stats, skipped, problems = summarize(state, source_problems)
    report = {"subsets": subsets, "stats": stats, "skipped": skipped, "problems": problems, "stages": config["stages"],
              "skipped_files": skipped_files(state, source_problems, sources, src)}
    if write is not None:
        from .card import write_dataset_card

        write_dataset_card(out, pretty_name=pretty_name or out.name, stats=subsets, skipped=skipped,
                           build={"stages": config["stages"], "statistics": stats}, license=license)
    atomic_write_bytes(state.dir / "report.json", json.dumps(report, indent=1, sort_keys=True).encode())
    state.mark_finalized()
    processes.wait_all()  # the others return once the dataset is complete
    return report


# --------------------------------------------------------------------------------------------------------------------
# Command line


def _settings_epilog() -> str:
    lines = ["stage settings (--set STAGE.FIELD=VALUE; `none` for an empty optional value):"]
    for name in STAGE_ORDER:
        cls = STAGES[name]
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        default = "" if name != "rewrite" else " [off by default; on with --llm-model]"
        lines.append(f"  {name}: {summary}{default}")
        for line in describe_settings(cls.Settings):
            lines.extend(textwrap.wrap(line, 112, initial_indent="      ", subsequent_indent="        "))
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m datasets_ophvl.build",
        description=__doc__,
        epilog=_settings_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src", metavar="SRC", help="folder with the source videos (searched recursively) and their sidecars")
    p.add_argument("out", metavar="OUT", help="output folder for shards and dataset card (created; resumed if unfinished)")
    p.add_argument("--stages", metavar="A,B,...", help=f"run only these stages, in pipeline order (default: "
                   f"{','.join(n for n in STAGE_ORDER if n != 'rewrite')}; all: {','.join(STAGE_ORDER)})")
    p.add_argument("--skip-stage", metavar="NAME", action="append", default=[],
                   help="do not run this stage (repeatable); a stage that another needs cannot be skipped alone")
    p.add_argument("--set", metavar="STAGE.FIELD=VALUE", action="append", default=[], dest="settings",
                   help="change a stage setting (repeatable; the list is below)")
    p.add_argument("--asr-model", metavar="ID", help="Whisper model id or folder for the asr stage "
                   "(default openai/whisper-large-v3; same as --set asr.model=ID)")
    p.add_argument("--llm-model", metavar="ID", help="text-generation model id or folder; enables the rewrite stage "
                   "(same as --set rewrite.model=ID plus running rewrite)")
    p.add_argument("--fill-mask-model", metavar="ID", help="fill-mask model id or folder that arbitrates uncertain "
                   "term corrections in the denoise stage (same as --set denoise.fill_mask_model=ID)")
    p.add_argument("--device", metavar="DEV", help="device for every model (cuda:0, cpu; default: the first GPU, else "
                   "cpu, and each process's own GPU under accelerate launch); a stage's own `device` setting wins")
    p.add_argument("--samples-per-part", type=int, metavar="N", help="samples per tar part while writing "
                   "(default 64; same as --set write.samples_per_part=N)")
    p.add_argument("--shard-multiple", type=int, default=1, metavar="N", help="make the shard count of each subset "
                   "a multiple of N, e.g. processes x DataLoader workers of your training (default 1)")
    p.add_argument("--name", metavar="TEXT", help="the dataset's name in its card (default: the name of OUT)")
    p.add_argument("--license", default="other", metavar="ID", help="licence id for the card (default: other)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished (or differently configured) build in "
                   "OUT; only what a build writes is removed (shards and parts in data/<subset>/, .ophvl-build/, a "
                   "README.md that is an OphVL dataset card; another README.md is refused)")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first error in a stage instead of skipping "
                   "and counting the video")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--json", action="store_true", help="print the report's statistics, skip counts, skipped files "
                   "and problems as JSON instead of the summary table")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log skipped videos, model loading and resume decisions at INFO level")
    return p


def options_from_args(args) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Stage names and `{stage: {field: text}}` from parsed arguments (shortcut flags feed the same settings)."""
    options: dict[str, dict[str, str]] = {}
    for text in args.settings:
        target, eq, value = text.partition("=")
        stage, dot, field = target.partition(".")
        if not (eq and dot and stage and field):
            raise BuildError(f"--set expects STAGE.FIELD=VALUE, got {text!r}")
        options.setdefault(stage, {})[field] = value
    enable = []
    shortcuts = [("asr", "model", args.asr_model), ("rewrite", "model", args.llm_model),
                 ("denoise", "fill_mask_model", args.fill_mask_model),
                 ("write", "samples_per_part", None if args.samples_per_part is None else str(args.samples_per_part))]
    for stage, field, value in shortcuts:
        if value is not None:
            options.setdefault(stage, {}).setdefault(field, value)
    if args.llm_model:
        enable.append("rewrite")
    stages = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    try:
        names = resolve_stage_names(stages, args.skip_stage, enable)
    except ValueError as error:
        raise BuildError(str(error)) from None
    if args.device:
        for stage in ("asr", "denoise", "rewrite"):
            if stage in names:
                options.setdefault(stage, {}).setdefault("device", args.device)
    # Shortcut flags for stages that do not run are ignored; explicit --set for them is an error.
    for stage, field, value in shortcuts:
        if stage not in names and value is not None and options.get(stage, {}).get(field) == value:
            del options[stage][field]
            if not options[stage]:
                del options[stage]
    return names, options


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    processes = Processes.from_environment()  # several under `accelerate launch` / `torchrun`
    stages = None
    try:
        names, options = options_from_args(args)
        try:
            stages = build_stages(names, options)
        except (KeyError, ValueError, TypeError, OSError) as error:
            raise BuildError(str(error).strip('"')) from None
        report = build(args.src, args.out, stages, overwrite=args.overwrite, shard_multiple=args.shard_multiple,
                       pretty_name=args.name, license=args.license, progress=not args.no_progress,
                       fail_fast=args.fail_fast, processes=processes)
    except (BuildError, StageSetupError) as error:
        # An error in the arguments, or one the processes agreed on, is the same everywhere: said once.
        if processes.is_main or not (stages is None or isinstance(error, SharedBuildError)):
            print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        processes.close()
    if report is None:
        return 0  # not the main process: the main one finalizes and prints the summary
    if args.json:
        keys = ("subsets", "stats", "skipped", "skipped_files", "problems")
        print(json.dumps({k: report[k] for k in keys if report[k] not in ([], {})}, indent=1))
    else:
        print(summary_table(report, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
