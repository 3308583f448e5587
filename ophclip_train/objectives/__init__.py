r"""OphCLIP's pretraining objectives, memory-bank helpers and feature-caching gradient accumulation.

OphCLIP (ICCV 2025) pretrains at two levels, alternately: short clips against their narrations
([`clip_level_loss`]) and whole videos against their titles ([`video_level_loss`]). At the video level the title
embedding queries a bank of *silent* surgical videos ([`retrieve`], a `datasets_ophvl.knowledge_base.SilentVideoBank`)
and the retrieved videos enter the objective as auxiliary supervision (two forms, below); the bank is
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

**Local loss.** With `local_loss=True` ([`contrastive_loss_from_embeddings`], open_clip's `local_loss`) each rank
computes only its local rows against the gathered columns — `(n_r, N)` logits instead of `(N, N)`, so the work per
rank stays flat as the world grows — and returns its share of the global loss, scaled so that the same argument
gives exactly `∂L/∂θ` (the mean of the shares over ranks is `L`). The trainer's `--local_loss` selects it.

Every process must therefore call these functions the same number of times, with the same optional inputs (e.g.
`retrieved_embeds` present on all ranks or on none): they run collectives. Local batch sizes may differ between ranks
(a short last batch); the gather then pads and strips, at the cost of one extra tiny collective per call. Where the
sizes are known to be equal (the trainer's loaders drop the last short batch), `equal_batches=True` skips it.

The loss arithmetic runs in float32 with autocast disabled (the logits of a large global batch are too coarse in
bfloat16); gradients flow back to the embeddings in their own dtype.

**Retrieval augmentation (our forms; the paper does not publish one).** At a video step each title embedding queries
the silent-video bank by maximum inner product search for its top-`K` silent videos ([`retrieve`]). Two forms:

- *encoded* (the default, [`encoded_retrieval_loss`]): `per_title` of each title's retrieved videos
  ([`rows_to_encode`]) are decoded and encoded by the current vision tower with gradients (a silent micro-batch of the
  accumulator), and are extra positives of the title that retrieved them, in both directions:

      L_ret = ½ · ( −1/|I| Σ_i log( Σ_{c∈P_i} e^{z_ic} / Σ_{c∈C} e^{z_ic} ) − 1/|J| Σ_c log( Σ_{i: c∈P_i} e^{z_ic} / Σ_i e^{z_ic} ) )

  with `z_ic = e^{logit_scale} ⟨title_i, silent_c⟩`, `C` the encoded silent videos, `P_i` those title `i` retrieved;
- *detached* ([`retrieval_augmentation_loss`]): the retrieved bank vectors (no gradient) are positives of the
  narrated video: `L_ret = −1/B Σ_i log( Σ_k e^{⟨v_i, s_ik⟩·e^{logit_scale}} / Σ_j Σ_k e^{⟨v_i, s_jk⟩·e^{logit_scale}} )`.

At the video level the total is `L_video = InfoNCE(title, video) + λ · L_ret` (`λ` = `retrieval_weight`). The bank is
re-encoded with the current model as training goes ([`refresh_bank`]); [`random_pairing`] replaces the search by
chance pairing for the ablation, and [`retrieval_precision`] scores retrieval against a hidden ground truth.

The package keeps one concern per module: `distributed` (the gather with gradients), `losses`, `retrieval` (the bank
at training time) and `accumulation` (cached-feature gradient accumulation).
"""

from .accumulation import CachedFeatureAccumulator
from .distributed import gather_with_grad
from .losses import (
    SimSiamHead,
    clip_level_loss,
    contrastive_loss_from_embeddings,
    encoded_retrieval_loss,
    retrieval_augmentation_loss,
    simsiam_loss,
    video_level_loss,
)
from .retrieval import (
    make_video_level_loss_fn,
    random_pairing,
    refresh_bank,
    retrieval_precision,
    retrieve,
    rows_to_encode,
)


__all__ = [
    "gather_with_grad",
    "contrastive_loss_from_embeddings",
    "encoded_retrieval_loss",
    "retrieval_augmentation_loss",
    "video_level_loss",
    "clip_level_loss",
    "make_video_level_loss_fn",
    "SimSiamHead",
    "simsiam_loss",
    "retrieve",
    "random_pairing",
    "rows_to_encode",
    "retrieval_precision",
    "refresh_bank",
    "CachedFeatureAccumulator",
]
