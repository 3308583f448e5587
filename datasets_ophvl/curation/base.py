"""What every curation stage shares: the item that flows through the pipeline, `Skip`, and the `Stage` interface.

A build turns each source video into one `VideoItem` and passes it through the stages in order. A stage returns the
item (changed in place or not) to go on, or `Skip(reason)` to drop the whole video; reasons are counted and end up in
the dataset card. Smaller units that a stage drops (a sentence, a clip) are counted on the item with `item.drop`.

Each stage has a `Settings` dataclass whose fields are its options: the CLI sets them with `--set STAGE.FIELD=VALUE`,
`--help` lists them from the fields' `help` metadata, and the dataset card records them, so a build is described by
its stage names and settings alone.
"""

import dataclasses
import errno
import logging
import typing
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol, runtime_checkable


class StageSetupError(RuntimeError):
    """A stage cannot work at all (its model does not load, its files are missing): the build stops instead of
    skipping every video for the same reason."""


@dataclass(frozen=True)
class Skip:
    """Returned by a stage to drop the video; `reason` is a short, stable phrase (it is counted across videos)."""

    reason: str


@dataclass
class Sentence:
    """A timed piece of transcript. `id` numbers the sentences of a video before any is filtered out, so the
    `sentence_ids` of a clip point into the full transcript."""

    id: int
    start: float
    end: float
    text: str


@dataclass
class Clip:
    """A clip to cut from the video: consecutive kept sentences merged to a minimum length."""

    start: float
    end: float
    narration: str
    sentence_ids: list[int]


@dataclass
class ProbeInfo:
    """What probing learned about a media file. Times are in seconds from the start of the container."""

    duration: float
    width: int
    height: int
    fps: float
    has_audio: bool
    video_frames: int | None = None  # packets counted while probing (None when not counted)


@dataclass
class SampleRequest:
    """One sample to render and write: the source span, the output resolution and rate, and its json record."""

    subset: str
    key: str
    record: dict
    start: float
    end: float
    fps: float
    short_side: int


@dataclass
class VideoItem:
    """One source video on its way through the stages.

    Set at discovery: `path`, `video_id`, `key`, `title`, `segments` (the transcript as given, or None),
    `transcript_source` (the transcript format, or None) and `transcript_problem` (why the transcript given with the
    video could not be read, or None). Stages fill the rest.
    """

    path: Path
    video_id: str
    key: str
    title: str | None = None
    title_source: str | None = None
    segments: list[Sentence] | None = None
    transcript_source: str | None = None
    transcript_problem: str | None = None
    probe: ProbeInfo | None = None
    # Set by the `sentences` stage (and narrowed by the filters); until then the transcript segments stand in.
    sentences: list[Sentence] | None = None
    speech_coverage: float | None = None
    silent: bool = False
    clips: list[Clip] = field(default_factory=list)
    title_summary: dict | None = None
    summary_source: str | None = None
    requests: list[SampleRequest] = field(default_factory=list)
    # Set by the build: whether `(subset, key)` is already in the shards (a resumed build renders only what is missing).
    already_written: Callable[[str, str], bool] = lambda subset, key: False
    # `(SampleRequest, mp4 bytes)` pairs, produced lazily by the encode stage so that one decoding pass feeds the
    # writer without holding every clip of a long video in memory.
    samples: Any = None
    written: Counter = field(default_factory=Counter)
    counts: Counter = field(default_factory=Counter)  # dropped units by reason (go to the card's skip report)
    tallies: Counter = field(default_factory=Counter)  # other things stages did, e.g. corrections (go to the stats)
    # Files of this video that were ignored, each named with what was wrong ("<path>: <problem>"); they go to the
    # progress log and the build report beside the counted reasons.
    problems: list[str] = field(default_factory=list)
    stage: str = ""

    @property
    def transcript(self) -> list[Sentence]:
        """The timed text units the text stages work on: the sentences, or the raw segments when no stage has split
        them (the `sentences` stage was skipped)."""
        if self.sentences is not None:
            return self.sentences
        return self.segments or []

    @property
    def duration(self) -> float:
        return self.probe.duration if self.probe else 0.0

    def tally(self, what: str, count: int = 1) -> None:
        """Count something the current stage did that is not a drop (a correction, a rewrite)."""
        if count:
            self.tallies[f"{self.stage}: {what}" if self.stage else what] += count

    def drop(self, reason: str, count: int = 1) -> None:
        """Count `count` units (sentences, clips, ...) dropped by the current stage for `reason`."""
        if count:
            self.counts[f"{self.stage}: {reason}" if self.stage else reason] += count

    @property
    def display_title(self) -> str:
        """The title, or a readable form of the file name when the user gave none."""
        if self.title and self.title.strip():
            return self.title.strip()
        return " ".join(self.path.stem.replace("_", " ").replace("-", " ").split()) or self.video_id


