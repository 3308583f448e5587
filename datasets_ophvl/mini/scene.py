"""The scene: what happens in the eye and when, independent of how it is drawn.

The vocabulary (`PHASES` with Cataract-101's names, `INSTRUMENTS` with CATARACTS' tool names, `CATARACTS`), the
clinics (`CLINICS`: how each clinic's microscope looks and how its surgeons work), and procedure planning: a
`Procedure` is an idle lead-in followed by `Segment`s (one per phase, with the instruments in view and when) plus the
per-video eye geometry and nuisance draws. The labels `phase_at` and `instruments_at` are functions of the planned
scene only, never of the clinic it is rendered in.
"""

import math
from dataclasses import dataclass, field

import numpy as np


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

# --------------------------------------------------------------------------------------------------------------------
# Clinics: two recording sites that differ visibly but not semantically.


@dataclass(frozen=True)
class Clinic:
    """How one clinic's videos look and how its surgeons work.

    Nothing here changes *what* happens in the eye (which phases, their signatures, which instruments each phase uses)
    or any label: `phase_at` and `instruments_at` read the planned scene only. Planning applies the workflow and the
    eye geometry (`phase_scale`, `second_viscous`, `idle_scale`, `magnification`, `offset`, `angle_shift`); rendering
    applies the microscope and the instrument looks (`cast`, `gain`, `vignetting`, `palette`, `palette_mix`,
    `tip_width`, `body_width`), so one planned procedure can be rendered in either clinic.
    """

    key: str
    description: str
    # Microscope, at render time. Each video keeps its own gain, cast and flicker jitter (drawn when planning) on top.
    cast: tuple = (1.0, 1.0, 1.0)  # per-channel (RGB) camera gain: a colour cast, positive, so orderings are kept
    gain: float = 1.0  # illumination gain
    vignetting: float = 0.0  # darkening toward the frame corners: 1 - vignetting * r^2 / 2 (r = 1 at the edge middle)
    # Microscope, at planning time: the eye geometry.
    magnification: float = 1.0  # factor on the iris (and so pupil) radius
    offset: tuple | None = None  # range of |eye centre offset| (half-frames), drawn at a random direction;
    #                              None: each coordinate uniform in [-0.05, 0.05]
    # Instruments: same types, same shapes and motions, another manufacturer's look and another port placement.
    palette: dict = field(default_factory=dict)  # instrument key -> this clinic's colour for it (RGB)
    palette_mix: float = 0.0  # how far each instrument's colour moves toward its palette colour (0..1)
    tip_width: float = 1.0  # factor on the thin part's width
    body_width: float = 1.0  # factor on the handpiece/handle's width
    angle_shift: float = 0.0  # degrees added to every instrument's entry direction (before the per-video jitter)
    # Workflow.
    phase_scale: float = 1.0  # factor on every phase's length
    second_viscous: float = 0.4  # probability of a second viscous agent injection before the lens implant
    idle_scale: float = 1.0  # factor on the idle lead-in

    def instrument_look(self, key: str) -> tuple[tuple, float, float]:
        """`(colour, tip width, body width)` of instrument `key` in this clinic."""
        info = _INSTR[key]
        colour = info["colour"]
        if self.palette_mix:
            target = self.palette[key]
            colour = tuple(float(c + self.palette_mix * (p - c)) for c, p in zip(colour, target))
        return colour, info["width"] * self.tip_width, info["body"] * self.body_width


CLINICS = {
    "A": Clinic(
        "A", "the narrated data's clinic: neutral microscope, centred eye, the reference instrument looks and pace",
    ),
    "B": Clinic(
        "B", "another clinic: a cool blue-green microscope with darker corners, stronger magnification and an "
             "off-centre eye, other instrument makes and ports, a slower pace",
        cast=(0.78, 1.0, 1.24), gain=0.95, vignetting=0.55, magnification=1.25, offset=(0.08, 0.15),
        palette={"knife": (214, 182, 120), "cannula": (240, 150, 60), "forceps": (40, 170, 170),
                 "phaco": (226, 206, 236), "ia": (130, 80, 230), "injector": (230, 70, 120)},
        palette_mix=0.45, tip_width=1.3, body_width=0.75, angle_shift=25.0,
        phase_scale=1.2, second_viscous=0.7, idle_scale=1.8,
    ),
}


def _clinic(clinic) -> Clinic:
    if isinstance(clinic, Clinic):
        return clinic
    if clinic not in CLINICS:
        raise ValueError(f"unknown clinic {clinic!r}; expected one of {tuple(CLINICS)}")
    return CLINICS[clinic]


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
    clinic: str = "A"  # where it was recorded: the look `render` uses unless told otherwise


def _rng(seed: int, *stream) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *[int(s) for s in stream]]))


def _plan_procedure(rng: np.random.Generator, cfg: dict, video_id: str, surgeon: int | None = None,
                    clinic: str = "A") -> Procedure:
    """Plan one procedure recorded in `clinic` (its pace, eye geometry and instrument ports; see `Clinic`)."""
    site = _clinic(clinic)
    surgeon = int(rng.integers(1, 5)) if surgeon is None else surgeon
    experience = 1 if surgeon in (1, 4) else 2
    slow = (1.25 if experience == 1 else 1.0) * site.phase_scale
    sequence = [1, 2, 3, 4, 5] + ([2] if rng.random() < site.second_viscous else []) + [6]
    lo, hi = cfg["phase_seconds"]
    t = float(rng.uniform(*cfg["idle_seconds"])) * site.idle_scale
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
        "iris_r": float(rng.uniform(0.52, 0.6)) * site.magnification, "pupil_ratio": float(rng.uniform(0.58, 0.66)),
        "iris": [float(c) for c in np.array(_IRIS_COLOURS[int(rng.integers(len(_IRIS_COLOURS)))])
                 * rng.uniform(0.85, 1.15, 3)],
        "sclera": [float(c) for c in np.array((182, 78, 66)) * rng.uniform(0.88, 1.12, 3)],
        "gain": float(rng.uniform(0.9, 1.1)), "cast": [float(c) for c in rng.uniform(0.94, 1.06, 3)],
        "flicker": float(rng.uniform(0, 2 * np.pi)), "vessels": [float(v) for v in rng.uniform(0, 2 * np.pi, 4)],
        "tremor": 0.006 if experience == 2 else 0.014,
    }
    angles = {i["key"]: math.radians(i["angle"] + site.angle_shift + float(rng.uniform(-20, 20)))
              for i in INSTRUMENTS}
    cataract = _CATARACT_KEYS[int(rng.integers(len(_CATARACT_KEYS)))]
    if site.offset is not None:  # drawn last, so a clinic without it keeps every earlier draw
        radius, direction = float(rng.uniform(*site.offset)), float(rng.uniform(0, 2 * np.pi))
        eye["cx"], eye["cy"] = radius * math.cos(direction), radius * math.sin(direction)
    return Procedure(video_id, t, segments, eye, cataract, angles, experience, surgeon, site.key)


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


def phase_sequence(proc: Procedure) -> list[str]:
    """The phase names in order of occurrence, repeats kept (a second viscous agent injection appears twice)."""
    return [_PHASE[seg.phase]["name"] for seg in proc.segments]


def instrument_sequence(proc: Procedure) -> list[str]:
    """The instrument names in order of first appearance (ties in `INSTRUMENTS` order)."""
    first = {}
    for seg in proc.segments:
        for key, (a, _) in seg.instruments.items():
            first[key] = min(a, first.get(key, math.inf))
    return [_INSTR[key]["name"] for key in sorted(first, key=lambda k: (first[k], _INSTR_ORDER.index(k)))]
