"""The pretraining losses: symmetric InfoNCE over the global batch (clip and video level), the two forms of the
silent-video retrieval term, and SimSiam.

Every contrastive term gathers its inputs from all processes with their gradients (`distributed`), so its value on
each process is the single-process value on the global batch. The arithmetic runs in float32 with autocast off.
"""

import contextlib
import math
from typing import ContextManager

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .distributed import _gather_many, _gather_rows, _local_sizes, _world_size


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



def contrastive_loss_from_embeddings(
    text_embeds: torch.Tensor,
    video_embeds: torch.Tensor,
    logit_scale,
    local_loss: bool = False,
    equal_batches: bool = False,
) -> torch.Tensor:
    r"""
    Symmetric InfoNCE over the global batch, from the embeddings: text `i` pairs with video `i`, every other item of
    the global batch is a negative. (The model's `ophclip_loss` takes the logits instead.)

    Both (L2-normalised) embeddings are gathered from all processes with [`gather_with_grad`].

    - Global form (default): every process computes the full `(N, N)` global logits `e^{logit_scale} · T Vᵀ`, so
      the value equals the single-process loss on the same global batch (and the model's own `ophclip_loss`). Each
      rank computes the same loss, the gather's backward sums the per-rank gradients of each slice (rank `r`'s
      embeddings get `world_size · ∂L/∂x_r`), and DDP's average turns the parameter gradients into `∂L/∂θ`.
    - Local form (`local_loss=True`, open_clip's `local_loss`): each process computes only its `n_r` local rows
      against the `N` gathered columns, `(n_r, N)` logits in each direction, i.e. `1/W` of the global work. It
      returns its rows' share `W/N · Σ_{i∈r} (CE_text_i + CE_video_i)/2`, so the mean over processes is the global
      loss `L`; the gather's backward sums every rank's share into each slice and DDP's average gives again exactly
      `∂L/∂θ` — the same gradients as the global form (also with unequal local batches). The value on one process
      is its share, not `L`: average it over processes to log it.

    Args:
        text_embeds (`torch.Tensor` of shape `(batch_size, dim)`): Normalised local text embeddings.
        video_embeds (`torch.Tensor` of shape `(batch_size, dim)`): Normalised local video embeddings.
        logit_scale (`torch.Tensor` scalar or `float`): The *log* of the scale (the model's `logit_scale`, a buffer
            or a learnable parameter); `logit_scale.exp()` multiplies the cosine similarities.
        local_loss (`bool`, defaults to `False`): The local form above.
        equal_batches (`bool`, defaults to `False`): Every process's batch has the same size (a loader with
            `drop_last=True`, as the trainer's): skips the per-call exchange of batch sizes. Leave it `False` where a
            short last batch can occur; with unequal sizes and `True` the gather fails or hangs.

    Returns:
        Scalar float32 tensor, `(CE(logits_per_text) + CE(logits_per_video)) / 2` (the local share with
        `local_loss`).
    """
    _check_pair(text_embeds, video_embeds)
    device = text_embeds.device
    world_size = _world_size()
    if local_loss and world_size > 1:
        n = text_embeds.shape[0]
        sizes = _local_sizes(n, device, world_size, equal_batches)
        text_all = _gather_rows(text_embeds, sizes)
        video_all = _gather_rows(video_embeds, sizes)
        offset = sum(sizes[: dist.get_rank()])
        with _fp32(device):
            scale = _scale(logit_scale, device)
            labels = torch.arange(offset, offset + n, device=device)
            logits_per_text = text_embeds.float() @ video_all.float().t() * scale  # (n_r, N)
            logits_per_video = video_embeds.float() @ text_all.float().t() * scale
            local_sum = (F.cross_entropy(logits_per_text, labels, reduction="sum")
                         + F.cross_entropy(logits_per_video, labels, reduction="sum")) / 2.0
            return local_sum * (world_size / sum(sizes))
    text_all, video_all = _gather_many(text_embeds, video_embeds, equal_sizes=equal_batches)
    with _fp32(device):
        logits_per_text = text_all.float() @ video_all.float().t() * _scale(logit_scale, device)
        labels = torch.arange(logits_per_text.shape[0], device=device)
        return (F.cross_entropy(logits_per_text, labels) + F.cross_entropy(logits_per_text.t(), labels)) / 2.0


