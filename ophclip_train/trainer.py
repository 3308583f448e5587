r"""The OphCLIP pretraining loop on Accelerate.

One optimiser step trains one level, in the order of the schedule (`--schedule "clip:3,video:1"`):

- **clip step**: a batch of narrated clips per process; `clip_level_loss` (symmetric InfoNCE over the global batch:
  embeddings are gathered across processes with their gradients), plus `simsiam_weight · simsiam_loss` on two
  augmented views of every clip when SimSiam is on;
- **video step**: a batch of whole videos with their title summaries; `video_level_loss`, whose retrieval term uses
  the top-K silent videos that each title-summary embedding retrieves from the memory bank.

The contrastive batch stays whole under `--gradient_accumulation_steps`: `objectives.CachedFeatureAccumulator`
embeds all micro-batches without gradients, then re-embeds one micro-batch at a time with gradients against the
cached rest (open_clip's `accum_freq`). DDP only synchronises in the last backward.

The memory bank (`datasets_ophvl.SilentVideoBank`; an exact inner-product faiss index, or the approximate one that
`--bank_index` names) holds one L2-normalised video embedding per silent video. It is built before the first step by encoding every silent video (each process
encodes its share of the rows, `objectives.refresh_bank` gathers them and applies the same update everywhere), and
re-encoded with the current model as `--bank_refresh_rows_per_step` / `--bank_full_refresh_every` say. Bank encoding
runs in eval mode (BatchNorm running statistics, broadcast from the main process first), so every process computes
the same embeddings a single process would.

**Determinism and resumption.** The global RNG is re-seeded at every step from (seed, step, process), the SimSiam
views come from a generator seeded the same way, the data streams know their exact position, and a checkpoint holds
the model, optimiser, scheduler, data positions, counters and bank. A run that is interrupted and resumed therefore
ends with the same weights as an uninterrupted one (with `--dataloader_num_workers 0` and `--shuffle_buffer 0`; see
`DataArguments`).
"""

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from evaluate_suite.leaderboard import weights_hash

from . import checkpoint as ckpt
from .config import PretrainConfig, save_config
from .data import (build_level_stream, check_ophvl, check_settings_fit_data, required_subsets, scan_silent_videos,
                   silent_loader, split_batch)
from .modeling import (
    OphCLIPPretrainingModule,
    VideoAugment,
    build_model_and_processor,
    clamp_logit_scale,
    max_text_length,
    parameter_groups,
)


logger = logging.getLogger("ophclip_train")

FINAL_DIR = "final"
LOGS_DIR = "logs"
PRETRAIN_CONFIG_FILE = "pretraining_config.json"
# The phases of a training step that timing hooks (`Pretrainer.add_timing_hook`) are told about, in the order they run.
TIMED_PHASES = ("data", "forward_backward", "optimizer_step")


def _step_seed(seed: int, step: int, rank: int, stream: int = 0) -> int:
    return (((seed * 1_000_003 + step) * 1_009 + rank) * 7 + stream) % (2**63 - 1)


