"""Stage `denoise`: correct ASR misspellings of surgical terms against the lexicon, optionally checked by a masked LM.

ASR systems mangle rare domain words ("capsular hexis" for capsulorhexis, "fako" for phaco); the paper denoises its
transcripts with SurgicBERTa. Here the lexicon does the correcting (rules in `lexicon.py`), and a fill-mask model,
when given (`denoise.fill_mask_model`, e.g. a SurgicBERTa or any biomedical masked LM), arbitrates the uncertain
cases: matches with similarity between `fill_mask_min_similarity` and `min_similarity` are accepted only when the
model, shown the sentence with the span masked, scores the term above the original word (first sub-token of each
when a word is split). Multi-word terms cannot be scored with one mask and are not accepted this way. The model is
loaded on first use, so builds that never meet an uncertain match never load it.

`fill_mask` can be injected: any callable with the fill-mask pipeline's call signature
(`fill_mask(text, targets=[word]) -> [{"token_str": str, "score": float}, ...]`); its `tokenizer.mask_token`, when
it has one, marks the span (default `[MASK]`).
"""

import logging
from dataclasses import dataclass

from .base import BaseStage, Sentence, VideoItem, load_pipeline, setting
from .lexicon import load_lexicon


logger = logging.getLogger(__name__)


@dataclass
class DenoiseSettings:
    lexicon: str | None = setting(None, "lexicon file (default: the shipped datasets_ophvl/data/lexicon.txt)")
    min_similarity: float = setting(0.86, "similarity (0-1) at which a span is corrected to a lexicon term")
    max_ngram: int = setting(3, "longest span of words compared with the terms")
    min_length: int = setting(4, "shortest span (letters) that may be corrected")
    fill_mask_model: str | None = setting(None, "fill-mask model id or folder that arbitrates uncertain matches (off)")
    fill_mask_min_similarity: float = setting(0.75, "uncertain matches from this similarity up are sent to the model")
    device: str | None = setting(None, "device for the fill-mask model (default: the first GPU, else cpu)")


class DenoiseStage(BaseStage):
    """Correct near-misses of lexicon terms in the transcript."""

    name = "denoise"
    Settings = DenoiseSettings

    def __init__(self, settings=None, fill_mask=None, lexicon=None, **overrides):
        super().__init__(settings, **overrides)
        self.lexicon = lexicon if lexicon is not None else load_lexicon(self.settings.lexicon)
        self._fill_mask = fill_mask
        self.model_calls = 0

    @property
    def uses_model(self) -> bool:
        return self._fill_mask is not None or bool(self.settings.fill_mask_model)

    def models(self) -> list[tuple[str, str]]:
        if self._fill_mask is not None or not self.settings.fill_mask_model:
            return []
        return [("fill_mask_model", "fill-mask")]

    def _load(self):
        return load_pipeline("fill-mask", self.model_source("fill_mask_model"), self.settings.device,
                             hint="pass --set denoise.fill_mask_model=PATH (a local folder) or "
                             "--set denoise.fill_mask_model=none")

    def _score(self, masked: str, word: str) -> float:
        results = self._fill_mask(masked, targets=[word])
        self.model_calls += 1
        if results and isinstance(results[0], list):  # several masks: not our case, but stay safe
            results = results[0]
        return max((float(r["score"]) for r in results), default=0.0)

    def verify(self, text: str, start: int, end: int, term: str) -> bool:
        """Whether the masked LM prefers `term` over the original span at its place in `text`."""
        original = text[start:end]
        if " " in term.strip() or " " in original.strip():
            return False
        if self._fill_mask is None:
            self._fill_mask = self._load()
        mask = getattr(getattr(self._fill_mask, "tokenizer", None), "mask_token", None) or "[MASK]"
        masked = text[:start] + mask + text[end:]
        return self._score(masked, term) > self._score(masked, original)

    def correct(self, text: str):
        s = self.settings
        return self.lexicon.correct(
            text, max_ngram=s.max_ngram, min_length=s.min_length, min_similarity=s.min_similarity,
            verify_similarity=s.fill_mask_min_similarity if self.uses_model else None,
            verify=self.verify if self.uses_model else None,
        )

    def __call__(self, item: VideoItem):
        if item.silent:
            return item  # no clips are cut from a silent video: nothing to correct
        corrected = []
        for sentence in item.transcript:
            text, corrections = self.correct(sentence.text)
            item.tally("terms corrected", len(corrections))
            corrected.append(Sentence(sentence.id, sentence.start, sentence.end, text))
        item.sentences = corrected
        return item

    def close(self):
        self._fill_mask = None
