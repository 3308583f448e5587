"""Configuration of `train_accelerate.py`: four dataclasses parsed by `transformers.HfArgumentParser`, from a YAML file
and/or the command line.

```bash
python train_accelerate.py --config configs/pretrain_mini.yaml --max_steps 200 --retrieval false
```

The YAML file is flat: its keys are the option names (`clip_batch_size: 8`), so a file and a command line say the same
things. Options given on the command line override the file. `python train_accelerate.py --help` documents every
option; the groups are `ModelArguments` (what to train), `DataArguments` (what to read), `ObjectiveArguments` (the
losses and the schedule) and `TrainingArguments` (optimisation, checkpoints, logging, evaluation, the Hub).
"""

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path


LEVELS = ("clip", "video")
MIXED_PRECISION = ("no", "bf16", "fp16")
MODEL_PRESETS = ("tiny", "default")
REPORT_TO = ("jsonl", "tensorboard")


def _help(text: str, **kwargs):
    return field(metadata={"help": text}, **kwargs)


@dataclass
class ModelArguments:
    """What is trained: an OphCLIP checkpoint, or a model built from a config with optional pretrained towers."""

    model_name_or_path: str | None = _help(
        "An OphCLIP checkpoint (folder or Hub id) to continue from. Its processor is used unless "
        "--tokenizer_name_or_path is given. Exclusive with --model_config.",
        default=None,
    )
    model_config: str | None = _help(
        "Build the model from a config instead: a JSON file (an OphCLIPConfig as written by save_pretrained) or a "
        "preset name: 'default' (ResNet-50 + BERT-base with Bio_ClinicalBERT shapes, 768-d) or 'tiny' (a few-layer "
        "ResNet and BERT for smoke tests). Weights are random unless the towers are loaded with "
        "--vision_model_name_or_path / --text_model_name_or_path.",
        default=None,
    )
    vision_model_name_or_path: str | None = _help(
        "Pretrained vision tower (folder or Hub id; e.g. a ResNet-50 or a CLIP checkpoint, whose vision model is "
        "taken). Its config replaces the vision config and its weights are loaded into the tower with "
        "from_pretrained.",
        default=None,
    )
    text_model_name_or_path: str | None = _help(
        "Pretrained BERT text tower (folder or Hub id, e.g. Bio_ClinicalBERT). Its config replaces the text config, "
        "its weights are loaded into the tower, and its tokenizer is used unless --tokenizer_name_or_path is given.",
        default=None,
    )
    tokenizer_name_or_path: str | None = _help(
        "BERT tokenizer (folder or Hub id) for the processor. Needed when neither --model_name_or_path nor "
        "--text_model_name_or_path provides one.",
        default=None,
    )
    projection_dim: int | None = _help(
        "Joint embedding dimension when building from a config (None: the config's).", default=None
    )
    learnable_logit_scale: bool | None = _help(
        "Train the temperature (log inverse temperature, clamped to ln(100) after every step). Default: the "
        "config's (fixed tau = 0.1, as the predecessors).",
        default=None,
    )
    activation_checkpointing: bool = _help(
        "Recompute activations in the backward pass (per BERT layer / ResNet stage) to save memory.", default=False
    )
    image_size: int | None = _help(
        "Frame size: resize the short side to this and centre-crop a square. Default: the checkpoint processor's, "
        "or 224 for a new processor.",
        default=None,
    )
    max_text_length: int | None = _help(
        "Truncate texts to this many tokens (default: the tokenizer's model_max_length, at most the text tower's "
        "positions).",
        default=None,
    )


