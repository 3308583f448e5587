"""The silent-video memory bank at training time: retrieval by maximum inner product search (and the random pairing
of the ablation), the choice of retrieved videos to encode with gradients, retrieval quality against a hidden ground
truth, the distributed bank refresh, and the per-step video-level loss function.
"""

import math
from collections import Counter
from typing import Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from .losses import video_level_loss


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


def random_pairing(bank, batch_size: int, k: int, generator: torch.Generator, device=None,
                   dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""
    `k` distinct bank rows per title drawn uniformly at random, in [`retrieve`]'s format: the random-pairing ablation
    (silent videos used with the same compute as retrieval, but paired with titles by chance, not by search).

    Args:
        bank (`SilentVideoBank`): Anything with an `(N, D)` `embeddings` tensor and `len()`.
        batch_size (`int`): Titles in the local batch.
        k (`int`): Rows per title (at most the bank's size).
        generator (`torch.Generator`): The draw (seed it per step and process for exact resumption).
    """
    n = len(bank)
    if k > n:
        raise ValueError(f"random_pairing: k={k} is larger than the bank ({n} rows).")
    indices = torch.stack([torch.randperm(n, generator=generator)[:k] for _ in range(batch_size)]) if batch_size \
        else torch.empty(0, k, dtype=torch.long)
    vectors = bank.embeddings[indices]
    mask = torch.ones(batch_size, k, dtype=torch.bool)
    return vectors.to(device=device, dtype=dtype), mask.to(device), indices.to(device)


def rows_to_encode(indices: torch.Tensor, mask: torch.Tensor, per_title: int, generator: torch.Generator) -> np.ndarray:
    r"""
    The bank rows to decode and encode with gradients this step: for every title, `per_title` of its valid retrieved
    rows chosen uniformly at random (all of them when it has fewer), in title order, each row once.

    Drawing among the top-`K` rather than always taking the first spreads the encoder's exposure over the retrieved
    set at the cost of `per_title` videos per title.

    Returns:
        int64 `np.ndarray` of distinct bank rows.
    """
    chosen: list[int] = []
    for row_indices, row_mask in zip(indices.cpu(), mask.cpu()):
        valid = row_indices[row_mask & (row_indices >= 0)]
        order = torch.randperm(len(valid), generator=generator)[:per_title]
        chosen += [int(valid[j]) for j in order]
    return np.asarray(list(dict.fromkeys(chosen)), dtype=np.int64)


def retrieval_precision(query_truth: Sequence[dict | None], retrieved_truth: Sequence[Sequence[dict | None]],
                        bank_truth: Sequence[dict | None], fields: Sequence[str] = ("cataract", "phases")) -> dict:
    r"""
    precision@K of retrieval against a hidden ground truth, and its chance level.

    For each field, precision is the fraction of (query, retrieved silent video) pairs whose ground-truth values are
    equal (e.g. the same cataract type; the same phase sequence), over the queries and retrieved videos that have a
    ground truth. Chance is what uniform random retrieval from the bank would give for the same queries: the mean over
    queries of the fraction of bank rows that match.

    Args:
        query_truth: per query (title), its video's ground truth (a dict with `fields`) or `None`.
        retrieved_truth: per query, the ground truths of its `K` retrieved silent videos (`None` for unknown or
            invalid entries).
        bank_truth: the ground truth of every bank row (`None` where unknown).

    Returns:
        `{field: {"precision": float | None, "chance": float | None, "pairs": int}}` (`None` without any pair).
    """
    out = {}
    known_bank = [truth for truth in bank_truth if truth is not None]
    for field in fields:
        # How many bank rows hold each value (lists, e.g. phase sequences, as tuples): chance in O(bank + queries).
        counts = Counter(_hashable(truth[field]) for truth in known_bank)
        hits = pairs = 0
        chances = []
        for query, retrieved in zip(query_truth, retrieved_truth):
            if query is None:
                continue
            for truth in retrieved:
                if truth is not None:
                    pairs += 1
                    hits += truth[field] == query[field]
            if known_bank:
                chances.append(counts[_hashable(query[field])] / len(known_bank))
        out[field] = {"precision": hits / pairs if pairs else None,
                      "chance": float(np.mean(chances)) if chances else None, "pairs": pairs}
    return out


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def make_video_level_loss_fn(
    logit_scale, bank=None, k: int | None = None, retrieval_weight: float = 0.5, retrieved=None,
    silent_rows=None, local_loss: bool = False, equal_batches: bool = False, retrieve_fn=None,
) -> Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]:
    r"""
    A `loss_fn(text_embeds, video_embeds) -> dict` for one training step, e.g. for [`CachedFeatureAccumulator`].

    - Without `bank` and `retrieved`: the plain video-level contrastive loss.
    - Detached form: with a `bank` (and `k`) the first call retrieves the top-`k` silent videos for the (detached)
      title embeddings it is given and every later call reuses them (one retrieval per step on the whole local batch);
      or pass `retrieved`, the `(vectors, mask, indices)` of [`retrieve`] / [`random_pairing`] computed beforehand,
      or `retrieve_fn(title_embeds) -> (vectors, mask, indices)`, called on the first call's (detached) titles in
      place of `retrieve(bank, titles, k)` (the trainer's: random pairing, precision logging).
    - Encoded form: pass `retrieved` and `silent_rows`, the bank rows of the silent videos encoded with gradients this
      step. The `video_embeds` given to `loss_fn` then start with their `len(silent_rows)` embeddings (the
      accumulator's silent micro-batch, placed first), followed by the narrated videos that pair with `text_embeds`.

    `local_loss` and `equal_batches` go to [`video_level_loss`] (see `contrastive_loss_from_embeddings`).

    Build a new function for every step. `logit_scale` is read at call time: pass the model's tensor
    (`unwrap_model(model).logit_scale`), not a float, when it is learnable.
    """
    if bank is not None and k is None and retrieved is None:
        raise ValueError("make_video_level_loss_fn: pass k (how many silent videos to retrieve) with the bank.")
    if silent_rows is not None and retrieved is None:
        raise ValueError("make_video_level_loss_fn: the encoded form (silent_rows) needs the retrieval (retrieved=).")
    if retrieve_fn is None and bank is not None:
        def retrieve_fn(title_embeds):
            return retrieve(bank, title_embeds, k)
    memo: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    if retrieved is not None:
        memo["retrieved"] = retrieved
    num_silent = 0 if silent_rows is None else len(silent_rows)
    forms = {"local_loss": local_loss, "equal_batches": equal_batches}

    def loss_fn(text_embeds: torch.Tensor, video_embeds: torch.Tensor) -> dict[str, torch.Tensor]:
        if retrieve_fn is None and not memo:
            return video_level_loss(text_embeds, video_embeds, logit_scale=logit_scale, **forms)
        if "retrieved" not in memo:
            memo["retrieved"] = retrieve_fn(text_embeds.detach())
        vectors, mask, indices = memo["retrieved"]
        if silent_rows is not None:
            rows = torch.as_tensor(np.asarray(silent_rows), dtype=torch.long, device=video_embeds.device)
            return video_level_loss(
                text_embeds, video_embeds[num_silent:], logit_scale=logit_scale, retrieval_weight=retrieval_weight,
                retrieved_indices=indices.masked_fill(~mask, -1), silent_embeds=video_embeds[:num_silent],
                silent_rows=rows, **forms,
            )
        return video_level_loss(
            text_embeds, video_embeds, vectors, logit_scale=logit_scale, retrieval_weight=retrieval_weight,
            retrieved_mask=mask, retrieved_indices=indices, **forms,
        )

    return loss_fn


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


__all__ = ["make_video_level_loss_fn", "random_pairing", "refresh_bank", "retrieval_precision", "retrieve", "rows_to_encode"]
