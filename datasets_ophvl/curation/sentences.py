"""Stage `sentences`: re-cut transcript segments (caption cues, Whisper chunks) into timed sentences.

Caption cues and ASR chunks cut speech where the captioner or the 30 s window did, not where sentences end; the paper
trims ASR output into complete sentences before pairing text with clips. Non-speech tags (`[Music]`, `♪`) are removed
first (a segment of nothing else is dropped and counted: it must not stretch a sentence over the music). Then the
segments are joined into one word
stream in which each word gets a time span by its character position within its segment (speech rate is assumed
even inside a segment), and the stream is cut:

- after a word ending in `.`, `!` or `?` (closing quotes and brackets allowed) that is not a known abbreviation;
- at a segment border followed by a pause of at least `pause_seconds`;
- at a segment border once the sentence has reached `max_seconds` (captions without punctuation would otherwise
  become one endless sentence).

Sentence ids number the sentences of the video in time order; clips list the ids they cover.
"""

import re
from dataclasses import dataclass

from .base import BaseStage, Sentence, VideoItem, setting
from .text import strip_non_speech, words


ABBREVIATIONS = frozenset({
    "e.g.", "i.e.", "etc.", "vs.", "approx.", "dr.", "mr.", "mrs.", "ms.", "prof.", "no.", "nos.", "fig.", "cf.",
    "st.", "inc.", "ltd.", "resp.", "incl.", "min.", "max.", "ca.",
})
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*$")


@dataclass
class SentenceSettings:
    pause_seconds: float = setting(1.5, "a pause this long between segments ends a sentence")
    max_seconds: float = setting(15.0, "a sentence this long ends at the next segment border")


def _timed_words(segments: list[Sentence]):
    """Yield `(word, start, end, last_in_segment, pause_after)` over all segments in time order."""
    ordered = sorted(segments, key=lambda s: (s.start, s.end))
    for index, segment in enumerate(ordered):
        text = segment.text
        start, end = segment.start, max(segment.end, segment.start)
        matches = list(re.finditer(r"\S+", text))
        following = ordered[index + 1].start if index + 1 < len(ordered) else None
        pause = (following - end) if following is not None else float("inf")
        for i, match in enumerate(matches):
            word_start = start + (end - start) * match.start() / len(text)
            word_end = start + (end - start) * match.end() / len(text)
            last = i == len(matches) - 1
            yield match.group(), word_start, word_end, last, pause if last else 0.0


def split_sentences(segments: list[Sentence], pause_seconds: float = 1.5, max_seconds: float = 15.0) -> list[Sentence]:
    """Cut timed segments into timed sentences (see the module docstring for the rules)."""
    sentences: list[Sentence] = []
    words: list[tuple[str, float, float]] = []

    def close():
        if words:
            sentences.append(Sentence(len(sentences), words[0][1], words[-1][2], " ".join(w for w, _, _ in words)))
            words.clear()

    for word, start, end, last_in_segment, pause in _timed_words(segments):
        words.append((word, start, end))
        if _SENTENCE_END.search(word) and word.lower() not in ABBREVIATIONS:
            close()
        elif last_in_segment and (pause >= pause_seconds or words[-1][2] - words[0][1] >= max_seconds):
            close()
    close()
    return sentences


class SentenceStage(BaseStage):
    """Split the transcript into timed sentences."""

    name = "sentences"
    Settings = SentenceSettings

    def __call__(self, item: VideoItem):
        speech = []
        for segment in item.segments or []:
            text = strip_non_speech(segment.text)
            if words(text):
                speech.append(Sentence(segment.id, segment.start, segment.end, text))
            else:
                item.drop("segment dropped: non-speech tag only")
        item.sentences = split_sentences(speech, self.settings.pause_seconds, self.settings.max_seconds)
        return item