@dataclass
class DataArguments:
    """OphVL: where it is and how it is read."""

    data_path: str | None = _help(
        "OphVL: a local folder laid out like the Hub repo (data/clips, data/videos, data/silent), "
        "hf://datasets/<org>/<name>[@revision], or a Hub dataset id <org>/<name>. Streamed, never downloaded whole. "
        "Checked before the model is built: a missing folder, or a subset the run needs (clips for clip steps, videos "
        "for video steps, silent when retrieval is on) without train-*.tar shards or, locally, without a single "
        "readable sample, is an error; single bad samples or shards are skipped and counted.",
        default=None,
    )
    num_frames: int = _help("Frames sampled per clip / video (uniform segment centres).", default=8)
    clip_batch_size: int = _help(
        "Clip-level contrastive batch per process (clips with their narrations). The global batch is this times the "
        "number of processes; negatives come from the whole global batch.",
        default=32,
    )
    video_batch_size: int = _help(
        "Video-level contrastive batch per process (whole videos with their title summaries).", default=8
    )
    bank_batch_size: int = _help("Silent videos encoded per forward pass when building or refreshing the bank.",
                                 default=32)
    shuffle_buffer: int = _help(
        "Examples held in the shuffle buffer of each stream (shard order is always shuffled with --seed). Exact "
        "resumption needs 0: datasets does not replay the examples held in a buffer when a run resumes.",
        default=0,
    )
    decoder: str = _help("Video decoder: 'decord' or 'pyav' (bit-identical frames).", default="decord")
    dataloader_num_workers: int = _help(
        "DataLoader worker processes per stream (decoding runs in them). With 0 a resumed run replays the data "
        "exactly; with workers every worker resumes at its own position (nothing is repeated or skipped), but the "
        "order in which workers' batches interleave right after a resume may differ from an uninterrupted run.",
        default=0,
    )
    cache_dir: str | None = _help("datasets cache folder (for hf:// streaming).", default=None)


@dataclass
class ObjectiveArguments:
    """The pretraining objectives and how the two levels alternate."""

    schedule: str = _help(
        "Alternation of the levels, one level per optimiser step, repeated: a ratio 'clip:3,video:1' (three clip "
        "steps, then one video step) or an explicit pattern of c/v letters such as 'cccv'.",
        default="clip:3,video:1",
    )
    retrieval: bool = _help(
        "Retrieval augmentation at the video level: each title-summary embedding queries the silent-video memory "
        "bank (maximum inner product) for its top-K silent videos, which enter the video-level loss. 'false' is the "
        "ablation without it (no bank is built).",
        default=True,
    )
    retrieval_k: int = _help("K: silent videos retrieved per query.", default=4)
    retrieval_weight: float = _help("Weight of the retrieval term in the video-level loss.", default=0.5)
    retrieval_form: str = _help(
        "How the retrieved silent videos enter the loss. 'encoded': --retrieval_encode_per_title of each title's "
        "retrieved videos are decoded and encoded by the current vision tower with gradients and are extra positives "
        "of the title (silent footage shapes the encoder). 'detached': the retrieved bank vectors, without gradients, "
        "are positives of the narrated video (the earlier form, kept for comparison). See objectives.losses.",
        default="encoded",
    )
    retrieval_pairing: str = _help(
        "'mips': each title retrieves its top-K silent videos by maximum inner product search. 'random': K silent "
        "videos drawn at random per title (the ablation that keeps the compute and the silent data but not the "
        "retrieval).",
        default="mips",
    )
    retrieval_encode_per_title: int = _help(
        "Encoded form: retrieved silent videos per title decoded and encoded with gradients at every video step "
        "(drawn among its top-K; at most --retrieval_k).",
        default=1,
    )
    retrieval_ground_truth: str | None = _help(
        "A JSON-lines file of hidden ground truth per video (`video_id`, `cataract`, `phases`; OphVL-mini writes "
        "hidden/ground_truth.jsonl) used only to log retrieval precision@K at every video step and at the end. "
        "It never enters the loss.",
        default=None,
    )
    bank_refresh_rows_per_step: int = _help(
        "Memory-bank rows re-encoded with the current model after every optimiser step (a deterministic cycle over "
        "the bank; 0: none).",
        default=0,
    )
    bank_full_refresh_every: int = _help(
        "Re-encode the whole bank every N optimiser steps (0: never). Can be combined with "
        "--bank_refresh_rows_per_step.",
        default=0,
    )
    local_loss: bool = _help(
        "Each process computes only its local rows of the contrastive logits against the gathered columns (open_clip's "
        "local_loss): (B, W*B) instead of (W*B, W*B) logits per process, the same gradients. Worth it with many "
        "processes; the logged losses are the mean over processes, as in the global form.",
        default=False,
    )
    bank_index: str = _help(
        "The memory bank's faiss index: 'Flat' (exact maximum inner product search; right at OphVL's ~30K silent "
        "videos) or an approximate faiss index-factory string such as 'IVF1024,Flat' for banks of a million rows "
        "(README, Benchmarks). An approximate index is trained on a seeded sample of the bank after the initial "
        "encoding, retrained after a full refresh and once per --bank_refresh_rows_per_step cycle, and saved and "
        "resumed with the checkpoint.",
        default="Flat",
    )
    bank_index_nprobe: int = _help(
        "Search breadth of an approximate --bank_index (IVF lists visited per query, or HNSW efSearch); 0: the "
        "index's default (nlist // 16; efSearch 64).",
        default=0,
    )
    simsiam_weight: float = _help(
        "Weight of a SimSiam term on two augmented views of every clip (random resized crop, horizontal flip, colour "
        "jitter; the same parameters for all frames of a clip). 0 disables it. Each view costs one more vision "
        "forward pass.",
        default=0.0,
    )
    simsiam_hidden_dim: int = _help("Hidden width of the SimSiam predictor.", default=512)
    augment_crop_scale: float = _help("SimSiam views: smallest crop area, as a fraction of the frame.", default=0.4)
    augment_color_jitter: float = _help(
        "SimSiam views: brightness / contrast / saturation jitter strength (0 disables).", default=0.4
    )

    def pattern(self) -> list[str]:
        return parse_schedule(self.schedule)

    def bank_index_kwargs(self) -> dict:
        """`SilentVideoBank` keyword arguments for --bank_index / --bank_index_nprobe."""
        return {"string_factory": None if self.bank_index == "Flat" else self.bank_index,
                "nprobe": self.bank_index_nprobe or None}


