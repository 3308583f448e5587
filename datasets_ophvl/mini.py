"""OphVL-mini: a deterministic generator of small synthetic cataract-surgery-like videos, in the OphVL format, plus a
labelled held-out benchmark in the native layouts of two real cataract benchmarks.

```
python -m datasets_ophvl.mini OUT [--seed 0] [--size default|tiny] [--overwrite] [--quiet]
```

or `generate_ophvl_mini(out_dir, seed=0, size="default")`, which returns a summary dict. `OUT` becomes a valid OphVL
folder (WebDataset shards written by `shards.ShardWriter`, dataset card by `card.write_dataset_card`):

```
OUT/README.md                          dataset card (configs: clips, videos, silent)
OUT/data/clips/train-*.tar             narrated clips (8 fps) cut from the titled procedures of `videos`
OUT/data/videos/train-*.tar            whole titled procedures (2 fps) with a structured `title_summary`
OUT/data/silent/train-*.tar            whole procedures without narration (2 fps): `video_id`, `duration`, `title`
OUT/benchmark/                         held-out labelled procedures (5 fps), see below and benchmark/README.md
```

The visual world
----------------
Every procedure is one continuous-time scene rendered at any time `t`: a microscope view of an eye (reddish sclera
with vessels, an iris whose colour, size and position vary per video, a pupil that shows the cataract until the
nucleus is removed and the red reflex afterwards), global illumination gain, colour cast and flicker per video, and
pixel noise. A procedure is an idle lead-in followed by phases in surgical order (incision, viscous agent injection,
rhexis, phacoemulsification, irrigation and aspiration, sometimes a second viscous agent injection, lens implant
setting-up). Each phase has a visual signature (a white slit growing at the limbus, a translucent cyan gel blob, a
white capsulorhexis arc growing around the pupil, a pulsing bright nucleus with fragments, orbiting cortex particles
and a fading cortical ring, an intraocular lens ring with two haptics that unfolds and rotates) and its instruments,
drawn as coloured shafts entering from instrument-specific directions with phase-specific motion (the keratome moves
in and out along its axis, the forceps tip follows the rhexis arc, the phaco tip pulses, the I/A tip sweeps the
pupil margin, the injector advances then retracts). Instruments enter after and leave before the phase boundaries
and secondary instruments appear for part of some phases (cannula during rhexis and before the implant, I/A
handpiece at the end of lens implantation), so instrument labels are not a copy of phase labels. The cataract type
(nuclear, brunescent, cortical, posterior subcapsular, mature white) decides what the pupil looks like before
phacoemulsification and is the `disease_cause` of the title summary.

Clips are 2-4 s windows inside one phase where its main instrument is in view; their json adds the ground truth
`phase`, `phase_id` and `instruments` (CATARACTS-style names) to the OphVL fields. The narration (1-2 sentences)
names the phase, the instruments present for at least half of the clip and the action, with several synonyms per
fact and 14 sentence patterns in different orders; sometimes a second, content-free sentence follows (as in real
narration). `sentence_ids` index a per-video transcript in which filler sentences between clips are skipped.

Determinism: every procedure, clip and benchmark video draws from its own `numpy.random.SeedSequence([seed, stream,
index...])`, so the same seed gives byte-identical shards and benchmark files with the same library versions. H.264 is
encoded by `media.encode_video`, which is byte-reproducible for one FFmpeg/x264 build; other builds may encode
different, equally valid bytes.

The benchmark and what was verified
-----------------------------------
`OUT/benchmark/` holds procedures drawn from their own random stream (in no subset above), at 5 fps, labelled per
frame. Phase labels follow the Cataract-101 release (Schoeffmann et al., MMSys 2018); instrument presence follows the
CATARACTS challenge (Al Hajj et al., 2019) tool annotations. Checked on public copies (no network access to the
official sites):

- VERIFIED on copies of Cataract-101's `videos.csv`, `phases.csv` and `annotations.csv` in a public GitHub repository
  (matinmoqadas/Cataract-101): semicolon separators and headers `VideoID;Frames;FPS;Surgeon;Experience`,
  `Phase;Meaning` and `VideoID;FrameNo;Phase`; phase ids 1..10 named Incision, Viscous agent injection, Rhexis,
  Hydrodissection, Phacoemulsificiation [sic], Irrigation and aspiration, Capsule polishing, Lens implant setting-up,
  Viscous agent removal, Tonifying and antibiotics; one annotation row per phase *start* (rows ascend by `FrameNo`
  within a video, the same phase can recur, e.g. viscous agent injection before the implant); `FrameNo` 0 occurs, so
  frame numbers are 0-based; `FPS` 25, `Surgeon` 1-4, `Experience` 1 or 2.
- VERIFIED in third-party Cataract-101 loaders: videos at `videos/case_<VideoID>.mp4`; a phase lasts until the next row
  of the video and the last one to the end; frames before the first row are unannotated.
- VERIFIED in third-party CATARACTS loaders: one tool CSV per video, named after the video, read with
  `index_col="Frame"`, one column per tool (21 tools, among them the six used here: Primary Incision Knife,
  Viscoelastic Cannula, Capsulorhexis Forceps, Phacoemulsifier Handpiece, Irrigation/Aspiration Handpiece, Implant
  Injector), values that may be 0.5 for ambiguous presence (loaders map > 0 to 1).
- ASSUMED: `Experience` 1 = less experienced surgeon (in the real table the Experience-1 surgeons have the longer
  videos); Unix line endings; CATARACTS comma separators, the exact capitalisation of its tool headers (loaders spell
  them both ways), 1-based `Frame` numbers (loaders index row `frame - 1`), and the `tool_annotations/` folder name
  (used by a loader; the release names its files after the videos, e.g. `train01.csv`).

OphVL-mini keeps 6 of Cataract-101's 10 phases with their names but renumbered 1..6 (see `PHASES`; evaluation code must
map ids through `phases.csv`), spells "Phacoemulsification" correctly, and uses its own `FPS` and `VideoID`s (1001,
1002, ...). Tool files are `tool_annotations/case_<VideoID>.csv` with `Frame` = 1..Frames and 0/1 values (no 0.5), so
tool row `Frame = f + 1` describes mp4 frame `f`, the frame Cataract-101's 0-based `FrameNo` calls `f`.
"""

