"""The built-in benchmarks: `BUILTIN_BENCHMARKS`, registered by `registry.load_builtin_benchmarks()` (this module
never imports the registry). Their prompts are in `prompts/<file>.json`.

Class names and their order follow each dataset's own publication (label-id order where the annotations use ids).
Where an annotation file spells a class differently from its published name (typos, underscores), the loader maps the
file's spelling through `label_map`; the class name, which the prompt templates are filled with, keeps the published
wording. Each description says what was checked against public copies of the dataset's files or loaders (verified) and
what is assumed; a benchmark without an official split loads every video whatever split is asked for. Each `scoring`
says what is scored and what is left out (the benchmark card, `python -m evaluate_suite card NAME`).

Real datasets (`real=True`, 11 entries): `cataract-1k-phase`, `cataract-1k-instruments`, `cataract-101-phase`,
`cataract-21-phase`, `cataracts-tools`, `cataracts2020-steps`, `ophnet-phase`, `ophnet-operation`,
`cadis-instruments`, `sics-155-phase`, `cataract-lmm-phase`. Synthetic: `ophvl-mini-phase`,
`ophvl-mini-instruments` (clinic A: `benchmark/`), `ophvl-mini-shifted-phase`, `ophvl-mini-shifted-instruments`
(clinic B: `benchmark-shifted/`).

Comparison defaults: the real benchmarks use one prompt sentence per class (`prompt_mode="sentence"`, as SurgVLP,
HecVL and PeskaVLP); the OphVL-mini benchmarks keep the sentence + templates ensemble (`prompt_mode="ensemble"`).
"""

from .loaders import (frame_labels_layout, frame_sequence_layout, mask_presence_layout, phase_starts_layout,
                      polygon_presence_layout, segments_layout, tool_presence_layout)
from .spec import BenchmarkSpec


_BUILTIN: list[BenchmarkSpec] = []


def _builtin(spec: BenchmarkSpec) -> BenchmarkSpec:
    _BUILTIN.append(spec)
    return spec


# -- OphVL-mini (synthetic) --------------------------------------------------------------------------------------------

OPHVL_MINI_PHASES = ("Incision", "Viscous agent injection", "Rhexis", "Phacoemulsification",
                     "Irrigation and aspiration", "Lens implant setting-up")
OPHVL_MINI_INSTRUMENTS = ("Primary Incision Knife", "Viscoelastic Cannula", "Capsulorhexis Forceps",
                          "Phacoemulsifier Handpiece", "Irrigation/Aspiration Handpiece", "Implant Injector")
_MINI_PHASE_SCORING = ("Frames sampled at 1 fps from every video of the split; the idle lead-in before a video's first "
                       "phase start is unlabelled and not scored. Prompts: each class's sentence and two templates, "
                       "averaged (ensemble), the OphVL-mini default.")
_MINI_TOOL_SCORING = ("Frames sampled at 1 fps; every frame has a 0/1 label for each of the 6 instruments, all scored. "
                      "Prompts: ensemble, the OphVL-mini default.")

# Two clinics of OphVL-mini, the same kind of videos in the same layouts: clinic A (`benchmark/`, the narrated data's
# look) and clinic B (`benchmark-shifted/`, the silent videos' look: another microscope, instrument makes and pace).
# Scores on the shifted benchmarks against the others measure the domain shift, and what learning from the silent
# videos recovers of it.
_MINI_CLINICS = (
    ("ophvl-mini", "benchmark", "A", "the narrated data's look"),
    ("ophvl-mini-shifted", "benchmark-shifted", "B",
     "the silent videos' look: another microscope, instrument makes and pace"),
)
_MINI_TASKS = {  # task: (name suffix, classes, loader, loader options, prompt file, scoring, what is labelled)
    "phase": ("phase", OPHVL_MINI_PHASES, phase_starts_layout, {"meta_split_file": "meta.json"},
              "ophvl_mini_phase.json", _MINI_PHASE_SCORING,
              "phases labelled per frame in the Cataract-101 layout (`{folder}/` folder)"),
    "instruments": ("instruments", OPHVL_MINI_INSTRUMENTS, tool_presence_layout,
                    {"file_pattern": "case_{id}.csv", "video_path": "videos/case_{id}.mp4", "videos": "videos.csv",
                     "meta_split_file": "meta.json"},
                    "ophvl_mini_instruments.json", _MINI_TOOL_SCORING,
                    "instrument presence per frame in the CATARACTS layout (`{folder}/tool_annotations/`)"),
}
for _prefix, _folder, _clinic, _look in _MINI_CLINICS:
    for _task, (_suffix, _classes, _loader, _options, _prompts, _scoring, _labels) in _MINI_TASKS.items():
        _builtin(BenchmarkSpec(
            name=f"{_prefix}-{_suffix}", task=_task, classes=_classes, loader=_loader, loader_options=dict(_options),
            prompts=_prompts, prompt_mode="ensemble", real=False, folder=_folder, scoring=_scoring,
            description=f"Synthetic cataract-surgery-like videos from `python -m datasets_ophvl.mini` recorded in "
                        f"clinic {_clinic} ({_look}), {_labels.format(folder=_folder)}.",
        ))
del _prefix, _folder, _clinic, _look, _task, _suffix, _classes, _loader, _options, _prompts, _scoring, _labels


# -- Cataract-1K (phase recognition subset) ----------------------------------------------------------------------------

CATARACT_1K_PHASES = ("Incision", "Viscoelastic", "Capsulorhexis", "Hydrodissection", "Phacoemulsification",
                      "Irrigation-Aspiration", "Capsule Polishing", "Lens Implantation", "Lens Positioning",
                      "Viscoelastic-Suction", "Anterior-Chamber Flushing", "Tonifying/Antibiotics")