@dataclass
class TrainingArguments:
    """Optimisation, checkpoints, logging, evaluation and publishing."""

    output_dir: str = _help("Where checkpoints, logs and the final model go.", default="ophclip-pretrain")
    seed: int = _help("Random seed (initialisation, data order, augmentations, dropout).", default=42)
    max_steps: int = _help("Optimiser steps to train for (each step is one level of the schedule).", default=1000)
    learning_rate: float = _help("Peak AdamW learning rate.", default=5e-5)
    weight_decay: float = _help(
        "AdamW weight decay, applied to weight matrices only (not to biases, norms, the logit scale or any 1-D "
        "parameter).",
        default=0.1,
    )
    adam_beta1: float = _help("AdamW beta1.", default=0.9)
    adam_beta2: float = _help("AdamW beta2.", default=0.98)
    adam_epsilon: float = _help("AdamW epsilon.", default=1e-6)
    warmup_steps: int = _help("Linear warm-up steps of the cosine schedule (overrides --warmup_ratio).", default=0)
    warmup_ratio: float = _help("Warm-up as a fraction of --max_steps, when --warmup_steps is 0.", default=0.0)
    max_grad_norm: float = _help("Clip the gradient norm to this (0: no clipping).", default=1.0)
    max_nonfinite_steps: int = _help(
        "A step whose loss is NaN or infinite is skipped (no update) with a warning; the run stops with an error once "
        "more than this many steps were skipped.",
        default=10,
    )
    gradient_accumulation_steps: int = _help(
        "Split each contrastive batch into this many micro-batches for the backward passes (open_clip-style feature "
        "caching: the loss still sees the whole batch; memory scales with the micro-batch). The batch sizes must be "
        "divisible by it.",
        default=1,
    )
    mixed_precision: str | None = _help(
        "'no', 'bf16' (autocast; works on CPU and recent GPUs) or 'fp16' (GPU only). Default: what `accelerate "
        "launch` / `accelerate config` say (else 'no'); given here, it overrides them.",
        default=None,
    )
    logging_steps: int = _help("Log losses, learning rate and throughput every N steps.", default=10)
    report_to: str = _help(
        "Trackers, comma separated: 'jsonl' (always on: <output_dir>/logs/<run_name>/metrics.jsonl) and "
        "'tensorboard' (needs tensorboard or tensorboardX; skipped with a warning when neither is installed); "
        "'all' for both.",
        default="all",
    )
    run_name: str | None = _help("Name of the run in the trackers (default: 'pretrain').", default=None)
    save_steps: int = _help(
        "Save a checkpoint every N steps into <output_dir>/checkpoints/step-N (model, optimiser, scheduler, RNG, data "
        "position, memory bank). 0: only the final model.",
        default=500,
    )
    save_total_limit: int | None = _help("Keep only the newest N checkpoints (default: all).", default=None)
    resume: str | None = _help(
        "Continue from a checkpoint: 'latest' (the newest under <output_dir>/checkpoints) or a checkpoint folder. "
        "Checked before training: an incomplete checkpoint, one of another model (other parameter names or shapes: "
        "resume with the model options it was trained with), or one past --max_steps is an error; a checkpoint at "
        "--max_steps only writes the final model.",
        default=None,
    )
    eval_steps: int = _help("Zero-shot evaluation every N steps (0: never).", default=0)
    eval_benchmark: str = _help("Benchmark of the periodic evaluation (evaluate_suite registry).",
                                default="ophvl-mini-phase")
    eval_data: str | None = _help("Local folder of the evaluation benchmark (e.g. <OphVL-mini>/benchmark).",
                                  default=None)
    eval_split: str = _help("Benchmark split evaluated.", default="test")
    eval_fps: float = _help("Frames per second sampled from the evaluation videos.", default=1.0)
    push_to_hub: bool = _help("Upload <output_dir>/final to the Hub at the end.", default=False)
    hub_model_id: str | None = _help("Repository for --push_to_hub (<org>/<name>).", default=None)
    hub_private_repo: bool = _help("Create the Hub repository as private.", default=False)
    cpu: bool = _help("Train on the CPU even when an accelerator is available.", default=False)
    debug_dir: str | None = _help(
        "Debugging: each process writes here its first step's inputs, embeddings and loss (rank<R>_first_step.pt), "
        "and its state-dict hash at the end (rank<R>_final.json); the main process also writes the initial weights "
        "(initial_model/).",
        default=None,
    )

    def trackers(self) -> list[str]:
        names = [n.strip() for n in self.report_to.split(",") if n.strip()]
        if "all" in names:
            return list(REPORT_TO)
        unknown = sorted(set(names) - set(REPORT_TO))
        if unknown:
            raise ValueError(f"unknown tracker(s) {unknown} in --report_to; expected {REPORT_TO} or 'all'")
        return ["jsonl"] + [n for n in names if n != "jsonl"]