import argparse
import csv
import io
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .card import write_dataset_card
from .format import make_key
from .media import encode_video
from .shards import ShardWriter, atomic_write_bytes


GENERATOR_VERSION = 1

# --------------------------------------------------------------------------------------------------------------------
# Vocabulary. Phase names are Cataract-101's, instrument names are CATARACTS' tool names.

PHASES = (
    {
        "id": 1, "key": "incision", "name": "Incision", "main": "knife", "extra": (),
        "synonyms": ("incision", "corneal incision", "main incision", "clear corneal incision", "wound construction"),
        "actions": (
            ("make the main corneal incision", "making the main corneal incision", "makes the main corneal incision"),
            ("enter the anterior chamber", "entering the anterior chamber", "enters the anterior chamber"),
            ("cut a self-sealing tunnel through the cornea", "cutting a self-sealing tunnel through the cornea",
             "cuts a self-sealing tunnel through the cornea"),
        ),
    },
    {
        "id": 2, "key": "viscous", "name": "Viscous agent injection", "main": "cannula", "extra": (),
        "synonyms": ("viscous agent injection", "viscoelastic injection", "OVD injection", "viscoelastic fill",
                     "injection of the viscous agent"),
        "actions": (
            ("fill the anterior chamber with viscoelastic", "filling the anterior chamber with viscoelastic",
             "fills the anterior chamber with viscoelastic"),
            ("inject the viscous agent", "injecting the viscous agent", "injects the viscous agent"),
            ("deepen and protect the chamber", "deepening and protecting the chamber",
             "deepens and protects the chamber"),
        ),
    },
    {
        "id": 3, "key": "rhexis", "name": "Rhexis", "main": "forceps", "extra": (("cannula", 0.3),),
        "synonyms": ("capsulorhexis", "rhexis", "continuous curvilinear capsulorhexis", "anterior capsulotomy"),
        "actions": (
            ("tear a round opening in the anterior capsule", "tearing a round opening in the anterior capsule",
             "tears a round opening in the anterior capsule"),
            ("grasp and turn the capsular flap", "grasping and turning the capsular flap",
             "grasps and turns the capsular flap"),
            ("complete the circular capsule tear", "completing the circular capsule tear",
             "completes the circular capsule tear"),
        ),
    },
    {
        "id": 4, "key": "phaco", "name": "Phacoemulsification", "main": "phaco", "extra": (),
        "synonyms": ("phacoemulsification", "phaco", "nucleus emulsification", "ultrasound emulsification"),
        "actions": (
            ("emulsify the nucleus", "emulsifying the nucleus", "emulsifies the nucleus"),
            ("break up and aspirate the lens nucleus", "breaking up and aspirating the lens nucleus",
             "breaks up and aspirates the lens nucleus"),
            ("remove the cataract with ultrasound", "removing the cataract with ultrasound",
             "removes the cataract with ultrasound"),
        ),
    },
    {
        "id": 5, "key": "ia", "name": "Irrigation and aspiration", "main": "ia", "extra": (),
        "synonyms": ("irrigation and aspiration", "irrigation-aspiration", "I/A", "cortex removal",
                     "cortical clean-up"),
        "actions": (
            ("aspirate the remaining cortex", "aspirating the remaining cortex", "aspirates the remaining cortex"),
            ("clean the capsular bag", "cleaning the capsular bag", "cleans the capsular bag"),
            ("strip the residual cortical material", "stripping the residual cortical material",
             "strips the residual cortical material"),
        ),
    },
    {
        "id": 6, "key": "lens", "name": "Lens implant setting-up", "main": "injector",
        "extra": (("cannula", 0.35), ("ia", 0.3)),
        "synonyms": ("lens implantation", "IOL implantation", "lens implant", "intraocular lens insertion"),
        "actions": (
            ("inject the folded lens into the bag", "injecting the folded lens into the bag",
             "injects the folded lens into the bag"),
            ("implant the intraocular lens", "implanting the intraocular lens", "implants the intraocular lens"),
            ("unfold and position the lens in the capsular bag",
             "unfolding and positioning the lens in the capsular bag",
             "unfolds and positions the lens in the capsular bag"),
        ),
    },
)

# colour (RGB); width: the thin tip's width and body: the handpiece/handle's width (in half-frames); angle: the
# direction (degrees, counter-clockwise from the right, image up) from which the shaft enters.
INSTRUMENTS = (
    {"key": "knife", "name": "Primary Incision Knife", "colour": (200, 206, 218), "width": 0.05, "body": 0.1,
     "angle": 150, "synonyms": ("keratome", "slit knife", "incision knife", "blade")},
    {"key": "cannula", "name": "Viscoelastic Cannula", "colour": (236, 214, 58), "width": 0.034, "body": 0.12,
     "angle": 220, "synonyms": ("viscoelastic cannula", "OVD cannula", "cannula", "viscoelastic syringe")},
    {"key": "forceps", "name": "Capsulorhexis Forceps", "colour": (58, 205, 95), "width": 0.03, "body": 0.15,
     "angle": 50, "synonyms": ("capsulorhexis forceps", "rhexis forceps", "Utrata forceps", "forceps")},
    {"key": "phaco", "name": "Phacoemulsifier Handpiece", "colour": (246, 246, 240), "width": 0.08, "body": 0.2,
     "angle": 100, "synonyms": ("phaco handpiece", "phaco tip", "phaco probe", "ultrasound handpiece")},
    {"key": "ia", "name": "Irrigation/Aspiration Handpiece", "colour": (68, 112, 236), "width": 0.07, "body": 0.18,
     "angle": 185, "synonyms": ("I/A handpiece", "irrigation-aspiration handpiece", "I/A tip", "aspiration handpiece")},
    {"key": "injector", "name": "Implant Injector", "colour": (206, 62, 200), "width": 0.09, "body": 0.2,
     "angle": 345, "synonyms": ("lens injector", "IOL injector", "injector", "implant injector")},
)

