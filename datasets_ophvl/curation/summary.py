"""Stage `summary`: give every narrated video a structured title summary, and read such summaries from LLM output.

OphVL pairs whole videos with "structured title summaries" (surgery, phases, instruments, medications, disease cause,
surgical objective, postoperative care; `format.TITLE_SUMMARY_FIELDS`). The `rewrite` stage asks an LLM for one when
it is enabled; this stage keeps that summary, and otherwise (LLM off, or its output did not parse) builds one by
rules from the title and the lexicon terms the title and the narration mention:

- `surgery`: the procedures named in the title, else the one the narration names most;
- `phases`, `instruments`, `medications`: terms of those categories, title first, then by first mention;
- `disease_cause`: diseases named in the title, else in the narration;
- `postoperative_care`: medications mentioned in sentences about the time after surgery ("postoperative", "after
  surgery", "drops ... times a day");
- `surgical_objective`: left empty; rules cannot state an objective the video does not.

A narrated video for which nothing is found gets no summary and, since `videos` samples need one, no `videos` sample
(counted); its clips are still written.
"""

import ast
import json
import re
from dataclasses import dataclass

from ..format import TITLE_SUMMARY_FIELDS
from .base import BaseStage, VideoItem, setting
from .lexicon import Lexicon, load_lexicon


LIST_FIELDS = ("phases", "instruments", "medications")
_POSTOP = re.compile(
    r"\bpost-?op(erative(ly)?)?\b|\bafter\s+(the\s+)?(surgery|operation|procedure)\b|\bfollow-?up\b|"
    r"\b(times|once|twice)\s+(a|per)\s+day\b|\bat\s+home\b|\brecovery\b",
    re.IGNORECASE,
)
_EMPTY_VALUES = {"", "unknown", "n/a", "na", "none", "not mentioned", "not stated", "not specified", "null", "-"}
_FIELD_ALIASES = {
    "procedure": "surgery", "surgery_type": "surgery", "surgical_procedure": "surgery", "operation": "surgery",
    "phase": "phases", "operations": "phases", "phases_operations": "phases", "steps": "phases", "actions": "phases",
    "instrument": "instruments", "tools": "instruments", "devices": "instruments",
    "medication": "medications", "drugs": "medications", "medicines": "medications",
    "disease": "disease_cause", "cause": "disease_cause", "diseases": "disease_cause", "disease_causes": "disease_cause",
    "cause_of_disease": "disease_cause", "diagnosis": "disease_cause",
    "objective": "surgical_objective", "goal": "surgical_objective", "surgical_goal": "surgical_objective",
    "postoperative": "postoperative_care", "postoperative_recovery": "postoperative_care",
    "postoperative_recovery_recommendations": "postoperative_care", "recovery": "postoperative_care",
}


@dataclass
class SummarySettings:
    max_items: int = setting(8, "longest list kept per attribute")
    lexicon: str | None = setting(None, "lexicon file (default: the shipped one)")


def _clean_value(value, max_items: int):
    if isinstance(value, (list, tuple)):
        items = []
        for entry in value:
            entry = _clean_value(entry, max_items)
            for text in entry if isinstance(entry, list) else [entry]:
                if text and text not in items:
                    items.append(text)
        return items[:max_items]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return ""
    value = " ".join(value.split())[:300]
    return "" if value.lower().strip(" .") in _EMPTY_VALUES else value


def normalize_summary(data: dict, max_items: int = 8) -> dict | None:
    """Map a model's JSON object onto `TITLE_SUMMARY_FIELDS` (aliases and case forgiven, empty values dropped).

    Returns None when no attribute has a value."""
    if not isinstance(data, dict):
        return None
    summary = {field: [] if field in LIST_FIELDS else "" for field in TITLE_SUMMARY_FIELDS}
    for key, value in data.items():
        name = re.sub(r"[^a-z]+", "_", str(key).lower()).strip("_")
        name = _FIELD_ALIASES.get(name, name)
        if name not in summary:
            continue
        value = _clean_value(value, max_items)
        if name in LIST_FIELDS and isinstance(value, str):
            value = [part.strip() for part in re.split(r"[;,]", value) if part.strip()] if value else []
        elif name not in LIST_FIELDS and isinstance(value, list):
            value = ", ".join(value)
        summary[name] = value
    return summary if any(summary.values()) else None


def parse_summary(text: str, max_items: int = 8) -> dict | None:
    """Find a title summary in free model output: the first JSON (or Python-literal) object that maps onto at least
    one attribute. Code fences, prose around the object and trailing text are tolerated."""
    if not isinstance(text, str):
        return None
    text = re.sub(r"```(?:json)?", " ", text)
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            data, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            end = text.find("}", match.start())
            data = None
            while end != -1 and data is None:
                try:
                    data = ast.literal_eval(text[match.start():end + 1])
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    end = text.find("}", end + 1)
        summary = normalize_summary(data, max_items) if isinstance(data, dict) else None
        if summary:
            return summary
    return None


def rule_based_summary(title: str, sentences: list[str], lexicon: Lexicon, max_items: int = 8) -> dict | None:
    """A title summary from lexicon terms in the title and the narration (rules in the module docstring)."""
    in_title = lexicon.find_terms(title or "")
    in_text = lexicon.find_terms(" . ".join(sentences))
    by_field: dict[str, list[str]] = {}
    for term, _ in in_title + in_text:  # title first, then the narration in order of first mention
        if term.field and term.text not in by_field.setdefault(term.field, []):
            by_field[term.field].append(term.text)
    summary = {field: [] if field in LIST_FIELDS else "" for field in TITLE_SUMMARY_FIELDS}
    title_procedures = [t.text for t, _ in in_title if t.field == "surgery"]
    text_procedures = sorted(((c, t.text) for t, c in in_text if t.field == "surgery"), key=lambda x: -x[0])
    summary["surgery"] = ", ".join(title_procedures) or (text_procedures[0][1] if text_procedures else "")
    for field in LIST_FIELDS:
        summary[field] = by_field.get(field, [])[:max_items]
    title_diseases = [t.text for t, _ in in_title if t.field == "disease_cause"]
    summary["disease_cause"] = ", ".join(title_diseases or by_field.get("disease_cause", [])[:3])
    postop = [t.text for s in sentences if _POSTOP.search(s) for t, _ in lexicon.find_terms(s) if t.field == "medications"]
    summary["postoperative_care"] = ", ".join(dict.fromkeys(postop))
    return summary if any(summary.values()) else None


class SummaryStage(BaseStage):
    """Keep an LLM title summary, or build one by rules."""

    name = "summary"
    Settings = SummarySettings

    def __init__(self, settings=None, lexicon=None, **overrides):
        super().__init__(settings, **overrides)
        self.lexicon = lexicon if lexicon is not None else load_lexicon(self.settings.lexicon)

    def __call__(self, item: VideoItem):
        if item.silent or item.title_summary:
            return item
        item.title_summary = rule_based_summary(item.display_title, [s.text for s in item.transcript], self.lexicon,
                                                self.settings.max_items)
        item.summary_source = "rules" if item.title_summary else None
        return item