GROUPS = (ModelArguments, DataArguments, ObjectiveArguments, TrainingArguments)


@dataclass
class PretrainConfig:
    """All the options of a run, by group."""

    model: ModelArguments
    data: DataArguments
    objectives: ObjectiveArguments
    training: TrainingArguments

    def to_dict(self) -> dict:
        """Flat `{option: value}`, as in a YAML config file."""
        flat = {}
        for group in (self.model, self.data, self.objectives, self.training):
            flat.update(dataclasses.asdict(group))
        return flat

    def validate(self) -> "PretrainConfig":
        m, d, o, t = self.model, self.data, self.objectives, self.training
        if not d.data_path:
            raise ValueError("--data_path is required (a local OphVL folder, hf://datasets/... or <org>/<name>)")
        if m.model_name_or_path and m.model_config:
            raise ValueError("give either --model_name_or_path (a checkpoint) or --model_config, not both")
        if not m.model_name_or_path and not m.model_config:
            raise ValueError("give --model_name_or_path (an OphCLIP checkpoint) or --model_config (a JSON file or a "
                             f"preset: {', '.join(MODEL_PRESETS)})")
        if m.model_name_or_path and (m.vision_model_name_or_path or m.text_model_name_or_path):
            raise ValueError("--vision_model_name_or_path / --text_model_name_or_path build a new model; they cannot "
                             "be combined with --model_name_or_path")
        for name in ("num_frames", "clip_batch_size", "video_batch_size", "bank_batch_size"):
            if getattr(d, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(d, name)}")
        if d.decoder not in ("decord", "pyav"):
            raise ValueError(f"--decoder must be 'decord' or 'pyav', got {d.decoder!r}")
        if d.dataloader_num_workers < 0 or d.shuffle_buffer < 0:
            raise ValueError("--dataloader_num_workers and --shuffle_buffer must be >= 0")
        o.pattern()  # raises on a bad schedule
        if o.retrieval_k < 1:
            raise ValueError(f"--retrieval_k must be >= 1, got {o.retrieval_k}")
        if o.retrieval_form not in ("encoded", "detached"):
            raise ValueError(f"--retrieval_form must be 'encoded' or 'detached', got {o.retrieval_form!r}")
        if o.retrieval_pairing not in ("mips", "random"):
            raise ValueError(f"--retrieval_pairing must be 'mips' or 'random', got {o.retrieval_pairing!r}")
        if not 1 <= o.retrieval_encode_per_title <= o.retrieval_k:
            raise ValueError(f"--retrieval_encode_per_title must be in [1, --retrieval_k {o.retrieval_k}], got "
                             f"{o.retrieval_encode_per_title}")
        if o.retrieval_ground_truth and not os.path.isfile(o.retrieval_ground_truth):
            raise FileNotFoundError(f"--retrieval_ground_truth {o.retrieval_ground_truth} is not a file; expected "
                                    "a JSON-lines ground-truth file such as OphVL-mini's hidden/ground_truth.jsonl")
        if o.retrieval_weight < 0 or o.simsiam_weight < 0:
            raise ValueError("--retrieval_weight and --simsiam_weight must be >= 0")
        if o.bank_refresh_rows_per_step < 0 or o.bank_full_refresh_every < 0:
            raise ValueError("--bank_refresh_rows_per_step and --bank_full_refresh_every must be >= 0")
        if not o.bank_index.strip() or o.bank_index.strip() != o.bank_index:
            raise ValueError(f"--bank_index must be 'Flat' or a faiss index-factory string such as 'IVF1024,Flat' "
                             f"(no surrounding spaces), got {o.bank_index!r}")
        if o.bank_index_nprobe < 0:
            raise ValueError(f"--bank_index_nprobe must be >= 0 (0: the index's default), got {o.bank_index_nprobe}")
        if o.bank_index_nprobe and o.bank_index == "Flat":
            raise ValueError("--bank_index_nprobe sets the search breadth of an approximate --bank_index; the exact "
                             "'Flat' index has none (give e.g. --bank_index IVF1024,Flat)")
        if not 0 < o.augment_crop_scale <= 1:
            raise ValueError(f"--augment_crop_scale must be in (0, 1], got {o.augment_crop_scale}")
        if t.max_steps < 1:
            raise ValueError(f"--max_steps must be >= 1, got {t.max_steps}")
        if t.gradient_accumulation_steps < 1:
            raise ValueError("--gradient_accumulation_steps must be >= 1")
        for name in ("clip_batch_size", "video_batch_size"):
            if getattr(d, name) % t.gradient_accumulation_steps:
                raise ValueError(f"--{name} ({getattr(d, name)}) must be divisible by --gradient_accumulation_steps "
                                 f"({t.gradient_accumulation_steps}): each micro-batch is an equal part of the batch")
        if t.mixed_precision is not None and t.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"--mixed_precision must be one of {MIXED_PRECISION}, got {t.mixed_precision!r}")
        if t.save_total_limit is not None and t.save_total_limit < 1:
            raise ValueError("--save_total_limit must be >= 1")
        if min(t.save_steps, t.eval_steps, t.logging_steps) < 0:
            raise ValueError("--save_steps, --eval_steps and --logging_steps must be >= 0")
        if not 0 <= t.warmup_ratio < 1 or t.warmup_steps < 0:
            raise ValueError("--warmup_ratio must be in [0, 1) and --warmup_steps >= 0")
        if t.push_to_hub and not t.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id <org>/<name>")
        if t.eval_steps and not t.eval_data:
            raise ValueError("--eval_steps needs --eval_data (the benchmark folder, e.g. <OphVL-mini>/benchmark)")
        t.trackers()
        return self

    @property
    def warmup_steps(self) -> int:
        t = self.training
        return t.warmup_steps or int(math.ceil(t.warmup_ratio * t.max_steps))