PHASE_NAMES = tuple(p["name"] for p in PHASES)
INSTRUMENT_NAMES = tuple(i["name"] for i in INSTRUMENTS)
_PHASE = {p["id"]: p for p in PHASES}
_INSTR = {i["key"]: i for i in INSTRUMENTS}
_INSTR_ORDER = tuple(i["key"] for i in INSTRUMENTS)

CATARACTS = {
    "nuclear": {"cause": "age-related nuclear sclerotic cataract", "lens": (188, 146, 66)},
    "brunescent": {"cause": "brunescent (brown) nuclear cataract", "lens": (122, 78, 40)},
    "cortical": {"cause": "cortical cataract with spoke-like opacities", "lens": (140, 128, 110)},
    "psc": {"cause": "posterior subcapsular cataract", "lens": (150, 96, 60)},
    "mature": {"cause": "mature white cataract", "lens": (226, 224, 206)},
}
_CATARACT_KEYS = tuple(CATARACTS)
_RED_REFLEX = np.array((214, 96, 44), np.float32)
_IRIS_COLOURS = ((112, 72, 40), (78, 104, 140), (102, 112, 70), (142, 104, 56))  # brown, blue, green, hazel

# Sizes. Clips are rendered at clip_fps, whole videos (videos, silent) at video_fps, benchmark videos at
# benchmark_fps; all at frame_size x frame_size pixels.
SIZES = {
    "default": {
        "videos": 40, "silent": 40, "benchmark": 8,
        "phase_seconds": (5.5, 9.0), "idle_seconds": (0.6, 1.4), "clip_seconds": (2.0, 4.0),
        "clips_per_phase": 2, "extra_clip_prob": 0.4,
        "frame_size": 64, "clip_fps": 8, "video_fps": 2, "benchmark_fps": 5,
        "shards": {"clips": 8, "videos": 4, "silent": 4},
    },
    "tiny": {
        "videos": 4, "silent": 4, "benchmark": 3,
        "phase_seconds": (2.5, 3.5), "idle_seconds": (0.4, 0.8), "clip_seconds": (1.5, 2.0),
        "clips_per_phase": 1, "extra_clip_prob": 0.0,
        "frame_size": 64, "clip_fps": 8, "video_fps": 2, "benchmark_fps": 4,
        "shards": {"clips": 4, "videos": 4, "silent": 4},
    },
}
SHARD_MULTIPLE = 4
BENCHMARK_FIRST_ID = 1001
MARKER = ".ophvl-mini.json"  # written first into every output folder; --overwrite only replaces folders holding it

# Random streams (the second entry of every SeedSequence).
_STREAM = {"videos": 1, "silent": 2, "benchmark": 3, "clip_render": 4, "video_render": 5, "silent_render": 6,
           "benchmark_render": 7}

# --------------------------------------------------------------------------------------------------------------------
# Procedures: what happens when.


@dataclass
class Segment:
    phase: int
    start: float
    end: float
    instruments: dict  # instrument key -> (start, end) seconds of presence
    params: dict = field(default_factory=dict)

    @property
    def main(self) -> str:
        return _PHASE[self.phase]["main"]


@dataclass
class Procedure:
    video_id: str
    duration: float
    segments: list
    eye: dict
    cataract: str
    angles: dict  # instrument key -> entry angle (radians)
    experience: int = 2
    surgeon: int = 1


def _rng(seed: int, *stream) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *[int(s) for s in stream]]))


def _plan_procedure(rng: np.random.Generator, cfg: dict, video_id: str, surgeon: int | None = None) -> Procedure:
    surgeon = int(rng.integers(1, 5)) if surgeon is None else surgeon
    experience = 1 if surgeon in (1, 4) else 2
    slow = 1.25 if experience == 1 else 1.0
    sequence = [1, 2, 3, 4, 5] + ([2] if rng.random() < 0.4 else []) + [6]
    lo, hi = cfg["phase_seconds"]
    t = float(rng.uniform(*cfg["idle_seconds"]))
    segments = []
    for phase in sequence:
        again = phase == 2 and segments and segments[-1].phase == 5  # a second, shorter viscous agent injection
        length = float(rng.uniform(lo, hi)) * slow * (0.7 if again else 1.0)
        start, end = t, t + length
        main = _PHASE[phase]["main"]
        enters, leaves = start + float(rng.uniform(0.02, 0.12)) * length, end - float(rng.uniform(0.02, 0.1)) * length
        instruments = {main: (enters, leaves)}
        for key, prob in _PHASE[phase]["extra"]:
            if rng.random() < prob:
                span = float(rng.uniform(0.3, 0.6)) * length
                first = float(rng.uniform(start + 0.1 * length, end - span))
                instruments[key] = (first, first + span)
        params = {"phi0": float(rng.uniform(0, 2 * np.pi)), "omega": float(rng.uniform(0.6, 1.2)),
                  "offset": float(rng.uniform(0, 2 * np.pi))}
        segments.append(Segment(phase, start, end, instruments, params))
        t = end
    eye = {
        "cx": float(rng.uniform(-0.05, 0.05)), "cy": float(rng.uniform(-0.05, 0.05)),
        "iris_r": float(rng.uniform(0.52, 0.6)), "pupil_ratio": float(rng.uniform(0.58, 0.66)),
        "iris": [float(c) for c in np.array(_IRIS_COLOURS[int(rng.integers(len(_IRIS_COLOURS)))])
                 * rng.uniform(0.85, 1.15, 3)],
        "sclera": [float(c) for c in np.array((182, 78, 66)) * rng.uniform(0.88, 1.12, 3)],
        "gain": float(rng.uniform(0.9, 1.1)), "cast": [float(c) for c in rng.uniform(0.94, 1.06, 3)],
        "flicker": float(rng.uniform(0, 2 * np.pi)), "vessels": [float(v) for v in rng.uniform(0, 2 * np.pi, 4)],
        "tremor": 0.006 if experience == 2 else 0.014,
    }
    angles = {i["key"]: math.radians(i["angle"] + float(rng.uniform(-20, 20))) for i in INSTRUMENTS}
    cataract = _CATARACT_KEYS[int(rng.integers(len(_CATARACT_KEYS)))]
    return Procedure(video_id, t, segments, eye, cataract, angles, experience, surgeon)