@runtime_checkable
class Stage(Protocol):
    """A curation stage: `name`, `settings` (a dataclass) and `__call__(item) -> item | Skip`.

    `requires` names the stages whose output it reads; a build refuses a stage list that skips one of them.
    """

    name: str
    requires: tuple[str, ...]
    settings: Any

    def __call__(self, item: VideoItem) -> "VideoItem | Skip": ...


class BaseStage:
    """Convenience base: keeps `settings`, reports them as a dict, closes nothing by default."""

    name: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    Settings: ClassVar[type] = None

    def __init__(self, settings=None, **overrides):
        settings = settings if settings is not None else self.Settings()
        self.settings = dataclasses.replace(settings, **overrides) if overrides else settings
        # `{settings field: folder}`: where the build found a model named by that field (a local copy of a Hub id).
        self.model_folders: dict[str, str] = {}

    def models(self) -> list[tuple[str, str]]:
        """`(settings field, pipeline task)` of each model this stage would load (none when a callable was injected
        or no model is set): the build checks they are available before it processes any video."""
        return []

    def model_source(self, field: str) -> str:
        """Where to load the model of settings `field` from: the folder the build found, else the setting."""
        return self.model_folders.get(field) or getattr(self.settings, field)

    def config(self) -> dict:
        """The settings as plain JSON values (for the dataset card and the resume check)."""
        return dataclasses.asdict(self.settings)

    def close(self) -> None:
        """Release what the stage holds (models, files); the build calls it at the end."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings})"


def describe_os_error(error: OSError) -> str:
    """What went wrong reading a file, in a few words: `permission denied` for EACCES/EPERM (so that a file the user
    cannot read is not reported as a bad file), else the system's message."""
    if isinstance(error, PermissionError) or getattr(error, "errno", None) in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return (error.strerror or str(error) or type(error).__name__).lower()


def model_device(device: str | None) -> str:
    """`device`, or the first GPU when there is one, else the CPU."""
    if device:
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def torch_dtype(name: str, device: str, gpu_default: str):
    """The torch dtype called `name`; `auto` is `gpu_default` on an accelerator and float32 on the CPU."""
    import torch

    if name == "auto":
        name = "float32" if str(device).startswith("cpu") else gpu_default
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}; use auto, float32, float16 or bfloat16")
    return dtype


def load_pipeline(task: str, model: str, device: str | None, dtype: str | None = None, gpu_default: str = "float16",
                  hint: str = ""):
    """A transformers `pipeline(task, model)` on `device` (default: the first GPU, else the CPU), loaded when a stage
    first needs it; any failure becomes a one-line `StageSetupError` naming the model (and `hint`, what to do),
    which stops the build."""
    try:
        from transformers import pipeline

        device = model_device(device)
        kwargs = {} if dtype is None else {"dtype": torch_dtype(dtype, device, gpu_default)}
        logging.getLogger(__name__).info("loading %s model %s on %s", task, model, device)
        return pipeline(task, model=model, device=device, **kwargs)
    except Exception as error:  # noqa: BLE001 - any failure here stops the build with a clear message
        detail = " ".join(str(error).split())[:300] or type(error).__name__
        raise StageSetupError(f"cannot load the {task} model {model!r}: {detail}" + (f"; {hint}" if hint else "")) \
            from error


def setting(default, help: str):
    """A settings field with its `--help` text."""
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def parse_setting(settings_cls: type, name: str, text: str):
    """Convert the CLI string `text` to the type of field `name` of `settings_cls` (bool, int, float, str, None)."""
    fields = {f.name: f for f in dataclasses.fields(settings_cls)}
    if name not in fields:
        raise KeyError(f"unknown setting {name!r}; known: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(settings_cls)
    kind = hints[name]
    options = typing.get_args(kind) or (kind,)
    if text.lower() in ("none", "null") and type(None) in options:
        return None
    for option in options:
        if option is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{name} expects true or false, got {text!r}")
        if option in (int, float):
            try:
                return option(text)
            except ValueError:
                continue
        if option is str:
            return text
    raise ValueError(f"cannot read {text!r} as {kind} for setting {name!r}")


def describe_settings(settings_cls: type) -> list[str]:
    """`name=default  help` lines for `--help`."""
    lines = []
    for f in dataclasses.fields(settings_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        lines.append(f"{f.name}={default!r}: {f.metadata.get('help', '')}")
    return lines
