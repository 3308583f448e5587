"""Protocol defaults shared by the protocols and the command line (no heavy imports, so `--help` is instant)."""

DEFAULT_RESULTS_FILE = "results.jsonl"

# Frame sampling of the frame-level protocols (see `frames.extract_frame_features`).
SAMPLINGS = ("fps", "labelled")

# Zero-shot instrument recognition (see `zero_shot.zero_shot_instruments`).
INSTRUMENT_RULES = ("prompt-pair", "sigmoid")
NEGATIVE_TEMPLATES = ("no {} is visible in the eye.", "a surgical video frame without a {}.")

# Linear probing (see `linear_probing`).
DEFAULT_FRACTIONS = (0.01, 0.1, 1.0)
DEFAULT_SEEDS = (0, 1, 2)

# Retrieval (see `retrieval`).
DEFAULT_MAX_CLIPS = 1000
