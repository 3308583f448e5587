"""The built-in benchmarks. Each is one `register_benchmark` call; its prompts are in `prompts/<file>.json`.

Class names and their order follow each dataset's own publication (label-id order where the annotations use ids).
Where an annotation file spells a class differently from its published name (typos, underscores), the loader maps the
file's spelling through `label_map`; the class name, which the prompt templates are filled with, keeps the published
wording. Each description says what was checked against public copies of the dataset's files or loaders (verified) and
what is assumed; a benchmark without an official split loads every video whatever split is asked for.

Registered: `ophvl-mini-phase`, `ophvl-mini-instruments` (synthetic, clinic A: `benchmark/`),
`ophvl-mini-shifted-phase`, `ophvl-mini-shifted-instruments` (synthetic, clinic B: `benchmark-shifted/`),
`cataract-1k-phase`, `cataract-101-phase`, `cataract-21-phase`, `cataracts-tools`, `cataracts2020-steps`,
`ophnet-phase`, `ophnet-operation`, `cadis-instruments`.
"""

from .loaders import (frame_labels_layout, mask_presence_layout, phase_starts_layout, segments_layout,
                      tool_presence_layout)
from .registry import BenchmarkSpec, register_benchmark


# -- OphVL-mini (synthetic) --------------------------------------------------------------------------------------------

OPHVL_MINI_PHASES = ("Incision", "Viscous agent injection", "Rhexis", "Phacoemulsification",
                     "Irrigation and aspiration", "Lens implant setting-up")
OPHVL_MINI_INSTRUMENTS = ("Primary Incision Knife", "Viscoelastic Cannula", "Capsulorhexis Forceps",
                          "Phacoemulsifier Handpiece", "Irrigation/Aspiration Handpiece", "Implant Injector")

register_benchmark(BenchmarkSpec(
    name="ophvl-mini-phase",
    task="phase",
    classes=OPHVL_MINI_PHASES,
    loader=phase_starts_layout,
    loader_options={"meta_split_file": "meta.json"},
    prompts="ophvl_mini_phase.json",
    description="Synthetic cataract-surgery-like videos from `python -m datasets_ophvl.mini` recorded in clinic A "
                "(the narrated data's look), phases labelled per frame in the Cataract-101 layout (`benchmark/` "
                "folder).",
))

register_benchmark(BenchmarkSpec(
    name="ophvl-mini-instruments",
    task="instruments",
    classes=OPHVL_MINI_INSTRUMENTS,
    loader=tool_presence_layout,
    loader_options={"file_pattern": "case_{id}.csv", "video_path": "videos/case_{id}.mp4", "videos": "videos.csv",
                    "meta_split_file": "meta.json"},
    prompts="ophvl_mini_instruments.json",
    description="Synthetic cataract-surgery-like videos from `python -m datasets_ophvl.mini` recorded in clinic A "
                "(the narrated data's look), instrument presence per frame in the CATARACTS layout "
                "(`benchmark/tool_annotations/`).",
))

# The same videos' kind from clinic B (another microscope, instrument makes and pace; the silent videos' look), written
# to `benchmark-shifted/` in the same layouts: scores here against `ophvl-mini-phase` / `-instruments` measure the
# domain shift, and what learning from the silent videos recovers of it.

register_benchmark(BenchmarkSpec(
    name="ophvl-mini-shifted-phase",
    task="phase",
    classes=OPHVL_MINI_PHASES,
    loader=phase_starts_layout,
    loader_options={"meta_split_file": "meta.json"},
    prompts="ophvl_mini_phase.json",
    description="Synthetic cataract-surgery-like videos from `python -m datasets_ophvl.mini` recorded in clinic B "
                "(the silent videos' look: another microscope, instrument makes and pace), phases labelled per frame "
                "in the Cataract-101 layout (`benchmark-shifted/` folder).",
))

register_benchmark(BenchmarkSpec(
    name="ophvl-mini-shifted-instruments",
    task="instruments",
    classes=OPHVL_MINI_INSTRUMENTS,
    loader=tool_presence_layout,
    loader_options={"file_pattern": "case_{id}.csv", "video_path": "videos/case_{id}.mp4", "videos": "videos.csv",
                    "meta_split_file": "meta.json"},
    prompts="ophvl_mini_instruments.json",
    description="Synthetic cataract-surgery-like videos from `python -m datasets_ophvl.mini` recorded in clinic B "
                "(the silent videos' look), instrument presence per frame in the CATARACTS layout "
                "(`benchmark-shifted/tool_annotations/`).",
))


# -- Cataract-1K (phase recognition subset) ----------------------------------------------------------------------------

CATARACT_1K_PHASES = ("Incision", "Viscoelastic", "Capsulorhexis", "Hydrodissection", "Phacoemulsification",
                      "Irrigation-Aspiration", "Capsule Polishing", "Lens Implantation", "Lens Positioning",
                      "Viscoelastic-Suction", "Anterior-Chamber Flushing", "Tonifying/Antibiotics")