_builtin(BenchmarkSpec(
    name="cataract-1k-phase",
    task="phase",
    classes=CATARACT_1K_PHASES,
    loader=segments_layout,
    loader_options={
        "annotations": "annotations/case_{id}/case_{id}_annotations_phases.csv",
        "info": "annotations/case_{id}/case_{id}_video.csv",
        "video_path": "videos/case_{id}.mp4",
        "start_column": "frame", "end_column": "endFrame", "label_column": "comment",
        "units": "frames", "end_inclusive": True,
        "start_seconds_column": "sec", "end_seconds_column": "endSec",
        # The annotation files' own spellings (verified on the published files by third-party readers).
        "label_map": {"Irrigation/Aspiration": "Irrigation-Aspiration", "Capsule Pulishing": "Capsule Polishing",
                      "Lens positioning": "Lens Positioning", "Viscoelastic_Suction": "Viscoelastic-Suction",
                      "Anterior_Chamber Flushing": "Anterior-Chamber Flushing"},
    },
    prompts="cataract1k_phase.json",
    prompt_mode="sentence",
    folder="cataract-1k",
    scoring=(
        "The 12 action phases, at 1 fps, per video (accuracy and macro-F1 averaged over videos). Not scored: idle "
        "time (frames outside every phase interval; the files have no Idle row) and frames two intervals give "
        "different phases. Frame numbers are cross-checked with the `sec`/`endSec` columns at the video's rate; a "
        "disagreement is noted per video in the result record (`extra['load_notes']`) with the column that placed "
        "the labels (the frame numbers when they fit the video, else the seconds); a video is skipped, with the "
        "reason, only when neither fits."
    ),
    description=(
        "Cataract-1K phase-recognition subset: 56 regular cataract surgeries (1024x768; Klinikum Klagenfurt), 12 "
        "action phases in the order of the dataset README; idle time is unlabelled. Layout: "
        "`annotations/case_<id>/case_<id>_annotations_phases.csv` (columns caseId, comment, frame, endFrame, sec, "
        "endSec: one row per phase interval, the phase name in `comment`), `annotations/case_<id>/case_<id>_video.csv` "
        "(frame rate in `fps`, length in `total_frames`; the loader reads both) and `videos/case_<id>.mp4`. "
        "Verified (authors' "
        "`action_frame_extractor.py` and third-party readers of the Synapse release): file names, the column names "
        "and positions, the 12 phase spellings in the files ('Capsule Pulishing', 'Lens positioning', "
        "'Viscoelastic_Suction', 'Anterior_Chamber Flushing', 'Irrigation/Aspiration', 'Tonifying/Antibiotics'), no "
        "idle label; the README's 30 fps for this subset. Assumed: `frame`/`endFrame` are 0-based and `endFrame` is "
        "inclusive; the `videos/` folder name. "
        "No official phase split: every split loads all videos."
    ),
    homepage="https://github.com/Negin-Ghamsarian/Cataract-1K",
    citation="Ghamsarian N. et al., Cataract-1K Dataset for Deep-Learning-Assisted Analysis of Cataract Surgery "
             "Videos, Scientific Data 11, 373 (2024).",
))


# -- Cataract-101 and Cataract-21 (ITEC Klagenfurt) --------------------------------------------------------------------

CATARACT_101_PHASES = ("Incision", "Viscous agent injection", "Rhexis", "Hydrodissection", "Phacoemulsification",
                       "Irrigation and aspiration", "Capsule polishing", "Lens implant setting-up",
                       "Viscous agent removal", "Tonifying and antibiotics")
_ITEC_SPELLINGS = {"Phacoemulsificiation": "Phacoemulsification"}

_builtin(BenchmarkSpec(
    name="cataract-101-phase",
    task="phase",
    classes=CATARACT_101_PHASES,
    loader=phase_starts_layout,
    loader_options={"label_map": _ITEC_SPELLINGS, "trailing_repeat_ends": True},
    prompts="cataract101_phase.json",
    prompt_mode="sentence",
    folder="cataract-101",
    scoring=(
        "The 10 phases at 1 fps, per video. Not scored: frames before a video's first phase start, and frames after "
        "its end-of-annotation row (most videos end with a row that repeats the last phase: it closes the "
        "annotation, it does not start a phase). No official split: every split loads all 101 videos, so linear "
        "probes are not run on it."
    ),
    description=(
        "Cataract-101: 101 cataract surgeries (720x540, 25 fps; Klinikum Klagenfurt, four surgeons), 10 phases in "
        "`phases.csv` id order. Layout: `annotations.csv` (VideoID;FrameNo;Phase, the 0-based frame where each phase "
        "starts; a phase lasts until the next row, frames before the first row are unlabelled; a last row "
        "repeating the phase before it marks the end of the annotation, inclusive), `videos.csv` "
        "(VideoID;Frames;FPS;Surgeon;Experience), `phases.csv` (Phase;Meaning) and `videos/case_<VideoID>.mp4`. "
        "Verified on public copies of the three CSV files: headers, ';' separators, start-frame rows, recurring phases "
        "and the spelling 'Phacoemulsificiation' in phases.csv (mapped to the class 'Phacoemulsification'). No "
        "official split: every split loads all videos."
    ),
    homepage="http://ftp.itec.aau.at/datasets/ovid/cat-101/",
    citation="Schoeffmann K. et al., Cataract-101: Video Dataset of 101 Cataract Surgeries, ACM MMSys 2018.",
))

