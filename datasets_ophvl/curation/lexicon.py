"""The ophthalmic-surgery lexicon: loading it, finding its terms in text, and correcting near-misses of them.

The shipped lexicon is `datasets_ophvl/data/lexicon.txt` (format described at its top). The paper compiled over
3,000 terms with ophthalmologists to steer collection and denoised transcripts with SurgicBERTa; this file is a
smaller, hand-written stand-in that does the same jobs in this pipeline: correcting ASR misspellings of surgical
terms and naming the surgery, phases, instruments, medications and diseases of a video for its title summary.

Correction (`Lexicon.correct`) looks at spans of 1 to `max_ngram` words, longest first:

- a span whose letters equal a term's once spaces, hyphens and apostrophes are dropped is rewritten to the term
  ("hydro dissection" -> "hydrodissection", "visco elastic" -> "viscoelastic"); a span that already is a term is
  kept and protected. Spans never cross punctuation;
- otherwise, a span that contains a word the lexicon does not know (not a term word or an inflection of one, not a
  common or function word), that does not start or end with a function word, has no digits and is at least
  `min_length` letters long is compared with the terms whose sound key starts with the same letter. Its similarity
  is the larger of difflib's ratio on the letters and on a rough English sound key (ph->f, c->k/s, x->ks, doubled
  letters once, ...), so "fako" matches "phaco" and "capsular hexis" matches "capsulorhexis". Spans under 6 letters
  must match the sound key exactly. The best term at or above `min_similarity` replaces the span;
- a match between `verify_similarity` and `min_similarity` is only taken when a `verify(text, start, end, term)`
  callback accepts it (the denoise stage passes a fill-mask model there); without one it is left alone.
"""

import difflib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .text import FILLERS, STOPWORDS