class LogWindow:
    """The steps since the last log line, so that a logged record describes all of them, not just the last.

    With an alternating schedule the last step of a logging window is always the same level (every 20th step of
    'clip:3,video:1' is a video step), so logging only that step would never show the other level's loss. A record
    holds, for every level trained in the window, the mean of each `<level>/<loss>` over its steps and its throughput
    (`<level>s_per_second`: samples over seconds); `level`, `loss`, `lr`, `logit_scale` and the bank counters are
    the last step's. With `--logging_steps 1` a record is exactly its step's metrics.
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sums, self.counts, self.samples, self.seconds = {}, {}, {}, {}

    def add(self, metrics: dict) -> None:
        level = metrics["level"]
        for name, value in metrics.items():
            if name.startswith(f"{level}/"):
                self.sums[name] = self.sums.get(name, 0.0) + value
                self.counts[name] = self.counts.get(name, 0) + 1
        rate, seconds = metrics[f"{level}s_per_second"], metrics["step_seconds"]
        self.samples[level] = self.samples.get(level, 0.0) + rate * seconds
        self.seconds[level] = self.seconds.get(level, 0.0) + seconds

    def summarize(self, last: dict) -> dict:
        """The record of the window ending with the step whose metrics are `last`; the window restarts."""
        record = dict(last)
        record.update({name: total / self.counts[name] for name, total in self.sums.items()})
        record.update({f"{level}s_per_second": self.samples[level] / max(self.seconds[level], 1e-9)
                       for level in self.seconds})
        self.reset()
        return record


class Pretrainer:
    """Runs one pretraining job described by a [`PretrainConfig`] (see `train_accelerate.py --help`).

    ```python
    >>> from ophclip_train.config import parse_config
    >>> from ophclip_train.trainer import Pretrainer
    >>> Pretrainer(parse_config(["--config", "configs/pretrain_mini.yaml", "--max_steps", "20"])).train()
    ```

    Timing hooks (`add_timing_hook`) see how long each phase of every training step took: `"data"` (the next batch
    read, decoded and collated), `"forward_backward"` (embedding, loss and backward of all micro-batches) and
    `"optimizer_step"` (`TIMED_PHASES`). `benchmarks/bench_train.py` splits each step with them. Without a hook
    nothing is timed; with one, on CUDA each clock read first waits for the device, so a time is the work's, not its
    launch's.
    """

    def __init__(self, config: PretrainConfig):
        self.config = config
        self.output_dir = Path(config.training.output_dir)
        self.timing_hooks = []  # callables `hook(phase, seconds)`, see `add_timing_hook`

    def add_timing_hook(self, hook) -> None:
        """Call `hook(phase, seconds)` after each phase of `TIMED_PHASES` in every training step (in that order; a
        step whose loss is not finite skips its optimiser step, and so that phase). `seconds` is wall-clock time."""
        if not callable(hook):
            raise TypeError(f"a timing hook must be callable as hook(phase, seconds); got a {type(hook).__name__}")
        self.timing_hooks.append(hook)

    @contextlib.contextmanager
    def _timed(self, phase: str):
        if not self.timing_hooks:
            yield
            return
        if self.accelerator.device.type == "cuda":
            torch.cuda.synchronize(self.accelerator.device)
        began = time.perf_counter()
        yield
        if self.accelerator.device.type == "cuda":
            torch.cuda.synchronize(self.accelerator.device)
        seconds = time.perf_counter() - began
        for hook in self.timing_hooks:
            hook(phase, seconds)

    # -- setup ----------------------------------------------------------------------------------------------------

    def _setup_accelerator(self):
        from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
        from accelerate.utils import ProjectConfiguration

        from .tracking import make_trackers

        t, o = self.config.training, self.config.objectives
        self.run_name = t.run_name or "pretrain"
        logging_dir = self.output_dir / LOGS_DIR
        # Without an accelerator, `cpu=True` is what makes a multi-process launch run DDP on CPU (gloo); with
        # cpu=False each launched process would train alone.
        has_accelerator = torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()
        self.accelerator = Accelerator(
            cpu=t.cpu or not has_accelerator,
            mixed_precision=t.mixed_precision,
            dataloader_config=DataLoaderConfiguration(dispatch_batches=False),
            log_with=make_trackers(t.trackers(), self.run_name, logging_dir),
            project_config=ProjectConfiguration(project_dir=str(self.output_dir), logging_dir=str(logging_dir)),
            # The SimSiam predictor only takes part in clip steps.
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=o.simsiam_weight > 0)],
        )
        # Our progress lines on the main process; libraries (accelerate's per-file checkpoint lines, the builder's
        # per-shard lines) only when something is wrong.
        if not logging.getLogger().handlers:  # leave an application's (or pytest's) logging setup alone
            logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
        logger.setLevel(logging.INFO if self.accelerator.is_local_main_process else logging.WARNING)
        asked_fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true")
        if asked_fsdp and self.accelerator.distributed_type.name != "FSDP" and self.accelerator.is_main_process:
            # accelerate (1.15) selects FSDP only over an accelerator backend; on CPU it keeps DDP without a word.
            logger.warning("the launch asked for FSDP, but accelerate runs %s here (FSDP needs GPUs): the model is "
                           "replicated on every process, not sharded", self.accelerator.distributed_type.name)
        import datasets
        import transformers

        if not self.accelerator.is_local_main_process:
            datasets.utils.logging.set_verbosity_error()
            transformers.utils.logging.set_verbosity_error()
        datasets.disable_progress_bars()

    def _setup_model(self):
        from accelerate.utils import set_seed
        from transformers import get_cosine_schedule_with_warmup

        from .objectives import SimSiamHead

        c, t = self.config, self.config.training
        set_seed(t.seed)  # the same initial weights on every process
        model, self.processor = build_model_and_processor(c.model, c.data)
        self.max_length = max_text_length(self.processor, model, c.model.max_text_length)
        head = None
        if c.objectives.simsiam_weight > 0:
            head = SimSiamHead(model.config.projection_dim, c.objectives.simsiam_hidden_dim)
        module = OphCLIPPretrainingModule(model, head)
        self.augment = VideoAugment(self.processor.video_processor.image_mean, self.processor.video_processor.image_std,
                                    c.objectives.augment_crop_scale, c.objectives.augment_color_jitter)
        if t.debug_dir and self.accelerator.is_main_process:
            model.save_pretrained(Path(t.debug_dir) / "initial_model")
            self.processor.save_pretrained(Path(t.debug_dir) / "initial_model")
        optimizer = torch.optim.AdamW(parameter_groups(module, t.weight_decay), lr=t.learning_rate,
                                      betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_epsilon)
        # Not prepared: accelerate would step it once per process per step. Its state (plain numbers) is saved in the
        # checkpoint's trainer_state.json, not through register_for_checkpointing, whose pickle accelerate loads with
        # weights_only=False (a crafted checkpoint could run code).
        self.scheduler = get_cosine_schedule_with_warmup(optimizer, c.warmup_steps, t.max_steps)
        self._check_sharding(model)
        self.module, self.optimizer = self.accelerator.prepare(module, optimizer)
        # Under FSDP2 the prepared module is the model itself (`fully_shard` changes its class in place), so
        # `unwrapped` is `module`: calling it runs FSDP's all-gather hooks, calling its submodules does not.
        self.unwrapped = self.accelerator.unwrap_model(self.module)

    def _check_sharding(self, model) -> None:
        """Under FSDP (`self.sharded`), refuse what the trainer cannot do right with sharded parameters, before
        `prepare`: FSDP version 1 (its wrapper is not the module the trainer calls) and a learnable logit scale (the
        losses read it outside the forward, where FSDP2 leaves a shard whose gradient no reduce-scatter averages)."""
        from accelerate.utils import DistributedType

        self.sharded = self.accelerator.distributed_type == DistributedType.FSDP
        if not self.sharded:
            return
        if not self.accelerator.is_fsdp2:
            raise ValueError("the trainer supports FSDP2 only: set fsdp_version: 2 in the accelerate config "
                             "(configs/accelerate_fsdp.yaml)")
        if isinstance(model.logit_scale, torch.nn.Parameter):
            raise ValueError("--learnable_logit_scale cannot be combined with FSDP (distributed_type: FSDP): the "
                             "losses read the scale outside the forward, where FSDP leaves it sharded; train it "
                             "with DDP or one process, or keep the fixed scale")

    def _check_data(self):
        """Raise, naming the path and the subset, when OphVL at --data_path cannot feed this run: a missing folder, a
        needed subset without shards, or one with no readable sample (`data.check_ophvl`). Every process checks (the
        same files, so all fail together); nothing is built yet."""
        from datasets_ophvl.streaming import resolve_path

        c = self.config
        data_path = resolve_path(c.data.data_path)
        check_ophvl(data_path, required_subsets(c.objectives.pattern(), c.objectives.retrieval),
                    num_frames=c.data.num_frames, decoder=c.data.decoder)
        # The launcher's world size (the accelerator is not built yet).
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        check_settings_fit_data(data_path, c.objectives.pattern(), c.data, c.objectives, world_size)

    def _setup_data(self):
        from datasets_ophvl.streaming import resolve_path

        c = self.config
        self.data_path = resolve_path(c.data.data_path)
        self.pattern = c.objectives.pattern()
        sizes = {"clip": c.data.clip_batch_size, "video": c.data.video_batch_size}
        self.streams = {}
        for level in ("clip", "video"):
            if level in self.pattern:
                self.streams[level] = build_level_stream(level, self.data_path, self.processor, c.data, c.training.seed,
                                                         self.max_length, self.accelerator, sizes[level])
        self.use_bank = c.objectives.retrieval and "video" in self.pattern

    # -- the memory bank ------------------------------------------------------------------------------------------

    def _sync_buffers(self):
        """Give every process the main process's buffers (BatchNorm running statistics): DDP broadcasts them at
        each forward anyway, so they are what the model is; done before bank encoding and saving."""
        if self.accelerator.num_processes > 1:
            import torch.distributed as dist

            for buffer in self.unwrapped.buffers():
                dist.broadcast(buffer.data, src=0)

    @torch.no_grad()
    def _encode_rows(self, rows):
        """`objectives.refresh_bank`'s `encode_fn`: this process's share of bank rows -> normalised embeddings."""
        device = self.accelerator.device
        out = self.bank.embeddings[torch.as_tensor(rows, dtype=torch.long)].clone()  # kept where decoding fails
        position = {int(r): i for i, r in enumerate(rows)}
        loader = silent_loader(self.data_path, self._bank_table, rows, self.processor, self.config.data)
        model = self.unwrapped.model
        forwards = 0
        for batch in loader:
            self._failed_rows.update(batch["failed"])
            if not batch["rows"]:
                continue
            pixels, mask = batch["pixel_values_videos"].to(device), batch["frame_mask"].to(device)
            with self.accelerator.autocast():
                if self.sharded:
                    # Through the wrapped module's forward, which gathers the sharded weights (and normalises).
                    embeds = self.module(pixel_values_videos=pixels, frame_mask=mask)["video_embeds"]
                else:
                    embeds = model.get_video_features(pixels, frame_mask=mask).pooler_output
            forwards += 1
            embeds = F.normalize(embeds.float(), dim=-1).cpu()
            out[[position[r] for r in batch["rows"]]] = embeds
        self._pad_bank_forwards(forwards)
        return out

    def _pad_bank_forwards(self, done: int) -> None:
        """Under FSDP every forward is collective (it all-gathers the shards), so a process whose share of a bank
        refresh has fewer batches (a shorter or empty share, undecodable rows) runs placeholder forwards until it has
        run as many as the others; their output is dropped, and eval mode leaves the BatchNorm statistics alone."""
        if not self.sharded:
            return
        for _ in range(self._bank_forwards - done):
            with self.accelerator.autocast():
                self.module(pixel_values_videos=self._placeholder_video())

    def _placeholder_embeds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`(no text, no video)` rows of a silent micro-batch of which nothing decoded here, through a forward all the
        same: every forward of the wrapped module is collective across processes (DDP broadcasts the BatchNorm
        buffers in it, FSDP gathers the shards), so skipping it would leave the others waiting. A placeholder video
        runs in eval mode (no BatchNorm statistics change), and an empty slice of its output keeps the graph, so that
        the backward reaches every parameter (with zero gradients) as the other processes' backward does."""
        self.module.eval()
        try:
            video = self.module(pixel_values_videos=self._placeholder_video())["video_embeds"][:0]
        finally:
            self.module.train()
        return video.new_zeros(0, video.shape[-1]), video

    def _placeholder_video(self) -> torch.Tensor:
        """One black video of the training shape: what a process with nothing to encode feeds a collective forward
        so that the others do not wait for it."""
        size = self.processor.video_processor.crop_size
        return torch.zeros(1, self.config.data.num_frames, 3, size["height"], size["width"],
                           device=self.accelerator.device)

    def _refresh(self, rows) -> int:
        from .objectives import refresh_bank

        self._sync_buffers()
        self.unwrapped.eval()
        try:
            if self.sharded:
                rank, world = self.accelerator.process_index, self.accelerator.num_processes
                rows = rows.detach().cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
                longest = math.ceil(len(rows) / world)
                self._bank_forwards = math.ceil(longest / self.config.data.bank_batch_size)
                if not len(type(self.bank).shard_rows(rows, rank, world)):
                    # refresh_bank does not call _encode_rows for an empty share: its forwards come before the gather.
                    self._pad_bank_forwards(0)
            return refresh_bank(self.bank, self._encode_rows, rows, self.accelerator.process_index,
                                self.accelerator.num_processes, gather_fn=self.accelerator.gather)
        finally:
            self.unwrapped.train()

    def _set_bank(self, bank):
        self.bank = bank
        self._bank_table = bank.dataset.select_columns(["shard", "offset", "size"]).to_dict()
        self._bank_ids = list(bank.dataset["video_id"])
        self._bank_truth = None  # the bank rows' hidden ground truth, looked up once (`_retrieval_quality`)

    def _build_bank(self):
        """Index the silent videos and encode all of them (every process its share)."""
        from accelerate.utils import gather_object
        from datasets import Dataset

        from datasets_ophvl import SilentVideoBank

        started = time.perf_counter()
        table = scan_silent_videos(self.data_path)
        n = len(table["video_id"])
        dim = self.unwrapped.model.config.projection_dim
        # Placeholder vectors, the same on every process, in an exact index (nothing worth training an approximate
        # one on); every row is re-encoded right away.
        initial = torch.randn(n, dim, generator=torch.Generator().manual_seed(self.config.training.seed))
        self._set_bank(SilentVideoBank(Dataset.from_dict(table), initial))
        self._failed_rows = set()
        self._refresh(torch.arange(n))
        failed = sorted(set(gather_object(sorted(self._failed_rows))))
        keep = [row for row in range(n) if row not in set(failed)]
        if failed:
            logger.warning(f"memory bank: {len(failed)} silent videos could not be decoded and were left out")
            if not keep:
                raise ValueError("no silent video of the bank could be decoded")
        index_kwargs = self.config.objectives.bank_index_kwargs()
        if failed or index_kwargs["string_factory"] is not None:
            # The bank as it will be used: the decoded rows, the requested index built (and trained) once on them
            # (over a new table: the placeholder bank's has its index attached).
            dataset = Dataset.from_dict(table)
            self._set_bank(SilentVideoBank(dataset.select(keep) if failed else dataset,
                                           self.bank.embeddings[keep].clone(), **index_kwargs))
        self._check_bank()
        logger.info(f"memory bank: {len(self.bank)} silent videos encoded in {time.perf_counter() - started:.1f}s")

    def _check_bank_data(self, bank, checkpoint) -> None:
        """Refuse a resume whose silent videos changed: every bank row is re-read by (shard, byte offset, size) from
        the current --data_path, so each row's video id must still be at that place in that shard (swapped, rewritten
        or removed shards would silently feed another video's frames into the bank)."""
        current = scan_silent_videos(self.data_path)
        where = {vid: (shard, offset, size) for vid, shard, offset, size in
                 zip(current["video_id"], current["shard"], current["offset"], current["size"])}
        saved = bank.dataset.select_columns(["video_id", "shard", "offset", "size"]).to_dict()
        for vid, shard, offset, size in zip(saved["video_id"], saved["shard"], saved["offset"], saved["size"]):
            now = where.get(vid)
            if now != (shard, offset, size):
                found = "is missing" if now is None else f"is now in {now[0]} at byte {now[1]} ({now[2]} bytes)"
                raise ValueError(
                    f"--resume: the silent videos under {self.data_path} changed since {checkpoint} was saved: "
                    f"{vid!r} was in {shard} at byte {offset} ({size} bytes) and {found}; resume with the data the "
                    "run started with (or start a new run)")

    def _check_bank(self):
        k = self.config.objectives.retrieval_k
        if k > len(self.bank):
            raise ValueError(f"--retrieval_k {k} is larger than the memory bank ({len(self.bank)} silent videos)")

    def _refresh_after_step(self, steps_done: int) -> int:
        o = self.config.objectives
        if not self.use_bank:
            return 0
        if o.bank_full_refresh_every and steps_done % o.bank_full_refresh_every == 0:
            return self._refresh(torch.arange(len(self.bank)))
        if o.bank_refresh_rows_per_step:
            rows = self.bank.rows_for_refresh(self.refresh_count, o.bank_refresh_rows_per_step)
            self.refresh_count += 1
            refreshed = self._refresh(rows)
            if not self.bank.is_exact and len(rows) < len(self.bank) and self.refresh_count % math.ceil(
                    len(self.bank) / o.bank_refresh_rows_per_step) == 0:
                # A cycle has re-encoded every row: retrain the approximate index (IVF centroids, PQ codebooks) on
                # the current embeddings; every process does it on the same vectors. (A refresh of every row at
                # once has retrained it already: `SilentVideoBank.update`.)
                self.bank.rebuild()
            return refreshed
        return 0

    # -- one step -------------------------------------------------------------------------------------------------

    def _clip_fns(self, step: int, micro_batches: list[dict]):
        from .objectives import clip_level_loss, simsiam_loss

        o = self.config.objectives
        simsiam = o.simsiam_weight > 0
        if simsiam:
            generator = torch.Generator().manual_seed(_step_seed(self.config.training.seed, step,
                                                                 self.accelerator.process_index, stream=1))
            for micro in micro_batches:
                pixels = micro["pixel_values_videos"]
                micro["views"] = (self.augment(pixels, generator), self.augment(pixels, generator))

        def embed_fn(micro):
            out = self.module(input_ids=micro["input_ids"], attention_mask=micro.get("attention_mask"),
                              token_type_ids=micro.get("token_type_ids"),
                              pixel_values_videos=micro["pixel_values_videos"], frame_mask=micro.get("frame_mask"),
                              views=micro.get("views"))
            video = out["video_embeds"]
            if simsiam:
                # The accumulator caches one (text, video) pair per micro-batch: the SimSiam outputs travel as
                # extra columns of the video features and are split off again in loss_fn.
                video = torch.cat([video, out["p1"], out["z1"], out["p2"], out["z2"]], dim=-1)
            return out["text_embeds"], video

        def loss_fn(text, video):
            dim = text.shape[-1]
            losses = clip_level_loss(text, video[:, :dim], self.unwrapped.model.logit_scale, **self._loss_forms())
            if simsiam:
                p1, z1, p2, z2 = video[:, dim:].split(dim, dim=-1)
                losses["simsiam_loss"] = simsiam_loss(p1, z1, p2, z2)
                losses["loss"] = losses["clip_contrastive_loss"] + o.simsiam_weight * losses["simsiam_loss"]
            return losses

        return embed_fn, loss_fn

    def _retrieve_for_step(self, step: int, batch: dict, titles: torch.Tensor, extra: dict):
        """This video step's retrieval, `(vectors, mask, indices)` as `objectives.retrieve` gives them: `titles`, the
        title embeddings of the step's first (no-grad) pass, query the bank by maximum inner product search; with
        `--retrieval_pairing random` each title gets K random rows instead (the ablation). Adds the retrieval's
        precision (with a ground truth) to `extra`."""
        from .objectives import random_pairing, retrieve

        o, t = self.config.objectives, self.config.training
        if o.retrieval_pairing == "random":
            generator = torch.Generator().manual_seed(_step_seed(t.seed, step, self.accelerator.process_index, 2))
            retrieved = random_pairing(self.bank, len(titles), o.retrieval_k, generator, device=titles.device)
        else:
            retrieved = retrieve(self.bank, titles.float(), o.retrieval_k)
        extra.update(self._retrieval_quality(batch, retrieved))
        return retrieved

    def _silent_micro_batch(self, step: int, retrieved) -> dict:
        """The encoded form's extra micro-batch: `--retrieval_encode_per_title` of each title's retrieved silent
        videos, decoded (`silent_rows`: the rows that decoded, `pixel_values_videos`, `frame_mask`)."""
        from .data import SilentCollator, SilentVideoDataset
        from .objectives import rows_to_encode

        o, c = self.config.objectives, self.config
        _, mask, indices = retrieved
        generator = torch.Generator().manual_seed(_step_seed(c.training.seed, step, self.accelerator.process_index, 3))
        rows = rows_to_encode(indices, mask, o.retrieval_encode_per_title, generator)
        video_processor = self.processor.video_processor
        dataset = SilentVideoDataset(self.data_path, self._bank_table, rows, video_processor, c.data.num_frames,
                                     c.data.decoder)
        decoded = SilentCollator(video_processor)([dataset[i] for i in range(len(dataset))])
        self._failed_rows.update(decoded["failed"])  # counted and named in skip_counts by the dataset
        micro = {"silent_rows": np.asarray(decoded["rows"], dtype=np.int64)}
        if decoded["rows"]:
            micro["pixel_values_videos"] = decoded["pixel_values_videos"].to(self.accelerator.device)
            micro["frame_mask"] = decoded["frame_mask"].to(self.accelerator.device)
        return micro

    def _retrieval_quality(self, batch: dict, retrieved) -> dict:
        """precision@K of this step's retrieval against the hidden ground truth (`--retrieval_ground_truth`), per
        field with its chance level, as tensors to be logged with the losses (empty without a ground truth)."""
        from .objectives import retrieval_precision

        if self._truth is None:
            return {}
        _, mask, indices = retrieved
        truth = self._truth
        ids = batch.get("video_id") or [None] * len(indices)
        retrieved_truth = [[truth.get(self._bank_ids[r]) if ok and r >= 0 else None for r, ok in zip(row, valid)]
                           for row, valid in zip(indices.tolist(), mask.tolist())]
        if self._bank_truth is None:
            self._bank_truth = [truth.get(v) for v in self._bank_ids]
        quality = retrieval_precision([truth.get(v) for v in ids], retrieved_truth, self._bank_truth)
        metrics = {}
        for name, value in quality.items():
            for kind in ("precision", "chance"):
                number = math.nan if value[kind] is None else value[kind]
                metrics[f"retrieval_{kind}_{name}"] = torch.tensor(number, dtype=torch.float32)
        return metrics

    def _video_fns(self, step: int, batch: dict):
        """`(embed_fn, loss_fn, after_first_pass, extra metrics)` of a video step (see `CachedFeatureAccumulator`).

        The retrieval queries are the titles' embeddings from the step's first pass (train mode, as the loss sees
        them; no extra text forward). Detached form: the loss retrieves on its first call, which is on those
        embeddings. Encoded form: `after_first_pass` retrieves and returns the silent videos to encode as one more
        micro-batch, whose `embed_fn` returns no text and their video embeddings; `extra` is filled in then."""
        from .objectives import make_video_level_loss_fn

        o = self.config.objectives
        logit_scale = self.unwrapped.model.logit_scale
        if not self.use_bank:
            return self._narrated_embed_fn, make_video_level_loss_fn(logit_scale, **self._loss_forms()), None, {}
        extra, state = {}, {}

        if o.retrieval_form == "detached":  # retrieves on the loss's first call: the titles of pass 1
            loss_fn = make_video_level_loss_fn(
                logit_scale, retrieval_weight=o.retrieval_weight, **self._loss_forms(),
                retrieve_fn=lambda titles: self._retrieve_for_step(step, batch, titles, extra))
            return self._narrated_embed_fn, loss_fn, None, extra

        def after_first_pass(titles, _videos):
            retrieved = self._retrieve_for_step(step, batch, titles, extra)
            silent = self._silent_micro_batch(step, retrieved)
            extra["silent_videos_encoded"] = torch.tensor(float(len(silent["silent_rows"])))
            state["loss_fn"] = make_video_level_loss_fn(logit_scale, retrieval_weight=o.retrieval_weight,
                                                        retrieved=retrieved, silent_rows=silent["silent_rows"],
                                                        **self._loss_forms())
            return [silent]

        dim = self.unwrapped.model.config.projection_dim

        def embed_fn(micro):
            if "silent_rows" not in micro:
                return self._narrated_embed_fn(micro)
            if "pixel_values_videos" not in micro:  # nothing decoded on this process: no rows
                if self.accelerator.num_processes == 1:
                    empty = torch.zeros(0, dim, device=self.accelerator.device)
                    return empty, empty
                return self._placeholder_embeds()
            video = self.module(pixel_values_videos=micro["pixel_values_videos"],
                                frame_mask=micro["frame_mask"])["video_embeds"]
            return video.new_zeros(0, video.shape[-1]), video

        return embed_fn, lambda text, video: state["loss_fn"](text, video), after_first_pass, extra

    def _loss_forms(self) -> dict:
        """The contrastive terms' form: `--local_loss`, and equal batches on every process (the level streams drop
        the short last batch), so no loss exchanges batch sizes."""
        return {"local_loss": self.config.objectives.local_loss, "equal_batches": True}

    def _narrated_embed_fn(self, micro):
        out = self.module(input_ids=micro["input_ids"], attention_mask=micro.get("attention_mask"),
                          token_type_ids=micro.get("token_type_ids"),
                          pixel_values_videos=micro["pixel_values_videos"], frame_mask=micro.get("frame_mask"))
        return out["text_embeds"], out["video_embeds"]

    def training_step(self, step: int) -> tuple[str, dict, int]:
        """Train step `step` (0-based); returns `(level, detached local losses, per-process batch size)`."""
        from .objectives import CachedFeatureAccumulator

        t = self.config.training
        level = self.pattern[step % len(self.pattern)]
        torch.manual_seed(_step_seed(t.seed, step, self.accelerator.process_index))  # dropout, accumulation seeds
        with self._timed("data"):
            batch = next(self.streams[level])
        micro_batches = split_batch(batch, t.gradient_accumulation_steps)
        extra, after_first_pass = {}, None
        if level == "clip":
            embed_fn, loss_fn = self._clip_fns(step, micro_batches)
        else:
            embed_fn, loss_fn, after_first_pass, extra = self._video_fns(step, batch)
        captured = {}
        if t.debug_dir and not self._dumped_first_step:
            inner = embed_fn

            def embed_fn(micro):
                text, video = inner(micro)  # a micro-batch's first call is its cached (first-pass) one
                captured.setdefault(id(micro), ("silent_rows" in micro, text.detach().cpu(), video.detach().cpu()))
                return text, video

        self.module.train()
        with self._timed("forward_backward"):
            losses = CachedFeatureAccumulator().accumulate_step(
                micro_batches, embed_fn, loss_fn, backward_fn=self.accelerator.backward,
                no_sync=lambda: self.accelerator.no_sync(self.module), after_first_pass=after_first_pass)
        losses.update(extra)
        if not self._all_finite(losses["loss"]):
            # One bad batch must not poison the weights: drop its gradients, keep the schedule where it is.
            self.optimizer.zero_grad(set_to_none=True)
            self.nonfinite_steps += 1
            logger.warning("step %d: non-finite loss %s, step skipped (%d so far)", step, float(losses["loss"]),
                           self.nonfinite_steps)
            if self.nonfinite_steps > t.max_nonfinite_steps:
                raise RuntimeError(
                    f"{self.nonfinite_steps} steps had a NaN or infinite loss (more than --max_nonfinite_steps "
                    f"{t.max_nonfinite_steps}); lower the learning rate or check the data"
                )
            return level, losses, len(batch["input_ids"])
        if t.max_grad_norm:
            self.accelerator.clip_grad_norm_(self.module.parameters(), t.max_grad_norm)
        with self._timed("optimizer_step"):
            self.optimizer.step()
        self.last_lr = self.scheduler.get_last_lr()[0]  # the rate this step used
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        clamp_logit_scale(self.unwrapped.model)
        if captured:
            # In the order the loss sees them: the silent micro-batch first.
            ordered = sorted(captured.values(), key=lambda entry: not entry[0])
            self._dump_first_step(step, level, batch, [(text, video) for _, text, video in ordered], losses)
        return level, losses, len(batch["input_ids"])

    # -- debugging artefacts --------------------------------------------------------------------------------------

    def _dump_first_step(self, step, level, batch, captured, losses):
        folder = Path(self.config.training.debug_dir)
        folder.mkdir(parents=True, exist_ok=True)
        dim = captured[0][0].shape[-1]
        torch.save({
            "step": step,
            "level": level,
            "rank": self.accelerator.process_index,
            "world_size": self.accelerator.num_processes,
            "inputs": {k: v.detach().cpu() for k, v in batch.items() if isinstance(v, torch.Tensor)},
            "text_embeds": torch.cat([c[0] for c in captured]),
            "video_embeds": torch.cat([c[1][:, :dim] for c in captured]),
            "losses": {k: float(v) for k, v in losses.items()},
            "logit_scale": float(self.unwrapped.model.logit_scale.detach()),
        }, folder / f"rank{self.accelerator.process_index}_first_step.pt")
        self._dumped_first_step = True

    def _dump_final(self, step: int, module_hash: str | None = None):
        """Each process's record of the final state. `module_hash`: under FSDP, the hash of the gathered weights
        (every process holds only shards); otherwise each process hashes its own replica."""
        folder = Path(self.config.training.debug_dir)
        folder.mkdir(parents=True, exist_ok=True)
        state_hash = module_hash if self.sharded else weights_hash(self.unwrapped, length=64)
        record = {"rank": self.accelerator.process_index, "step": step, "state_dict_sha256": state_hash,
                  "bank_sha256": hashlib.sha256(self.bank.embeddings.numpy().tobytes()).hexdigest()
                  if self.use_bank else None}
        (folder / f"rank{self.accelerator.process_index}_final.json").write_text(json.dumps(record, indent=2) + "\n")

    # -- checkpoints ----------------------------------------------------------------------------------------------

    def _trainer_state(self, step: int) -> dict:
        return {"scheduler": self.scheduler.state_dict(),
                "global_step": step, "schedule": self.pattern, "schedule_position": step % len(self.pattern),
                "refresh_count": self.refresh_count, "world_size": self.accelerator.num_processes,
                "seed": self.config.training.seed, "max_steps": self.config.training.max_steps}

    def _save(self, step: int):
        self._sync_buffers()
        data_state = {level: stream.state_dict() for level, stream in self.streams.items()}
        path = ckpt.save_checkpoint(self.accelerator, self.output_dir, step, self._trainer_state(step), data_state,
                                    self.bank if self.use_bank else None, self.config.training.save_total_limit)
        logger.info(f"saved checkpoint {path}")

    def _checkpoint_layout(self) -> str | None:
        """How this run's checkpoints hold the weights: `"plain"` (accelerate's weight files: one process or DDP),
        `"sharded"` (FSDP with SHARDED_STATE_DICT: `torch.distributed.checkpoint` folders), or None (DeepSpeed,
        Megatron, FSDP's other state-dict types, whose files accelerate checks itself)."""
        from accelerate.utils import DistributedType

        kind = self.accelerator.distributed_type
        if kind == DistributedType.FSDP:
            state_dict_type = self.accelerator.state.fsdp_plugin.state_dict_type
            sharded = str(getattr(state_dict_type, "name", state_dict_type)).endswith("SHARDED_STATE_DICT")
            return "sharded" if sharded else None
        return None if kind in (DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM) else "plain"

    def _check_resume(self) -> Path:
        """The checkpoint --resume names, checked before the model is built: complete (`ckpt.read_trainer_state`) and
        not past --max_steps."""
        t = self.config.training
        layout = self._checkpoint_layout()
        if layout is None:
            return ckpt.resolve_resume(t.resume, self.output_dir)
        check = functools.partial(ckpt.read_trainer_state, sharded=layout == "sharded")
        path = ckpt.resolve_resume(t.resume, self.output_dir, check=check)
        state = check(path)
        step = state["global_step"]
        if step > t.max_steps:
            # Finishing would save a model trained past this run's schedule under this run's options.
            raise ValueError(f"--resume: the checkpoint {path} is at step {step}, past --max_steps {t.max_steps}; "
                             f"raise --max_steps to train on from it (a finished run's model is in its "
                             f"{FINAL_DIR}/ folder)")
        if step == t.max_steps:
            logger.warning(f"--resume: the checkpoint {path} is at --max_steps {step}: nothing left to train, the "
                           "final model is written from it")
        elif state.get("max_steps") not in (None, t.max_steps):
            # The scheduler's state is its step count; its shape comes from this run's --max_steps.
            logger.warning(f"the checkpoint {path} was written by a run of --max_steps {state['max_steps']}, this run "
                           f"has {t.max_steps}: the learning-rate schedule follows this run's length from step {step}")
        return path

    def _resume(self, path) -> int:
        from datasets_ophvl import SilentVideoBank

        if self._checkpoint_layout() is not None:
            # Against the unwrapped module: accelerate saves (and loads) the weights without DDP's `module.` prefix,
            # so comparing with the wrapper refused every multi-process resume as "a different launch".
            ckpt.check_model_matches(path, self.unwrapped)  # before accelerate's strict load and its mismatch list
        trainer_state, data_state, bank_dir = ckpt.load_checkpoint(self.accelerator, path)
        step = int(trainer_state["global_step"])
        self.scheduler.load_state_dict(trainer_state["scheduler"])
        if trainer_state.get("schedule") != self.pattern:
            logger.warning(f"the checkpoint's schedule {trainer_state.get('schedule')} differs from this run's "
                           f"{self.pattern}")
        self.refresh_count = int(trainer_state.get("refresh_count", 0))
        if data_state is None or trainer_state.get("world_size") != self.accelerator.num_processes:
            logger.warning("the checkpoint was written by a different number of processes: the data streams start "
                           "their next epoch instead of resuming mid-epoch")
            for level, stream in self.streams.items():
                epoch = (data_state or {}).get(level, {}).get("epoch", 0)
                stream.load_state_dict({"epoch": epoch + 1, "batches_in_epoch": 0, "workers": []})
        else:
            for level, stream in self.streams.items():
                if level in data_state:
                    stream.load_state_dict(data_state[level])
        if self.use_bank:
            if bank_dir is None:
                logger.warning("the checkpoint has no memory bank: building it")
                self._build_bank()
            else:
                bank = SilentVideoBank.load(bank_dir)
                wanted = self.config.objectives.bank_index_kwargs()
                if bank.string_factory != wanted["string_factory"]:
                    raise ValueError(f"--resume: the memory bank of {path} has the index "
                                     f"{bank.string_factory or 'Flat'!r}, this run asks for --bank_index "
                                     f"{self.config.objectives.bank_index!r}; resume with the same --bank_index")
                bank.nprobe = wanted["nprobe"]
                dim = self.unwrapped.model.config.projection_dim
                if bank.embeddings.shape[1] != dim:
                    raise ValueError(f"--resume: the memory bank of {path} holds {bank.embeddings.shape[1]}-d "
                                     f"embeddings, this model's are {dim}-d")
                self._check_bank_data(bank, path)
                self._set_bank(bank)
                self._check_bank()
        elif bank_dir is not None:
            logger.info("the checkpoint's memory bank is not used: this run has no retrieval")
        logger.info(f"resumed from {path} at step {step}")
        return step

    # -- the run --------------------------------------------------------------------------------------------------

    def _log_step(self, step, level, losses, batch_size, seconds, refreshed) -> dict:
        """The metrics of one step (losses reduced over processes), as the progress bar shows them."""
        world = self.accelerator.num_processes
        metrics = {}
        for name, value in sorted(losses.items()):
            reduced = self.accelerator.reduce(value.detach().float().reshape(1).to(self.accelerator.device), "mean")
            metrics[f"{level}/{name}"] = float(reduced)
        metrics["loss"] = metrics[f"{level}/loss"]
        metrics["level"] = level
        metrics["lr"] = self.last_lr
        metrics["logit_scale"] = float(self.unwrapped.model.logit_scale.detach().exp())
        samples = batch_size * world
        metrics[f"{level}s_per_second"] = samples / max(seconds, 1e-9)
        metrics["step_seconds"] = seconds
        if self.use_bank:
            metrics["bank/refreshed_rows"] = refreshed
        return metrics

    def setup(self) -> int:
        """Build everything (accelerator, model, optimiser, streams, bank or checkpoint, trackers); returns the step
        to start from."""
        c, t = self.config, self.config.training
        self._check_data()  # first: a wrong --data_path must cost seconds, not a model build and a bank
        self._setup_accelerator()
        accelerator = self.accelerator
        if accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            ckpt.remove_stale_tmp(self.output_dir)
            save_config(c, self.output_dir / PRETRAIN_CONFIG_FILE)
        accelerator.wait_for_everyone()
        resume_path = self._check_resume() if t.resume else None
        self._setup_model()
        self._setup_data()
        self.refresh_count = 0
        self.bank = None
        self._dumped_first_step = False
        self.nonfinite_steps = 0
        self._failed_rows = set()
        self.evaluator = None
        self._log_window = LogWindow()
        self._truth = None
        self._precision_windows = []
        if c.objectives.retrieval_ground_truth and self.use_bank:
            from datasets_ophvl.mini import read_ground_truth

            self._truth = read_ground_truth(c.objectives.retrieval_ground_truth)
        if t.eval_steps:
            from .evaluation import ZeroShotEvaluator

            self.evaluator = ZeroShotEvaluator(t.eval_benchmark, t.eval_data, t.eval_split, t.eval_fps)
        start = 0
        if resume_path is not None:
            start = self._resume(resume_path)
        elif self.use_bank:
            self._build_bank()
        accelerator.init_trackers(self.run_name, config=c.to_dict())
        return start

    def run_step(self, step: int) -> dict:
        """One iteration of the loop: train step `step`, refresh the bank as the policy says, reduce and log the
        metrics (returned)."""
        t = self.config.training
        began = time.perf_counter()
        level, losses, batch_size = self.training_step(step)
        refresh_began = time.perf_counter()
        refreshed = self._refresh_after_step(step + 1)
        refresh_seconds = time.perf_counter() - refresh_began
        metrics = self._log_step(step, level, losses, batch_size, time.perf_counter() - began, refreshed)
        if self.use_bank:
            metrics["bank/refresh_seconds"] = refresh_seconds
        self._log_window.add(metrics)
        if t.logging_steps and ((step + 1) % t.logging_steps == 0 or step + 1 == t.max_steps):
            record = self._log_window.summarize(metrics)
            if "video/retrieval_precision_cataract" in record:
                self._precision_windows.append((step + 1, record["video/retrieval_precision_cataract"],
                                                record["video/retrieval_chance_cataract"]))
            self.accelerator.log(record, step=step + 1)
        return metrics

    def train(self) -> dict:
        """Run the job; returns a summary (`final_dir`, `global_step`, `last_metrics`)."""
        from tqdm.auto import tqdm

        t = self.config.training
        start = self.setup()
        progress = tqdm(total=t.max_steps, initial=start, desc="pretrain", dynamic_ncols=True,
                        disable=not self.accelerator.is_local_main_process)
        rates, last = {}, {}
        stop = self._watch_sigterm()
        for step in range(start, t.max_steps):
            metrics = self.run_step(step)
            level = metrics["level"]
            rate = metrics[f"{level}s_per_second"]
            rates[level] = rate if level not in rates else 0.9 * rates[level] + 0.1 * rate
            progress.set_postfix({"level": level, "loss": f"{metrics['loss']:.4f}",
                                  **{f"{name}s/s": f"{value:.1f}" for name, value in sorted(rates.items())}})
            progress.update(1)
            steps_done, last = step + 1, metrics
            if self.evaluator is not None and (steps_done % t.eval_steps == 0 or steps_done == t.max_steps):
                self._evaluate(self.evaluator, steps_done)
            if t.save_steps and steps_done % t.save_steps == 0:
                self._save(steps_done)
            if self._stop_requested(stop):
                # A scheduler or the user asked us to stop: keep the work done so far, `--resume latest` continues.
                if not (t.save_steps and steps_done % t.save_steps == 0):
                    self._save(steps_done)
                progress.close()
                logger.warning("stopped by SIGTERM after step %d; checkpoint saved, resume with --resume latest",
                               steps_done)
                return {"final_dir": None, "global_step": steps_done, "last_metrics": last, "interrupted": True}
        progress.close()
        self._report_retrieval_quality()
        final_dir = self._finish(max(start, t.max_steps))
        return {"final_dir": str(final_dir), "global_step": max(start, t.max_steps), "last_metrics": last,
                "weights_hash": self._final_weights_hash}

    @staticmethod
    def _watch_sigterm() -> threading.Event:
        """An event set when this process receives SIGTERM (only the main thread may install handlers)."""
        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        return stop

    def _all_finite(self, loss) -> bool:
        """Whether the loss is finite on every process (they must agree to skip a step together)."""
        bad = torch.tensor([0 if torch.isfinite(torch.as_tensor(loss)).all() else 1], device=self.accelerator.device)
        return not bool(self.accelerator.reduce(bad, reduction="sum").item())

    def _stop_requested(self, stop: threading.Event) -> bool:
        """Whether any process was asked to stop; all processes agree, so they save the same checkpoint together."""
        flag = torch.tensor([1 if stop.is_set() else 0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item())

    def _report_retrieval_quality(self) -> None:
        """One line at the end: retrieval precision@K for cataract type in the first and last logging windows that
        had a video step, beside its chance level (with --retrieval_ground_truth)."""
        if not self._precision_windows:
            return
        (first_step, first, chance), (last_step, last, _) = self._precision_windows[0], self._precision_windows[-1]
        logger.info(f"retrieval precision@{self.config.objectives.retrieval_k} (cataract type): {first:.3f} at step "
                    f"{first_step} -> {last:.3f} at step {last_step} (chance {chance:.3f})")

    def _write_model_card(self, final_dir: Path) -> None:
        """`README.md` of the final folder, from the run's own options (`model_cards.build_model_card`). Without
        --push_to_hub a card that cannot be built is only a warning."""
        t = self.config.training
        try:
            from model_cards import build_model_card

            m = self.config.model
            # Hub ids the weights started from (local folders are not metadata the Hub can link).
            bases = [p for p in (m.model_name_or_path, m.vision_model_name_or_path, m.text_model_name_or_path)
                     if p and not os.path.exists(p)]
            card = build_model_card(final_dir, model_id=t.hub_model_id or str(final_dir),
                                    training_args=self.config.to_dict(), base_model=bases or None)
            card.save(final_dir / "README.md")
        except Exception as error:
            if t.push_to_hub:
                raise
            logger.warning(f"no model card written to {final_dir}: {type(error).__name__}: {error}")

    def _broadcast_text(self, text: str, capacity: int = 256) -> str:
        """The main process's `text` (at most `capacity` UTF-8 bytes) on every process: bytes in a tensor, no pickle."""
        from accelerate.utils import broadcast

        data = torch.zeros(capacity, dtype=torch.uint8, device=self.accelerator.device)
        if self.accelerator.is_main_process:
            encoded = text.encode()
            if len(encoded) > capacity:
                raise ValueError(f"_broadcast_text: {len(encoded)} bytes do not fit in {capacity}")
            data[: len(encoded)] = torch.tensor(list(encoded), dtype=torch.uint8)
        data = broadcast(data, from_process=0)
        return bytes(data.cpu().tolist()).rstrip(b"\0").decode()

    def _full_state_dict(self) -> dict | None:
        """Under FSDP, the training module's whole weights (`model.*`, `simsiam_head.*`, buffers included) gathered
        on the CPU of the main process (`accelerator.get_state_dict`): a collective, every process calls it; the
        others get None."""
        state = self.accelerator.get_state_dict(self.module)
        return state if self.accelerator.is_main_process else None

    @staticmethod
    def _model_weights(state: dict) -> dict:
        """The `OphCLIPModel` part of the training module's state dict, under the model's own names."""
        return {name[len("model."):]: tensor for name, tensor in state.items() if name.startswith("model.")}

    def _evaluation_model(self):
        """The model the evaluator runs on the main process (None on the others): the trained model itself, or under
        FSDP an unsharded copy built from the gathered weights (collective)."""
        if not self.sharded:
            return self.unwrapped.model if self.accelerator.is_main_process else None
        from modeling_ophclip import OphCLIPModel

        state = self._full_state_dict()
        if state is None:
            return None
        model = OphCLIPModel(self.unwrapped.model.config)
        model.load_state_dict(self._model_weights(state))
        return model.to(self.accelerator.device)

    def _evaluate(self, evaluator, step: int):
        self._sync_buffers()
        model = self._evaluation_model()
        if self.accelerator.is_main_process:
            try:
                metrics = evaluator(model, self.processor, step)
            finally:
                self.unwrapped.train()
            if metrics:
                self.accelerator.log(metrics, step=step)
                logger.info(f"step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
        self.accelerator.wait_for_everyone()

    def _finish(self, step: int) -> Path:
        t = self.config.training
        accelerator = self.accelerator
        self._sync_buffers()
        final_dir = self.output_dir / FINAL_DIR
        # Under FSDP the parameters are shards: the whole weights are gathered on the main process (collective).
        state = self._full_state_dict() if self.sharded else None
        module_hash = None
        if not self.sharded:  # every process holds the whole weights
            self._final_weights_hash = weights_hash(self.unwrapped.model)
        if accelerator.is_main_process:
            model = self.unwrapped.model
            if self.sharded:
                weights = self._model_weights(state)
                self._final_weights_hash = weights_hash(weights)
                module_hash = weights_hash(state, length=64) if t.debug_dir else None
                model.save_pretrained(final_dir, state_dict=weights)  # which empties the dict it is given
            else:
                model.save_pretrained(final_dir)
            self.processor.save_pretrained(final_dir)
            save_config(self.config, final_dir / PRETRAIN_CONFIG_FILE)
            self._write_model_card(final_dir)
            logger.info(f"saved the final model, processor and model card to {final_dir}; weights "
                        f"{self._final_weights_hash} (the hash evaluation records and the leaderboard show)")
        if self.sharded:  # every process reports the gathered weights' hashes (hex text, broadcast as bytes)
            text = f"{getattr(self, '_final_weights_hash', '')} {module_hash or ''}"
            self._final_weights_hash, module_hash = (self._broadcast_text(text).split(" ") + [""])[:2]
            module_hash = module_hash or None
        if t.debug_dir:
            self._dump_final(step, module_hash)
        accelerator.wait_for_everyone()
        if t.push_to_hub and accelerator.is_main_process:
            push_folder(final_dir, t.hub_model_id, private=t.hub_private_repo, step=step)
            logger.info(f"pushed {final_dir} to {t.hub_model_id}")
        accelerator.end_training()
        return final_dir


def push_folder(folder, repo_id: str, private: bool = False, step: int | None = None, dry_run: bool = False):
    """Publish the final folder (model, processor, remote code, model card) to a Hub model repository as one commit,
    through `model_cards.publish_model` (which validates the folder first); returns its `PublishResult`."""
    from model_cards import publish_model

    message = "OphCLIP pretraining" + (f" (step {step})" if step is not None else "")
    return publish_model(folder, repo_id, private=private, dry_run=dry_run, commit_message=message)


def run(config: PretrainConfig) -> dict:
    """Train as `config` says (what `train_accelerate.main` calls)."""
    return Pretrainer(config).train()


__all__ = ["FINAL_DIR", "LogWindow", "Pretrainer", "push_folder", "run"]