_builtin(BenchmarkSpec(
    name="cataract-21-phase",
    task="phase",
    classes=CATARACT_101_PHASES,
    loader=frame_labels_layout,
    loader_options={
        "labels": "{folder}/{id}.csv", "video_path": "{folder}/{id}.mp4",
        "split_folders": {"train": ["training"], "validation": ["validation"], "test": ["validation"],
                          "all": ["training", "validation"]},
        "frame_column": 0, "label_column": 1, "header": None, "delimiter": None, "frame_base": 0,
        "label_map": _ITEC_SPELLINGS, "ignore": ("not_initialized",), "fps": 25.0,
    },
    split_names={"train": "training"}, extra_splits=("all",),
    prompts="cataract101_phase.json",
    prompt_mode="sentence",
    folder="cataract-21",
    scoring=(
        "The 10 Cataract-101 phases at 1 fps, per video. Not scored: 'not_initialized' frames and frames without a "
        "row. Splits: train = `training/` (17 videos; 'training' is accepted too), validation = test = "
        "`validation/` (4 videos), all = both."
    ),
    description=(
        "Cataract-21 (Cat-21): 21 cataract surgeries from Klinikum Klagenfurt with the same 10 phase labels as "
        "Cataract-101 (the ITEC page lists phases 2 and 8 as one class 'Viscous agent injection'). Layout: "
        "`training/` (17 videos) and `validation/` (4 videos), each `<name>.mp4` with `<name>.csv` linking every "
        "frame number to a phase name; frames outside any phase are 'not_initialized' (unlabelled). Splits: 'train' "
        "is training/, 'validation' and 'test' are validation/ (the only held-out part published), 'all' is both. "
        "Verified (ITEC dataset page, third-party loaders): 21 videos, the 17/4 folders, one CSV per video next to "
        "its mp4, rows `frame,label`, the class list and 'not_initialized'. Assumed: 25 fps (as Cataract-101; pass "
        "fps=None to read it from the files), 0-based frame numbers, the separator (',' or ';' is detected) and "
        "whether a header row exists (detected)."
    ),
    homepage="http://ftp.itec.aau.at/datasets/ovid/cat-21/",
    citation="Primus M.J. et al., Frame-Based Classification of Operation Phases in Cataract Surgery Videos, "
             "MMM 2018.",
))


# -- CATARACTS (Brest): tools and 2020 steps ---------------------------------------------------------------------------

CATARACTS_TOOLS = ("biomarker", "Charleux cannula", "hydrodissection cannula", "Rycroft cannula",
                   "viscoelastic cannula", "cotton", "capsulorhexis cystotome", "Bonn forceps", "capsulorhexis forceps",
                   "Troutman forceps", "needle holder", "irrigation/aspiration handpiece", "phacoemulsifier handpiece",
                   "vitrectomy handpiece", "implant injector", "primary incision knife", "secondary incision knife",
                   "micromanipulator", "suture needle", "Mendez ring", "Vannas scissors")
CATARACTS_SPLITS = {"train": [f"train{i:02d}" for i in range(1, 26)], "test": [f"test{i:02d}" for i in range(1, 26)]}

_builtin(BenchmarkSpec(
    name="cataracts-tools",
    task="instruments",
    classes=CATARACTS_TOOLS,
    loader=tool_presence_layout,
    loader_options={"labels_dir": "tool_annotations", "file_pattern": "{id}.csv", "video_path": "videos/{id}.mp4",
                    "frame_column": "Frame", "frame_base": 1, "fps": 30.0, "case_insensitive": True,
                    "eval_column": "to_be_evaluated", "extra_columns": ("to_be_evaluated",)},
    splits=CATARACTS_SPLITS,
    prompts="cataracts_tools.json",
    prompt_mode="sentence",
    folder="cataracts",
    scoring=(
        "Presence of the 21 tools at 1 fps (mAP over tools, FPR at 0.5). Not scored: cells of 0.5 (ambiguous) and "
        "rows with `to_be_evaluated` = 0. Splits: train / test (25 videos each); no validation split."
    ),
    description=(
        "CATARACTS (2017 challenge): 50 cataract surgeries from Brest University Hospital (1920x1080, about 30 fps), "
        "25 training and 25 test videos, presence of 21 tools per frame in the order of the challenge ground truth. "
        "Layout: `tool_annotations/<id>.csv` (a `Frame` column counted from 1, then one column per tool holding 0, "
        "0.5 for ambiguous, or 1) and `videos/<id>.mp4`, ids `train01`..`train25`, `test01`..`test25`. Verified "
        "(challenge paper and pages, third-party loaders): 21 tool names and order, per-video CSVs with a header, 0.5 "
        "values, 1-based frame ids, the train/test naming, ~30 fps. Assumed: the folder names, header capitalisation "
        "(matched ignoring case), and an optional `to_be_evaluated` column (seen in one third-party loader; rows with "
        "0 are left out of scoring). The rate is 30 fps; pass fps=None to read each video's."
    ),
    homepage="https://cataracts.grand-challenge.org/",
    citation="Al Hajj H. et al., CATARACTS: Challenge on Automatic Tool Annotation for cataRACT Surgery, Medical "
             "Image Analysis 52 (2019).",
))

CATARACTS_STEPS = ("Toric Marking", "Implant Ejection", "Incision", "Viscodilatation", "Capsulorhexis",
                   "Hydrodissection", "Nucleus Breaking", "Phacoemulsification", "Vitrectomy", "Irrigation/Aspiration",
                   "Preparing Implant", "Manual Aspiration", "Implantation", "Positioning", "OVD Aspiration",
                   "Suturing", "Sealing Control", "Wound Hydration")

