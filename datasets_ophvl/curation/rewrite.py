"""Stage `rewrite` (off by default): clean clip narrations and extract title summaries with an LLM.

The paper uses "LLM-guided text rewriting" to turn transcripts into clean clip texts and structured title summaries;
it names neither the LLM nor the prompts. Here any transformers `text-generation` model does it, with prompts kept in
files (`datasets_ophvl/data/prompts/narration_cleanup.txt` and `title_summary.txt`, or a folder given as
`rewrite.prompts`), filled in with `string.Template` (`${narration}`, `${title}`, `${terms}`, `${fields}`) so that
JSON braces in a prompt need no escaping. Models with a chat template get the prompt as a user message.

LLM output is not trusted blindly:

- a rewritten narration is kept only if it is non-empty, its length is within `max_length_ratio` of the original (and
  at least 30 % of it), and it keeps at least `min_word_recall` of the original's content words; otherwise the
  original stays (tallied);
- a title summary must parse (`summary.parse_summary`: the first JSON object in the output, fences and prose
  tolerated, keys mapped onto the attributes); otherwise the `summary` stage builds one by rules (tallied).

Decoding is greedy, so a build is reproducible. A generation that fails (a prompt longer than the model's context,
say) keeps the originals, like a rejected answer, with a warning. `generate` can be injected: any callable with the
pipeline's call signature (`generate(prompts: list, **kwargs) -> [[{"generated_text": str}], ...]`).
"""

import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from ..format import TITLE_SUMMARY_FIELDS
from .base import BaseStage, VideoItem, load_pipeline, setting
from .lexicon import load_lexicon
from .summary import parse_summary
from .text import content_words


logger = logging.getLogger(__name__)

PROMPT_NAMES = ("narration_cleanup", "title_summary")


@dataclass
class RewriteSettings:
    model: str | None = setting(None, "text-generation model id or folder (the stage needs one; see --llm-model)")
    device: str | None = setting(None, "device for the model (default: the first GPU, else cpu)")
    dtype: str = setting("auto", "model dtype: auto (bfloat16 on GPU, float32 on CPU), float32, float16, bfloat16")
    prompts: str | None = setting(None, "folder with narration_cleanup.txt and title_summary.txt (default: shipped)")
    narration: bool = setting(True, "rewrite clip narrations")
    title_summary: bool = setting(True, "extract title summaries")
    max_new_tokens: int = setting(256, "tokens generated per answer at most")
    batch_size: int = setting(8, "prompts per generation batch")
    min_word_recall: float = setting(0.6, "share of the narration's content words a rewrite must keep")
    max_length_ratio: float = setting(1.6, "longest accepted rewrite, relative to the original narration")
    excerpt_sentences: int = setting(20, "narration sentences shown to the model for the title summary")
    lexicon: str | None = setting(None, "lexicon file for the terms listed in the title-summary prompt")


def load_prompts(folder=None) -> dict[str, Template]:
    """The prompt templates from `folder`, or the shipped ones."""
    prompts = {}
    for name in PROMPT_NAMES:
        if folder is None:
            text = resources.files("datasets_ophvl").joinpath(f"data/prompts/{name}.txt").read_text(encoding="utf-8")
        else:
            text = (Path(folder) / f"{name}.txt").read_text(encoding="utf-8")
        prompts[name] = Template(text.rstrip("\n") + "\n")
    return prompts


def _answer_text(output) -> str:
    """The generated text from one pipeline result, whatever shape the pipeline gave it."""
    while isinstance(output, list) and output and not isinstance(output[0], str) and "role" not in output[0]:
        output = output[0]
    if isinstance(output, dict):
        output = output.get("generated_text", "")
    if isinstance(output, list):  # a chat: the last message is the model's
        output = output[-1].get("content", "") if output else ""
    return output if isinstance(output, str) else ""