def phase_at(proc: Procedure, t: float) -> int:
    """The phase id at time `t` (0 before the first phase: idle, unannotated)."""
    for seg in proc.segments:
        if seg.start <= t < seg.end:
            return seg.phase
    return proc.segments[-1].phase if t >= proc.segments[-1].end else 0


def instruments_at(proc: Procedure, t: float) -> list[str]:
    """The instrument keys in view at time `t`, in `INSTRUMENTS` order."""
    present = set()
    for seg in proc.segments:
        for key, (a, b) in seg.instruments.items():
            if a <= t < b:
                present.add(key)
    return [k for k in _INSTR_ORDER if k in present]


# --------------------------------------------------------------------------------------------------------------------
# Rendering.


class _Canvas:
    """Per (procedure, frame size) precomputed coordinates and static layers."""

    def __init__(self, proc: Procedure, size: int):
        eye = proc.eye
        self.size = size
        coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
        self.X, self.Y = np.meshgrid(coords, coords)
        self.cx, self.cy = eye["cx"], eye["cy"]
        self.iris_r = eye["iris_r"]
        self.pupil_r = eye["iris_r"] * eye["pupil_ratio"]
        dx, dy = self.X - self.cx, self.Y - self.cy
        self.R = np.sqrt(dx * dx + dy * dy)
        self.TH = np.arctan2(-dy, dx)
        px = 2.0 / size
        self.px = px
        iris_mask = _soft(self.iris_r - self.R, px)
        self.pupil_mask = _soft(self.pupil_r - self.R, px)[..., None]
        a = eye["vessels"]
        vessels = np.maximum(0, np.sin(5 * self.TH + a[0] + 4 * self.R) * np.sin(3 * self.TH + a[1] - 6 * self.R)) ** 6
        sclera = np.array(eye["sclera"], np.float32) * (1 - 0.35 * self.R ** 2)[..., None]
        sclera = sclera - (vessels * 55)[..., None] * np.array((0.4, 1.0, 1.0), np.float32)
        stria = 0.82 + 0.18 * np.sin(36 * self.TH + 3 * a[2]) * np.sin(7 * self.TH + a[3])
        iris = np.array(eye["iris"], np.float32) * (stria * (0.75 + 0.35 * self.R / self.iris_r))[..., None]
        limbus = np.exp(-((self.R - self.iris_r) / (1.5 * px)) ** 2)[..., None]
        base = sclera * (1 - iris_mask[..., None]) + iris * iris_mask[..., None]
        self.base = (base * (1 - 0.55 * limbus)).astype(np.float32)
        lens = np.broadcast_to(np.array(CATARACTS[proc.cataract]["lens"], np.float32), (size, size, 3)).copy()
        rel = self.R / self.pupil_r
        if proc.cataract == "cortical":
            spokes = (np.maximum(0, np.sin(8 * self.TH + a[0])) ** 4 * np.clip(rel - 0.25, 0, 1))[..., None]
            lens += spokes * (np.array((235, 235, 225), np.float32) - lens)
        elif proc.cataract == "psc":
            plaque = _soft(0.45 - rel, px / self.pupil_r)[..., None]
            lens += 0.8 * plaque * (np.array((230, 220, 190), np.float32) - lens)
        lens *= (1.05 - 0.25 * np.clip(rel, 0, 1) ** 2)[..., None]
        self.lens = lens.astype(np.float32)

    def point(self, angle: float, radius: float) -> tuple[float, float]:
        return self.cx + radius * math.cos(angle), self.cy - radius * math.sin(angle)

    def segment(self, x0, y0, x1, y1, half_width):
        vx, vy = x1 - x0, y1 - y0
        px, py = self.X - x0, self.Y - y0
        h = np.clip((px * vx + py * vy) / max(vx * vx + vy * vy, 1e-9), 0, 1)
        d = np.hypot(px - h * vx, py - h * vy)
        return _soft(half_width - d, self.px)

    def disk(self, x, y, r):
        return _soft(r - np.hypot(self.X - x, self.Y - y), self.px)

    def arc(self, radius, half_width, a0, a1):
        """A ring of `radius` around the eye centre, between angles a0 and a1 (counter-clockwise, a1 > a0)."""
        ring = _soft(half_width - np.abs(self.R - radius), self.px)
        inside = np.mod(self.TH - a0, 2 * np.pi) <= (a1 - a0)
        return ring * inside


def _soft(signed_distance, px):
    """Antialiased mask: 1 inside (positive distance), 0 outside, a one-pixel ramp."""
    return np.clip(signed_distance / px + 0.5, 0, 1).astype(np.float32)


def _blend(img, alpha, colour, opacity=1.0):
    img += (alpha * opacity)[..., None] * (np.asarray(colour, np.float32) - img)


def _clearance(proc: Procedure, t: float) -> float:
    """How much of the cataract is gone at `t` (0 before phacoemulsification, 1 after it)."""
    for seg in proc.segments:
        if seg.phase == 4:
            return float(np.clip((t - seg.start) / (seg.end - seg.start), 0, 1))
    return 0.0