_builtin(BenchmarkSpec(
    name="cataracts2020-steps",
    task="phase",
    classes=CATARACTS_STEPS,
    loader=frame_labels_layout,
    loader_options={"labels": "phase_annotations/{id}.csv", "video_path": "videos/{id}.mp4",
                    "frame_column": "Frame", "label_column": "Steps", "header": True, "delimiter": ",",
                    "frame_base": 1, "label_kind": "index", "index_base": 1, "ignore": ("0",), "fps": 30.0},
    splits=CATARACTS_SPLITS,
    prompts="cataracts2020_steps.json",
    prompt_mode="sentence",
    folder="cataracts",
    scoring=(
        "The 18 steps at 1 fps, per video. Not scored: Idle (step 0). Splits: train / test; no validation split."
    ),
    description=(
        "CATARACTS 2020 surgical-step labels on the 50 CATARACTS videos: 18 steps with ids 1-18 in the order of the "
        "challenge evaluation script (0 is Idle, left unlabelled). Layout: `phase_annotations/<id>.csv` with columns "
        "`Frame` (from 1, one row per frame at the native rate) and `Steps`, and `videos/<id>.mp4`. Verified "
        "(third-party readers): the `Frame,Steps` header, contiguous 1-based frames, ids 0-18 and their names; the "
        "evaluation script spells 'Hydrodissetion' and 'Wound Hydratation', written correctly here. Assumed: the "
        "folder names; the 30 fps rate (pass fps=None to read each video's); the challenge's own validation/test "
        "division of the test videos (not registered). Split: the CATARACTS train/test videos."
    ),
    homepage="https://ieee-dataport.org/open-access/cataracts",
    citation="Al Hajj H. et al., CATARACTS: Challenge on Automatic Tool Annotation for cataRACT Surgery, Medical "
             "Image Analysis 52 (2019).",
))


# -- OphNet 2024 (phases and operations) -------------------------------------------------------------------------------

OPHNET_PHASES = (
    "Viscoelastic Injection", "Nuclear Management (for cataract surgery)", "Step Interval", "Non-functional Segment",
    "Intraocular Lens Implantation", "Incision Closure", "Corneal Incision Creation", "Capsulorhexis",
    "Cortex Aspiration", "Recipient Corneal Bed Preparation", "Anterior Chamber Injection/Washing",
    "Viscoelastic Aspiration", "Capsular Membrane Staining", "Corneal Graft Suturing",
    "Viscoelastic Application on Cornea", "Corneal-Scleral Tunnel Creation", "Swab Wiping",
    "Conjunctival Incision Creation", "Anterior Chamber Gas Injection", "Ocular Surface Irrigation",
    "Surgical Marking", "Subconjunctival Drug Injection", "Donor Corneal Graft Preparation", "Scleral Hemostasis",
    "Corneal Interlamellar Injection", "Drainage Tube Implantation", "Use of Iris Expander",
    "Drainage Device Preparation", "Scleral Flap Creation", "Anterior Chamber Washing", "Suspension Suture",
    "Drainage Device Implantation", "Intraoperative Gonioscopy Application", "Corneal Measurement",
    "Scleral Flap Suturing", "Scleral Tunnel Creation", "Placement of Bandage Contact Lens", "Peripheral Iridectomy",
    "Anterior Chamber Drainage Device Implantation", "Antimetabolite Application",
    "Scleral Support Ring Manipulation", "Deep Sclerectomy", "Anterior Vitrectomy", "Placement of Eyelid Speculum",
    "Hooking of Extraocular Muscle", "Observation of Corneal Astigmatism", "Pupil Dilation",
    "Iris Prolapse Management", "Measurement on the Scleral", "Goniotomy", "Trabeculectomy", "Others",
)