def accept_narration(original: str, answer: str, min_word_recall: float, max_length_ratio: float) -> str | None:
    """The cleaned narration from a model answer, or None when it fails the checks in the module docstring."""
    text = answer.strip().split("\n\n", 1)[0]
    text = re.sub(r"^\s*(cleaned\s+)?narration\s*:\s*", "", text, flags=re.IGNORECASE)
    text = " ".join(text.strip().strip("\"'“”").split())
    if not text or not original:
        return None
    ratio = len(text) / len(original)
    if ratio > max_length_ratio or ratio < 0.3:
        return None
    before = {w.lower() for w in content_words(original)}
    after = {w.lower() for w in content_words(text)}
    if before and len(before & after) / len(before) < min_word_recall:
        return None
    return text


class RewriteStage(BaseStage):
    """LLM narration clean-up and title summaries (prompts in files; outputs checked)."""

    name = "rewrite"
    Settings = RewriteSettings

    def __init__(self, settings=None, generate=None, **overrides):
        super().__init__(settings, **overrides)
        if generate is None and not self.settings.model:
            raise ValueError("the rewrite stage needs a text-generation model: pass --llm-model (or rewrite.model)")
        self._generate = generate
        self.prompts = load_prompts(self.settings.prompts)
        self.lexicon = load_lexicon(self.settings.lexicon)
        self.calls = 0
        self.errors = 0

    def models(self) -> list[tuple[str, str]]:
        return [] if self._generate is not None else [("model", "text-generation")]

    def _load(self):
        s = self.settings
        pipe = load_pipeline("text-generation", self.model_source("model"), s.device, s.dtype, gpu_default="bfloat16",
                             hint="pass --set rewrite.model=PATH (a local folder) or --skip-stage rewrite")
        if pipe.tokenizer is not None and pipe.tokenizer.pad_token_id is None:
            pipe.tokenizer.pad_token = pipe.tokenizer.eos_token  # batched generation needs a pad token
        return pipe

    def generate(self, prompts: list[str]) -> list[str]:
        """Greedy answers to `prompts`, in order."""
        if not prompts:
            return []
        if self._generate is None:
            self._generate = self._load()
        tokenizer = getattr(self._generate, "tokenizer", None)
        if getattr(tokenizer, "chat_template", None):
            inputs = [[{"role": "user", "content": p}] for p in prompts]
        else:
            inputs = prompts
        try:
            outputs = self._generate(inputs, max_new_tokens=self.settings.max_new_tokens, do_sample=False,
                                     return_full_text=False, batch_size=self.settings.batch_size)
        except Exception as error:  # noqa: BLE001 - e.g. a prompt longer than the model's context: keep the originals
            logger.warning("text generation failed (%s: %s); the originals are kept", type(error).__name__, error)
            self.errors += 1
            return [""] * len(prompts)
        self.calls += 1
        return [_answer_text(output) for output in outputs]

    def __call__(self, item: VideoItem):
        s = self.settings
        if s.narration and item.clips:
            prompts = [self.prompts["narration_cleanup"].safe_substitute(narration=c.narration) for c in item.clips]
            for clip, answer in zip(item.clips, self.generate(prompts)):
                cleaned = accept_narration(clip.narration, answer, s.min_word_recall, s.max_length_ratio)
                if cleaned is None:
                    item.tally("narration rewrites rejected (original kept)")
                else:
                    clip.narration = cleaned
                    item.tally("narrations rewritten")
        if s.title_summary and not item.silent and not item.title_summary:
            excerpt = " ".join(x.text for x in item.transcript[: s.excerpt_sentences])
            terms = [t.text for t, _ in self.lexicon.find_terms(item.display_title + " . " + excerpt)]
            prompt = self.prompts["title_summary"].safe_substitute(
                title=item.display_title, narration=excerpt or "(none)", terms=", ".join(terms) or "(none)",
                fields=", ".join(f'"{f}"' for f in TITLE_SUMMARY_FIELDS),
            )
            summary = parse_summary(self.generate([prompt])[0])
            if summary is None:
                item.tally("LLM title summaries unparsable (rules used)")
            else:
                item.title_summary, item.summary_source = summary, "llm"
                item.tally("title summaries from the LLM")
        return item

    def close(self):
        self._generate = None