def _first_occurrences(rows: torch.Tensor) -> torch.Tensor:
    """True at the first position of every distinct non-negative value of `rows` (1-D), False elsewhere and at -1."""
    order = torch.arange(rows.numel(), device=rows.device)
    unique, inverse = torch.unique(rows, return_inverse=True)
    first = torch.full((unique.numel(),), rows.numel(), dtype=torch.long, device=rows.device)
    first = first.scatter_reduce(0, inverse, order, reduce="amin")
    return (first[inverse] == order) & (rows >= 0)


def _multi_positive_nll(logits: torch.Tensor, candidates: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Mean over the rows that have a positive of `logsumexp(candidates) - logsumexp(positives)`; 0 (connected to
    the graph) when no row has one."""
    has_positive = positives.any(dim=1)
    if not bool(has_positive.any()):
        return logits.sum() * 0.0
    # Select the rows first: a row with no candidate at all would make logsumexp's backward NaN.
    logits, candidates, positives = logits[has_positive], candidates[has_positive], positives[has_positive]
    log_all = logits.masked_fill(~candidates, -math.inf).logsumexp(dim=1)
    log_positive = logits.masked_fill(~positives, -math.inf).logsumexp(dim=1)
    return (log_all - log_positive).mean()


def _retrieved_by(retrieved: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """`(N, M)`: whether query `i` retrieved bank row `rows[m]` (`retrieved` `(N, K)`, `-1` invalid, never matches)."""
    return (retrieved.unsqueeze(2) == rows.view(1, 1, -1)).any(dim=1) & (rows >= 0).unsqueeze(0)


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
    is_first = _first_occurrences(flat)
    positives = _retrieved_by(flat.view(n, k), flat) & is_first.unsqueeze(0)
    return is_first.unsqueeze(0).expand(n, -1), positives


def retrieval_augmentation_loss(
    video_embeds: torch.Tensor,
    retrieved_embeds: torch.Tensor,
    logit_scale,
    retrieved_mask: torch.Tensor | None = None,
    retrieved_indices: torch.Tensor | None = None,
    equal_batches: bool = False,
) -> torch.Tensor:
    r"""
    OphCLIP's silent-video retrieval augmentation in the *detached* form: the retrieved silent videos enter as bank
    vectors, without gradients (kept for comparison with [`encoded_retrieval_loss`], the default form).

    For a batch of `B` narrated videos with normalised embeddings `v_i` (with grad) whose *title* embeddings queried
    the silent-video bank for their top-`K` neighbours, with bank vectors `s_{i,1..K}` (normalised vision-tower
    embeddings of silent videos, no grad), the video must be closer to the silent videos retrieved for its own title
    than to those retrieved for the other titles of the (global) batch:

        L_ret = −1/B Σ_i log( Σ_k exp(⟨v_i, s_ik⟩·e^{logit_scale}) / Σ_j Σ_k exp(⟨v_i, s_jk⟩·e^{logit_scale}) )

    i.e. a multi-positive InfoNCE whose candidates are all gathered retrieved sets. The query is the title, not the
    video, so retrieval does not reinforce itself: the silent videos pull the narrated video towards what its title
    describes. No gradient reaches `s` (the bank is refreshed by re-encoding, [`refresh_bank`]).

    Details:

    - `v` and `s` (and the mask / indices) are gathered across processes like [`contrastive_loss_from_embeddings`], so `B` is the
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
        logit_scale (`torch.Tensor` scalar or `float`): The log scale, as in [`contrastive_loss_from_embeddings`].
        retrieved_mask (`torch.BoolTensor` of shape `(batch_size, K)`, *optional*): False for invalid entries.
        retrieved_indices (`torch.LongTensor` of shape `(batch_size, K)`, *optional*): Bank row numbers (`-1`
            invalid), enabling the de-duplication above.
        equal_batches (`bool`, defaults to `False`): Every process's batch has the same size: no size exchange.

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
    gathered = _gather_many(*to_gather, equal_sizes=equal_batches)
    video_all, retrieved_all, valid_all = gathered[0], gathered[1], gathered[2].bool()
    indices_all = gathered[3] if retrieved_indices is not None else None
    n = video_all.shape[0]
    with _fp32(device):
        silent = F.normalize(retrieved_all.float(), dim=-1).reshape(n * k, d)
        logits = video_all.float() @ silent.t() * _scale(logit_scale, device)  # (N, N·K): logits[i, j·K+k]
        candidates, positives = _retrieval_masks(valid_all, indices_all)
        return _multi_positive_nll(logits, candidates, positives)

def encoded_retrieval_loss(
    title_embeds: torch.Tensor,
    silent_embeds: torch.Tensor,
    silent_rows: torch.Tensor,
    retrieved_indices: torch.Tensor,
    logit_scale,
    equal_batches: bool = False,
) -> torch.Tensor:
    r"""
    OphCLIP's silent-video retrieval augmentation in the form that trains on silent footage (our form; the paper
    does not publish one): the retrieved silent videos are decoded and encoded by the current vision tower *with
    gradients* and are extra positives of the title that retrieved them.

    Let `w_i` be the normalised title embeddings of the (global) batch, `R_i` the bank rows title `i` retrieved (its
    top-`K` by maximum inner product search, or the random rows of the random-pairing ablation), and `s_c` the
    normalised embeddings, with gradients, of the silent videos encoded this step (bank row `r_c`; each title encodes
    some of its `R_i`). With `z_ic = e^{logit_scale} ⟨w_i, s_c⟩`, `C` the encoded silent videos (a row encoded twice
    counts once) and `P_i = {c ∈ C : r_c ∈ R_i}`:

        L_ret = ½ · ( −1/|I| Σ_{i∈I} log( Σ_{c∈P_i} e^{z_ic} / Σ_{c∈C} e^{z_ic} )
                      −1/|J| Σ_{c∈J} log( Σ_{i: c∈P_i} e^{z_ic} / Σ_i e^{z_ic} ) )

    `I` are the titles with at least one encoded positive, `J` the encoded silent videos retrieved by at least one
    title. The first half asks each title to pick out the silent videos it retrieved among all encoded this step; the
    second asks each silent video to pick out the title(s) that retrieved it among all titles of the batch.

    Why this form: the gradient reaches the vision tower *through the silent frames*, so footage that only silent
    videos show (another clinic's microscope, instruments, light) shapes the encoder, and it is aligned to the text
    that describes it (the title whose embedding retrieved it); in the detached form ([`retrieval_augmentation_loss`])
    silent videos are stale bank vectors and only the narrated video moves. The title is the query (not the video),
    so retrieval quality does not reinforce a video's own errors. A silent video that two titles retrieved is a
    positive of both and a negative of neither.

    Args:
        title_embeds (`torch.Tensor` of shape `(batch_size, dim)`): Normalised local title embeddings.
        silent_embeds (`torch.Tensor` of shape `(num_silent, dim)`): Normalised local embeddings of the encoded silent
            videos (with grad); `num_silent` may be 0 and may differ between processes.
        silent_rows (`torch.LongTensor` of shape `(num_silent,)`): Their bank rows.
        retrieved_indices (`torch.LongTensor` of shape `(batch_size, K)`): The bank rows each local title retrieved
            (`-1` invalid).
        logit_scale (`torch.Tensor` scalar or `float`): The log scale, as in [`contrastive_loss_from_embeddings`].
        equal_batches (`bool`, defaults to `False`): Every process has the same number of titles: their gather
            skips the size exchange (the silent videos' count varies and is always exchanged).

    Returns:
        Scalar float32 tensor (`0`, connected to the graph, when no encoded silent video was retrieved by a title).
    """
    if not isinstance(title_embeds, torch.Tensor) or title_embeds.dim() != 2:
        raise ValueError("title_embeds must be a (batch_size, dim) tensor.")
    if not isinstance(silent_embeds, torch.Tensor) or silent_embeds.dim() != 2 \
            or silent_embeds.shape[1] != title_embeds.shape[1]:
        raise ValueError(f"silent_embeds must be a (num_silent, {title_embeds.shape[1]}) tensor, got "
                         f"{tuple(getattr(silent_embeds, 'shape', ()))}.")
    device = title_embeds.device
    silent_rows = torch.as_tensor(silent_rows, device=device).long().reshape(-1)
    if silent_rows.numel() != silent_embeds.shape[0]:
        raise ValueError(f"silent_rows has {silent_rows.numel()} entries for {silent_embeds.shape[0]} silent videos.")
    retrieved_indices = torch.as_tensor(retrieved_indices, device=device).long()
    if retrieved_indices.dim() != 2 or retrieved_indices.shape[0] != title_embeds.shape[0]:
        raise ValueError(f"retrieved_indices must have shape ({title_embeds.shape[0]}, K), got "
                         f"{tuple(retrieved_indices.shape)}.")
    titles, retrieved = _gather_many(title_embeds, retrieved_indices, equal_sizes=equal_batches)
    silent, rows = _gather_many(silent_embeds, silent_rows)
    with _fp32(device):
        logits = titles.float() @ silent.float().t() * _scale(logit_scale, device)  # (N titles, M silent)
        candidates = _first_occurrences(rows)
        positives = _retrieved_by(retrieved, rows) & candidates.unsqueeze(0)
        title_to_silent = _multi_positive_nll(logits, candidates.unsqueeze(0).expand_as(logits), positives)
        every_title = torch.ones_like(positives.t())
        silent_to_title = _multi_positive_nll(logits.t(), every_title, positives.t())
        return (title_to_silent + silent_to_title) / 2.0


def video_level_loss(
    text_embeds: torch.Tensor,
    video_embeds: torch.Tensor,
    retrieved_embeds: torch.Tensor | None = None,
    logit_scale=None,
    retrieval_weight: float = 0.5,
    retrieved_mask: torch.Tensor | None = None,
    retrieved_indices: torch.Tensor | None = None,
    silent_embeds: torch.Tensor | None = None,
    silent_rows: torch.Tensor | None = None,
    local_loss: bool = False,
    equal_batches: bool = False,
) -> dict[str, torch.Tensor]:
    r"""
    The video-level objective: video ↔ title symmetric InfoNCE, plus `retrieval_weight` times the retrieval term
    when one is given:

    - the *encoded* form ([`encoded_retrieval_loss`]): `silent_embeds` (with grad), `silent_rows` and
      `retrieved_indices`;
    - the *detached* form ([`retrieval_augmentation_loss`]): `retrieved_embeds` (bank vectors), with the optional
      `retrieved_mask` / `retrieved_indices`.

    `loss = video_contrastive_loss + retrieval_weight · retrieval_loss`.

    Args:
        text_embeds, video_embeds (`(batch_size, dim)`): Normalised title and video embeddings.
        retrieved_embeds (`(batch_size, K, dim)`, *optional*): From [`retrieve`] (detached form).
        logit_scale: The model's log scale (required; keyword or fourth positional argument).
        retrieval_weight (`float`, defaults to 0.5): `λ`.
        retrieved_mask, retrieved_indices: As in [`retrieval_augmentation_loss`] / [`encoded_retrieval_loss`].
        silent_embeds, silent_rows (*optional*): The encoded silent videos and their bank rows (encoded form).
        local_loss, equal_batches (`bool`): As in [`contrastive_loss_from_embeddings`], for the video ↔ title term
            (`equal_batches` also spares the titles' gather in the retrieval term its size exchange).

    Returns:
        `{"video_contrastive_loss", "retrieval_loss" (only with a retrieval term), "loss"}`.
    """
    if logit_scale is None:
        raise ValueError("video_level_loss needs logit_scale= (the model's `logit_scale`).")
    if silent_embeds is not None and retrieved_embeds is not None:
        raise ValueError("pass silent_embeds (encoded form) or retrieved_embeds (detached form), not both.")
    out = {"video_contrastive_loss": contrastive_loss_from_embeddings(
        text_embeds, video_embeds, logit_scale, local_loss=local_loss, equal_batches=equal_batches)}
    loss = out["video_contrastive_loss"]
    if silent_embeds is not None:
        if silent_rows is None or retrieved_indices is None:
            raise ValueError("the encoded retrieval form needs silent_rows and retrieved_indices with silent_embeds.")
        out["retrieval_loss"] = encoded_retrieval_loss(text_embeds, silent_embeds, silent_rows, retrieved_indices,
                                                       logit_scale, equal_batches=equal_batches)
    elif retrieved_embeds is not None:
        out["retrieval_loss"] = retrieval_augmentation_loss(
            video_embeds, retrieved_embeds, logit_scale, retrieved_mask=retrieved_mask,
            retrieved_indices=retrieved_indices, equal_batches=equal_batches,
        )
    if "retrieval_loss" in out:
        loss = loss + retrieval_weight * out["retrieval_loss"]
    out["loss"] = loss
    return out


def clip_level_loss(text_embeds: torch.Tensor, video_embeds: torch.Tensor, logit_scale, local_loss: bool = False,
                    equal_batches: bool = False) -> dict[str, torch.Tensor]:
    r"""
    The clip-level objective: clip ↔ narration symmetric InfoNCE over the global batch
    ([`contrastive_loss_from_embeddings`], whose `local_loss` and `equal_batches` it passes on).

    Returns:
        `{"clip_contrastive_loss", "loss"}` (the same tensor; add the optional [`simsiam_loss`] yourself).
    """
    value = contrastive_loss_from_embeddings(text_embeds, video_embeds, logit_scale, local_loss=local_loss,
                                             equal_batches=equal_batches)
    return {"clip_contrastive_loss": value, "loss": value}


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