OPHNET_OPERATIONS = (
    "Viscoelastic Injection", "Step Interval", "Invalid Segment (Non-surgical Operation Segment)",
    "Capsulorhexis (Capsular Forceps, Cystotome)", "Corneal Hydration",
    "Anterior Chamber Injection/Irrigation (Medications, Excluding Stain or OVD)",
    "Intraocular Lens (IOL) Repositioning (Including Repositioning After Corneal Hydration)",
    "Intraocular Lens (IOL) Implantation", "Corneal Paracentesis",
    "PHACO Nucleus Fragment Management(Rotation, Division, Aspiration)",
    "Hydrodissection/Hydrodelineation (PHACO, ECCE)", "Viscoelastic Application on Cornea",
    "Cortex Aspiration by Coaxial I/A", "Main Corneal Incision Creation",
    "Swab Wiping (Blood or Fluid, Excluding Incision Check)", "Cortex Aspiration by Bimanual I/A",
    "Anterior Capsule Membrane Staining (Excluding Gas Injection)", "Viscoelastic Aspiration (by I/A Handpiece)",
    "Anterior Chamber Gas Injection", "Incision Inspection by Swab Wiping",
    "Nucleus Rotation (after Hydrodissection/Hydrodelineation)", "Suturing of Corneal Graft",
    "Viscoelastic Aspiration (by Bimanual I/A)",
    "Ocular Surface Irrigation (Excluding Drop Water to the Corneal Surface)",
    "PHACO Chop (First Nucleus Chop after Phacoemulsification Tip Embedding)", "Conjunctival Incision",
    "Staining Solution Irrigation", "Surgical Marking (by Staining Pen, Instruments)",
    "PHACO Grooving (Linear or Cross Grooves)", "Nucleus Division (after Linear or Cross Grooves)",
    "Placement of Corneal Graft", "Trephination of Recipient Cornea", "Nucleus Delivery (ECCE)",
    "Full-Thickness Cut of the Corneal graft bed Edge by Scissors", "Entry into the Anterior Chamber Using Keratome",
    "Subconjunctival Drug Injection", "Conjunctival Incision Closure by Suturing",
    "Electrocoagulation/Cauterization for Hemostasis", "Nucleus Dislocation to Anterior Chamber (ECCE, PHACO)",
    "Creating the Scleral Groove", "Scleral Tunnel Dissection", "Main Corneal Incision Creation after Corneal Groove",
    "Anterior Capsule Incision/Cut (Adjustment of Capsular Opening)", "Anterior Capsule Polishing",
    "Corneal Incision Suturing", "Subconjunctival Dissection", "PHACO Epinucleus Management",
    "Washing by Manual I/A (Irrigation/Aspiration)", "Interlamellar Stripping of the Corneal graft bed (by Blade)",
    "Lamellar Resection of the Corneal graft bed", "Posterior Capsule Polishing", "Buried Sutures of Corneal Graft",
    "Vertical Incision of the Bed Lamella", "Corneal Horizontal Diameter Measurement",
    "Corneal Interlamellar Air Injection",
    "Pre-placed Suspensory Sutures for Cornea/Corneal Limbus/Extraocular Muscle",
    "Lamellar Cutting of the Corneal graft bed", "Iris Expander Insertion", "Capsulotomy (Cystotome)",
    "Full-Thickness Cut of the Corneal graft bed Edge by Blade", "Cortex Aspiration (Capsule Decompression)",
    "Scleral Flap Suturing", "Interlamellar Separation of the Corneal graft bed (by Iris Repositioner)",
    "Insertion of Drainage Tube into Anterior Chamber", "Creation of Insertion Tunnel for Drainage Tube",
    "Iris Expander Removal", "Injection of Viscoelastic into Corneal Interlamellar Space", "Peripheral Iridectomy",
    "Creation of Scleral Groove", "Scleral Incision Suturing", "Lamellar Stripping of Scleral Flap",
    "Fixation of Drainage Tray", "Placement of Drainage Tray into Subconjunctival Space",
    "Corneal Incision Extension (Corneal Scissors)", "Trephination of Corneal Graft", "Trimming of Drainage Tube",
    "Incision Inspection by Fluorescein Test", "Placement of Gonioscope", "Placement of Corneal Bandage Lens",
    "Removal/Cutting of Suspensory Sutures", "Flushing of Drainage Tube (Drainage Tube Initialization)",
    "Corneal Incision Extension (Non-corneal Scissors)", "Anterior Vitrectomy (Trans-Anterior Chamber)",
    "Intraocular Lens (IOL) Loading into Injector", "Blunt Dissection of the Corneal graft bed Edge",
    "Removal of Eyelid Speculum", "Insertion of Drainage Device, Syringe Withdrawal",
    "Dissection of Inner Layer of Corneal Graft", "Antimetabolite Sponge Application",
    "Fixation of Scleral Support Ring (Flieringa Ring)", "Conjunctival Incision Closure by Cauterization",
    "Hooking of Extraocular Muscle", "Allograft/Biological Tissue Coverage", "Nucleus Division with Chopper (ECCE)",
    "Gonioscopic Observation of the Anterior Chamber Angle", "Observation of Corneal Astigmatism",
    "Pupil Dilation with Instrument", "Fixation of Drainage Tube", "Deep Scleral Incision",
    "Measurement on the Scleral", "Goniotomy", "Iris Repositioning (to Treat Prolapse)", "Trabeculectomy",
    "Removal of Gonioscope", "Ligation of Drainage Tube", "Deep Sclerectomy (Kelly Descemet Punch)", "Others",
)

# Filler labels: no surgical phase/operation in them ("Step Interval": between two steps; "Non-functional Segment" /
# "Invalid Segment": off the eye or not surgery) or a catch-all of rare labels ("Others"). They are read as unlabelled
# by default, as Idle is for Cataract-1K and CATARACTS 2020; `spec.with_unlabelled(())` (or the command line's
# `--unlabelled` with no name) scores them as classes.
OPHNET_PHASE_FILLERS = ("Step Interval", "Non-functional Segment", "Others")
OPHNET_OPERATION_FILLERS = ("Step Interval", "Invalid Segment (Non-surgical Operation Segment)", "Others")


def _without(labels, fillers):
    return tuple(name for name in labels if name not in fillers)


_OPHNET_LAYOUT = (
    "Layout: `OphNet2024_loca_challenge_phase.csv` (video_id,start,end,split,surgery_id,phase_id; one row per "
    "phase interval in seconds of the untrimmed video) and `OphNet2024_loca_challenge.csv` (the same plus "
    "operation_id), untrimmed videos `OphNet2024_all/<video_id>.mp4`, and optionally the repository's temporal-"
    "localisation file `OphNet2024_phase.json` (per-video fps and duration). The videos' frame rates differ (25, 30, "
    "59.9 fps): they come from that file when present, else from each video container. The split (train/val/test) "
    "is the table's `split` column, whose `val` is the registry's `validation` (either name is accepted). Frames "
    "between intervals are unlabelled; frames two overlapping intervals label "
    "differently are unlabelled; an interval may overrun the video end by up to 1 s (it is cut). Verified (OphNet "
    "repository: README, annotation CSVs, cliper.py, temporal-localisation JSON; the label table `ophnet_labels.json` "
    "as copied in a third-party repository and consistent with the interval sequences): columns, seconds, splits, "
    "the mapping of rare labels to one 'Others' id, the id names. Assumed: the `OphNet2024_all/` folder name."
)