CATEGORIES = ("anatomy", "procedure", "phase", "instrument", "device", "medication", "disease", "complication")
# Which title-summary attribute each category fills.
CATEGORY_FIELDS = {
    "procedure": "surgery",
    "phase": "phases",
    "instrument": "instruments",
    "device": "instruments",
    "medication": "medications",
    "disease": "disease_cause",
}
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:['’-][A-Za-z0-9]+)*")
_SOUND_RULES = (
    ("sch", "sk"), ("ph", "f"), ("rh", "r"), ("th", "t"), ("ck", "k"), ("ch", "k"), ("qu", "kw"), ("x", "ks"),
    ("ae", "e"), ("oe", "e"),
)


def compact(text: str) -> str:
    """Lower-case letters and digits only: the form terms and spans are compared in."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


def sound_key(text: str) -> str:
    """A rough English sound key: spellings that sound alike get equal or close keys ("fako", "phaco" -> "fako")."""
    key = re.sub(r"[^a-z]", "", text.lower())
    for spelling, sound in _SOUND_RULES:
        key = key.replace(spelling, sound)
    key = re.sub(r"c(?=[eiy])", "s", key).replace("c", "k").replace("q", "k").replace("z", "s").replace("y", "i")
    return re.sub(r"(.)\1+", r"\1", key)


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


@dataclass(frozen=True)
class Term:
    text: str
    category: str

    @property
    def field(self) -> str | None:
        return CATEGORY_FIELDS.get(self.category)


@dataclass
class Correction:
    original: str
    corrected: str
    similarity: float


@dataclass
class Lexicon:
    """Terms by category, their variants, and the words that must never be corrected."""

    terms: list[Term] = field(default_factory=list)
    variants: dict[str, Term] = field(default_factory=dict)  # compact variant -> term
    common_words: set[str] = field(default_factory=set)

    def __post_init__(self):
        self._by_compact: dict[str, Term] = {}
        self._by_words: dict[tuple[str, ...], Term] = {}
        self._buckets: dict[str, list[tuple[Term, str, str]]] = defaultdict(list)
        self._term_words: set[str] = set()
        self.max_words = 1
        for term in self.terms:
            self._index(term)

    def _index(self, term: Term) -> None:
        key = compact(term.text)
        self._by_compact.setdefault(key, term)
        words = _word_forms(term.text)
        self._by_words.setdefault(words, term)
        self.max_words = max(self.max_words, len(words))
        self._term_words.update(words)
        sound = sound_key(key)
        if sound:
            self._buckets[sound[0]].append((term, key, sound))

    def add(self, term: Term, variants=()) -> None:
        self.terms.append(term)
        self._index(term)
        for variant in variants:
            self.variants[compact(variant)] = term

    def __len__(self) -> int:
        return len(self.terms)

    # --- reading --------------------------------------------------------------------------------------------------

    @classmethod
    def from_text(cls, text: str) -> "Lexicon":
        lexicon, category = cls(), None
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
            if not line:
                continue
            header = re.fullmatch(r"\[(\w+)\]", line)
            if header:
                category = header.group(1).lower()
                if category not in CATEGORIES and category != "common":
                    raise ValueError(f"lexicon line {number}: unknown category {category!r}")
                continue
            if category is None:
                raise ValueError(f"lexicon line {number}: a term before any [category] header")
            if category == "common":
                lexicon.common_words.update(w.lower() for w in line.split())
                continue
            term, *variants = [part.strip() for part in line.split("|")]
            lexicon.add(Term(term, category), [v for v in variants if v])
        return lexicon

    @classmethod
    def load(cls, path=None) -> "Lexicon":
        """The lexicon at `path`, or the shipped one."""
        if path is None:
            text = resources.files("datasets_ophvl").joinpath("data/lexicon.txt").read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
        return cls.from_text(text)

    # --- looking up -----------------------------------------------------------------------------------------------

    def known(self, word: str) -> bool:
        """Whether `word` is a function word, filler, common word, term word, or an inflection of one."""
        lower = word.lower().replace("’", "'")
        if lower in STOPWORDS or lower in FILLERS or lower in self.common_words:
            return True
        base = compact(lower)
        if not base or base.isdigit() or base in self._term_words or base in self.common_words:
            return True
        for suffix, replacement in (("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("d", ""),
                                    ("ing", ""), ("ing", "e"), ("ly", ""), ("al", ""), ("ic", "")):
            if base.endswith(suffix) and len(base) - len(suffix) >= 3:
                stem = base[: -len(suffix)] + replacement
                if stem in self._term_words or stem in self.common_words:
                    return True
        return False

    def find_terms(self, text: str) -> list[tuple[Term, int]]:
        """Terms mentioned in `text` (exact, longest match first) with their counts, in order of first mention."""
        tokens = [compact(t) for t in _TOKEN.findall(text.replace("-", " ").replace("/", " "))]
        counts: dict[Term, int] = {}
        i = 0
        while i < len(tokens):
            for n in range(min(self.max_words, len(tokens) - i), 0, -1):
                term = self._by_words.get(tuple(tokens[i:i + n]))
                if term is not None:
                    counts[term] = counts.get(term, 0) + 1
                    i += n
                    break
            else:
                i += 1
        return list(counts.items())

    def best_match(self, span: str) -> tuple[Term | None, float]:
        """The closest term to `span` (see the module docstring) and its similarity."""
        letters = compact(span)
        sound = sound_key(letters)
        if not sound:
            return None, 0.0
        best, best_score = None, 0.0
        for term, key, term_sound in self._buckets.get(sound[0], ()):
            if not 0.7 <= len(key) / max(1, len(letters)) <= 1.45:
                continue
            if len(letters) < 6 or len(key) < 6:
                score = 1.0 if sound == term_sound else 0.0
            else:
                score = max(_similarity(letters, key), _similarity(sound, term_sound))
            if score > best_score or (score == best_score and best is not None and len(key) < len(compact(best.text))):
                best, best_score = term, score
        return best, best_score

    # --- correcting -----------------------------------------------------------------------------------------------

    def correct(self, text: str, max_ngram: int = 3, min_length: int = 4, min_similarity: float = 0.86,
                verify_similarity: float | None = None, verify=None) -> tuple[str, list[Correction]]:
        """Rewrite near-misses of lexicon terms in `text`; return the new text and the corrections made."""
        tokens = list(_TOKEN.finditer(text))
        pieces, corrections, cursor, i = [], [], 0, 0
        low = min_similarity if verify is None or verify_similarity is None else min(verify_similarity, min_similarity)
        while i < len(tokens):
            replaced = False
            for n in range(min(max(max_ngram, self.max_words), len(tokens) - i), 0, -1):
                span_tokens = tokens[i:i + n]
                start, end = span_tokens[0].start(), span_tokens[-1].end()
                # Spans never cross sentence punctuation or commas: "... the lens. Fako" is two places, not one.
                if n > 1 and re.search(r"[.,;:!?()\[\]]", text[span_tokens[0].end():span_tokens[-1].start()]):
                    continue
                words = [t.group() for t in span_tokens]
                letters = compact("".join(words))
                exact = self.variants.get(letters) or self._by_compact.get(letters)
                if exact is not None:
                    # Already the term (up to case and hyphens): keep it and protect its words from fuzzy matching.
                    if _word_forms(text[start:end]) != _word_forms(exact.text) or letters in self.variants:
                        pieces += [text[cursor:start], _match_case(exact.text, text[start:end])]
                        corrections.append(Correction(text[start:end], exact.text, 1.0))
                        cursor = end
                    i += n
                    replaced = True
                    break
                if n > max_ngram or len(letters) < min_length or any(c.isdigit() for c in letters):
                    continue
                if _is_function_word(words[0]) or _is_function_word(words[-1]):
                    continue
                if all(self.known(w) for w in words):
                    continue
                term, score = self.best_match(letters)
                if term is None or score < low:
                    continue
                if score < min_similarity and not verify(text, start, end, term.text):
                    continue
                pieces += [text[cursor:start], _match_case(term.text, text[start:end])]
                corrections.append(Correction(text[start:end], term.text, round(score, 3)))
                cursor, i, replaced = end, i + n, True
                break
            if not replaced:
                i += 1
        pieces.append(text[cursor:])
        return "".join(pieces), corrections


def _word_forms(text: str) -> tuple[str, ...]:
    return tuple(compact(w) for w in _TOKEN.findall(text.replace("-", " ")))


def _is_function_word(word: str) -> bool:
    lower = word.lower().replace("’", "'")
    return lower in STOPWORDS or lower in FILLERS


def _match_case(term: str, original: str) -> str:
    """Keep a capital at the start of a sentence: "Fako" -> "Phaco", "fako" -> "phaco"; acronyms stay as written."""
    if original[:1].isupper() and term[:1].islower():
        return term[:1].upper() + term[1:]
    return term


@lru_cache(maxsize=8)
def load_lexicon(path: str | None = None) -> Lexicon:
    """`Lexicon.load`, cached per path (stages share one instance)."""
    return Lexicon.load(path)
