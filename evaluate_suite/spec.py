"""What a benchmark is: `BenchmarkSpec`, the per-video labels a loader returns (`VideoAnnotation`), the loader's report
(`LoadReport`), the split vocabulary and the prompt files.

This module imports nothing of the package: `loaders.py` and `benchmarks.py` build on it, and `registry.py` (the
name -> spec table) imports those. The import graph is one-way: registry -> benchmarks -> loaders -> spec.

Splits. Every benchmark speaks one vocabulary, `SPLITS = ("train", "validation", "test")`; a dataset whose files
spell a split differently (OphNet's CSV says `val`) maps it in `split_names` (`{"validation": "val"}`), and its own
spelling is accepted too. `BenchmarkSpec.load(root, split)` hands the loader the canonical name; loaders compare it
with their data through `spec.dataset_split(split)`.

Prompts live in `evaluate_suite/prompts/<file>.json`, keyed by class name:

```json
{"sentences": {"Incision": ["The surgeon makes the main incision with a keratome."], ...},
 "templates": ["a surgical video frame of the {} phase.", "{} during cataract surgery."]}
```

Two prompt modes (`PROMPT_MODES`):

- `"sentence"`: one sentence per class, the class's first own sentence (the first template filled with the class name
  when the file has no sentence for it). This is how SurgVLP, HecVL and PeskaVLP build their class embeddings, so
  numbers in this mode are comparable with theirs; it is the default of the real benchmarks.
- `"ensemble"`: every sentence of the class plus every template filled with its name; the protocols embed all of them,
  average per class and re-normalise (open_clip's template ensembling). The default of the synthetic OphVL-mini
  benchmarks.

The mode used is recorded with every zero-shot result (`extra["prompt_mode"]`, and the prompts hash covers the exact
texts).
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np


IGNORE_INDEX = -1
TASKS = ("phase", "instruments")
SPLITS = ("train", "validation", "test")
PROMPT_MODES = ("sentence", "ensemble")
PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"


@dataclass
class VideoAnnotation:
    """Labels of one video at its native frame rate.

    `phases[i]` is the class index of frame i (`IGNORE_INDEX` for unlabelled frames); `instruments[i, c]` is 1 when
    instrument c is visible in frame i, 0 when not, and NaN when unknown or ambiguous (excluded from scoring).
    `frame_files`: for a dataset published as still images rather than a video (Cataract-1K's segmentation frames),
    the image of each frame, in order; `path` is then their folder and `fps` the nominal extraction rate.
    """

    video_id: str
    path: Path
    fps: float
    num_frames: int
    phases: np.ndarray | None = None
    instruments: np.ndarray | None = None
    frame_files: tuple | None = None

    def __post_init__(self):
        if self.frame_files is not None and len(self.frame_files) != self.num_frames:
            raise ValueError(f"video {self.video_id}: {len(self.frame_files)} frame images for {self.num_frames} "
                             f"frames")
        for name in ("phases", "instruments"):
            labels = getattr(self, name)
            if labels is not None and len(labels) != self.num_frames:
                raise ValueError(
                    f"video {self.video_id}: {len(labels)} frames of {name} labels for {self.num_frames} frames"
                )

    @property
    def labels(self) -> np.ndarray:
        labels = self.phases if self.phases is not None else self.instruments
        if labels is None:
            raise ValueError(f"video {self.video_id} has neither phase nor instrument labels")
        return labels

    def labelled_frames(self) -> np.ndarray:
        """Indices of the frames that carry a label (a phase, or at least one known instrument label)."""
        labels = self.labels
        if labels.ndim == 1:
            return np.flatnonzero(labels != IGNORE_INDEX)
        return np.flatnonzero(~np.isnan(labels).all(axis=1))


@dataclass
class LoadReport:
    """What a loader has to say about single videos: the ones it left out, with the reason for each (`skipped`; they
    are listed in the results, never dropped silently), and remarks on videos it kept (`notes`, e.g. annotation
    columns that disagree and how they were reconciled)."""

    skipped: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def skip(self, video_id: str, reason: str):
        self.skipped[str(video_id)] = reason

    def note(self, video_id: str, remark: str):
        self.notes[str(video_id)] = remark


@dataclass(frozen=True)
class BenchmarkSpec:
    """One evaluation benchmark.

    Args:
        name: registry key, e.g. `"cataract-101-phase"`.
        task: `"phase"` (one class per frame) or `"instruments"` (multi-label per frame).
        classes: class names in label-index order; every one must have prompts.
        loader: `(root, split, spec) -> (list[VideoAnnotation], LoadReport)`, reading the dataset's native layout.
        prompts: file name in `evaluate_suite/prompts/`.
        splits: the published split, `{split: [video ids]}` keyed by canonical split names; `None` when the loader
            reads it from the data itself (or the dataset has none: every split then loads every video).
        description, homepage, citation: for cards and the leaderboard.
        loader_options: extra keyword arguments for the loader (e.g. which label column to read).
        split_names: canonical split -> the dataset's own name where they differ (`{"validation": "val"}`).
        extra_splits: split names beyond `SPLITS` that the benchmark understands (Cataract-21's `"all"`).
        label_names: the dataset's label table in id order, when it holds labels that are not classes (`unlabelled`);
            empty when the labels are exactly `classes`.
        unlabelled: labels of the dataset read as "no label" (neither prompted nor scored), e.g. OphNet's "Step
            Interval"; `with_unlabelled` makes a variant with another choice.
        prompt_mode: the default prompt mode of the zero-shot protocols (`PROMPT_MODES`): `"ensemble"` unless set (as
            before prompt modes existed); every registered real benchmark sets `"sentence"`.
        sparse_labels: the labels are sparse frames (CaDIS: one labelled frame in ten); the protocols then score
            exactly the labelled frames instead of sampling at 1 fps.
        folder: the benchmark's sub-folder under a data root holding several datasets (`python -m evaluate_suite
            table --root`); several benchmarks of one dataset share it.
        scoring: what is scored and what is left out, in words (the benchmark card's "Scored" section).
        real: a real, published dataset (False for synthetic benchmarks).
    """

    name: str
    task: str
    classes: tuple[str, ...]
    loader: Callable
    prompts: str
    splits: dict | None = None
    description: str = ""
    homepage: str = ""
    citation: str = ""
    loader_options: dict = field(default_factory=dict)
    split_names: dict = field(default_factory=dict)
    extra_splits: tuple[str, ...] = ()
    label_names: tuple[str, ...] = ()
    unlabelled: tuple[str, ...] = ()
    prompt_mode: str = "ensemble"
    sparse_labels: bool = False
    folder: str = ""
    scoring: str = ""
    real: bool = True

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"benchmark {self.name!r}: task must be one of {TASKS}, got {self.task!r}")
        if len(set(self.classes)) != len(self.classes) or not self.classes:
            raise ValueError(f"benchmark {self.name!r}: classes must be non-empty and unique")
        if self.prompt_mode not in PROMPT_MODES:
            raise ValueError(f"benchmark {self.name!r}: prompt_mode must be one of {PROMPT_MODES}, "
                             f"got {self.prompt_mode!r}")
        if self.label_names:
            unknown = [n for n in self.unlabelled if n not in self.label_names]
            expected = tuple(n for n in self.label_names if n not in self.unlabelled)
            if unknown or self.classes != expected:
                raise ValueError(f"benchmark {self.name!r}: classes must be label_names without unlabelled "
                                 f"(unknown unlabelled {unknown})")
        elif set(self.unlabelled) & set(self.classes):
            raise ValueError(f"benchmark {self.name!r}: {sorted(set(self.unlabelled) & set(self.classes))} are both "
                             f"classes and unlabelled")
        bad = [k for k in self.split_names if k not in SPLITS + tuple(self.extra_splits)]
        if bad:
            raise ValueError(f"benchmark {self.name!r}: split_names keys must be split names {SPLITS}, got {bad}")

    # -- splits -------------------------------------------------------------------------------------------------------

    def accepted_splits(self) -> list[str]:
        """Every split name `load` accepts: the canonical ones, the extra ones and the dataset's own spellings."""
        names = list(SPLITS) + list(self.extra_splits)
        return names + [own for own in self.split_names.values() if own not in names]

    def canonical_split(self, split: str) -> str:
        """`split` in the registry's vocabulary: a canonical name stays, the dataset's own name is mapped back
        (`"val"` -> `"validation"` for OphNet); anything else is a `ValueError` naming the accepted ones."""
        split = str(split)
        if split in SPLITS or split in self.extra_splits:
            return split
        for canonical, own in self.split_names.items():
            if split == own:
                return canonical
        raise ValueError(f"benchmark {self.name!r} has splits {self.accepted_splits()}, not {split!r}")

    def dataset_split(self, split: str) -> str:
        """The dataset's own name of a (canonical or own) split: `"validation"` -> `"val"` for OphNet."""
        canonical = self.canonical_split(split)
        return self.split_names.get(canonical, canonical)

    def load(self, root, split: str = "test") -> tuple[list[VideoAnnotation], LoadReport]:
        """Read the annotations of `split` (a canonical name or the dataset's own) from a local copy at `root`."""
        root = Path(root)
        split = self.canonical_split(split)
        if not root.is_dir():
            raise FileNotFoundError(f"benchmark {self.name!r}: dataset folder {str(root)!r} does not exist")
        return self.loader(root, split, self, **self.loader_options)

    def split_ids(self, split: str) -> list[str] | None:
        if self.splits is None:
            return None
        split = self.canonical_split(split)
        if split not in self.splits:
            raise ValueError(f"benchmark {self.name!r} has splits {sorted(self.splits)}, not {split!r}")
        return [str(v) for v in self.splits[split]]

    # -- labels -------------------------------------------------------------------------------------------------------

    def all_labels(self) -> tuple[str, ...]:
        """Every label the dataset's files may hold: `label_names`, or the classes followed by the unlabelled ones."""
        return self.label_names or (*self.classes, *self.unlabelled)

    def with_unlabelled(self, names=(), name: str | None = None) -> "BenchmarkSpec":
        """A variant of this benchmark where exactly `names` are read as unlabelled and every other label is a class
        (`names=()`: score every label). It is named `name`, by default `<name>-all-labels` for `()` and
        `<name>-custom-labels` otherwise, so its results never mix with the registered benchmark's."""
        names = tuple(names)
        labels = self.all_labels()
        unknown = [n for n in names if n not in labels]
        if unknown:
            raise ValueError(f"benchmark {self.name!r}: {unknown} are not labels of the dataset; "
                             f"labels: {list(labels)}")
        if set(names) == set(self.unlabelled):
            return self
        classes = tuple(n for n in labels if n not in names)
        default = f"{self.name}-all-labels" if not names else f"{self.name}-custom-labels"
        return replace(self, name=name or default, classes=classes, unlabelled=names,
                       label_names=labels if names else self.label_names and labels)

    # -- prompts ------------------------------------------------------------------------------------------------------

    def class_texts(self, mode: str | None = None) -> dict[str, list[str]]:
        """The prompts of every class, in class order, in prompt `mode` (default: the benchmark's `prompt_mode`; see
        the module docstring)."""
        return class_texts(self.classes, load_prompts(self.prompts), self.name, mode or self.prompt_mode)

    def prompts_hash(self, mode: str | None = None) -> str:
        """A short hash of the exact prompt texts (of `mode`), recorded with each result."""
        texts = json.dumps(self.class_texts(mode), sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(texts).hexdigest()[:12]


def load_prompts(file_name: str) -> dict:
    path = Path(file_name) if Path(file_name).is_absolute() else PROMPTS_DIR / file_name
    try:
        prompts = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"prompt file {str(path)!r} does not exist") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"prompt file {str(path)!r} is not valid JSON: line {error.lineno}: {error.msg}") from None
    if not isinstance(prompts, dict) or not set(prompts) <= {"sentences", "templates", "description"}:
        raise ValueError(f"prompt file {str(path)!r} must be an object with 'sentences' and/or 'templates'")
    return prompts


def class_texts(classes, prompts: dict, benchmark: str = "", mode: str = "ensemble") -> dict[str, list[str]]:
    """The texts that describe each class. `mode="ensemble"`: its own sentences, then each template filled with the
    class name. `mode="sentence"`: one text, its first own sentence (or the first filled template when it has none)."""
    if mode not in PROMPT_MODES:
        raise ValueError(f"prompt mode must be one of {PROMPT_MODES}, got {mode!r}")
    sentences = prompts.get("sentences", {})
    templates = prompts.get("templates", [])
    texts = {}
    missing = []
    for name in classes:
        own = sentences.get(name, [])
        own = [own] if isinstance(own, str) else list(own)
        texts[name] = own + [template.format(name) for template in templates]
        if mode == "sentence":
            texts[name] = texts[name][:1]
        if not texts[name]:
            missing.append(name)
    if missing:
        raise ValueError(f"benchmark {benchmark!r}: no prompt for class(es) {missing}; add sentences or templates")
    return texts


__all__ = [
    "IGNORE_INDEX",
    "PROMPTS_DIR",
    "PROMPT_MODES",
    "SPLITS",
    "TASKS",
    "BenchmarkSpec",
    "LoadReport",
    "VideoAnnotation",
    "class_texts",
    "load_prompts",
]