_builtin(BenchmarkSpec(
    name="ophnet-phase",
    task="phase",
    classes=_without(OPHNET_PHASES, OPHNET_PHASE_FILLERS),
    label_names=OPHNET_PHASES,
    unlabelled=OPHNET_PHASE_FILLERS,
    split_names={"validation": "val"},
    folder="ophnet",
    scoring=(
        "49 phases at 1 fps, per video. Not scored (unlabelled by default): the filler labels 'Step Interval' (id 2), "
        "'Non-functional Segment' (id 3) and the catch-all 'Others' (id 51), together more than 15 % of the interval "
        "rows; frames between intervals; frames two overlapping intervals label differently. To score the fillers as "
        "classes use `get_benchmark('ophnet-phase').with_unlabelled(())` (benchmark 'ophnet-phase-all-labels') or "
        "`--unlabelled` with no name on the command line. Splits: train / validation ('val' in the file) / test."
    ),
    loader=segments_layout,
    loader_options={"annotations": "OphNet2024_loca_challenge_phase.csv", "video_column": "video_id",
                    "start_column": "start", "end_column": "end", "label_column": "phase_id",
                    "split_column": "split", "units": "seconds", "label_kind": "index", "index_base": 0,
                    "info": "OphNet2024_phase.json", "video_path": "OphNet2024_all/{id}.mp4"},
    prompts="ophnet_phase.json",
    prompt_mode="sentence",
    description=(
        "OphNet 2024 phase localisation (743 videos of cataract, glaucoma and corneal surgery with time boundaries): "
        "52 phase ids 0-51 of the challenge files, where ids 0-50 keep the names of the OphNet label table and 51 "
        "gathers the phases with fewer than 15 clips ('Others'; the full table's id 51 is another phase). "
        + _OPHNET_LAYOUT
    ),
    homepage="https://github.com/minghu0830/OphNet-benchmark",
    citation="Hu M. et al., OphNet: A Large-Scale Video Benchmark for Ophthalmic Surgical Workflow Understanding, "
             "ECCV 2024.",
))

_builtin(BenchmarkSpec(
    name="ophnet-operation",
    task="phase",
    classes=_without(OPHNET_OPERATIONS, OPHNET_OPERATION_FILLERS),
    label_names=OPHNET_OPERATIONS,
    unlabelled=OPHNET_OPERATION_FILLERS,
    split_names={"validation": "val"},
    folder="ophnet",
    scoring=(
        "104 operations at 1 fps, per video. Not scored (unlabelled by default): 'Step Interval' (id 1), 'Invalid "
        "Segment (Non-surgical Operation Segment)' (id 2) and the catch-all 'Others' (id 106); frames between "
        "intervals; frames two overlapping intervals label differently. `with_unlabelled(())` scores them. Splits: "
        "train / validation ('val' in the file) / test."
    ),
    loader=segments_layout,
    loader_options={"annotations": "OphNet2024_loca_challenge.csv", "video_column": "video_id",
                    "start_column": "start", "end_column": "end", "label_column": "operation_id",
                    "split_column": "split", "units": "seconds", "label_kind": "index", "index_base": 0,
                    "info": "OphNet2024_phase.json", "video_path": "OphNet2024_all/{id}.mp4"},
    prompts="ophnet_operation.json",
    prompt_mode="sentence",
    description=(
        "OphNet 2024 operation localisation (fine-grained steps inside the phases): 107 operation ids 0-106 of the "
        "challenge file, where ids 0-105 keep the names of the OphNet label table (whitespace normalised) and 106 "
        "gathers the operations with fewer than 15 clips ('Others'). " + _OPHNET_LAYOUT
    ),
    homepage="https://github.com/minghu0830/OphNet-benchmark",
    citation="Hu M. et al., OphNet: A Large-Scale Video Benchmark for Ophthalmic Surgical Workflow Understanding, "
             "ECCV 2024.",
))


# -- CaDIS (instrument presence from segmentation masks of CATARACTS frames) -------------------------------------------

# CaDIS class ids (pixel values of the label images): 0-6 are anatomy and other objects, 7-35 instruments, where the
# "... Handle" classes are the handle of an instrument and count as that instrument being present.
CADIS_INSTRUMENT_PIXELS = {
    "Hydrodissection Cannula": [7, 32], "Viscoelastic Cannula": [8], "Capsulorhexis Cystotome": [9, 22],
    "Rycroft Cannula": [10, 20], "Bonn Forceps": [11], "Primary Knife": [12, 28],
    "Phacoemulsifier Handpiece": [13, 21], "Lens Injector": [14, 24], "I/A Handpiece": [15, 18],
    "Secondary Knife": [16, 23], "Micromanipulator": [17], "Capsulorhexis Forceps": [19], "Suture Needle": [25],
    "Needle Holder": [26], "Charleux Cannula": [27], "Vitrectomy Handpiece": [29], "Mendez Ring": [30],
    "Marker": [31], "Troutman Forceps": [33], "Cotton": [34], "Iris Hooks": [35],
}
CADIS_INSTRUMENTS = tuple(CADIS_INSTRUMENT_PIXELS)

