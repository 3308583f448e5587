"""Stage `segment`: turn the kept sentences of a narrated video into clips of at least `min_seconds`.

The paper pairs clips with ASR sentences after "sentence trimming"; its segmentation rule is not published. Here:

1. Times are checked against the video: a sentence with non-finite or reversed times, or lying entirely outside
   `[0, duration]`, is dropped (counted); one that sticks out of the video is clamped to it (`out_of_bounds=clamp`,
   counted as a tally) or dropped (`out_of_bounds=skip`, counted).
2. Sentences are taken in time order and merged into the current clip until it lasts `min_seconds`; then the clip is
   closed. Clips are only ever cut at sentence borders, so narration and video stay aligned.
3. A clip is also closed before a sentence that comes after a pause longer than `max_gap_seconds` or that would make it
   longer than `max_seconds`. Such a clip, when still too short, joins the previous clip if that one ends right
   before it and the two fit in `max_seconds`; otherwise it is dropped (counted). A single sentence longer than
   `max_seconds` becomes a clip on its own.

Silent videos get no clips.
"""

import math
from dataclasses import dataclass

from ..format import MAX_TEXT_CHARS
from .base import BaseStage, Clip, Sentence, VideoItem, setting


@dataclass
class SegmentSettings:
    min_seconds: float = setting(4.0, "shortest clip; shorter sentences are merged with the following ones")
    max_seconds: float = setting(20.0, "longest clip made by merging (a single longer sentence stays one clip)")
    max_gap_seconds: float = setting(3.0, "a pause longer than this between sentences starts a new clip")
    out_of_bounds: str = setting("clamp", "sentences sticking out of the video: clamp (to the video) or skip")

    def __post_init__(self):
        if self.out_of_bounds not in ("clamp", "skip"):
            raise ValueError(f"segment.out_of_bounds must be 'clamp' or 'skip', got {self.out_of_bounds!r}")
        if not 0 <= self.min_seconds <= self.max_seconds:
            raise ValueError("segment.min_seconds must be between 0 and segment.max_seconds")


def fit_to_video(sentences: list[Sentence], duration: float, mode: str = "clamp", item: VideoItem | None = None):
    """The sentences that can be placed in `[0, duration]` (see step 1 of the module docstring)."""
    if mode not in ("clamp", "skip"):
        raise ValueError(f"out_of_bounds must be 'clamp' or 'skip', got {mode!r}")
    count = item.drop if item is not None else (lambda reason, n=1: None)
    tally = item.tally if item is not None else (lambda what, n=1: None)
    placed = []
    for s in sorted(sentences, key=lambda s: (s.start, s.end)):
        if not (math.isfinite(s.start) and math.isfinite(s.end)) or s.end < s.start:
            count("sentence dropped: invalid timestamps")
        elif s.start >= duration or s.end <= 0:
            count("sentence dropped: timestamps outside the video")
        elif s.start < 0 or s.end > duration:
            if mode == "skip":
                count("sentence dropped: timestamps partly outside the video")
            else:
                tally("sentences clamped to the video")
                placed.append(Sentence(s.id, max(0.0, s.start), min(duration, s.end), s.text))
        else:
            placed.append(s)
    return placed


def merge_sentences(sentences: list[Sentence], min_seconds: float, max_seconds: float, max_gap_seconds: float,
                    item: VideoItem | None = None) -> list[Clip]:
    """Merge time-ordered, in-bounds sentences into clips (steps 2 and 3 of the module docstring)."""
    count = item.drop if item is not None else (lambda reason, n=1: None)
    clips: list[list[Sentence]] = []
    current: list[Sentence] = []

    def span(group):
        return group[-1].end - group[0].start

    def close_short():
        """Place a clip that was cut before reaching `min_seconds`."""
        if clips and current[0].start - clips[-1][-1].end <= max_gap_seconds \
                and current[-1].end - clips[-1][0].start <= max_seconds:
            clips[-1].extend(current)
        else:
            count("clip dropped: shorter than segment.min_seconds", 1)

    for sentence in sentences:
        after_pause = current and sentence.start - current[-1].end > max_gap_seconds
        if current and (after_pause or sentence.end - current[0].start > max_seconds):
            close_short()  # current is short, otherwise it would have been closed already
            current = []
        current.append(sentence)
        if span(current) >= min_seconds:
            clips.append(current)
            current = []
    if current:
        close_short()
    result = []
    for group in clips:
        narration = " ".join(s.text for s in group)
        if span(group) <= 0:
            count("clip dropped: zero length")
        elif len(narration) > MAX_TEXT_CHARS:
            count("clip dropped: narration too long")
        else:
            result.append(Clip(group[0].start, group[-1].end, narration, [s.id for s in group]))
    return result


class SegmentStage(BaseStage):
    """Cut narrated videos into sentence-aligned clips."""

    name = "segment"
    requires = ("probe",)
    Settings = SegmentSettings

    def __call__(self, item: VideoItem):
        if item.silent:
            item.clips = []
            return item
        s = self.settings
        placed = fit_to_video(item.transcript, item.duration, s.out_of_bounds, item)
        item.clips = merge_sentences(placed, s.min_seconds, s.max_seconds, s.max_gap_seconds, item)
        return item
