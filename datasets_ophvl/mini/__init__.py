"""OphVL-mini: a deterministic generator of small synthetic cataract-surgery-like videos, in the OphVL format, plus
labelled held-out benchmarks in the native layouts of two real cataract benchmarks, in two visual domains (clinics).

```
python -m datasets_ophvl.mini OUT [--seed 0] [--size default|tiny] [--overwrite] [--quiet]
```

or `generate_ophvl_mini(out_dir, seed=0, size="default")`, which returns a summary dict. `OUT` becomes a valid OphVL
folder (WebDataset shards written by `shards.ShardWriter`, dataset card by `card.write_dataset_card`):

```
OUT/README.md                          dataset card (configs: clips, videos, silent)
OUT/data/clips/train-*.tar             narrated clips (8 fps) cut from the titled procedures of `videos`
OUT/data/videos/train-*.tar            whole titled procedures (2 fps) with a structured `title_summary`
OUT/data/silent/train-*.tar            whole procedures without narration (2 fps): `video_id`, `duration`, `title`,
                                       recorded in clinic B (the narrated data never shows it)
OUT/benchmark/                         held-out labelled clinic-A procedures (5 fps), see below and its README.md
OUT/benchmark-shifted/                 the same for clinic B, in the same layouts (its own random streams)
OUT/hidden/ground_truth.jsonl          what each titled and silent video shows; for measuring, never for training
```

The package, one job per module: `scene` (vocabulary, clinics, procedure planning and the labels `phase_at` /
`instruments_at`), `render` (drawing frames), `text` (narrations, titles, clip planning), `benchmark` (the labelled
benchmark layouts), `ground_truth` (the hidden side file), `generate` (`generate_ophvl_mini`), `cli` (the command),
`settings` (sizes, version, random streams).

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

Two clinics
-----------
`CLINICS` (in `scene`) holds each clinic's parameters in one small table. Clinic A is the look described above (for a
given seed its clips, titled videos and benchmark videos are byte-identical to generator version 1's); the narrated
clips, the titled videos and `benchmark/` are recorded there. Clinic B looks different but means the same:
another microscope (a cool blue-green colour cast with each video's own jitter around it, another illumination gain,
radial vignetting that darkens the corners, 1.25x magnification and an eye 0.08-0.15 half-frames off centre), other
instrument makes (each colour moved 45 % toward a clinic-B palette colour, wider tips and slimmer handles, entry
ports rotated by 25 degrees) and another pace (phases 1.2x longer, the second viscous agent injection with
probability 0.7 instead of 0.4, a 1.8x longer idle lead-in). The phase signatures, each instrument's shape and
motion, the cataract's appearance (the cast is a positive per-channel gain, so lens colours keep their ordering) and
the labels are unchanged: `phase_at` and `instruments_at` read the planned scene only, and `render(..., clinic=...)`
can draw one planned procedure in either clinic. The silent videos are clinic B (setting `silent_clinic_b`, default
1.0: silent video `i` is clinic B when `i < round(silent_clinic_b * silent)`), so what a model learns from silent
footage can be measured on `benchmark-shifted/`; their shard json keeps only the short, noisy title of a scraped video.

The hidden ground truth
-----------------------
`OUT/hidden/ground_truth.jsonl` has one JSON line per titled (narrated) video and per silent video: `video_id`,
`subset` (`"videos"` or `"silent"`), `clinic` (`"A"` or `"B"`), `cataract` (the `CATARACTS` key), `phases` (phase
names in order of occurrence, repeats kept) and `instruments` (names in order of first appearance). It is written
atomically, lies outside `data/` so no OphVL reader or training run sees it, and is read with `read_ground_truth`.

The benchmarks and what was verified
------------------------------------
`OUT/benchmark/` (clinic A, VideoIDs 1001, 1002, ...) and `OUT/benchmark-shifted/` (clinic B, VideoIDs 2001, ...)
hold procedures drawn from their own random streams (in no subset above), at 5 fps, labelled per frame, 12 videos each
by default. `meta.json` splits each into `train` (the first n//3 videos), `validation` (the next n//3: choose
hyperparameters here) and `test` (the rest: report only, never tune on it); 3 videos split 1/1/1. The evaluation
suite registers them as `ophvl-mini-phase` / `ophvl-mini-instruments` and `ophvl-mini-shifted-phase` /
`ophvl-mini-shifted-instruments`. Phase labels follow the Cataract-101 release (Schoeffmann et al., MMSys 2018);
instrument presence follows the CATARACTS challenge (Al Hajj et al., 2019) tool annotations. Checked on public copies
(no network access to the official sites):

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
1002, ... and 2001, 2002, ...). Tool files are `tool_annotations/case_<VideoID>.csv` with `Frame` = 1..Frames and
0/1 values (no 0.5), so tool row `Frame = f + 1` describes mp4 frame `f`, the frame Cataract-101's 0-based `FrameNo`
calls `f`.
"""

from .benchmark import BENCHMARKS, _write_csv, split_ids, write_benchmark
from .cli import _format_summary, main
from .generate import (OUTPUT_ENTRIES, _check_out_dir, _render_whole, _samples_per_part, generate_ophvl_mini,
                       silent_clinic)
from .ground_truth import (GROUND_TRUTH, GROUND_TRUTH_FIELDS, ground_truth_record, read_ground_truth,
                           write_ground_truth)
from .render import (_blend, _Canvas, _clearance, _draw_instrument, _draw_phase, _frame_times, _soft, _tip, render,
                     render_frame)
from .scene import (_CATARACT_KEYS, _INSTR, _INSTR_ORDER, _IRIS_COLOURS, _PHASE, _RED_REFLEX, CATARACTS, CLINICS,
                    INSTRUMENT_NAMES, INSTRUMENTS, PHASE_NAMES, PHASES, Clinic, Procedure, Segment, _plan_procedure,
                    _rng, instrument_sequence, instruments_at, phase_at, phase_sequence)
from .settings import (_STREAM, BENCHMARK_FIRST_ID, GENERATOR_VERSION, MARKER, SHARD_MULTIPLE, SHIFTED_FIRST_ID,
                       SIZES, _progress)
from .text import _plan_clips, make_narration, make_title, make_title_summary


__all__ = [
    "BENCHMARKS", "BENCHMARK_FIRST_ID", "CATARACTS", "CLINICS", "Clinic", "GENERATOR_VERSION", "GROUND_TRUTH",
    "GROUND_TRUTH_FIELDS", "INSTRUMENTS", "INSTRUMENT_NAMES", "MARKER", "OUTPUT_ENTRIES", "PHASES", "PHASE_NAMES",
    "Procedure", "SHARD_MULTIPLE", "SHIFTED_FIRST_ID", "SIZES", "Segment", "generate_ophvl_mini",
    "ground_truth_record", "instrument_sequence", "instruments_at", "main", "make_narration", "make_title",
    "make_title_summary", "phase_at", "phase_sequence", "read_ground_truth", "render", "render_frame",
    "silent_clinic", "split_ids", "write_benchmark", "write_ground_truth",
]