_builtin(BenchmarkSpec(
    name="cadis-instruments",
    task="instruments",
    classes=CADIS_INSTRUMENTS,
    loader=mask_presence_layout,
    loader_options={"class_pixels": CADIS_INSTRUMENT_PIXELS, "folder_pattern": "Video{num:02d}",
                    "labels_dir": "Labels", "file_regex": r"Video(?P<num>\d+)_frame(?P<frame>\d+)\.png",
                    "video_path": "videos/train{num:02d}.mp4", "frame_base": 0, "fps": 30.0},
    splits={"train": [f"Video{i:02d}" for i in (1, 3, 4, 6, 8, 9, 10, 11, 13, 14, 15, 17, 18, 19, 20, 21, 23, 24, 25)],
            "validation": ["Video05", "Video07", "Video16"], "test": ["Video02", "Video12", "Video22"]},
    prompts="cadis_instruments.json",
    prompt_mode="sentence",
    sparse_labels=True,
    folder="cadis",
    scoring=(
        "Presence of 21 instruments in exactly the labelled frames (the masks; sparse: about one frame in ten at 30 "
        "fps), not at 1 fps: every mask is scored once. Not scored: frames without a mask. Anatomy classes (0-6) are "
        "not instruments. Splits: train 19 / validation 3 / test 3 videos."
    ),
    description=(
        "CaDIS: pixel-level labels of 4,670 frames sampled from the 25 CATARACTS training videos; here the presence "
        "of 21 instruments in each labelled frame (an instrument's handle class counts as the instrument), other "
        "frames unknown (NaN). The labels are sparse (on multiples of 10 frames): the protocols score exactly the "
        "labelled frames. Layout: `Video<NN>/Labels/Video<N>_frame<FFFFFF>.png` (8-bit class-id masks; "
        "`Video<NN>/Images/` holds the RGB frames) and the source video `videos/train<NN>.mp4`. Verified (CaDIS "
        "paper/challenge pages, third-party loaders): folder and file naming, the 36 class ids and names, the split "
        "(train 19 videos, validation 5/7/16, test 2/12/22; one third-party copy lists validation 6/7/16). Assumed: "
        "the frame number is the 0-based index into CATARACTS `train<NN>` (30 fps; the frame count is then the last "
        "labelled frame + 1, or the video's own with fps=None), the `videos/` path."
    ),
    homepage="https://cataracts.grand-challenge.org/CaDIS/",
    citation="Flouty E., Kadkhodamohammadi A., Luengo I. et al., CaDIS: Cataract Dataset for Image Segmentation, "
             "arXiv:1906.11586 (2019).",
))


# -- Cataract-1K (instrument presence from the segmentation subset) ----------------------------------------------------

# Supervisely `classTitle`s of the instrument polygons (the authors' mask script
# `json_to_network_mask_instrument_classification_rev.py`) -> the instrument names of the dataset README.
CATARACT_1K_INSTRUMENT_TITLES = {
    "slit knife": "Slit/Incision Knife", "incision knife": "Slit/Incision Knife", "gauge": "Gauge",
    "spatula": "Spatula", "rhexis": "Capsulorhexis Cystotome", "phaco tip": "Phacoemulsifier Tip",
    "IA": "Irrigation-Aspiration", "cartridge": "Lens Injector", "rhexis forceps": "Capsulorhexis Forceps",
    "katena forceps": "Katena Forceps",
}
CATARACT_1K_INSTRUMENTS = ("Slit/Incision Knife", "Gauge", "Spatula", "Capsulorhexis Cystotome", "Phacoemulsifier Tip",
                           "Irrigation-Aspiration", "Lens Injector", "Capsulorhexis Forceps", "Katena Forceps")

_builtin(BenchmarkSpec(
    name="cataract-1k-instruments",
    task="instruments",
    classes=CATARACT_1K_INSTRUMENTS,
    loader=polygon_presence_layout,
    loader_options={"class_titles": CATARACT_1K_INSTRUMENT_TITLES, "case_pattern": "case_{id}",
                    "images_dir": "img", "annotations_dir": "ann", "fps": 0.2,
                    "other_titles": ("pupil", "iris", "lens", "lense", "cornea", "intraocular lens")},
    prompts="cataract1k_instruments.json",
    prompt_mode="sentence",
    sparse_labels=True,
    folder="cataract-1k-segmentation",
    scoring=(
        "Presence of the 9 instruments of the README in each annotated still frame (2,256 frames of 30 videos, one "
        "frame per 5 s), every frame once (mAP over instruments, FPR at 0.5). Absent = no polygon of that instrument "
        "in the frame's annotation. Not scored: images without an annotation file. Anatomy polygons are ignored. No "
        "official single split (five patient-wise folds): every split loads all 30 videos."
    ),
    description=(
        "Cataract-1K semantic-segmentation subset read as multi-instrument recognition: 2,256 frames (1024x768) of 30 "
        "regular cataract surgeries with polygon annotations of 3 anatomical structures and 9 instruments (slit/"
        "incision knife, gauge, spatula, capsulorhexis cystotome, phacoemulsifier tip, irrigation-aspiration, lens "
        "injector, capsulorhexis forceps, katena forceps). Layout (Supervisely export): `case_<id>/img/case<id>_<NN>"
        ".png` and `case_<id>/ann/case<id>_<NN>.png.json` (`objects[].classTitle`, `points.exterior`). Verified "
        "(dataset README; the authors' mask scripts; the authors' five-fold CSVs listing `case_5013/img/"
        "case5013_01.png`): the folder and file naming, the Supervisely `objects`/`classTitle` fields, the instrument "
        "titles ('slit knife', 'incision knife', 'gauge', 'spatula', 'rhexis', 'phaco tip', 'IA', 'cartridge', "
        "'katena forceps', 'rhexis forceps') and their grouping (the two knives are one class; 'cartridge' is the "
        "lens injector). Assumed: the anatomy titles ignored; the frame order is the image number; the release's "
        "COCO-format copy is not read."
    ),
    homepage="https://github.com/Negin-Ghamsarian/Cataract-1K",
    citation="Ghamsarian N. et al., Cataract-1K Dataset for Deep-Learning-Assisted Analysis of Cataract Surgery "
             "Videos, Scientific Data 11, 373 (2024).",
))


# -- SICS-155 (manual small-incision cataract surgery phases) ----------------------------------------------------------

