"""The OphVL curation pipeline: small, replaceable stages that turn source videos into OphVL samples.

Stages run in this order (`STAGE_ORDER`); each is a class with a `Settings` dataclass (see `base.py`):

| stage | does |
|---|---|
| `probe` | opens the file with PyAV; refuses unreadable, audio-only, zero-frame, truncated, too short/long/small files |
| `asr` | transcribes videos without a transcript (Whisper large-v3 through `transformers.pipeline`, loaded lazily) |
| `sentences` | re-cuts caption cues / ASR chunks into timed sentences |
| `silent` | marks videos with little speech coverage as silent |
| `narrative` | drops sentences that are not procedural narration (chatter, fillers, ASR loops) |
| `denoise` | corrects ASR misspellings of lexicon terms (optional fill-mask model for uncertain cases) |
| `segment` | merges sentences into clips of a minimum length, within the video's bounds |
| `rewrite` | (off by default) LLM narration clean-up and title summaries, prompts in files |
| `summary` | keeps the LLM title summary or builds one by rules from the title and lexicon terms |
| `encode` | renders clips / whole videos at training resolution and rate from one PyAV pass |
| `write` | stores samples in resumable, atomic tar shards |

`build_stages` makes them from names and `STAGE.FIELD=VALUE` options; `datasets_ophvl.build` runs them.
Before a build processes any video, `models.locate_model` finds each model a stage will load (`stage.models()`),
locally or in the Hugging Face cache, and tells the stage where it is (`stage.model_folders`).
"""

import dataclasses

from .asr import AsrStage
from .base import (
    BaseStage, Clip, ProbeInfo, SampleRequest, Sentence, Skip, Stage, StageSetupError, VideoItem, describe_settings,
    parse_setting,
)
from .denoise import DenoiseStage
from .encode import EncodeStage
from .lexicon import Lexicon, load_lexicon
from .narrative import NarrativeStage
from .probe import ProbeStage
from .rewrite import RewriteStage
from .segment import SegmentStage
from .sentences import SentenceStage
from .silence import SilentStage
from .summary import SummaryStage
from .write import WriteStage


STAGES: dict[str, type] = {
    stage.name: stage
    for stage in (ProbeStage, AsrStage, SentenceStage, SilentStage, NarrativeStage, DenoiseStage, SegmentStage,
                  RewriteStage, SummaryStage, EncodeStage, WriteStage)
}
STAGE_ORDER = tuple(STAGES)
# The LLM stage needs a model the user chooses; everything else runs by default.
DEFAULT_STAGES = tuple(name for name in STAGE_ORDER if name != "rewrite")


def resolve_stage_names(stages=None, skip=(), enable=()) -> list[str]:
    """The stages to run, in pipeline order: `stages` (or the defaults) plus `enable`, minus `skip`.

    Raises ValueError for unknown names and for a selection that drops a stage another one needs."""
    chosen = list(stages) if stages is not None else list(DEFAULT_STAGES)
    for name in [*chosen, *skip, *enable]:
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; stages are: {', '.join(STAGE_ORDER)}")
    chosen = [name for name in STAGE_ORDER if (name in chosen or name in enable) and name not in skip]
    for name in chosen:
        missing = [need for need in STAGES[name].requires if need not in chosen]
        if missing:
            needs = ", ".join(repr(m) for m in missing)
            raise ValueError(f"stage {name!r} needs {needs}; do not skip it, or skip {name!r} too")
    return chosen


def build_stages(names, options: dict[str, dict[str, str]] | None = None, **injected) -> list:
    """Instantiate `names` with `options` (`{stage: {field: text value}}`, converted to the fields' types).

    `injected` passes callables to stages by keyword, e.g. `asr={"transcribe": fn}` (used by tests and by Python
    callers that hold a model already)."""
    options = options or {}
    unknown = set(options) - set(names)
    if unknown:
        raise ValueError(f"settings given for stages that do not run: {', '.join(sorted(unknown))}")
    stages = []
    for name in names:
        cls = STAGES[name]
        values = {field: parse_setting(cls.Settings, field, text) if isinstance(text, str) else text
                  for field, text in options.get(name, {}).items()}
        stages.append(cls(cls.Settings(**values), **injected.get(name, {})))
    return stages


def stage_config(stages) -> dict:
    """`{stage name: settings dict}` in pipeline order: the build's description in its card and resume check."""
    return {stage.name: (stage.config() if hasattr(stage, "config") else dataclasses.asdict(stage.settings))
            for stage in stages}


__all__ = [
    "AsrStage", "BaseStage", "Clip", "DEFAULT_STAGES", "DenoiseStage", "EncodeStage", "Lexicon", "NarrativeStage",
    "ProbeInfo", "ProbeStage", "RewriteStage", "STAGES", "STAGE_ORDER", "SampleRequest", "SegmentStage", "Sentence",
    "SentenceStage", "SilentStage", "Skip", "Stage", "StageSetupError", "SummaryStage", "VideoItem", "WriteStage",
    "build_stages", "describe_settings", "load_lexicon", "parse_setting", "resolve_stage_names", "stage_config",
]
