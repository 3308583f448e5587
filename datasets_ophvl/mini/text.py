"""The text: clip narrations, video titles and title summaries from templates, and clip planning (where the narrated
clips lie in a procedure and what they say).

Narrations name the phase, the instruments in view and the action, with several synonyms per fact and 14 sentence
patterns; titles of silent videos are short and noisy, as on YouTube, and never narrate.
"""

from .render import _frame_times
from .scene import _INSTR, _INSTR_ORDER, _PHASE, CATARACTS, Procedure, instruments_at


# --------------------------------------------------------------------------------------------------------------------
# Narration.

_TEMPLATES = (
    "Now in the {phase} phase, I use {tools} to {inf}.",
    "{Ger} with {tools}; this is the {phase} step.",
    "This is {phase}: {tools} {be} in the eye and we {inf}.",
    "During the {phase} the surgeon {third} using {tools}.",
    "{Tools} {be} used here to {inf}, which is the {phase} part of the case.",
    "Here we are {ger}, {tools} doing the work during {phase}.",
    "Next step, {phase}. I {inf} with {tools}.",
    "You can see {tools} as we {inf} in the {phase} stage.",
    "Let's do the {phase}: I take {tools} and {inf}.",
    "{Phase} now, {ger} with {tools}.",
    "With {tools} in the anterior chamber, the surgeon {third}; we call this step {phase}.",
    "Watch {tools} here, {ger}. That is the {phase}.",
    "For the {phase} we {inf}, and {tools} {be} what we use.",
    "So, {phase}: {tools}, {ger} slowly and carefully.",
)
_ASIDES = (
    "Keep the movements smooth.", "Note how stable the chamber stays.", "Take your time here.",
    "The red reflex helps a lot.", "Everything looks stable so far.", "Nice and controlled.",
    "Watch the depth of the chamber.", "Centration matters at this point.",
)
_FILLERS = ("Okay.", "Good.", "Alright, moving on.", "Let me adjust the microscope.", "A little more light please.")
_JOINERS = (" and ", " together with ", " plus ", " along with ")


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _tools_phrase(keys: list[str], rng) -> tuple[str, bool]:
    names = []
    for key in keys:
        synonym = _INSTR[key]["synonyms"][int(rng.integers(len(_INSTR[key]["synonyms"])))]
        indefinite = rng.random() < 0.2 and not synonym.endswith("forceps") and synonym[0] not in "aeiouAEIOU"
        article = "a " if indefinite else "the "
        names.append(article + synonym)
    joined = names[0]
    for name in names[1:]:
        joined += _JOINERS[int(rng.integers(len(_JOINERS)))] + name
    plural = len(keys) > 1 or joined.endswith("forceps")
    return joined, plural


def make_narration(phase: int, instruments: list[str], rng) -> list[str]:
    """One or two sentences naming the phase, the instruments and the action, in varied wording."""
    info = _PHASE[phase]
    synonym = info["synonyms"][int(rng.integers(len(info["synonyms"])))]
    inf, ger, third = info["actions"][int(rng.integers(len(info["actions"])))]
    tools, plural = _tools_phrase(instruments, rng)
    template = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))]
    sentence = template.format(phase=synonym, Phase=_cap(synonym), tools=tools, Tools=_cap(tools), inf=inf,
                               ger=ger, Ger=_cap(ger), third=third, be="are" if plural else "is")
    sentences = [sentence]
    if rng.random() < 0.35:
        sentences.append(_ASIDES[int(rng.integers(len(_ASIDES)))])
    return sentences


_TITLES = (
    "Phacoemulsification cataract surgery with IOL implantation ({eye})",
    "Cataract surgery: {cause} ({eye})",
    "Routine phaco with foldable IOL for {cause}",
    "{Eye} cataract extraction by phacoemulsification",
    "Step-by-step phaco: {cause}",
    "Small-incision phacoemulsification, {eye}, surgeon {surgeon}",
)
_SURGERY = (
    "phacoemulsification with intraocular lens implantation",
    "phacoemulsification cataract extraction with posterior chamber IOL",
    "clear corneal phacoemulsification and foldable IOL implantation",
)
_MEDICATIONS = ("topical proparacaine", "intracameral lidocaine", "phenylephrine and tropicamide drops",
                "povidone-iodine 5%", "intracameral cefuroxime", "intracameral moxifloxacin")
