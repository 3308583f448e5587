r"""OphCLIP's pretraining objectives, memory-bank helpers and feature-caching gradient accumulation.

OphCLIP (ICCV 2025) pretrains at two levels, alternately: short clips against their narrations
([`clip_level_loss`]) and whole videos against their titles ([`video_level_loss`]). At the video level the title
embedding queries a bank of *silent* surgical videos ([`retrieve`], a `datasets_ophvl.knowledge_base.SilentVideoBank`)
and the retrieved videos enter the objective as auxiliary supervision ([`retrieval_augmentation_loss`]); the bank is
re-encoded with the current vision tower as training goes ([`refresh_bank`]). An optional SimSiam term
([`SimSiamHead`], [`simsiam_loss`]) regularises the visual features on two augmented views of a clip.

**Global batch.** Every contrastive term is computed over the *global* batch: the local embeddings of all processes
are gathered with their gradients ([`gather_with_grad`]; `accelerator.gather` has none) and every process computes the
full global logits, so the loss value on each process equals the single-process loss on the concatenated batch.
Gradients are then right under DDP's averaging. Let `L` be that global loss, `x_r` the local embeddings of rank `r`
and `W` the world size:

- every rank differentiates the same `L`; the gather's backward (a reduce-scatter) *sums* over ranks the gradient
  each rank computed for rank `r`'s slice, so rank `r`'s local embeddings receive `W · ∂L/∂x_r`;
- its parameters therefore receive `W · (∂x_r/∂θ)ᵀ ∂L/∂x_r`, and DDP *averages* over ranks:
  `1/W Σ_r W (∂x_r/∂θ)ᵀ ∂L/∂x_r = Σ_r (∂x_r/∂θ)ᵀ ∂L/∂x_r = ∂L/∂θ`, the gradient of the full-batch loss;
- tensors the loss reads directly (a learnable `logit_scale`) get `∂L/∂s` on every rank, and the average keeps it.

Every process must therefore call these functions the same number of times, with the same optional inputs (e.g.
`retrieved_embeds` present on all ranks or on none): they run collectives. Local batch sizes may differ between ranks
(a short last batch); the gather then pads and strips, at the cost of one extra tiny collective per call.

The loss arithmetic runs in float32 with autocast disabled (the logits of a large global batch are too coarse in
bfloat16); gradients flow back to the embeddings in their own dtype.

**Retrieval augmentation (our form; the paper does not publish it).** See [`retrieval_augmentation_loss`]:

    L_ret = −1/B Σ_i log( Σ_k exp(⟨v_i, s_ik⟩·e^{logit_scale}) / Σ_j Σ_k exp(⟨v_i, s_jk⟩·e^{logit_scale}) )

the video `v_i` must be closer to the silent videos retrieved *for its own title* than to those retrieved for the other
titles of the global batch (a multi-positive InfoNCE; the query is the title, not the video, so retrieval does not
reinforce itself). At the video level the total is `L_video = InfoNCE(title, video) + λ · L_ret` (`λ` =
`retrieval_weight`).
"""

import contextlib
import math
from typing import Callable, ContextManager, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


__all__ = [
    "gather_with_grad",
    "contrastive_loss",
    "retrieval_augmentation_loss",
    "video_level_loss",
    "clip_level_loss",
    "make_video_level_loss_fn",
    "SimSiamHead",
    "simsiam_loss",
    "retrieve",
    "refresh_bank",
    "CachedFeatureAccumulator",
]


# -- distributed gather ----------------------------------------------------------------------------------------------


def _world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def _gather_sizes(n: int, device: torch.device, world_size: int) -> list[int]:
    """The local batch size of every process (one tiny all-gather)."""
    local = torch.tensor([n], dtype=torch.int64, device=device)
    sizes = torch.empty(world_size, dtype=torch.int64, device=device)
    # torch 2.13 deprecates all_gather_into_tensor for all_gather_single (absent from older releases).
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather(sizes, local)
    return sizes.tolist()


