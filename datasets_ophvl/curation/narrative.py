"""Stage `narrative`: keep sentences that narrate the procedure, drop the rest.

Surgical videos mix procedural narration with talk that would teach a video–text model nothing (or the wrong
thing). A sentence is dropped, with the reason counted, when (rules are checked in this order):

1. it is only a non-speech tag: `[Music]`, `(applause)`, `♪ ♪`, as Whisper and caption files write them;
2. it is a greeting, sign-off or channel chatter ("hello everyone", "welcome to", "please subscribe", "like and
   share", "thanks for watching", "sponsored by", "link in the description", social media) and, once the matched
   phrases are removed, fewer than `min_content_words_after_chatter` content words remain. "Hello everyone, today we
   perform a phaco on a dense brunescent cataract" is kept: its chatter is a preamble to narration;
3. it has fewer than `min_words` words;
4. it has fewer than `min_content_words` content words (words other than function words and fillers such as
   "okay", "um", "so", "alright");
5. it repeats itself, as Whisper does when it loops: at least 6 words of which a share below
   `min_unique_ratio` are distinct;
6. it repeats the previous kept sentence word for word (duplicated captions, ASR loops across windows).

The stage narrows `item.sentences`; ids are untouched so clips still point at positions in the full transcript.
"""

import re
from dataclasses import dataclass

from .base import BaseStage, Sentence, VideoItem, setting
from .text import content_words, strip_non_speech, words


CHATTER = re.compile(
    r"|".join([
        r"\b(hello|hi|hey|greetings)\b(\s+(there|everyone|everybody|guys|all|friends|folks|doctors|colleagues))?",
        r"\bgood\s+(morning|afternoon|evening)\b(\s+(everyone|everybody|all))?",
        r"\bwelcome\s+(back\s+)?to\s+(my|our|the|this)(\s+\w+)?(\s+channel)?\b",
        r"\bwelcome\s+back\b",
        r"\b(please\s+)?subscribe\b(\s+to)?(\s+(my|our|the|this))?(\s+channel)?",
        r"\blike\s*(,|and|&)\s*(share|subscribe)\b",
        r"\bshare\s+(this|the)\s+video\b",
        r"\b(hit|click|tap|press|smash)\s+(the|that)\s+(like|bell|subscribe|notification)(\s+(button|icon))?\b",
        r"\bnotification\s+bell\b",
        r"\b(thanks?|thank\s+you)(\s+(so|very))?(\s+much)?\s+for\s+(watching|listening|your\s+attention|viewing)\b",
        r"\bsee\s+you\s+(all\s+)?(in\s+the\s+)?next\s+(video|time|one|week)\b",
        r"\b(don'?t|do\s+not)\s+forget\s+to\b",
        r"\b(this\s+video\s+is\s+)?sponsored\s+by\b",
        r"\b(link|links)\s+(is\s+|are\s+)?in\s+the\s+description(\s+below)?\b",
        r"\b(leave|drop|write)\s+(a|your)\s+comments?\b(\s+below)?",
        r"\bcomment\s+below\b",
        r"\bfollow\s+(us|me)\s+on\b",
        r"\b(patreon|instagram|facebook|twitter|tiktok|youtube)\b(\s+(channel|page|account))?",
        r"\bwww\.\S+|\b\S+\.(com|org|net)\b",
        r"\bmy\s+name\s+is\b",
        r"\bbye(\s+bye)?\b|\bgoodbye\b",
    ]),
    re.IGNORECASE,
)


@dataclass
class NarrativeSettings:
    min_words: int = setting(3, "sentences with fewer words are dropped")
    min_content_words: int = setting(2, "sentences with fewer content words (not function words or fillers) are dropped")
    min_content_words_after_chatter: int = setting(
        3, "a sentence with greeting/channel chatter is kept only if this many content words remain without it"
    )
    min_unique_ratio: float = setting(0.4, "sentences of 6+ words with a smaller share of distinct words are ASR loops")
    drop_duplicates: bool = setting(True, "drop a sentence that repeats the previous kept one")


def narrative_problem(text: str, settings: NarrativeSettings, previous: str | None = None) -> str | None:
    """Why `text` is not procedural narration (a counted reason), or None to keep it."""
    speech = strip_non_speech(text)
    if not words(speech):
        return "non-speech tag only"
    if CHATTER.search(speech):
        remainder = CHATTER.sub(" ", speech)
        if len(content_words(remainder)) < settings.min_content_words_after_chatter:
            return "greeting, sign-off or channel chatter"
    tokens = [w.lower() for w in words(speech)]
    if len(tokens) < settings.min_words:
        return "fewer than narrative.min_words words"
    if len(content_words(speech)) < settings.min_content_words:
        return "fewer than narrative.min_content_words content words"
    if len(tokens) >= 6 and len(set(tokens)) / len(tokens) < settings.min_unique_ratio:
        return "repetitive (ASR loop)"
    if settings.drop_duplicates and previous is not None and tokens == [w.lower() for w in words(previous)]:
        return "duplicate of the previous sentence"
    return None


class NarrativeStage(BaseStage):
    """Drop sentences that are not procedural narration (rules in the module docstring)."""

    name = "narrative"
    Settings = NarrativeSettings

    def __call__(self, item: VideoItem):
        if item.silent:
            return item  # no clips are cut from a silent video: nothing to filter
        kept: list[Sentence] = []
        for sentence in item.transcript:
            problem = narrative_problem(sentence.text, self.settings, kept[-1].text if kept else None)
            if problem:
                item.drop(f"sentence dropped: {problem}")
            else:
                kept.append(Sentence(sentence.id, sentence.start, sentence.end, strip_non_speech(sentence.text)))
        item.sentences = kept
        return item
