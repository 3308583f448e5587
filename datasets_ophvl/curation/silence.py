"""Stage `silent`: file videos with (almost) no narration under the `silent` subset.

OphCLIP uses silent surgical videos as a retrieval knowledge base; the paper does not say how a video counts as
silent. Here it is speech coverage: the share of the video's duration covered by the union of transcript intervals
(clipped to the video) that contain speech. Non-speech tags such as `[Music]` do not count: silent surgical videos
often carry a music track that Whisper transcribes as `[Music]` from start to end. A video is silent when its coverage
is below `min_speech_coverage` or its transcript has fewer than `min_words` words; it then gets no clips and no title
summary, only a low-resolution whole-video sample in `silent`.

A video whose own transcript could not be read is not judged: no text is then no evidence of silence. Unless the
`asr` stage transcribed it instead, it is skipped with the reason `UNREADABLE_TRANSCRIPT` (counted and named in the
build's summary) rather than filed as silent.
"""

from dataclasses import dataclass

from .base import BaseStage, Sentence, Skip, VideoItem, setting
from .text import strip_non_speech, words


UNREADABLE_TRANSCRIPT = "unreadable transcript (not filed as silent; fix it, or remove it to let asr transcribe)"


@dataclass
class SilentSettings:
    min_speech_coverage: float = setting(0.15, "videos with a smaller share of time covered by speech are silent")
    min_words: int = setting(10, "videos whose transcript has fewer words are silent")


def speech_coverage(sentences: list[Sentence], duration: float) -> float:
    """Share of `[0, duration]` covered by the union of the intervals of sentences that contain words."""
    if duration <= 0:
        return 0.0
    intervals = sorted(
        (max(0.0, s.start), min(duration, s.end)) for s in sentences if words(strip_non_speech(s.text))
    )
    covered, current_start, current_end = 0.0, None, None
    for start, end in intervals:
        if end <= start:
            continue
        if current_end is None or start > current_end:
            if current_end is not None:
                covered += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        covered += current_end - current_start
    return covered / duration


class SilentStage(BaseStage):
    """Mark videos whose transcript covers too little of them as silent."""

    name = "silent"
    requires = ("probe",)
    Settings = SilentSettings

    def __call__(self, item: VideoItem):
        if item.transcript_problem and item.transcript_source != "asr":
            return Skip(UNREADABLE_TRANSCRIPT)
        transcript = item.transcript
        item.speech_coverage = speech_coverage(transcript, item.duration)
        word_count = sum(len(words(strip_non_speech(s.text))) for s in transcript)
        item.silent = item.speech_coverage < self.settings.min_speech_coverage or word_count < self.settings.min_words
        return item
