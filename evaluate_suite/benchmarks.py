"""The built-in benchmarks. Each is one `register_benchmark` call; its prompts are in `prompts/<file>.json`."""

from .loaders import phase_starts_layout, tool_presence_layout
from .registry import BenchmarkSpec, register_benchmark


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
    description="Synthetic cataract-surgery-like videos from `python -m datasets_ophvl.mini`, phases labelled per "
                "frame in the Cataract-101 layout (`benchmark/` folder).",
))

register_benchmark(BenchmarkSpec(
    name="ophvl-mini-instruments",
    task="instruments",
    classes=OPHVL_MINI_INSTRUMENTS,
    loader=tool_presence_layout,
    loader_options={"file_pattern": "case_{id}.csv", "video_path": "videos/case_{id}.mp4", "videos": "videos.csv",
                    "meta_split_file": "meta.json"},
    prompts="ophvl_mini_instruments.json",
    description="Synthetic cataract-surgery-like videos from `python -m datasets_ophvl.mini`, instrument presence "
                "per frame in the CATARACTS layout (`benchmark/tool_annotations/`).",
))