def _tip(c: _Canvas, proc: Procedure, seg: Segment, key: str, t: float, progress: float) -> tuple[float, float]:
    angle, p = proc.angles[key], seg.params
    pr, ir = c.pupil_r, c.iris_r
    if key != seg.main:  # a secondary instrument waits near the pupil margin
        return c.point(angle + 0.25 * math.sin(0.8 * t + p["offset"]), 0.75 * pr)
    if key == "knife":
        depth = 0.5 + 0.5 * math.sin(2 * np.pi * 0.6 * p["omega"] * t + p["offset"])
        return c.point(angle, ir * (1.08 - 0.32 * depth))
    if key == "cannula":
        w = 2 * np.pi * 0.25 * p["omega"] * t + p["offset"]
        return c.cx + 0.35 * pr * math.cos(w), c.cy + 0.35 * pr * math.sin(w)
    if key == "forceps":
        return c.point(p["phi0"] + 2 * np.pi * progress + 0.15 * math.sin(3 * t), 0.75 * pr)
    if key == "phaco":
        reach = 0.12 * pr * (1 + 0.6 * math.sin(2 * np.pi * 2.0 * t + p["offset"]))
        return c.point(angle, reach)
    if key == "ia":
        return c.point(angle + np.pi + 1.0 * math.sin(2 * np.pi * 0.35 * p["omega"] * t + p["offset"]), 0.7 * pr)
    # injector: advances into the pupil, then withdraws
    depth = min(1.0, progress * 2.2) if progress < 0.7 else max(0.0, 1 - (progress - 0.7) / 0.3)
    return c.point(angle, pr * (1.3 - 0.9 * depth))


def _draw_instrument(img, c: _Canvas, key: str, angle: float, tip: tuple[float, float], t: float):
    """A shaft from the tip toward the frame edge, widening into the instrument's body (handpiece, syringe, handle)."""
    info = _INSTR[key]
    colour, hw, body = info["colour"], info["width"] / 2, info["body"] / 2
    tx, ty = tip
    dx, dy = math.cos(angle), -math.sin(angle)
    reach = 0.28 if key == "knife" else 0.5  # length of the thin part, from the tip to the body
    bx, by = tx + reach * dx, ty + reach * dy
    ex, ey = tx + 3 * dx, ty + 3 * dy
    shade = np.asarray(colour, np.float32) * 0.72
    _blend(img, c.segment(bx, by, ex, ey, body), shade)
    _blend(img, c.segment(bx + 0.06 * dx, by + 0.06 * dy, ex, ey, body * 0.55), colour, 0.6)
    if key == "forceps":
        opening = 0.1 + 0.06 * math.sin(4 * t)
        for side in (-1, 1):
            a = angle + side * opening
            jx, jy = tx + reach * math.cos(a), ty - reach * math.sin(a)
            _blend(img, c.segment(tx, ty, jx, jy, hw), colour)
    elif key == "knife":
        _blend(img, c.segment(tx, ty, bx, by, hw * 1.5), colour)
    else:
        _blend(img, c.segment(tx, ty, bx, by, hw), colour)
        if key == "phaco":
            _blend(img, c.disk(tx, ty, hw * 0.7), (255, 255, 200))
        elif key == "injector":
            _blend(img, c.disk(tx, ty, hw * 1.1), colour)


def _draw_phase(img, c: _Canvas, proc: Procedure, seg: Segment, t: float, progress: float, rng):
    p, pr = seg.params, c.pupil_r
    if seg.phase == 1:  # a white slit grows at the limbus where the knife enters
        angle = proc.angles["knife"]
        half = 0.15 + 0.35 * progress
        _blend(img, c.arc(c.iris_r, 1.6 * c.px, angle - half, angle + half), (252, 246, 240))
        x, y = c.point(angle - half, c.iris_r * 1.08)
        _blend(img, c.disk(x, y, 2.5 * c.px), (120, 20, 24), 0.8)
    elif seg.phase == 2:  # a translucent cyan gel spreads from the centre
        radius = pr * (0.55 + 1.05 * progress)
        gel = _soft(radius - c.R, 3 * c.px)
        _blend(img, gel, (118, 222, 236), 0.5)
    elif seg.phase == 3:  # the rhexis arc grows around the pupil, its inside slightly lighter
        _blend(img, _soft(0.75 * pr - c.R, c.px), (250, 250, 245), 0.2)
        a0 = p["phi0"]
        _blend(img, c.arc(0.75 * pr, 1.1 * c.px, a0, a0 + max(0.6, 2 * np.pi * progress)), (252, 252, 250), 0.95)
    elif seg.phase == 4:  # a pulsing bright nucleus and fragments
        radius = pr * (0.5 + 0.15 * math.sin(2 * np.pi * 1.5 * t + p["offset"])) * (1 - 0.4 * progress)
        _blend(img, _soft(radius - c.R, 2 * c.px), (255, 238, 160), 0.85)
        for _ in range(10):
            r, a = pr * math.sqrt(rng.random()) * 0.95, rng.random() * 2 * np.pi
            x, y = c.point(a, r)
            _blend(img, c.disk(x, y, 1.2 * c.px), (250, 226, 150), 0.9)
    elif seg.phase == 5:  # a fading ring of cortex and particles orbiting toward the aspiration port
        _blend(img, c.arc(0.86 * pr, 1.6 * c.px, -np.pi, np.pi), (238, 232, 214), 0.8 * (1 - progress) + 0.1)
        for k in range(6):
            a = p["phi0"] + k * np.pi / 3 + 2 * np.pi * 0.5 * t
            x, y = c.point(a, pr * (0.75 - 0.35 * ((t * 0.7 + k / 6) % 1)))
            _blend(img, c.disk(x, y, 1.3 * c.px), (245, 245, 235), 0.9)
    elif seg.phase == 6:  # the IOL: an optic ring and two haptics that unfold and rotate
        shown = float(np.clip(progress * 2.5, 0.25, 1))
        rot = p["phi0"] + np.pi * progress
        _blend(img, _soft(0.8 * pr - c.R, c.px), (210, 226, 240), 0.25 * shown)
        _blend(img, c.arc(0.8 * pr, 1.1 * c.px, -np.pi, np.pi), (176, 214, 246), shown)
        for base in (rot, rot + np.pi):
            _blend(img, c.arc(1.3 * pr, 0.9 * c.px, base, base + 1.3 * shown), (186, 230, 252), shown)


