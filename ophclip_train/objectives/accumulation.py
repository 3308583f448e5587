"""Gradient accumulation that keeps the contrastive batch whole: embeddings of all micro-batches are cached, then each
micro-batch is re-embedded with gradients against the cached rest (open_clip's `accum_freq`)."""

import contextlib
from typing import Callable, ContextManager, Sequence

import torch


def _default_backward(loss: torch.Tensor) -> None:
    loss.backward()


def _accelerator_rng_devices() -> tuple[list[int], str | None]:
    """The current accelerator device whose RNG dropout uses (only if already initialised: never start one)."""
    accelerator = torch.accelerator.current_accelerator()
    if accelerator is None:
        return [], None
    module = torch.get_device_module(accelerator.type)
    initialised = getattr(module, "is_initialized", lambda: True)()
    if not initialised:
        return [], None
    return [torch.accelerator.current_device_index()], accelerator.type


@contextlib.contextmanager
def _replayable_rng(seed: int):
    """Run a block with the CPU (and current accelerator) RNG seeded with `seed`, restoring the states afterwards."""
    devices, device_type = _accelerator_rng_devices()
    with torch.random.fork_rng(devices=devices, device_type=device_type or "cuda"):
        torch.default_generator.manual_seed(seed)
        if devices:
            torch.get_device_module(device_type).manual_seed(seed)
        yield


def _micro_batch_seeds(count: int) -> list[int]:
    """One dropout seed per micro-batch, drawn from the global generator (pass 1 and pass 2 replay it)."""
    return torch.randint(0, 2**62, (count,)).tolist()


