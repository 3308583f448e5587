"""Small text helpers shared by the text stages: word splitting, function words and fillers, non-speech tags."""

import re


WORD = re.compile(r"[A-Za-z0-9]+(?:['’-][A-Za-z0-9]+)*")
# Whisper and caption writers mark non-speech with bracketed tags or music notes: "[Music]", "(applause)", "♪ ♪".
NON_SPEECH = re.compile(r"\[[^\]]*\]|\([^)]*\)|[♪♫🎵🎶]+")

# English function words: on their own they say nothing about the procedure.
STOPWORDS = frozenset("""
a about above after again against all also am an and any are aren't as at be because been before being below
between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each few for
from further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself him himself
his how how's i i'd i'll i'm i've if in into is isn't it it's its itself let's me more most mustn't my myself no nor
not now of off on once only or other ought our ours ourselves out over own same shan't she she'd she'll she's should
shouldn't so some such than that that's the their theirs them themselves then there there's these they they'd
they'll they're they've this those through to too under until up very was wasn't we we'd we'll we're we've were
weren't what what's when when's where where's which while who who's whom why why's will with won't would wouldn't
you you'd you'll you're you've your yours yourself yourselves just will shall may might must get got gets going
gonna wanna let us one two also still even back
""".split())
# Spoken fillers and discourse markers.
FILLERS = frozenset("""
um umm uh uhh uhm er erm ah ahh hmm mm mhm oh okay ok alright right yeah yes yep well like so now see look
basically actually really please thanks thank thing things kind sort know mean guys everyone everybody
""".split())


def words(text: str) -> list[str]:
    """Word tokens (letters and digits, inner apostrophes and hyphens kept)."""
    return WORD.findall(text)


def content_words(text: str) -> list[str]:
    """Words that are neither function words nor fillers."""
    return [w for w in words(text) if w.lower().replace("’", "'") not in STOPWORDS and w.lower() not in FILLERS
            and (len(w) > 1 or w.isdigit())]


def strip_non_speech(text: str) -> str:
    """The text without bracketed non-speech tags and music notes."""
    return " ".join(NON_SPEECH.sub(" ", text).split())