def render_frame(proc: Procedure, canvas: _Canvas, t: float, rng: np.random.Generator) -> np.ndarray:
    """The frame of `proc` at time `t` seconds: uint8 (size, size, 3)."""
    c, eye = canvas, proc.eye
    img = c.base.copy()
    clear = _clearance(proc, t)
    pupil = c.lens + clear * (_RED_REFLEX - c.lens)
    img += c.pupil_mask * (pupil - img)
    seg = next((s for s in proc.segments if s.start <= t < s.end), None)
    if seg is None and t >= proc.segments[-1].end:
        seg = proc.segments[-1]
    if seg is not None:
        progress = float(np.clip((t - seg.start) / (seg.end - seg.start), 0, 1))
        _draw_phase(img, c, proc, seg, t, progress, rng)
        present = instruments_at(proc, t)
        for key in sorted(present, key=lambda k: k == seg.main):  # the main instrument on top
            tx, ty = _tip(c, proc, seg, key, t, progress)
            tremor = eye["tremor"]
            tip = (tx + tremor * float(rng.standard_normal()), ty + tremor * float(rng.standard_normal()))
            _draw_instrument(img, c, key, proc.angles[key], tip, t)
    gain = eye["gain"] * (1 + 0.04 * math.sin(2 * np.pi * 0.4 * t + eye["flicker"]))
    img *= gain * np.asarray(eye["cast"], np.float32)
    img += rng.standard_normal(img.shape, dtype=np.float32) * 3.0
    return np.clip(img, 0, 255).astype(np.uint8)


def render(proc: Procedure, times, size: int, rng: np.random.Generator) -> np.ndarray:
    canvas = _Canvas(proc, size)
    return np.stack([render_frame(proc, canvas, float(t), rng) for t in times])


def _frame_times(start: float, fps: float, n: int) -> np.ndarray:
    return start + np.arange(n) / fps


# --------------------------------------------------------------------------------------------------------------------
# Text.

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


# --------------------------------------------------------------------------------------------------------------------
# The generator.


def _check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty `out`; with `overwrite`, empty it, but only when OphVL-mini wrote it (its marker file)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    if not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite (overwrite=True) to replace it")
    foreign = [e for e in entries if e not in {"README.md", "data", "benchmark", MARKER}]
    if MARKER not in entries or foreign:
        what = ", ".join(foreign[:5]) if foreign else f"no {MARKER} marker"
        raise FileExistsError(f"refusing to overwrite {out}: OphVL-mini did not write it ({what})")
    for entry in entries:
        path = out / entry
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def _progress(iterable, enabled: bool, **kwargs):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


def _samples_per_part(count: int, shards: int) -> int:
    return max(1, math.ceil(count / shards))