_RATIO = re.compile(r"^\s*(clip|video|c|v)\s*:\s*(\d+)\s*$")


def parse_schedule(schedule: str) -> list[str]:
    """`"clip:3,video:1"` or `"cccv"` -> `["clip", "clip", "clip", "video"]` (one level per optimiser step).

    A ratio lists the levels in the order given; an explicit pattern is a string of `c` (clip) and `v` (video).
    """
    if not isinstance(schedule, str) or not schedule.strip():
        raise ValueError("--schedule must be a ratio like 'clip:3,video:1' or a pattern like 'cccv'")
    text = schedule.strip().lower()
    full = {"c": "clip", "v": "video", "clip": "clip", "video": "video"}
    if ":" in text:
        pattern = []
        for part in text.split(","):
            match = _RATIO.match(part)
            if not match:
                raise ValueError(f"bad --schedule entry {part!r} in {schedule!r}; expected '<clip|video>:<count>'")
            pattern += [full[match.group(1)]] * int(match.group(2))
    elif set(text) <= {"c", "v"}:
        pattern = [full[ch] for ch in text]
    elif text in ("clip", "video"):
        pattern = [text]
    else:
        raise ValueError(f"bad --schedule {schedule!r}; expected a ratio like 'clip:3,video:1' or a pattern of c/v "
                         "letters like 'cccv'")
    if not pattern:
        raise ValueError(f"--schedule {schedule!r} has no step")
    return pattern