# `mapping.txt` of the challenge's evaluation repository: id, file spelling -> class name (0 is background).
SICS_155_LABELS = {
    "peritomy": "Peritomy", "cautery": "Cautery", "scleral_groove": "Scleral Groove", "incision": "Incision",
    "tunnel": "Tunnel", "sideport": "Sideport", "AB_injection_and_wash": "AB Injection and Wash",
    "OVD_injection": "OVD Injection", "capsulorrhexis": "Capsulorhexis", "main_incision_entry": "Main Incision Entry",
    "hydroprocedure": "Hydroprocedure", "nucleus_prolapse": "Nucleus Prolapse", "nucleus_delivery": "Nucleus Delivery",
    "cortical_wash": "Cortical Wash", "OVD_IOL_insertion": "OVD and IOL Insertion", "OVD_wash": "OVD Wash",
    "stromal_hydration": "Stromal Hydration", "tunnel_suture": "Tunnel Suture",
}
SICS_155_PHASES = tuple(SICS_155_LABELS.values())

_builtin(BenchmarkSpec(
    name="sics-155-phase",
    task="phase",
    classes=SICS_155_PHASES,
    loader=frame_sequence_layout,
    loader_options={"labels": "{folder}/groundTruth/{id}.txt", "video_path": "{folder}/videos/{id}.mp4",
                    "split_folders": {"train": ["train"], "validation": ["validation"], "test": ["test"]},
                    "label_map": SICS_155_LABELS, "ignore": ("background",), "fps": 30.0,
                    "mapping": "mapping.txt"},
    prompts="sics155_phase.json",
    prompt_mode="sentence",
    folder="sics-155",
    scoring=(
        "The 18 phases at 1 fps, per video. Not scored: 'background' frames (no recognisable phase) and frames past "
        "the last line of a ground-truth file. Splits: train (100) / validation (15) / test (40, released after the "
        "challenge)."
    ),
    description=(
        "SICS-155 (MICCAI 2025 challenge): 155 manual small-incision cataract surgeries from Sankara Eye Hospital "
        "(960x540, 30 fps), 18 phases plus background. Layout: `<split>/groundTruth/<video>.txt` with one label name "
        "per frame (line i = frame i) and `<split>/videos/<video>.mp4`; `mapping.txt` (`<id> <name>`, 0 background, "
        "1-18 the phases), read when present to check the names. Verified (challenge website; the evaluation "
        "repository's `mapping.txt`, `utils.read_phase_file` and `evaluation.py`): one label name per line, the 19 "
        "names and ids, 30 fps, the 100/15/40 split. The website's phase list ends with 'conjunctival_cautery' where "
        "`mapping.txt` has 'tunnel_suture': the file's name is used. Assumed: the folder names (`train/`, "
        "`validation/`, `test/`, `groundTruth/`, `videos/`) and that line 1 is the video's first frame."
    ),
    homepage="https://medvisbonn.github.io/",
    citation="SICS-155 challenge, MICCAI 2025 (Mueller S., Wintergerst M. et al.; https://medvisbonn.github.io/); "
             "baseline on its SICS-105 subset: Scientific Reports (2025), doi:10.1038/s41598-025-00303-z.",
))


# -- Cataract-LMM (phase recognition subset) ---------------------------------------------------------------------------

CATARACT_LMM_PHASES = ("Incision", "Viscoelastic", "Capsulorhexis", "Hydrodissection", "Phacoemulsification",
                       "Irrigation-Aspiration", "Capsule Polishing", "Lens Implantation", "Lens Positioning",
                       "Viscoelastic Suction", "Anterior Chamber Flushing", "Tonifying-Antibiotics")

_builtin(BenchmarkSpec(
    name="cataract-lmm-phase",
    task="phase",
    classes=CATARACT_LMM_PHASES,
    unlabelled=("Idle",),
    loader=segments_layout,
    loader_options={
        "annotations": "annotations_full_video/{id}.csv", "video_path": "videos/{id}.mp4",
        "start_column": "frame", "end_column": "end_frame", "label_column": "comment",
        "start_seconds_column": "sec", "end_seconds_column": "end_sec",
        "units": "frames", "end_inclusive": True, "loose_labels": True,
        # Cataract-1K's spellings, in case the LMM files (same annotation export) share them.
        "label_map": {"Capsule Pulishing": "Capsule Polishing", "Tonifying/Antibiotics": "Tonifying-Antibiotics"},
    },
    prompts="cataract_lmm_phase.json",
    prompt_mode="sentence",
    folder="cataract-lmm-phase",
    scoring=(
        "The 12 action phases at 1 fps, per video. Not scored: Idle (P13) and frames outside every interval. Frame "
        "numbers are cross-checked with `sec`/`end_sec` as for Cataract-1K (the two sites record at 30 and 60 fps). "
        "No official split: every split loads all 150 videos."
    ),
    description=(
        "Cataract-LMM phase-recognition subset: 150 phacoemulsification videos from Farabi (720x480, 30 fps) and Noor "
        "(1080p, 60 fps) hospitals, 13 phases P01-P13 of which P13 is Idle. Layout: `annotations_full_video/"
        "PH_<ClipID>_<RawVideoID>_S<Site>.csv` (one row per phase interval: `Video Name,comment,sec,end_sec,frame,"
        "end_frame`, the phase name in `comment`) next to `videos/<same stem>.mp4`; the dataset root is the phase "
        "subset's folder. Verified (the dataset's documentation repository: folder and file naming, 13 phase names; "
        "a third-party reader: the CSV columns). Assumed: the phase spellings in `comment` (matched ignoring case and "
        "the separators ' ', '_', '-', '/'), 0-based frames with an inclusive `end_frame` (as Cataract-1K, whose "
        "export this resembles); the frame rate is read from each video."
    ),
    homepage="https://github.com/MJAHMADEE/Cataract-LMM",
    citation="Cataract-LMM dataset (Farabi and Noor eye hospitals); documentation and citation: "
             "https://github.com/MJAHMADEE/Cataract-LMM.",
))


BUILTIN_BENCHMARKS: tuple[BenchmarkSpec, ...] = tuple(_BUILTIN)

__all__ = ["BUILTIN_BENCHMARKS"]