_OBJECTIVES = (
    "remove the opacified lens and restore clear vision with a posterior chamber intraocular lens",
    "replace the cloudy crystalline lens with a foldable IOL in the capsular bag",
    "improve visual acuity by extracting the cataract and implanting an intraocular lens",
)
_POSTOP = (
    "topical steroid and antibiotic drops for four weeks",
    "prednisolone acetate taper and moxifloxacin for one week, review at day one and week four",
    "NSAID drops, an eye shield at night and follow-up at one day, one week and one month",
)
_SILENT_TITLES = (
    "Cataract surgery, {eye} (unedited recording)",
    "phaco_case_{n:04d}",
    "Surgical video {n}",
    "Cataract case {n} (no audio)",
    "{Eye} phaco, surgeon {surgeon}",
)


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def _ordered_unique(items):
    out = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def make_title(proc: Procedure, rng, silent: bool = False, number: int = 0) -> str:
    eye = _pick(rng, ("right eye", "left eye"))
    fields = {"eye": eye, "Eye": _cap(eye), "cause": CATARACTS[proc.cataract]["cause"], "surgeon": proc.surgeon,
              "n": number}
    return _pick(rng, _SILENT_TITLES if silent else _TITLES).format(**fields)


def make_title_summary(proc: Procedure, rng) -> dict:
    phases = [_PHASE[s.phase]["name"] for s in proc.segments]
    phases = [p for i, p in enumerate(phases) if i == 0 or p != phases[i - 1]]
    instruments = _ordered_unique(_INSTR[key]["name"] for s in proc.segments
                                  for key in sorted(s.instruments, key=lambda k: s.instruments[k][0]))
    medications = list(rng.choice(_MEDICATIONS, size=int(rng.integers(2, 4)), replace=False))
    if proc.cataract == "mature":
        medications.append("trypan blue capsule stain")
    return {
        "surgery": _pick(rng, _SURGERY),
        "phases": phases,
        "instruments": instruments,
        "medications": [str(m) for m in medications],
        "disease_cause": CATARACTS[proc.cataract]["cause"],
        "surgical_objective": _pick(rng, _OBJECTIVES),
        "postoperative_care": _pick(rng, _POSTOP),
    }


# --------------------------------------------------------------------------------------------------------------------
# Clips.


def _plan_clips(proc: Procedure, cfg: dict, rng) -> list[dict]:
    """Non-overlapping clip windows inside phases, where the main instrument is in view, with their narration."""
    fps = cfg["clip_fps"]
    clips, sentence = [], 0
    for seg in proc.segments:
        lo, hi = seg.instruments[seg.main]
        count = cfg["clips_per_phase"] + int(rng.random() < cfg["extra_clip_prob"])
        slot = (hi - lo) / count
        for k in range(count):
            length = min(float(rng.uniform(*cfg["clip_seconds"])), slot * 0.95)
            n_frames = max(int(round(length * fps)), 4)
            length = n_frames / fps
            start = round(lo + k * slot + float(rng.uniform(0, max(slot - length, 0))), 3)
            times = _frame_times(start, fps, n_frames)
            counts = {}
            for t in times:
                for key in instruments_at(proc, float(t)):
                    counts[key] = counts.get(key, 0) + 1
            instruments = [key for key in _INSTR_ORDER if counts.get(key, 0) * 2 >= n_frames]
            if seg.main not in instruments:
                instruments.insert(0, seg.main)
            sentences = make_narration(seg.phase, instruments, rng)
            sentence += int(rng.integers(0, 3))  # filler sentences between clips are not kept
            ids = list(range(sentence, sentence + len(sentences)))
            sentence += len(sentences)
            clips.append({
                "start": start, "end": round(start + length, 3), "n_frames": n_frames, "phase": seg.phase,
                "instruments": instruments, "narration": " ".join(sentences), "sentence_ids": ids,
            })
    return clips

