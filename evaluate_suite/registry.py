"""The benchmark registry: what each evaluation dataset is, where its labels come from, and which prompts describe its
classes.

A benchmark is a `BenchmarkSpec` (task, classes, loader, prompt file, splits). Its loader reads the dataset's own
published annotation layout from a local copy (`root`) and returns one `VideoAnnotation` per video, with per-frame
labels at the video's native frame rate. Prompts live in `evaluate_suite/prompts/<file>.json`, keyed by class name:

```json
{"sentences": {"Incision": ["The surgeon makes the main incision with a keratome."], ...},
 "templates": ["a surgical video frame of the {} phase.", "{} during cataract surgery."]}
```

Each class gets its sentences plus every template filled with its name; the protocols embed all of them, average per
class and re-normalise. Adding a benchmark is one `register_benchmark(BenchmarkSpec(...))` call, plus a loader in
`loaders.py` when its layout is new.
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


IGNORE_INDEX = -1
TASKS = ("phase", "instruments")
PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"


@dataclass
class VideoAnnotation:
    """Labels of one video at its native frame rate.

    `phases[i]` is the class index of frame i (`IGNORE_INDEX` for unlabelled frames); `instruments[i, c]` is 1 when
    instrument c is visible in frame i, 0 when not, and NaN when unknown or ambiguous (excluded from scoring).
    """

    video_id: str
    path: Path
    fps: float
    num_frames: int
    phases: np.ndarray | None = None
    instruments: np.ndarray | None = None

    def __post_init__(self):
        for name in ("phases", "instruments"):
            labels = getattr(self, name)
            if labels is not None and len(labels) != self.num_frames:
                raise ValueError(
                    f"video {self.video_id}: {len(labels)} frames of {name} labels for {self.num_frames} frames"
                )


@dataclass
class LoadReport:
    """Videos a loader had to leave out, with the reason for each (they are listed in the results, never dropped
    silently)."""

    skipped: dict[str, str] = field(default_factory=dict)

    def skip(self, video_id: str, reason: str):
        self.skipped[str(video_id)] = reason


@dataclass(frozen=True)
class BenchmarkSpec:
    """One evaluation benchmark.

    Args:
        name: registry key, e.g. `"cataract-101"`.
        task: `"phase"` (one class per frame) or `"instruments"` (multi-label per frame).
        classes: class names in label-index order; every one must have prompts.
        loader: `(root, split, spec) -> (list[VideoAnnotation], LoadReport)`, reading the dataset's native layout.
        prompts: file name in `evaluate_suite/prompts/`.
        splits: the published split, `{split: [video ids]}`; `None` when the loader reads it from the data itself.
        description, homepage, citation: for cards and the leaderboard.
        loader_options: extra keyword arguments for the loader (e.g. which label column to read).
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

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"benchmark {self.name!r}: task must be one of {TASKS}, got {self.task!r}")
        if len(set(self.classes)) != len(self.classes) or not self.classes:
            raise ValueError(f"benchmark {self.name!r}: classes must be non-empty and unique")

    def load(self, root, split: str = "test") -> tuple[list[VideoAnnotation], LoadReport]:
        """Read the annotations of `split` from a local copy of the dataset at `root`."""
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"benchmark {self.name!r}: dataset folder {str(root)!r} does not exist")
        return self.loader(root, split, self, **self.loader_options)

    def split_ids(self, split: str) -> list[str] | None:
        if self.splits is None:
            return None
        if split not in self.splits:
            raise ValueError(f"benchmark {self.name!r} has splits {sorted(self.splits)}, not {split!r}")
        return [str(v) for v in self.splits[split]]

    def class_texts(self) -> dict[str, list[str]]:
        """Every prompt of every class, in class order (see the module docstring)."""
        return class_texts(self.classes, load_prompts(self.prompts), self.name)

    def prompts_hash(self) -> str:
        """A short hash of the exact prompt texts, recorded with each result."""
        texts = json.dumps(self.class_texts(), sort_keys=True, ensure_ascii=False).encode()
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


def class_texts(classes, prompts: dict, benchmark: str = "") -> dict[str, list[str]]:
    """The texts that describe each class: its own sentences, then each template filled with the class name."""
    sentences = prompts.get("sentences", {})
    templates = prompts.get("templates", [])
    texts = {}
    missing = []
    for name in classes:
        own = sentences.get(name, [])
        own = [own] if isinstance(own, str) else list(own)
        texts[name] = own + [template.format(name) for template in templates]
        if not texts[name]:
            missing.append(name)
    if missing:
        raise ValueError(f"benchmark {benchmark!r}: no prompt for class(es) {missing}; add sentences or templates")
    return texts


REGISTRY: dict[str, BenchmarkSpec] = {}


def register_benchmark(spec: BenchmarkSpec, overwrite: bool = False) -> BenchmarkSpec:
    if spec.name in REGISTRY and not overwrite:
        raise ValueError(f"a benchmark named {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
    return spec


def get_benchmark(name: str) -> BenchmarkSpec:
    from . import benchmarks  # noqa: F401  (registers the built-in benchmarks)

    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; registered: {sorted(REGISTRY)}") from None


def list_benchmarks() -> list[str]:
    from . import benchmarks  # noqa: F401

    return sorted(REGISTRY)
