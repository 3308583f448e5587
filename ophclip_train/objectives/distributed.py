"""Gathering embeddings of all processes with their gradients (the global batch of every contrastive term).

See the package documentation (`ophclip_train.objectives`) for why every rank computing the full global loss, with
this gather and DDP's gradient average, gives exactly the gradient of the single-process loss on the global batch.
"""

import torch
import torch.distributed as dist


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
    # Synchronous gather with autograd (backward: every process's gradient of this slice, summed). Not
    # `_functional_collectives.all_gather_single_autograd`: with gloo on torch 2.13 its asynchronous tensors crashed
    # a 2-process test about one run in ten ("malloc(): unaligned tcache chunk detected", "terminate called without
    # an active exception"); 24 runs in a row passed with this one.
    from torch.distributed.nn.functional import all_gather

    x = x.contiguous()
    longest = max(sizes)
    if x.shape[0] != sizes[dist.get_rank()]:
        raise ValueError(f"gather: local tensor has {x.shape[0]} rows, expected {sizes[dist.get_rank()]}.")
    if min(sizes) == longest:
        return torch.cat(all_gather(x))
    # Uneven local batches: pad every slice to the longest (with autograd), gather, strip the padding.
    if x.shape[0] < longest:
        x = torch.cat([x, x.new_zeros((longest - x.shape[0],) + tuple(x.shape[1:]))])
    return torch.cat([chunk[:n] for chunk, n in zip(all_gather(x), sizes)])


def _local_sizes(n: int, device: torch.device, world_size: int, equal_sizes: bool) -> list[int]:
    """Every process's batch size: exchanged, or, when the caller knows them equal (a loader with drop_last),
    assumed without a collective."""
    return [n] * world_size if equal_sizes else _gather_sizes(n, device, world_size)


def _gather_many(*tensors: torch.Tensor, equal_sizes: bool = False) -> tuple[torch.Tensor, ...]:
    """Gather several tensors that share their leading (batch) dimension; one size exchange for all of them (none
    with `equal_sizes`)."""
    world_size = _world_size()
    if world_size == 1:
        return tensors
    sizes = _local_sizes(tensors[0].shape[0], tensors[0].device, world_size, equal_sizes)
    return tuple(_gather_rows(t, sizes) for t in tensors)


def gather_with_grad(x: torch.Tensor, equal_sizes: bool = False) -> torch.Tensor:
    r"""
    Concatenate `x` over all processes along dim 0, keeping autograd.

    The identity when `torch.distributed` is not initialised or has one process. Otherwise every process gets the
    same `(Σ_r n_r, ...)` tensor, in rank order. The backward *sums* the gradients that all processes computed for
    this process's slice (see the module documentation for why that, with DDP's average, gives the full-batch
    gradient). Local sizes may differ between processes (padded and stripped inside, after one tiny all-gather of the
    sizes); pass `equal_sizes=True` when every process is known to hold the same number of rows (a data loader with
    `drop_last=True`) to skip that exchange: with unequal sizes the collective then fails or hangs. Tensors that do
    not require grad are simply gathered.

    Uses `torch.distributed.nn.functional.all_gather` on the default (WORLD) group; works with gloo (CPU) and NCCL
    (tensors on the process's GPU).
    """
    return _gather_many(x, equal_sizes=equal_sizes)[0]


__all__ = ["gather_with_grad"]