register_benchmark(BenchmarkSpec(
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
        # The annotation files' own spellings (verified on the published files by third-party readers).
        "label_map": {"Irrigation/Aspiration": "Irrigation-Aspiration", "Capsule Pulishing": "Capsule Polishing",
                      "Lens positioning": "Lens Positioning", "Viscoelastic_Suction": "Viscoelastic-Suction",
                      "Anterior_Chamber Flushing": "Anterior-Chamber Flushing"},
    },
    prompts="cataract1k_phase.json",
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
        "idle label. Assumed: `frame`/`endFrame` are 0-based and `endFrame` is inclusive; the `videos/` folder name. "
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

register_benchmark(BenchmarkSpec(
    name="cataract-101-phase",
    task="phase",
    classes=CATARACT_101_PHASES,
    loader=phase_starts_layout,
    loader_options={"label_map": _ITEC_SPELLINGS},
    prompts="cataract101_phase.json",
    description=(
        "Cataract-101: 101 cataract surgeries (720x540, 25 fps; Klinikum Klagenfurt, four surgeons), 10 phases in "
        "`phases.csv` id order. Layout: `annotations.csv` (VideoID;FrameNo;Phase, the 0-based frame where each phase "
        "starts; a phase lasts until the next row, frames before the first row are unlabelled), `videos.csv` "
        "(VideoID;Frames;FPS;Surgeon;Experience), `phases.csv` (Phase;Meaning) and `videos/case_<VideoID>.mp4`. "
        "Verified on public copies of the three CSV files: headers, ';' separators, start-frame rows, recurring phases "
        "and the spelling 'Phacoemulsificiation' in phases.csv (mapped to the class 'Phacoemulsification'). No "
        "official split: every split loads all videos."
    ),
    homepage="http://ftp.itec.aau.at/datasets/ovid/cat-101/",
    citation="Schoeffmann K. et al., Cataract-101: Video Dataset of 101 Cataract Surgeries, ACM MMSys 2018.",
))

register_benchmark(BenchmarkSpec(
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
    prompts="cataract101_phase.json",
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

register_benchmark(BenchmarkSpec(
    name="cataracts-tools",
    task="instruments",
    classes=CATARACTS_TOOLS,
    loader=tool_presence_layout,
    loader_options={"labels_dir": "tool_annotations", "file_pattern": "{id}.csv", "video_path": "videos/{id}.mp4",
                    "frame_column": "Frame", "frame_base": 1, "fps": 30.0, "case_insensitive": True,
                    "eval_column": "to_be_evaluated", "extra_columns": ("to_be_evaluated",)},
    splits=CATARACTS_SPLITS,
    prompts="cataracts_tools.json",
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

register_benchmark(BenchmarkSpec(
    name="cataracts2020-steps",
    task="phase",
    classes=CATARACTS_STEPS,
    loader=frame_labels_layout,
    loader_options={"labels": "phase_annotations/{id}.csv", "video_path": "videos/{id}.mp4",
                    "frame_column": "Frame", "label_column": "Steps", "header": True, "delimiter": ",",
                    "frame_base": 1, "label_kind": "index", "index_base": 1, "ignore": ("0",), "fps": 30.0},
    splits=CATARACTS_SPLITS,
    prompts="cataracts2020_steps.json",
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

_OPHNET_LAYOUT = (
    "Layout: `OphNet2024_loca_challenge_phase.csv` (video_id,start,end,split,surgery_id,phase_id; one row per "
    "phase interval in seconds of the untrimmed video) and `OphNet2024_loca_challenge.csv` (the same plus "
    "operation_id), untrimmed videos `OphNet2024_all/<video_id>.mp4`, and optionally the repository's temporal-"
    "localisation file `OphNet2024_phase.json` (per-video fps and duration). The videos' frame rates differ (25, 30, "
    "59.9 fps): they come from that file when present, else from each video container. The split (train/val/test) "
    "is the table's `split` column. Frames between intervals are unlabelled; frames two overlapping intervals label "
    "differently are unlabelled; an interval may overrun the video end by up to 1 s (it is cut). Verified (OphNet "
    "repository: README, annotation CSVs, cliper.py, temporal-localisation JSON; the label table `ophnet_labels.json` "
    "as copied in a third-party repository and consistent with the interval sequences): columns, seconds, splits, "
    "the mapping of rare labels to one 'Others' id, the id names. Assumed: the `OphNet2024_all/` folder name."
)

register_benchmark(BenchmarkSpec(
    name="ophnet-phase",
    task="phase",
    classes=OPHNET_PHASES,
    loader=segments_layout,
    loader_options={"annotations": "OphNet2024_loca_challenge_phase.csv", "video_column": "video_id",
                    "start_column": "start", "end_column": "end", "label_column": "phase_id",
                    "split_column": "split", "units": "seconds", "label_kind": "index", "index_base": 0,
                    "info": "OphNet2024_phase.json", "video_path": "OphNet2024_all/{id}.mp4"},
    prompts="ophnet_phase.json",
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

register_benchmark(BenchmarkSpec(
    name="ophnet-operation",
    task="phase",
    classes=OPHNET_OPERATIONS,
    loader=segments_layout,
    loader_options={"annotations": "OphNet2024_loca_challenge.csv", "video_column": "video_id",
                    "start_column": "start", "end_column": "end", "label_column": "operation_id",
                    "split_column": "split", "units": "seconds", "label_kind": "index", "index_base": 0,
                    "info": "OphNet2024_phase.json", "video_path": "OphNet2024_all/{id}.mp4"},
    prompts="ophnet_operation.json",
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

register_benchmark(BenchmarkSpec(
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
    description=(
        "CaDIS: pixel-level labels of 4,670 frames sampled from the 25 CATARACTS training videos; here the presence "
        "of 21 instruments in each labelled frame (an instrument's handle class counts as the instrument), other "
        "frames unknown (NaN). Note the labels are sparse: sample the labelled frames (they lie on multiples of 10 "
        "frames) rather than 1 fps. Layout: `Video<NN>/Labels/Video<N>_frame<FFFFFF>.png` (8-bit class-id masks; "
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