def _embed_without_grad(micro_batches, seeds, embed_fn) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Pass 1: the detached `(text, video)` embeddings of each micro-batch, each under its replayable seed."""
    texts, videos = [], []
    with torch.no_grad():
        for batch, seed in zip(micro_batches, seeds):
            with _replayable_rng(seed):
                text, video = embed_fn(batch)
            texts.append(text.detach())
            videos.append(video.detach())
    return texts, videos


def _split_offsets(sizes: Sequence[int]) -> list[int]:
    offsets = [0]
    for n in sizes:
        offsets.append(offsets[-1] + n)
    return offsets


class CachedFeatureAccumulator:
    r"""
    Gradient accumulation over `k` micro-batches that keeps the contrastive batch whole (open_clip's `accum_freq`).

    Plain accumulation computes the contrastive loss of each micro-batch against its own `b` items: fewer negatives
    than the `k·b` batch it emulates. [`accumulate_step`] instead:

    1. **pass 1**: computes the `(text, video)` embeddings of every micro-batch with no grad and caches them;
    2. **pass 2**: for each micro-batch `i`, recomputes its embeddings *with* grad, substitutes them into the cached
       full set, evaluates `loss_fn` on the full set and calls `backward_fn` on it.

    Every pass-2 loss has the value of the full-batch loss `L` and carries the gradient through micro-batch `i`'s
    embeddings only, so the gradients summed over the `k` backward calls equal `∂L/∂θ` of one `k·b` batch, at the
    memory of one micro-batch of activations plus `k·b` embeddings, and the cost of one extra no-grad forward.

    Details that make it exact:

    - **RNG**: pass 1 and pass 2 of micro-batch `i` run under `torch.random.fork_rng` with the same seed (one seed per
      micro-batch, drawn from the global CPU generator at the start of the step), so dropout masks match; the global
      RNG states are restored after each block. (Exact only when the kernels are deterministic.)
    - **Tensors that `loss_fn` reads directly** (a learnable `logit_scale`) would get `∂L/∂s` from each of the `k`
      backward calls. For all but the last micro-batch the backward therefore runs on `loss_i − L(cached)`, where
      `L(cached)` is `loss_fn` on the cached (detached) set: identical in value, it cancels exactly the direct
      gradient and nothing else. (Skipped when the cached loss does not require grad, e.g. a fixed scale.)
    - **BatchNorm** (ResNet towers) uses micro-batch statistics in training, so ResNet gradients are those of
      `k` micro-batches, not of one batch; and its running statistics are updated twice per micro-batch (pass 1 and
      pass 2). LayerNorm towers (BERT, CLIP ViT) are exact.
    - **Distributed**: `loss_fn` may gather across processes ([`contrastive_loss_from_embeddings`] does): all ranks must pass the
      same number of micro-batches. Pass `no_sync=lambda: accelerator.no_sync(model)` so DDP all-reduces only in the
      last backward, and make `embed_fn` call the *wrapped* model's forward (DDP prepares its reducer in forward),
      e.g. `out = model(**batch); return out.text_embeds, out.video_embeds`.
    - Run the step under `accelerator.autocast()` (or autocast inside `embed_fn`) in both passes alike; with
      accelerate, use `gradient_accumulation_steps=1` (this class is the accumulation) and step the optimiser after
      `accumulate_step`.
    - **Retrieval**: `loss_fn` closes over the retrieval of the whole local batch
      ([`make_video_level_loss_fn`] retrieves on its first call, the call on the cached pass-1 title embeddings, or is
      given the retrieval). In the encoded form the silent videos to encode depend on that retrieval, so they come
      from `after_first_pass`: called with the pass-1 embeddings (the titles are the queries, so no extra text
      forward is spent on them), it returns the silent videos as one more micro-batch, whose `embed_fn` returns no
      text and the silent-video embeddings. It is embedded without grad at once and placed first in the cached set
      and in pass 2: the micro-batches' text and video row counts may differ, and the last backward (the one DDP
      synchronises) stays a narrated micro-batch that uses both towers.

    Example:

    ```python
    accumulator = CachedFeatureAccumulator()
    def embed_fn(batch):
        out = model(**batch)  # OphCLIPModel.forward: normalised embeddings
        return out.text_embeds, out.video_embeds
    loss_fn = make_video_level_loss_fn(unwrapped.logit_scale, bank=bank, k=4, retrieval_weight=0.5)
    losses = accumulator.accumulate_step(micro_batches, embed_fn, loss_fn, backward_fn=accelerator.backward,
                                         no_sync=lambda: accelerator.no_sync(model))
    optimizer.step(); optimizer.zero_grad()
    ```
    """

    def accumulate_step(
        self,
        micro_batches: list[dict],
        embed_fn: Callable[[dict], tuple[torch.Tensor, torch.Tensor]],
        loss_fn: Callable[[torch.Tensor, torch.Tensor], dict],
        backward_fn: Callable[[torch.Tensor], None] = _default_backward,
        no_sync: Callable[[], ContextManager] | None = None,
        after_first_pass: Callable[[torch.Tensor, torch.Tensor], Sequence[dict]] | None = None,
    ) -> dict[str, torch.Tensor]:
        r"""
        One optimisation step's gradients over `micro_batches` (see the class documentation).

        Args:
            micro_batches (`list[dict]`): The `k` micro-batches of this step.
            embed_fn (`Callable[[dict], tuple[Tensor, Tensor]]`): Micro-batch → `(text_embeds, video_embeds)`, each
                `(b_i, D)`, as `loss_fn` expects them (normalised).
            loss_fn (`Callable[[Tensor, Tensor], dict]`): Full `(Σ b_i, D)` text and video embeddings → a dict with a
                `"loss"` entry (e.g. [`video_level_loss`]'s); may gather across processes.
            backward_fn (`Callable[[Tensor], None]`): e.g. `accelerator.backward`; defaults to `loss.backward()`.
            no_sync (`Callable[[], ContextManager]`, *optional*): Context suppressing DDP's gradient sync, entered
                around the forward and backward of every micro-batch but the last.
            after_first_pass (`Callable[[Tensor, Tensor], Sequence[dict]]`, *optional*): Called once after pass 1 with
                the cached (detached) text and video embeddings of `micro_batches`; returns micro-batches that depend
                on them (possibly none). They are embedded without grad right away and placed before
                `micro_batches`, in the cached set and in pass 2. With it, a single micro-batch takes the two-pass
                path too (the hook needs embeddings before the loss).

        Returns:
            The detached loss terms (`loss_fn`'s dict) of the full batch.
        """
        if len(micro_batches) == 0:
            raise ValueError("accumulate_step needs at least one micro-batch.")
        if len(micro_batches) == 1 and after_first_pass is None:
            text, video = embed_fn(micro_batches[0])
            losses = loss_fn(text, video)
            backward_fn(losses["loss"])
            return {name: value.detach() for name, value in losses.items()}

        micro_batches = list(micro_batches)
        seeds = _micro_batch_seeds(len(micro_batches))
        texts, videos = _embed_without_grad(micro_batches, seeds, embed_fn)
        if after_first_pass is not None:
            added = list(after_first_pass(torch.cat(texts), torch.cat(videos)))
            if added:
                added_seeds = _micro_batch_seeds(len(added))
                added_texts, added_videos = _embed_without_grad(added, added_seeds, embed_fn)
                micro_batches, seeds = added + micro_batches, added_seeds + seeds
                texts, videos = added_texts + texts, added_videos + videos
        text_offsets = _split_offsets([len(t) for t in texts])
        video_offsets = _split_offsets([len(v) for v in videos])
        cached_text, cached_video = torch.cat(texts), torch.cat(videos)
        del texts, videos

        # The full-batch loss on the cached features: its value is what we return; it depends on the parameters only
        # through tensors loss_fn reads directly, and its graph serves the cancellation of micro-batch 0.
        reference = loss_fn(cached_text, cached_video)
        result = {name: value.detach() for name, value in reference.items()}
        direct_grad = reference["loss"].requires_grad
        last = len(micro_batches) - 1
        for i, (batch, seed) in enumerate(zip(micro_batches, seeds)):
            sync_context = no_sync() if (no_sync is not None and i < last) else contextlib.nullcontext()
            with sync_context:
                with _replayable_rng(seed):
                    text, video = embed_fn(batch)
                ts, te = text_offsets[i], text_offsets[i + 1]
                vs, ve = video_offsets[i], video_offsets[i + 1]
                if text.shape != cached_text[ts:te].shape or video.shape != cached_video[vs:ve].shape:
                    raise RuntimeError(f"embed_fn returned different shapes in the two passes for micro-batch {i}.")
                full_text = torch.cat([cached_text[:ts], text, cached_text[te:]])
                full_video = torch.cat([cached_video[:vs], video, cached_video[ve:]])
                loss = loss_fn(full_text, full_video)["loss"]
                if direct_grad and i < last:
                    cached_loss = reference["loss"] if i == 0 else loss_fn(cached_text, cached_video)["loss"]
                    loss = loss - cached_loss
                if loss.requires_grad:  # an empty micro-batch (no rows on this process) has nothing to give
                    backward_fn(loss)
        return result


__all__ = ["CachedFeatureAccumulator"]