def generate_ophvl_mini(out_dir, seed: int = 0, size: str = "default", *, overwrite: bool = False,
                        progress: bool = True, **overrides) -> dict:
    """Generate OphVL-mini under `out_dir` and return a summary.

    Args:
        out_dir: the folder to create; an existing non-empty one is refused unless `overwrite`, and even then unless
            it is a previous OphVL-mini output (its `.ophvl-mini.json` marker, nothing else besides `README.md`,
            `data/` and `benchmark/`).
        seed: the random seed; the same seed gives byte-identical files.
        size: `"default"` (about 620 clips, 40 videos, 40 silent videos, 8 benchmark videos; ~20 s on one core) or
            `"tiny"` (about 26 clips, 4 + 4 videos, 3 benchmark videos; ~1.5 s, for tests).
        progress: show tqdm progress bars.
        **overrides: replace entries of `SIZES[size]` (e.g. `videos=10`, `frame_size=96`).

    Returns:
        `{"out_dir", "seed", "size", "clips"|"videos"|"silent": {"samples", "shards"}, "benchmark": {"videos",
        "frames", "annotated_frames", "fps"}, "seconds"}`.
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of {tuple(SIZES)}")
    unknown = set(overrides) - set(SIZES[size])
    if unknown:
        raise TypeError(f"unknown OphVL-mini settings: {sorted(unknown)}")
    cfg = {**SIZES[size], **overrides}
    if cfg["frame_size"] % 2 or cfg["frame_size"] < 16:
        raise ValueError(f"frame_size must be even and >= 16, got {cfg['frame_size']}")
    began = time.perf_counter()
    out = Path(out_dir)
    _check_out_dir(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    marker = {"generator": "datasets_ophvl.mini", "version": GENERATOR_VERSION, "seed": seed, "size": size}
    atomic_write_bytes(out / MARKER, (json.dumps(marker) + "\n").encode())
    S = cfg["frame_size"]

    # Plan everything first (cheap), so shard sizes are known before writing.
    procedures = [_plan_procedure(_rng(seed, _STREAM["videos"], i), cfg, f"ophvl-mini-{i:04d}")
                  for i in range(cfg["videos"])]
    text_rngs = [_rng(seed, _STREAM["videos"], i, 1) for i in range(cfg["videos"])]
    clip_plans = [_plan_clips(proc, cfg, r) for proc, r in zip(procedures, text_rngs)]
    n_clips = sum(len(plan) for plan in clip_plans)
    stats = {}

    writer = ShardWriter(out, "clips", _samples_per_part(n_clips, cfg["shards"]["clips"]))
    items = [(i, j, clip) for i, plan in enumerate(clip_plans) for j, clip in enumerate(plan)]
    for i, j, clip in _progress(items, progress, desc="clips", unit="clip"):
        proc = procedures[i]
        frames = render(proc, _frame_times(clip["start"], cfg["clip_fps"], clip["n_frames"]), S,
                        _rng(seed, _STREAM["clip_render"], i, j))
        record = {
            "video_id": proc.video_id, "start": clip["start"], "end": clip["end"], "narration": clip["narration"],
            "sentence_ids": clip["sentence_ids"], "phase": _PHASE[clip["phase"]]["name"], "phase_id": clip["phase"],
            "instruments": [_INSTR[k]["name"] for k in clip["instruments"]],
        }
        writer.write(make_key(proc.video_id, j), encode_video(frames, cfg["clip_fps"]), record)
    stats["clips"] = {"samples": n_clips, "shards": len(writer.finalize(SHARD_MULTIPLE))}

    writer = ShardWriter(out, "videos", _samples_per_part(len(procedures), cfg["shards"]["videos"]))
    for i, proc in enumerate(_progress(procedures, progress, desc="videos", unit="video")):
        frames, duration = _render_whole(proc, cfg["video_fps"], S, _rng(seed, _STREAM["video_render"], i))
        title_rng = _rng(seed, _STREAM["videos"], i, 2)
        record = {"video_id": proc.video_id, "duration": duration, "title": make_title(proc, title_rng),
                  "title_summary": make_title_summary(proc, title_rng)}
        writer.write(make_key(proc.video_id), encode_video(frames, cfg["video_fps"]), record)
    stats["videos"] = {"samples": len(procedures), "shards": len(writer.finalize(SHARD_MULTIPLE))}

    writer = ShardWriter(out, "silent", _samples_per_part(cfg["silent"], cfg["shards"]["silent"]))
    for i in _progress(range(cfg["silent"]), progress, desc="silent", unit="video"):
        proc = _plan_procedure(_rng(seed, _STREAM["silent"], i), cfg, f"ophvl-mini-silent-{i:04d}")
        frames, duration = _render_whole(proc, cfg["video_fps"], S, _rng(seed, _STREAM["silent_render"], i))
        record = {"video_id": proc.video_id, "duration": duration,
                  "title": make_title(proc, _rng(seed, _STREAM["silent"], i, 2), silent=True, number=i + 1)}
        writer.write(make_key(proc.video_id), encode_video(frames, cfg["video_fps"]), record)
    stats["silent"] = {"samples": cfg["silent"], "shards": len(writer.finalize(SHARD_MULTIPLE))}

    bench = write_benchmark(out / "benchmark", seed, cfg, progress=progress)

    write_dataset_card(
        out,
        pretty_name="OphVL-mini (synthetic)",
        stats=stats,
        build={
            "generator": "datasets_ophvl.mini", "version": GENERATOR_VERSION, "seed": seed, "size": size,
            "settings": cfg, "phases": list(PHASE_NAMES), "instruments": list(INSTRUMENT_NAMES),
            "benchmark": f"benchmark/: {bench['videos']} held-out videos, Cataract-101 phase layout and CATARACTS "
                         "tool-presence layout (see benchmark/README.md)",
        },
        license="apache-2.0",
        privacy="Synthetic: every frame is drawn by a program and every text comes from templates. No patient, "
                "surgeon or hospital data is involved.",
    )
    return {"out_dir": str(out), "seed": seed, "size": size, **stats, "benchmark": bench,
            "seconds": round(time.perf_counter() - began, 2)}


def _render_whole(proc: Procedure, fps: float, size: int, rng) -> tuple[np.ndarray, float]:
    n = max(1, int(math.ceil(proc.duration * fps)))  # cover the whole procedure, so every clip lies inside
    return render(proc, _frame_times(0.0, fps, n), size, rng), round(n / fps, 3)


# --------------------------------------------------------------------------------------------------------------------
# The benchmark.

_BENCHMARK_README = """# OphVL-mini benchmark (synthetic, held out)

{count} synthetic cataract-surgery-like videos that appear in no OphVL-mini subset, labelled per frame with phases in
the Cataract-101 layout and with instrument presence in the CATARACTS tool-annotation layout, so that evaluation code
reads them as it reads the real datasets. Generated by `datasets_ophvl.mini` (version {version}, seed {seed}).

```
videos.csv                      VideoID;Frames;FPS;Surgeon;Experience
annotations.csv                 VideoID;FrameNo;Phase        one row per phase start
phases.csv                      Phase;Meaning                phase ids 1..{n_phases}
videos/case_<VideoID>.mp4       H.264, {size}x{size}, {fps} fps
tool_annotations/case_<VideoID>.csv   Frame,<tool>,<tool>,...  one row per frame, 0/1
meta.json                       the class names, frame-number bases and a suggested train/test split
```

## Phases (Cataract-101 layout)

- `videos.csv`, `annotations.csv` and `phases.csv` are semicolon-separated with a header row, as in the Cataract-101
  release.
- `annotations.csv` lists, per video, the frame at which each phase starts (`FrameNo`, 0-based frame index in the mp4).
  A phase lasts until the next row of the same video; the last phase lasts to the final frame (`Frames - 1`). Frames
  before a video's first row are an idle lead-in and are unannotated: drop them when scoring. A phase can occur twice
  in one video (viscous agent injection before the lens implant), as in the real data.
- `phases.csv` maps the ids to names. OphVL-mini uses 6 of Cataract-101's 10 phases, renumbered:

{phase_rows}

- `Surgeon` is 1-4; `Experience` is 1 for the less experienced surgeons (1 and 4, slower, shakier) and 2 for the
  others, mirroring the real table.
- `FPS` is {fps} (the real data has 25): sample frames at 1 fps with `FPS` from `videos.csv`, never a constant.

## Instruments (CATARACTS tool-annotation layout)