def build_parser():
    from transformers import HfArgumentParser

    parser = HfArgumentParser(GROUPS, description=(
        "Pretrain OphCLIP on OphVL with Accelerate: clip-level and video-level contrastive learning in alternation, "
        "with silent-video retrieval augmentation. Options come from --config (a flat YAML file) and the command "
        "line, which overrides the file."))
    parser.add_argument("--config", default=None, metavar="YAML",
                        help="A flat YAML file of options (keys are the option names without '--').")
    # HfArgumentParser gives every boolean option that defaults to True a `--no_<name>` twin with the same help text.
    for action in parser._actions:
        for flag in action.option_strings:
            if flag.startswith("--no_"):
                action.help = f"Shorthand for --{flag[5:]} false."
    return parser


def _option_names() -> set[str]:
    return {f.name for group in GROUPS for f in dataclasses.fields(group)}


def load_yaml_options(path) -> dict:
    """Read a flat YAML config; unknown keys are an error that names the valid ones."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a config file is a mapping of option names to values")
    unknown = sorted(set(values) - _option_names())
    if unknown:
        raise ValueError(f"{path}: unknown option(s) {unknown}; see `python train_accelerate.py --help`")
    return values


def parse_config(argv=None) -> PretrainConfig:
    """Parse a YAML file (`--config`) and command-line options (which win) into a validated `PretrainConfig`."""
    import argparse

    parser = build_parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.config:
        parser.set_defaults(**load_yaml_options(known.config))
    outputs = parser.parse_args_into_dataclasses(args=argv)
    model, data, objectives, training = outputs[:4]
    return PretrainConfig(model, data, objectives, training).validate()


def save_config(config: PretrainConfig, path) -> None:
    """Write the run's options as JSON (reloadable as a YAML config: JSON is YAML)."""
    Path(path).write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")


__all__ = [
    "DataArguments",
    "LEVELS",
    "ModelArguments",
    "ObjectiveArguments",
    "PretrainConfig",
    "TrainingArguments",
    "build_parser",
    "load_yaml_options",
    "parse_config",
    "parse_schedule",
    "save_config",
]