def _gather_rows(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Concatenate `x` over processes along dim 0, with autograd, given every process's number of rows."""
    from torch.distributed import _functional_collectives as funcol

    x = x.contiguous()
    longest = max(sizes)
    if x.shape[0] != sizes[dist.get_rank()]:
        raise ValueError(f"gather: local tensor has {x.shape[0]} rows, expected {sizes[dist.get_rank()]}.")
    if min(sizes) == longest:
        return funcol.all_gather_single_autograd(x, gather_dim=0, group=dist.group.WORLD)
    # Uneven local batches: pad every slice to the longest (with autograd), gather, strip the padding.
    if x.shape[0] < longest:
        x = torch.cat([x, x.new_zeros((longest - x.shape[0],) + tuple(x.shape[1:]))])
    gathered = funcol.all_gather_single_autograd(x, gather_dim=0, group=dist.group.WORLD)
    return torch.cat([chunk[:n] for chunk, n in zip(gathered.split(longest), sizes)])


def _gather_many(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Gather several tensors that share their leading (batch) dimension; one size exchange for all of them."""
    world_size = _world_size()
    if world_size == 1:
        return tensors
    sizes = _gather_sizes(tensors[0].shape[0], tensors[0].device, world_size)
    return tuple(_gather_rows(t, sizes) for t in tensors)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    r"""
    Concatenate `x` over all processes along dim 0, keeping autograd.

    The identity when `torch.distributed` is not initialised or has one process. Otherwise every process gets the
    same `(Σ_r n_r, ...)` tensor, in rank order. The backward *sums* the gradients that all processes computed for
    this process's slice (see the module documentation for why that, with DDP's average, gives the full-batch
    gradient). Local sizes may differ between processes (padded and stripped inside). Tensors that do not require
    grad are simply gathered.

    Uses `torch.distributed._functional_collectives.all_gather_single_autograd` on the default (WORLD) group;
    works with gloo (CPU) and NCCL (tensors on the process's GPU).
    """
    return _gather_many(x)[0]


# -- helpers ---------------------------------------------------------------------------------------------------------


def _fp32(device: torch.device) -> ContextManager:
    """Disable autocast for the loss arithmetic (done in float32)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def _scale(logit_scale, device: torch.device) -> torch.Tensor:
    """`exp(logit_scale)` in float32, keeping the graph of a learnable scale."""
    if isinstance(logit_scale, torch.Tensor):
        if logit_scale.numel() != 1:
            raise ValueError(f"logit_scale must be a scalar, got shape {tuple(logit_scale.shape)}.")
        return logit_scale.to(device=device, dtype=torch.float32).reshape(()).exp()
    if logit_scale is None:
        raise ValueError("logit_scale is required: pass the model's `logit_scale` (the log of 1/temperature).")
    return torch.tensor(float(logit_scale), dtype=torch.float32, device=device).exp()


def _check_pair(text_embeds: torch.Tensor, video_embeds: torch.Tensor):
    for name, t in (("text_embeds", text_embeds), ("video_embeds", video_embeds)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t)
            raise ValueError(f"{name} must be a (batch_size, dim) tensor, got {shape}.")
    if text_embeds.shape != video_embeds.shape:
        raise ValueError(
            f"text_embeds and video_embeds must have the same shape (text i pairs with video i), got "
            f"{tuple(text_embeds.shape)} and {tuple(video_embeds.shape)}."
        )


# -- contrastive objectives ------------------------------------------------------------------------------------------


def contrastive_loss(text_embeds: torch.Tensor, video_embeds: torch.Tensor, logit_scale) -> torch.Tensor:
    r"""
    Symmetric InfoNCE over the global batch: text `i` pairs with video `i`, every other item is a negative.

    Both (L2-normalised) embeddings are gathered from all processes with [`gather_with_grad`], and every process
    computes the full `(N, N)` global logits `e^{logit_scale} · T Vᵀ`, so the value equals the single-process loss
    on the same global batch (and the model's own `ophclip_loss`). Under DDP the gradients are right: each rank
    computes the same loss, the gather's backward sums the per-rank gradients of each slice (rank `r`'s embeddings
    get `world_size · ∂L/∂x_r`), and DDP's average turns the parameter gradients into `∂L/∂θ` of the full batch.

    Args:
        text_embeds (`torch.Tensor` of shape `(batch_size, dim)`): Normalised local text embeddings.
        video_embeds (`torch.Tensor` of shape `(batch_size, dim)`): Normalised local video embeddings.
        logit_scale (`torch.Tensor` scalar or `float`): The *log* of the scale (the model's `logit_scale`, a buffer
            or a learnable parameter); `logit_scale.exp()` multiplies the cosine similarities.

    Returns:
        Scalar float32 tensor, `(CE(logits_per_text) + CE(logits_per_video)) / 2`.
    """
    _check_pair(text_embeds, video_embeds)
    text_all, video_all = _gather_many(text_embeds, video_embeds)
    device = text_embeds.device
    with _fp32(device):
        logits_per_text = text_all.float() @ video_all.float().t() * _scale(logit_scale, device)
        labels = torch.arange(logits_per_text.shape[0], device=device)
        return (F.cross_entropy(logits_per_text, labels) + F.cross_entropy(logits_per_text.t(), labels)) / 2.0


def _retrieval_masks(valid: torch.Tensor, indices: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Candidate and positive masks, both `(N, N·K)`, for the flattened candidates `c = j·K + k`.

    Without `indices` every valid entry is its own candidate and the positives of row `i` are its own valid entries.
    With `indices` (bank row numbers) each bank row counts once: a candidate is the first valid occurrence of its row
    in the gathered batch, and it is a positive of row `i` when row `i` retrieved that bank row (a silent video that
    two titles both retrieved is a positive for both, never also a negative).
    """
    n, k = valid.shape
    device = valid.device
    flat_valid = valid.reshape(-1)
    owner = torch.arange(n, device=device).repeat_interleave(k)  # the row whose title retrieved candidate c
    if indices is None:
        candidates = flat_valid.unsqueeze(0).expand(n, -1)
        positives = (owner.unsqueeze(0) == torch.arange(n, device=device).unsqueeze(1)) & candidates
        return candidates, positives
    flat = torch.where(flat_valid, indices.reshape(-1).long(), torch.full_like(indices.reshape(-1).long(), -1))
    unique, inverse = torch.unique(flat, return_inverse=True)
    order = torch.arange(flat.numel(), device=device)
    first = torch.full((unique.numel(),), flat.numel(), dtype=torch.long, device=device)
    first = first.scatter_reduce(0, inverse, order, reduce="amin")
    is_first = (first[inverse] == order) & flat_valid
    retrieved_by = torch.zeros(n, unique.numel(), dtype=torch.bool, device=device)  # row i retrieved bank row u
    retrieved_by[owner[flat_valid], inverse[flat_valid]] = True
    positives = retrieved_by[:, inverse] & is_first.unsqueeze(0)
    return is_first.unsqueeze(0).expand(n, -1), positives


def retrieval_augmentation_loss(
    video_embeds: torch.Tensor,
    retrieved_embeds: torch.Tensor,
    logit_scale,
    retrieved_mask: torch.Tensor | None = None,
    retrieved_indices: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""
    OphCLIP's silent-video retrieval augmentation, in our exact form (the paper does not publish one).

    For a batch of `B` narrated videos with normalised embeddings `v_i` (with grad) whose *title* embeddings queried
    the silent-video bank for their top-`K` neighbours, with bank vectors `s_{i,1..K}` (normalised vision-tower
    embeddings of silent videos, no grad), the video must be closer to the silent videos retrieved for its own title
    than to those retrieved for the other titles of the (global) batch:

        L_ret = −1/B Σ_i log( Σ_k exp(⟨v_i, s_ik⟩·e^{logit_scale}) / Σ_j Σ_k exp(⟨v_i, s_jk⟩·e^{logit_scale}) )

    i.e. a multi-positive InfoNCE whose candidates are all gathered retrieved sets. The query is the title, not the
    video, so retrieval does not reinforce itself: the silent videos pull the narrated video towards what its title
    describes. No gradient reaches `s` (the bank is refreshed by re-encoding, [`refresh_bank`]).

    Details:

    - `v` and `s` (and the mask / indices) are gathered across processes like [`contrastive_loss`], so `B` is the
      global batch and every process computes the same value.
    - Masked entries (`retrieved_mask` False, or index `-1` from an approximate index) are excluded from both sums.
      Rows left with no valid positive are excluded from the mean (`B` counts the remaining rows); with none left
      the loss is `0` (still connected to the graph).
    - With `retrieved_indices` (the bank row numbers from [`retrieve`]) a silent video retrieved by several titles
      of the batch counts once: it is a positive for every video whose title retrieved it and a negative for the
      others (without it, such a duplicate would be a positive and a negative of the same video at once). When all
      retrieved rows are distinct this equals the equation above.
    - `s` is re-normalised inside (a no-op for a normalised bank; no gradient flows to it).

    Args:
        video_embeds (`torch.Tensor` of shape `(batch_size, dim)`): Normalised local video embeddings `v`.
        retrieved_embeds (`torch.Tensor` of shape `(batch_size, K, dim)`): Bank vectors `s` retrieved for each
            local title (detached).
        logit_scale (`torch.Tensor` scalar or `float`): The log scale, as in [`contrastive_loss`].
        retrieved_mask (`torch.BoolTensor` of shape `(batch_size, K)`, *optional*): False for invalid entries.
        retrieved_indices (`torch.LongTensor` of shape `(batch_size, K)`, *optional*): Bank row numbers (`-1`
            invalid), enabling the de-duplication above.

    Returns:
        Scalar float32 tensor.
    """
    if not isinstance(video_embeds, torch.Tensor) or video_embeds.dim() != 2:
        raise ValueError("video_embeds must be a (batch_size, dim) tensor.")
    if not isinstance(retrieved_embeds, torch.Tensor) or retrieved_embeds.dim() != 3:
        raise ValueError("retrieved_embeds must be a (batch_size, K, dim) tensor.")
    b, k, d = retrieved_embeds.shape
    if (b, d) != tuple(video_embeds.shape):
        raise ValueError(
            f"retrieved_embeds {tuple(retrieved_embeds.shape)} does not match video_embeds "
            f"{tuple(video_embeds.shape)}: expected (batch_size, K, dim)."
        )
    device = video_embeds.device
    valid = torch.ones(b, k, dtype=torch.bool, device=device)
    if retrieved_mask is not None:
        if tuple(retrieved_mask.shape) != (b, k):
            raise ValueError(f"retrieved_mask must have shape {(b, k)}, got {tuple(retrieved_mask.shape)}.")
        valid = valid & retrieved_mask.to(device=device, dtype=torch.bool)
    if retrieved_indices is not None:
        if tuple(retrieved_indices.shape) != (b, k):
            raise ValueError(f"retrieved_indices must have shape {(b, k)}, got {tuple(retrieved_indices.shape)}.")
        retrieved_indices = retrieved_indices.to(device=device, dtype=torch.long)
        valid = valid & (retrieved_indices >= 0)
    to_gather = [video_embeds, retrieved_embeds.detach().to(device), valid.to(torch.uint8)]
    if retrieved_indices is not None:
        to_gather.append(retrieved_indices)
    gathered = _gather_many(*to_gather)
    video_all, retrieved_all, valid_all = gathered[0], gathered[1], gathered[2].bool()
    indices_all = gathered[3] if retrieved_indices is not None else None
    n = video_all.shape[0]
    with _fp32(device):
        silent = F.normalize(retrieved_all.float(), dim=-1).reshape(n * k, d)
        logits = video_all.float() @ silent.t() * _scale(logit_scale, device)  # (N, N·K): logits[i, j·K+k]
        candidates, positives = _retrieval_masks(valid_all, indices_all)
        has_positive = positives.any(dim=1)
        if not bool(has_positive.any()):
            return logits.sum() * 0.0
        # Select the rows first: a row with no candidate at all would make logsumexp's backward NaN.
        logits, candidates, positives = logits[has_positive], candidates[has_positive], positives[has_positive]
        log_all = logits.masked_fill(~candidates, -math.inf).logsumexp(dim=1)
        log_positive = logits.masked_fill(~positives, -math.inf).logsumexp(dim=1)
        return (log_all - log_positive).mean()


def video_level_loss(
    text_embeds: torch.Tensor,
    video_embeds: torch.Tensor,
    retrieved_embeds: torch.Tensor | None = None,
    logit_scale=None,
    retrieval_weight: float = 0.5,
    retrieved_mask: torch.Tensor | None = None,
    retrieved_indices: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    r"""
    The video-level objective: video ↔ title symmetric InfoNCE, plus the retrieval augmentation when
    `retrieved_embeds` is given: `loss = video_contrastive_loss + retrieval_weight · retrieval_loss`.

    Args:
        text_embeds, video_embeds (`(batch_size, dim)`): Normalised title and video embeddings.
        retrieved_embeds (`(batch_size, K, dim)`, *optional*): From [`retrieve`]; `None` switches retrieval off.
        logit_scale: The model's log scale (required; keyword or fourth positional argument).
        retrieval_weight (`float`, defaults to 0.5): `λ`.
        retrieved_mask, retrieved_indices: As in [`retrieval_augmentation_loss`].

    Returns:
        `{"video_contrastive_loss", "retrieval_loss" (only with retrieved_embeds), "loss"}`.
    """
    if logit_scale is None:
        raise ValueError("video_level_loss needs logit_scale= (the model's `logit_scale`).")
    out = {"video_contrastive_loss": contrastive_loss(text_embeds, video_embeds, logit_scale)}
    loss = out["video_contrastive_loss"]
    if retrieved_embeds is not None:
        out["retrieval_loss"] = retrieval_augmentation_loss(
            video_embeds, retrieved_embeds, logit_scale, retrieved_mask=retrieved_mask,
            retrieved_indices=retrieved_indices,
        )
        loss = loss + retrieval_weight * out["retrieval_loss"]
    out["loss"] = loss
    return out


def clip_level_loss(text_embeds: torch.Tensor, video_embeds: torch.Tensor, logit_scale) -> dict[str, torch.Tensor]:
    r"""
    The clip-level objective: clip ↔ narration symmetric InfoNCE over the global batch.

    Returns:
        `{"clip_contrastive_loss", "loss"}` (the same tensor; add the optional [`simsiam_loss`] yourself).
    """
    value = contrastive_loss(text_embeds, video_embeds, logit_scale)
    return {"clip_contrastive_loss": value, "loss": value}


def make_video_level_loss_fn(
    logit_scale, bank=None, k: int | None = None, retrieval_weight: float = 0.5
) -> Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]:
    r"""
    A `loss_fn(text_embeds, video_embeds) -> dict` for one training step, e.g. for [`CachedFeatureAccumulator`].

    With a `bank` (and `k`), the first call retrieves the top-`k` silent videos for the (detached) title embeddings it
    is given and every later call of the same function reuses them, so the retrieval runs once per step on the whole
    local batch. Build a new function for every step. Without a bank it is the plain video-level contrastive loss.

    `logit_scale` is read at call time: pass the model's tensor (`unwrap_model(model).logit_scale`), not a float, when
    it is learnable.
    """
    if bank is not None and k is None:
        raise ValueError("make_video_level_loss_fn: pass k (how many silent videos to retrieve) with the bank.")
    memo: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def loss_fn(text_embeds: torch.Tensor, video_embeds: torch.Tensor) -> dict[str, torch.Tensor]:
        if bank is None:
            return video_level_loss(text_embeds, video_embeds, logit_scale=logit_scale)
        if "retrieved" not in memo:
            memo["retrieved"] = retrieve(bank, text_embeds, k)
        retrieved, mask, indices = memo["retrieved"]
        return video_level_loss(
            text_embeds, video_embeds, retrieved, logit_scale=logit_scale, retrieval_weight=retrieval_weight,
            retrieved_mask=mask, retrieved_indices=indices,
        )

    return loss_fn


# -- SimSiam -------------------------------------------------------------------------------------------------------


class SimSiamHead(nn.Module):
    r"""
    SimSiam's predictor `h`: `Linear(dim, hidden_dim, bias=False) → BatchNorm1d → ReLU → Linear(hidden_dim, dim)`
    (a bottleneck MLP, as in Chen & He 2021). Apply it to the projected visual embeddings `z` of two augmented views
    of a clip, `p = head(z)`, and feed [`simsiam_loss`].

    BatchNorm needs more than one sample per process in training mode; under DDP its statistics are per process
    unless converted with `nn.SyncBatchNorm.convert_sync_batchnorm`.
    """

    def __init__(self, dim: int, hidden_dim: int = 512):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, dim),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z)


def simsiam_loss(p1: torch.Tensor, z1: torch.Tensor, p2: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    r"""
    SimSiam's symmetric negative cosine similarity with stop-gradient on the targets:
    `−(mean_i cos(p1_i, sg(z2_i)) + mean_i cos(p2_i, sg(z1_i))) / 2`, in `[−1, 1]` (−1 when the predictions match the
    other view's projections). No gradient reaches `z1` / `z2` through the targets.
    """
    with _fp32(p1.device):
        first = F.cosine_similarity(p1.float(), z2.detach().float(), dim=-1).mean()
        second = F.cosine_similarity(p2.float(), z1.detach().float(), dim=-1).mean()
        return -(first + second) / 2.0


# -- memory bank -----------------------------------------------------------------------------------------------------


def retrieve(bank, title_embeds: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""
    Query the silent-video bank with the title embeddings: maximum inner product search for the top-`k` rows.

    The queries are detached and L2-normalised (retrieval is not differentiated), so the scores are cosines against
    a normalised bank. The retrieved vectors are a copy of `bank.embeddings[indices]`.

    Args:
        bank (`SilentVideoBank`): Anything with `search(queries, k) -> (scores, indices)` and an `(N, D)`
            `embeddings` tensor.
        title_embeds (`torch.Tensor` of shape `(batch_size, dim)`): The local title embeddings.
        k (`int`): Silent videos per title.

    Returns:
        `(retrieved_embeds, retrieved_mask, indices)`: `(B, K, D)` bank vectors on `title_embeds`' device and dtype
        (zeros where invalid), the `(B, K)` bool mask of valid entries (False where an approximate index returned
        `-1`), and the `(B, K)` int64 bank rows (`-1` invalid), both on `title_embeds`' device.
    """
    if not isinstance(title_embeds, torch.Tensor) or title_embeds.dim() != 2:
        raise ValueError("title_embeds must be a (batch_size, dim) tensor.")
    device, dtype = title_embeds.device, title_embeds.dtype
    queries = F.normalize(title_embeds.detach().float(), dim=-1)
    _, indices = bank.search(queries, k=k)
    indices = torch.as_tensor(indices).long().cpu()
    mask = indices >= 0
    vectors = bank.embeddings[indices.clamp(min=0)]  # (B, K, D) float32 copy
    vectors = vectors.masked_fill(~mask.unsqueeze(-1), 0.0)
    return vectors.to(device=device, dtype=dtype), mask.to(device), indices.to(device)


def _default_gather_device(device) -> torch.device:
    if device is not None:
        return torch.device(device)
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def refresh_bank(
    bank,
    encode_fn: Callable[[np.ndarray], torch.Tensor],
    rows,
    rank: int,
    world_size: int,
    gather_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device=None,
) -> int:
    r"""
    Re-encode `rows` of the bank with the current model, sharing the work between processes, and apply the same
    update on every process.

    Each process encodes its contiguous share (`SilentVideoBank.shard_rows(rows, rank, world_size)`) with
    `encode_fn(row_ids) -> (n, D)` (under `torch.no_grad()`; `row_ids` is an int64 `np.ndarray`; the caller decodes
    those silent videos and runs the current vision tower and projection, preferably in eval mode so BatchNorm
    statistics are untouched). The shards (row ids padded with `-1`, embeddings with zeros to the longest shard,
    `ceil(len(rows) / world_size)`) go through `gather_fn` — pass `accelerator.gather` — and the padding is stripped,
    so every process calls `bank.update` with the identical gathered rows and float32 embeddings. A process whose
    share is empty (fewer rows than processes) does not call `encode_fn` but still takes part in the gather.

    Args:
        bank (`SilentVideoBank`): This process's copy of the bank.
        encode_fn (`Callable[[np.ndarray], torch.Tensor]`): Row ids → `(n, D)` embeddings.
        rows (`torch.Tensor`, `np.ndarray` or list of `int`): The rows to refresh, the same on every process (e.g.
            `bank.rows_for_refresh(step, rows_per_step)`).
        rank, world_size (`int`): `accelerator.process_index`, `accelerator.num_processes`.
        gather_fn (`Callable`, *optional*): Concatenates equal-shaped tensors of all processes along dim 0; required
            when `world_size > 1`.
        device (*optional*): Where the gathered tensors live (default: the encoder output's device; for an empty
            share the current CUDA device under NCCL, else the CPU).

    Returns:
        The number of rows refreshed (on all processes together).
    """
    if isinstance(rows, torch.Tensor):
        rows = rows.detach().cpu().numpy()
    rows = np.asarray(rows)
    if rows.size == 0:
        rows = rows.astype(np.int64)
    shard = type(bank).shard_rows(rows, rank, world_size)
    dim = bank.dim
    embeds = None
    if len(shard):
        with torch.no_grad():
            embeds = torch.as_tensor(encode_fn(shard)).detach()
        if tuple(embeds.shape) != (len(shard), dim):
            raise ValueError(
                f"encode_fn returned shape {tuple(embeds.shape)} for {len(shard)} rows; expected {(len(shard), dim)}."
            )
    if world_size == 1:
        if embeds is not None:
            bank.update(shard, embeds)
        return len(shard)
    if gather_fn is None:
        raise ValueError("refresh_bank needs gather_fn (e.g. accelerator.gather) when world_size > 1.")
    longest = math.ceil(len(rows) / world_size)
    if device is not None:
        target = torch.device(device)
    else:
        target = embeds.device if embeds is not None else _default_gather_device(None)
    padded_rows = torch.full((longest,), -1, dtype=torch.int64, device=target)
    padded_embeds = torch.zeros(longest, dim, dtype=torch.float32, device=target)
    if embeds is not None:
        padded_rows[: len(shard)] = torch.from_numpy(shard).to(target)
        padded_embeds[: len(shard)] = embeds.to(device=target, dtype=torch.float32)
    all_rows = gather_fn(padded_rows).reshape(-1).cpu()
    all_embeds = gather_fn(padded_embeds).reshape(-1, dim).cpu()
    keep = all_rows >= 0
    bank.update(all_rows[keep], all_embeds[keep])
    return int(keep.sum())


# -- gradient accumulation with cached features ---------------------------------------------------------------------


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
    - **Distributed**: `loss_fn` may gather across processes ([`contrastive_loss`] does): all ranks must pass the
      same number of micro-batches. Pass `no_sync=lambda: accelerator.no_sync(model)` so DDP all-reduces only in the
      last backward, and make `embed_fn` call the *wrapped* model's forward (DDP prepares its reducer in forward),
      e.g. `out = model(**batch); return out.text_embeds, out.video_embeds`.
    - Run the step under `accelerator.autocast()` (or autocast inside `embed_fn`) in both passes alike; with
      accelerate, use `gradient_accumulation_steps=1` (this class is the accumulation) and step the optimiser after
      `accumulate_step`.
    - **Retrieval**: `loss_fn` closes over the retrieved embeddings of the whole local batch.
      [`make_video_level_loss_fn`] retrieves on its first call, which is the call on the cached pass-1 title embeddings.

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

        Returns:
            The detached loss terms (`loss_fn`'s dict) of the full batch.
        """
        if len(micro_batches) == 0:
            raise ValueError("accumulate_step needs at least one micro-batch.")
        if len(micro_batches) == 1:
            text, video = embed_fn(micro_batches[0])
            losses = loss_fn(text, video)
            backward_fn(losses["loss"])
            return {name: value.detach() for name, value in losses.items()}

        seeds = torch.randint(0, 2**62, (len(micro_batches),)).tolist()
        texts, videos = [], []
        with torch.no_grad():
            for batch, seed in zip(micro_batches, seeds):
                with _replayable_rng(seed):
                    text, video = embed_fn(batch)
                texts.append(text.detach())
                videos.append(video.detach())
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
                backward_fn(loss)
        return result