- One comma-separated file per video, `tool_annotations/case_<VideoID>.csv`, with a `Frame` column (1-based: row
  `Frame = f + 1` is mp4 frame `f`) and one column per tool, named as in CATARACTS: {tools}.
- Values are 0 (absent) or 1 (in view); the real CATARACTS files also use 0.5 for ambiguous frames, which these never
  contain. The number of rows equals `Frames` in `videos.csv` and the frame count of the mp4.

## Verified and assumed

Verified on public copies of Cataract-101's CSV files and in third-party Cataract-101 / CATARACTS loaders: the
Cataract-101 headers and `;` separators, the start-frame annotation rule, recurring phases, 0-based `FrameNo`, the
`videos/case_<id>.mp4` naming and the phase names; the CATARACTS `Frame` index column, one column per tool named after
the tool, and 0.5 values. Assumed: the meaning of `Experience`; CATARACTS' comma separator, header capitalisation,
1-based `Frame` numbering and the `tool_annotations/` folder name. Phase ids here are 1..{n_phases}, not Cataract-101's
(phacoemulsification is 4 here, 5 there): map ids through `phases.csv`.
"""


def write_benchmark(root, seed: int, cfg: dict, progress: bool = False) -> dict:
    """Write the held-out benchmark under `root` and return `{"videos", "frames", "annotated_frames", "fps"}`."""
    root = Path(root)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "tool_annotations").mkdir(parents=True, exist_ok=True)
    fps, S = cfg["benchmark_fps"], cfg["frame_size"]
    video_rows, annotation_rows, ids = [], [], []
    total = annotated = 0
    for i in _progress(range(cfg["benchmark"]), progress, desc="benchmark", unit="video"):
        vid = BENCHMARK_FIRST_ID + i
        ids.append(vid)
        proc = _plan_procedure(_rng(seed, _STREAM["benchmark"], i), cfg, f"case_{vid}", surgeon=1 + i % 4)
        n = int(math.floor(proc.duration * fps))
        times = _frame_times(0.0, fps, n)
        frames = render(proc, times, S, _rng(seed, _STREAM["benchmark_render"], i))
        atomic_write_bytes(root / "videos" / f"case_{vid}.mp4", encode_video(frames, fps))
        phases = [phase_at(proc, float(t)) for t in times]
        previous = 0
        for f, phase in enumerate(phases):
            if phase and phase != previous:
                annotation_rows.append((vid, f, phase))
            previous = phase
        tools = io.StringIO()
        table = csv.writer(tools, lineterminator="\n")
        table.writerow(["Frame", *INSTRUMENT_NAMES])
        for f, t in enumerate(times):
            present = set(instruments_at(proc, float(t)))
            table.writerow([f + 1, *[int(k in present) for k in _INSTR_ORDER]])
        atomic_write_bytes(root / "tool_annotations" / f"case_{vid}.csv", tools.getvalue().encode())
        video_rows.append((vid, n, fps, proc.surgeon, proc.experience))
        total += n
        annotated += sum(1 for p in phases if p)

    _write_csv(root / "videos.csv", ["VideoID", "Frames", "FPS", "Surgeon", "Experience"], video_rows)
    _write_csv(root / "annotations.csv", ["VideoID", "FrameNo", "Phase"], annotation_rows)
    _write_csv(root / "phases.csv", ["Phase", "Meaning"], [(p["id"], p["name"]) for p in PHASES])
    half = max(1, len(ids) // 2)
    meta = {
        "name": "OphVL-mini benchmark", "generator_version": GENERATOR_VERSION, "seed": seed,
        "phase_layout": "Cataract-101", "tool_layout": "CATARACTS",
        "phases": {str(p["id"]): p["name"] for p in PHASES}, "instruments": list(INSTRUMENT_NAMES),
        "fps": fps, "frame_size": S, "frame_no_base": 0, "tool_frame_base": 1,
        "split": {"train": ids[:half], "test": ids[half:]},
    }
    atomic_write_bytes(root / "meta.json", (json.dumps(meta, indent=2) + "\n").encode())
    phase_rows = "\n".join(f"  | {p['id']} | {p['name']} |" for p in PHASES)
    readme = _BENCHMARK_README.format(
        count=len(ids), version=GENERATOR_VERSION, seed=seed, n_phases=len(PHASES), size=S, fps=fps,
        phase_rows="  | Phase | Meaning |\n  |---|---|\n" + phase_rows,
        tools=", ".join(f"`{name}`" for name in INSTRUMENT_NAMES),
    )
    atomic_write_bytes(root / "README.md", readme.encode())
    return {"videos": len(ids), "frames": total, "annotated_frames": annotated, "fps": fps}


def _write_csv(path: Path, header, rows) -> None:
    text = io.StringIO()
    table = csv.writer(text, delimiter=";", lineterminator="\n")
    table.writerow(header)
    table.writerows(rows)
    atomic_write_bytes(path, text.getvalue().encode())


# --------------------------------------------------------------------------------------------------------------------
# Command line.


def _format_summary(summary: dict) -> str:
    lines = [f"OphVL-mini ({summary['size']}, seed {summary['seed']}) written to {summary['out_dir']}"]
    for subset in ("clips", "videos", "silent"):
        lines.append(f"  {subset:<7} {summary[subset]['samples']:>5} samples in {summary[subset]['shards']} shards")
    b = summary["benchmark"]
    lines.append(f"  benchmark {b['videos']} videos, {b['frames']} frames ({b['annotated_frames']} annotated) "
                 f"at {b['fps']} fps")
    lines.append(f"  took {summary['seconds']:.1f} s")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets_ophvl.mini", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the folder to create")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", choices=tuple(SIZES), default="default")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous OphVL-mini folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        summary = generate_ophvl_mini(args.out, seed=args.seed, size=args.size, overwrite=args.overwrite,
                                      progress=not args.quiet)
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(_format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
