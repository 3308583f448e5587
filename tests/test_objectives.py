"""Tests of `ophclip_train.objectives`: losses, memory-bank helpers, cached-feature accumulation, and a real 2-process
(gloo) run of the global-batch losses and the bank refresh."""

import contextlib
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ophclip_testing import OphCLIPModelTester

from modeling_ophclip import OphCLIPModel
from modeling_ophclip.modeling_ophclip import ophclip_loss
from ophclip_train.objectives import (
    CachedFeatureAccumulator,
    SimSiamHead,
    clip_level_loss,
    contrastive_loss_from_embeddings,
    encoded_retrieval_loss,
    gather_with_grad,
    make_video_level_loss_fn,
    random_pairing,
    refresh_bank,
    retrieval_augmentation_loss,
    retrieval_precision,
    retrieve,
    rows_to_encode,
    simsiam_loss,
    video_level_loss,
)


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def unit(*shape, seed=0, dtype=torch.float32):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype), dim=-1)


def naive_retrieval_loss(v, s, logit_scale, mask=None, indices=None):
    """Loop-by-loop reference of the docstring's equation (float64), with masking and optional de-duplication."""
    v, s = v.double(), F.normalize(s.double(), dim=-1)
    n, k, _ = s.shape
    mask = torch.ones(n, k, dtype=torch.bool) if mask is None else mask.clone()
    if indices is not None:
        mask &= indices >= 0
    scale = math.exp(float(logit_scale))
    if indices is None:
        candidates = [(j, c) for j in range(n) for c in range(k) if mask[j, c]]
    else:
        seen, candidates = set(), []
        for j in range(n):
            for c in range(k):
                if mask[j, c] and int(indices[j, c]) not in seen:
                    seen.add(int(indices[j, c]))
                    candidates.append((j, c))
    total, rows = 0.0, 0
    for i in range(n):
        if indices is None:
            positives = [(j, c) for (j, c) in candidates if j == i]
        else:
            own = {int(indices[i, c]) for c in range(k) if mask[i, c]}
            positives = [(j, c) for (j, c) in candidates if int(indices[j, c]) in own]
        if not positives:
            continue
        num = sum(torch.exp(scale * v[i] @ s[j, c]) for j, c in positives)
        den = sum(torch.exp(scale * v[i] @ s[j, c]) for j, c in candidates)
        total = total - torch.log(num / den)
        rows += 1
    return total / rows if rows else torch.zeros((), dtype=torch.float64)


# -- contrastive -----------------------------------------------------------------------------------------------------


def test_gather_with_grad_is_identity_on_one_process():
    x = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(x) is x


def test_contrastive_loss_equals_model_loss():
    tester = OphCLIPModelTester(vision="resnet", batch_size=4)
    model = OphCLIPModel(tester.get_config()).eval()
    with torch.no_grad():
        out = model(**tester.prepare_inputs(), return_loss=True)
    value = contrastive_loss_from_embeddings(out.text_embeds, out.video_embeds, model.logit_scale)
    torch.testing.assert_close(value, out.loss)

    # And the same gradients as the model's own loss on the same embeddings.
    text, video = unit(5, 16, seed=1).requires_grad_(), unit(5, 16, seed=2).requires_grad_()
    scale = torch.tensor(math.log(10.0), requires_grad=True)
    contrastive_loss_from_embeddings(text, video, scale).backward()
    grads = (text.grad, video.grad, scale.grad)
    text2, video2 = text.detach().clone().requires_grad_(), video.detach().clone().requires_grad_()
    scale2 = scale.detach().clone().requires_grad_()
    ophclip_loss(text2 @ video2.t() * scale2.exp()).backward()
    for got, expected in zip(grads, (text2.grad, video2.grad, scale2.grad)):
        torch.testing.assert_close(got, expected)


def test_contrastive_loss_runs_in_float32_under_autocast():
    text, video = unit(4, 8, seed=3), unit(4, 8, seed=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = contrastive_loss_from_embeddings(text.bfloat16(), video.bfloat16(), 2.3)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, contrastive_loss_from_embeddings(text.bfloat16().float(), video.bfloat16().float(), 2.3))


def test_contrastive_loss_rejects_mismatched_batches():
    with pytest.raises(ValueError, match="same shape"):
        contrastive_loss_from_embeddings(unit(3, 8), unit(4, 8), 1.0)


# -- retrieval augmentation ------------------------------------------------------------------------------------------


def hand_example():
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    s = torch.tensor([[[1.0, 0.0], [0.6, 0.8]], [[0.0, 1.0], [0.8, 0.6]]], requires_grad=True)
    return v, s, math.log(2.0)


def test_retrieval_loss_hand_checked():
    v, s, logit_scale = hand_example()
    loss = retrieval_augmentation_loss(v, s, logit_scale)
    # scale e^{log 2} = 2. Video 0: <v0, s> = 1, 0.6 (own title) | 0, 0.8 (other title);
    # video 1: 0, 0.8 (other) | 1, 0.6 (own). Both rows: -log((e^2 + e^1.2) / (e^2 + e^1.2 + e^0 + e^1.6)).
    expected = -math.log((math.exp(2) + math.exp(1.2)) / (math.exp(2) + math.exp(1.2) + 1 + math.exp(1.6)))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(loss.double(), naive_retrieval_loss(v.detach(), s.detach(), logit_scale))

    loss.backward()
    assert s.grad is None  # the bank vectors get no gradient
    assert v.grad is not None and v.grad.abs().sum() > 0
    # d/dv0 of -log(num/den) = -2 * (softmax over own positives - softmax over all candidates) . s
    w_pos = torch.tensor([math.exp(2), math.exp(1.2)]) / (math.exp(2) + math.exp(1.2))
    all_logits = torch.tensor([2.0, 1.2, 0.0, 1.6])
    w_all = all_logits.softmax(0)
    flat = s.detach().reshape(4, 2)
    grad_v0 = -2.0 * (w_pos @ flat[:2] - w_all @ flat) / 2  # the mean over the 2 rows
    torch.testing.assert_close(v.grad[0], grad_v0)


def test_retrieval_loss_matches_reference_on_random_batch():
    v, s = unit(5, 8, seed=5), unit(5, 3, 8, seed=6)
    mask = torch.rand(5, 3, generator=torch.Generator().manual_seed(7)) > 0.3
    for m in (None, mask):
        got = retrieval_augmentation_loss(v, s, 2.0, retrieved_mask=m)
        torch.testing.assert_close(got.double(), naive_retrieval_loss(v, s, 2.0, m), rtol=1e-5, atol=1e-6)


def test_retrieval_loss_masked_entries_are_excluded():
    v, s, logit_scale = hand_example()
    mask = torch.tensor([[True, True], [True, False]])
    base = retrieval_augmentation_loss(v, s, logit_scale, retrieved_mask=mask)
    # Masking s_{1,1} = (0.8, 0.6): video 0 loses the candidate e^{1.6}, video 1 loses the positive e^{1.2}.
    row0 = -math.log((math.exp(2) + math.exp(1.2)) / (math.exp(2) + math.exp(1.2) + 1))
    row1 = -math.log(math.exp(2) / (1 + math.exp(1.6) + math.exp(2)))
    assert base.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    # Whatever a masked entry holds does not matter.
    garbage = s.detach().clone()
    garbage[1, 1] = torch.tensor([1e3, -1e3])
    torch.testing.assert_close(retrieval_augmentation_loss(v, garbage, logit_scale, retrieved_mask=mask), base)
    # Index -1 (an approximate index's "no hit") masks the entry the same way.
    indices = torch.tensor([[0, 1], [2, -1]])
    torch.testing.assert_close(retrieval_augmentation_loss(v, garbage, logit_scale, retrieved_indices=indices), base)


def test_retrieval_loss_rows_without_positives():
    v, s, logit_scale = hand_example()
    # Row 1 has no valid entry: it leaves the mean, and its silent videos leave video 0's denominator.
    mask = torch.tensor([[True, True], [False, False]])
    loss = retrieval_augmentation_loss(v, s, logit_scale, retrieved_mask=mask)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)  # video 0's only candidates are its own positives
    # No valid entry at all: 0, and backward still works (zero gradient).
    v2 = v.detach().clone().requires_grad_()
    loss = retrieval_augmentation_loss(v2, s, logit_scale, retrieved_mask=torch.zeros(2, 2, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(v2.grad, torch.zeros_like(v2))


def test_retrieval_loss_deduplicates_with_indices():
    v = unit(4, 8, seed=8)
    bank = unit(6, 8, seed=9)
    indices = torch.tensor([[0, 1, 2], [2, 3, -1], [4, 0, 5], [5, 1, 3]])  # rows 0, 1, 2, 3, 5 shared by two titles
    s = bank[indices.clamp(min=0)]
    got = retrieval_augmentation_loss(v, s, 2.5, retrieved_indices=indices)
    torch.testing.assert_close(got.double(), naive_retrieval_loss(v, s, 2.5, indices=indices), rtol=1e-5, atol=1e-6)
    # Without duplicates the de-duplicated loss is the plain equation.
    distinct = torch.arange(12).reshape(4, 3)
    s = unit(4, 3, 8, seed=10)
    torch.testing.assert_close(
        retrieval_augmentation_loss(v, s, 2.5, retrieved_indices=distinct), retrieval_augmentation_loss(v, s, 2.5)
    )


def test_video_and_clip_level_loss_dicts():
    text, video = unit(4, 8, seed=11).requires_grad_(), unit(4, 8, seed=12).requires_grad_()
    s = unit(4, 2, 8, seed=13)
    out = video_level_loss(text, video, logit_scale=2.0)
    assert set(out) == {"video_contrastive_loss", "loss"}
    out = video_level_loss(text, video, s, logit_scale=2.0, retrieval_weight=0.25)
    assert set(out) == {"video_contrastive_loss", "retrieval_loss", "loss"}
    torch.testing.assert_close(out["loss"], out["video_contrastive_loss"] + 0.25 * out["retrieval_loss"])
    torch.testing.assert_close(out["retrieval_loss"], retrieval_augmentation_loss(video, s, 2.0))
    out["loss"].backward()
    assert text.grad is not None and video.grad is not None
    out = clip_level_loss(text, video, 2.0)
    assert set(out) == {"clip_contrastive_loss", "loss"}
    torch.testing.assert_close(out["loss"], contrastive_loss_from_embeddings(text, video, 2.0))
    with pytest.raises(ValueError, match="logit_scale"):
        video_level_loss(text, video, s)


# -- SimSiam ---------------------------------------------------------------------------------------------------------


def test_simsiam_loss_range_and_stop_gradient():
    z = torch.randn(6, 8)
    assert simsiam_loss(z, z, z, z).item() == pytest.approx(-1.0, abs=1e-6)
    assert simsiam_loss(-z, z, -z, z).item() == pytest.approx(1.0, abs=1e-6)
    p1, p2 = torch.randn(6, 8, requires_grad=True), torch.randn(6, 8, requires_grad=True)
    z1, z2 = torch.randn(6, 8, requires_grad=True), torch.randn(6, 8, requires_grad=True)
    loss = simsiam_loss(p1, z1, p2, z2)
    assert -1.0 <= loss.item() <= 1.0
    loss.backward()
    assert z1.grad is None and z2.grad is None  # stop-gradient on the targets
    assert p1.grad.abs().sum() > 0 and p2.grad.abs().sum() > 0


def test_simsiam_head_trains_the_encoder_through_the_predictions_only():
    head = SimSiamHead(8, hidden_dim=16)
    assert [type(m).__name__ for m in head.layers] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    encoder = torch.nn.Linear(4, 8)
    x1, x2 = torch.randn(5, 4), torch.randn(5, 4)
    z1, z2 = encoder(x1), encoder(x2)
    loss = simsiam_loss(head(z1), z1, head(z2), z2)
    loss.backward()
    assert head(z1).shape == (5, 8)
    assert encoder.weight.grad is not None and head.layers[0].weight.grad is not None


# -- memory bank -----------------------------------------------------------------------------------------------------


def random_bank(num_rows=200, dim=16, seed=0):
    from datasets_ophvl.knowledge_base import SilentVideoBank

    vectors = torch.randn(num_rows, dim, generator=torch.Generator().manual_seed(seed))
    return SilentVideoBank.from_embeddings(vectors, [f"silent-{i:03d}" for i in range(num_rows)])


def test_retrieve_matches_brute_force_top_k():
    bank = random_bank()
    titles = torch.randn(5, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64, requires_grad=True)
    retrieved, mask, indices = retrieve(bank, titles, k=4)
    expected = (F.normalize(titles.detach().float(), dim=-1) @ bank.embeddings.t()).topk(4, dim=1).indices
    assert torch.equal(indices, expected)
    assert mask.dtype == torch.bool and bool(mask.all())
    assert retrieved.shape == (5, 4, 16) and retrieved.dtype == torch.float64 and not retrieved.requires_grad
    torch.testing.assert_close(retrieved, bank.embeddings[expected].double())
    # A copy: updating the bank later does not change what this step retrieved.
    before = retrieved.clone()
    bank.update(expected[0, :1], torch.randn(1, 16))
    assert torch.equal(retrieved, before)


def test_retrieve_masks_missing_hits():
    class ApproximateBank:  # an approximate index that found only 2 of 3 neighbours for the second query
        embeddings = torch.arange(12.0).reshape(4, 3)

        def search(self, queries, k):
            indices = torch.tensor([[3, 1, 0], [2, 0, -1]])
            return torch.zeros(2, k), indices

    retrieved, mask, indices = retrieve(ApproximateBank(), torch.randn(2, 3), k=3)
    assert mask.tolist() == [[True, True, True], [True, True, False]]
    assert torch.equal(retrieved[1, 2], torch.zeros(3))
    assert torch.equal(retrieved[0], ApproximateBank.embeddings[[3, 1, 0]])
    assert indices[1, 2].item() == -1


def test_refresh_bank_single_process():
    bank = random_bank(num_rows=30, dim=8)
    table = torch.randn(30, 8, generator=torch.Generator().manual_seed(2))
    seen = []

    def encode(row_ids):
        assert isinstance(row_ids, np.ndarray) and not torch.is_grad_enabled()
        seen.append(row_ids.tolist())
        return table[torch.from_numpy(row_ids)]

    rows = torch.tensor(bank.rows_for_refresh(1, rows_per_step=12))
    assert refresh_bank(bank, encode, rows, rank=0, world_size=1, gather_fn=None) == 12
    assert seen == [list(range(12, 24))]
    torch.testing.assert_close(bank.embeddings[12:24], F.normalize(table[12:24], dim=-1))


# -- cached-feature accumulation -------------------------------------------------------------------------------------


def clip_model(learnable_logit_scale=False, **text_overrides):
    tester = OphCLIPModelTester(vision="clip", batch_size=6)
    config = tester.get_config(learnable_logit_scale=learnable_logit_scale)
    for name, value in text_overrides.items():
        setattr(config.text_config, name, value)
    torch.manual_seed(0)
    return OphCLIPModel(config).train(), tester.prepare_inputs(seed=3)


def embed(model):
    def embed_fn(batch):
        out = model(**batch)
        return out.text_embeds, out.video_embeds

    return embed_fn


def split(batch, size):
    return [{key: value[i : i + size] for key, value in batch.items()} for i in range(0, 6, size)]


def grads(model):
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("learnable_logit_scale", [False, True])
@pytest.mark.parametrize("with_retrieval", [False, True])
def test_cached_feature_accumulation_equals_full_batch_gradient(with_retrieval, learnable_logit_scale):
    model, batch = clip_model(learnable_logit_scale)
    bank = random_bank(num_rows=40, dim=model.config.projection_dim, seed=4) if with_retrieval else None

    def loss_fn():
        return make_video_level_loss_fn(model.logit_scale, bank=bank, k=3 if bank else None, retrieval_weight=0.5)

    model.zero_grad()
    text, video = embed(model)(batch)
    full = loss_fn()(text, video)
    full["loss"].backward()
    expected = grads(model)
    assert ("logit_scale" in expected) == learnable_logit_scale

    model.zero_grad()
    losses = CachedFeatureAccumulator().accumulate_step(split(batch, 2), embed(model), loss_fn())
    got = grads(model)
    assert set(losses) == set(full) and ("retrieval_loss" in losses) == with_retrieval
    for name in full:
        torch.testing.assert_close(losses[name], full[name].detach(), atol=1e-5, rtol=1e-5)
        assert not losses[name].requires_grad
    assert set(got) == set(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-4, msg=name)


def test_cached_feature_accumulation_replays_dropout_and_counts_syncs():
    model, batch = clip_model(hidden_dropout_prob=0.2)
    inner = embed(model)
    first, second = inner(batch)[0], inner(batch)[0]
    assert not torch.allclose(first, second)  # dropout is active

    calls = []

    def recording_embed(micro_batch):
        text, video = inner(micro_batch)
        calls.append((torch.is_grad_enabled(), text.detach().clone(), video.detach().clone()))
        return text, video

    syncs = []

    @contextlib.contextmanager
    def no_sync():
        syncs.append(True)
        yield

    backward_calls = []

    def backward_fn(loss):
        backward_calls.append(loss.detach())
        loss.backward()

    rng_before = torch.get_rng_state()
    micro_batches = split(batch, 2)
    micro_batches[1] = micro_batches[0]  # the same inputs twice: only the per-micro-batch seeds tell them apart
    CachedFeatureAccumulator().accumulate_step(
        micro_batches, recording_embed, lambda t, v: clip_level_loss(t, v, model.logit_scale),
        backward_fn=backward_fn, no_sync=no_sync,
    )
    assert [grad_enabled for grad_enabled, _, _ in calls] == [False] * 3 + [True] * 3
    for i in range(3):  # pass 1 and pass 2 of micro-batch i saw the same dropout masks
        assert torch.equal(calls[i][1], calls[3 + i][1]) and torch.equal(calls[i][2], calls[3 + i][2])
    assert not torch.equal(calls[0][1], calls[1][1])  # each micro-batch draws its own dropout masks
    assert len(syncs) == 2 and len(backward_calls) == 3
    assert not torch.equal(torch.get_rng_state(), rng_before)  # the step drew its seeds from the global RNG


def test_cached_feature_accumulation_single_micro_batch():
    model, batch = clip_model()
    losses = CachedFeatureAccumulator().accumulate_step(
        [batch], embed(model), lambda t, v: clip_level_loss(t, v, model.logit_scale)
    )
    assert set(losses) == {"clip_contrastive_loss", "loss"}
    assert model.text_projection.weight.grad is not None


# -- the encoded retrieval form --------------------------------------------------------------------------------------


def naive_encoded_loss(w, s, rows, retrieved, logit_scale):
    """Loop-by-loop reference of `encoded_retrieval_loss`'s equation (float64)."""
    w, s = w.double(), s.double()
    scale = math.exp(float(logit_scale))
    seen, candidates = set(), []
    for c, row in enumerate(rows.tolist()):
        if row >= 0 and row not in seen:
            seen.add(row)
            candidates.append(c)
    own = [{r for r in retrieved[i].tolist() if r >= 0} for i in range(len(w))]
    z = lambda i, c: torch.exp(scale * w[i] @ s[c])  # noqa: E731
    first, rows_first = 0.0, 0
    for i in range(len(w)):
        positives = [c for c in candidates if int(rows[c]) in own[i]]
        if positives:
            first -= torch.log(sum(z(i, c) for c in positives) / sum(z(i, c) for c in candidates))
            rows_first += 1
    second, rows_second = 0.0, 0
    for c in candidates:
        titles = [i for i in range(len(w)) if int(rows[c]) in own[i]]
        if titles:
            second -= torch.log(sum(z(i, c) for i in titles) / sum(z(i, c) for i in range(len(w))))
            rows_second += 1
    return (first / rows_first + second / rows_second) / 2


def test_encoded_retrieval_loss_matches_reference():
    w = unit(4, 8, seed=20)
    retrieved = torch.tensor([[0, 1, 2], [2, 3, -1], [4, 0, 5], [5, 1, 3]])
    rows = torch.tensor([0, 2, 2, 4, 5, 7])  # row 2 encoded twice (counts once); row 7 retrieved by no title
    s = unit(6, 8, seed=21)
    got = encoded_retrieval_loss(w, s, rows, retrieved, 2.5)
    torch.testing.assert_close(got.double(), naive_encoded_loss(w, s, rows, retrieved, 2.5), rtol=1e-5, atol=1e-6)
    # The title whose retrieved set holds every encoded row and the silent video every title retrieved give 0.
    assert encoded_retrieval_loss(w[:1], s[:2], torch.tensor([0, 1]), torch.tensor([[0, 1]]), 2.5).item() == \
        pytest.approx(0.0, abs=1e-6)
    # No encoded silent video, or none retrieved by any title: 0 and a working backward.
    s2 = s.clone().requires_grad_()
    for empty_rows, silent in ((torch.tensor([7]), s2[:1]), (torch.zeros(0, dtype=torch.long), s2[:0])):
        loss = encoded_retrieval_loss(w, silent, empty_rows, retrieved, 2.5)
        loss.backward()
        assert loss.item() == 0.0
    with pytest.raises(ValueError, match="silent_rows has 2 entries for 6"):
        encoded_retrieval_loss(w, s, rows[:2], retrieved, 2.5)


def test_silent_frames_shape_the_vision_tower_only_in_the_encoded_form():
    """Every other input's contribution is zeroed (titles and narrated videos detached): in the encoded form the
    gradient reaches the vision tower and the silent frames through the retrieved silent videos; in the detached form
    nothing of the silent frames is differentiated."""
    tester = OphCLIPModelTester(vision="resnet", batch_size=3)
    torch.manual_seed(0)
    model = OphCLIPModel(tester.get_config()).train()
    inputs = tester.prepare_inputs(seed=4)
    with torch.no_grad():
        out = model(**inputs)
    titles, narrated = out.text_embeds.detach(), out.video_embeds.detach()
    silent_pixels = torch.randn(4, *inputs["pixel_values_videos"].shape[1:],
                                generator=torch.Generator().manual_seed(5)).requires_grad_()
    rows = torch.tensor([3, 0, 1, 2])  # bank rows of the four silent videos
    retrieved = torch.tensor([[0, 1], [2, 3], [1, 3]])
    silent = F.normalize(model.get_video_features(silent_pixels).pooler_output, dim=-1)
    loss = video_level_loss(titles, narrated, logit_scale=model.logit_scale, silent_embeds=silent, silent_rows=rows,
                            retrieved_indices=retrieved)
    assert loss["video_contrastive_loss"].requires_grad is False and loss["retrieval_loss"].item() > 0
    loss["loss"].backward()
    vision = {name: p.grad for name, p in model.vision_model.named_parameters()}
    assert sum(float(g.abs().sum()) for g in vision.values() if g is not None) > 0
    assert float(silent_pixels.grad.abs().sum()) > 0
    assert all(p.grad is None for p in model.text_model.parameters())

    model.zero_grad(set_to_none=True)
    silent_pixels.grad = None
    bank_vectors = F.normalize(model.get_video_features(silent_pixels).pooler_output, dim=-1).detach()
    ordered = bank_vectors[torch.argsort(rows)]  # bank row r
    narrated_with_grad = narrated.clone().requires_grad_()
    loss = video_level_loss(titles, narrated_with_grad, ordered[retrieved], logit_scale=model.logit_scale,
                            retrieved_indices=retrieved)
    loss["loss"].backward()
    assert silent_pixels.grad is None
    assert all(p.grad is None for p in model.vision_model.parameters())
    assert float(narrated_with_grad.grad.abs().sum()) > 0  # only the narrated video is moved


@pytest.mark.parametrize("micro_batches", [1, 2])
def test_after_first_pass_adding_nothing_changes_nothing(micro_batches):
    """A hook that adds no micro-batch: the same losses and gradients as without it (one micro-batch then takes the
    two-pass path, which is exact too)."""
    torch.manual_seed(0)
    text_layer, video_layer = torch.nn.Linear(5, 8), torch.nn.Linear(6, 8)
    g = torch.Generator().manual_seed(3)
    x_text, x_video = torch.randn(4, 5, generator=g), torch.randn(4, 6, generator=g)
    parameters = (*text_layer.parameters(), *video_layer.parameters())

    def embed_fn(batch):
        return F.normalize(text_layer(batch["text"]), dim=-1), F.normalize(video_layer(batch["video"]), dim=-1)

    micro = [{"text": x_text[i::micro_batches], "video": x_video[i::micro_batches]} for i in range(micro_batches)]
    results = []
    for hook in (None, lambda text, video: []):
        losses = CachedFeatureAccumulator().accumulate_step(
            micro, embed_fn, make_video_level_loss_fn(math.log(10.0)), after_first_pass=hook)
        results.append((losses, [p.grad.clone() for p in parameters]))
        for p in parameters:
            p.grad = None
    (plain, plain_grads), (hooked, hooked_grads) = results
    torch.testing.assert_close(hooked["loss"], plain["loss"])
    for a, b in zip(hooked_grads, plain_grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("silent_from", ["list", "after_first_pass", "after_first_pass_one_micro_batch"])
def test_encoded_form_through_the_accumulator_equals_the_full_batch(silent_from):
    """The silent videos as a first micro-batch with no text (given in the list, or returned by `after_first_pass`
    from the pass-1 embeddings, as the trainer does): the accumulated gradient is the full-batch gradient."""
    torch.manual_seed(0)
    text_layer, video_layer = torch.nn.Linear(5, 8), torch.nn.Linear(6, 8)
    g = torch.Generator().manual_seed(1)
    x_text, x_video, x_silent = torch.randn(4, 5, generator=g), torch.randn(4, 6, generator=g), torch.randn(3, 6, generator=g)
    rows = np.array([2, 0, 5])
    retrieved = torch.tensor([[0, 1], [2, 3], [5, 1], [4, 0]])
    triple = (None, torch.ones(4, 2, dtype=torch.bool), retrieved)

    def embed_fn(batch):
        if "silent" in batch:
            return torch.zeros(0, 8), F.normalize(video_layer(batch["silent"]), dim=-1)
        return F.normalize(text_layer(batch["text"]), dim=-1), F.normalize(video_layer(batch["video"]), dim=-1)

    loss_fn = make_video_level_loss_fn(math.log(10.0), retrieval_weight=0.7, retrieved=triple, silent_rows=rows)
    narrated = [{"text": x_text, "video": x_video}] if silent_from.endswith("one_micro_batch") else [
        {"text": x_text[:2], "video": x_video[:2]}, {"text": x_text[2:], "video": x_video[2:]}]
    seen = []

    def after_first_pass(text, video):
        seen.append((text, video))
        return [{"silent": x_silent}]

    if silent_from == "list":
        losses = CachedFeatureAccumulator().accumulate_step([{"silent": x_silent}, *narrated], embed_fn, loss_fn)
    else:
        losses = CachedFeatureAccumulator().accumulate_step(narrated, embed_fn, loss_fn,
                                                            after_first_pass=after_first_pass)
        with torch.no_grad():  # the hook saw the narrated micro-batches' embeddings, detached, in order
            expected = embed_fn({"text": x_text, "video": x_video})
        assert len(seen) == 1 and not seen[0][0].requires_grad
        torch.testing.assert_close(seen[0][0], expected[0])
        torch.testing.assert_close(seen[0][1], expected[1])
    got = [p.grad.clone() for p in (*text_layer.parameters(), *video_layer.parameters())]
    for p in (*text_layer.parameters(), *video_layer.parameters()):
        p.grad = None
    text, video = embed_fn({"text": x_text, "video": x_video})
    _, silent = embed_fn({"silent": x_silent})
    full = video_level_loss(text, video, logit_scale=math.log(10.0), retrieval_weight=0.7, silent_embeds=silent,
                            silent_rows=torch.from_numpy(rows), retrieved_indices=retrieved)
    full["loss"].backward()
    for name in full:
        torch.testing.assert_close(losses[name], full[name].detach())
    for a, p in zip(got, (*text_layer.parameters(), *video_layer.parameters())):
        torch.testing.assert_close(a, p.grad, atol=1e-6, rtol=1e-5)


def test_random_pairing_and_rows_to_encode():
    bank = random_bank(num_rows=10, dim=4)
    vectors, mask, indices = random_pairing(bank, 3, 4, torch.Generator().manual_seed(0))
    assert indices.shape == (3, 4) and bool(mask.all())
    assert all(len(set(row)) == 4 for row in indices.tolist())  # distinct rows per title
    torch.testing.assert_close(vectors, bank.embeddings[indices])
    again = random_pairing(bank, 3, 4, torch.Generator().manual_seed(0))[2]
    assert torch.equal(indices, again)  # seeded: resumable
    with pytest.raises(ValueError, match="larger than the bank"):
        random_pairing(bank, 1, 11, torch.Generator())

    indices = torch.tensor([[4, 5, 6], [6, 7, -1], [8, 9, 1]])
    mask = torch.tensor([[True, True, True], [True, True, False], [False, False, False]])
    rows = rows_to_encode(indices, mask, 2, torch.Generator().manual_seed(3))
    assert rows.dtype == np.int64 and len(rows) == len(set(rows.tolist()))
    assert set(rows.tolist()) <= {4, 5, 6, 7}  # only valid entries; the third title has none
    assert 3 <= len(rows) <= 4  # two per title, a row chosen twice counted once
    assert set(rows_to_encode(indices, mask, 3, torch.Generator()).tolist()) == {4, 5, 6, 7}


def test_retrieval_precision_on_a_constructed_case():
    truth = {
        "q0": {"cataract": "mature", "phases": ["a", "b"]},
        "q1": {"cataract": "nuclear", "phases": ["a", "b", "c"]},
    }
    bank = [{"cataract": "mature", "phases": ["a", "b"]}, {"cataract": "mature", "phases": ["a", "b", "c"]},
            {"cataract": "nuclear", "phases": ["a", "b"]}, {"cataract": "psc", "phases": ["a", "b"]}, None]
    retrieved = [[bank[0], bank[1], bank[4]],  # q0: 2 of 2 known hits on cataract, 1 of 2 on phases
                 [bank[2], bank[3], bank[0]]]  # q1: 1 of 3 on cataract, 0 of 3 on phases
    result = retrieval_precision([truth["q0"], truth["q1"]], retrieved, bank)
    assert result["cataract"]["pairs"] == 5
    assert result["cataract"]["precision"] == pytest.approx(3 / 5)
    assert result["phases"]["precision"] == pytest.approx(1 / 5)
    # Chance: q0 matches 2 of the 4 known bank rows on cataract, q1 1 of 4; phases 3 of 4 and 1 of 4.
    assert result["cataract"]["chance"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert result["phases"]["chance"] == pytest.approx((3 / 4 + 1 / 4) / 2)
    # Queries without a ground truth are left out; no pair at all gives None.
    assert retrieval_precision([None], [[bank[0]]], bank)["cataract"] == {"precision": None, "chance": None,
                                                                           "pairs": 0}


# -- two processes ---------------------------------------------------------------------------------------------------


WORKER = textwrap.dedent(
    '''
    import json, math, os, sys
    import numpy as np
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    from accelerate import Accelerator
    from datasets_ophvl.knowledge_base import SilentVideoBank
    from ophclip_train.objectives import (contrastive_loss_from_embeddings, encoded_retrieval_loss, refresh_bank,
                                          retrieval_augmentation_loss)

    accelerator = Accelerator(cpu=True)
    rank, world = dist.get_rank(), dist.get_world_size()
    assert (rank, world) == (accelerator.process_index, accelerator.num_processes) and world == 2
    out_dir = sys.argv[1]

    g = torch.Generator().manual_seed(0)
    N, D, K = 6, 8, 3
    data = {
        "text": F.normalize(torch.randn(N, D, generator=g), dim=-1),
        "video": F.normalize(torch.randn(N, D, generator=g), dim=-1),
        "silent": F.normalize(torch.randn(N, K, D, generator=g), dim=-1),
        "mask": torch.rand(N, K, generator=g) > 0.25,
        "indices": torch.randint(0, 8, (N, K), generator=g),
        "logit_scale": torch.tensor(math.log(10.0)),
        "encoded": F.normalize(torch.randn(5, D, generator=g), dim=-1),
        "encoded_rows": torch.tensor([3, 0, 7, 3, 5]),  # row 3 encoded on both ranks: it counts once
    }
    data["mask"][4] = False  # a row with no valid positive
    if rank == 0:
        torch.save(data, os.path.join(out_dir, "data.pt"))

    results = {}
    for split_name, sizes in {"even": [3, 3], "uneven": [4, 2]}.items():
        start = sum(sizes[:rank])
        part = slice(start, start + sizes[rank])
        silent_part = slice(0, 3) if rank == 0 else slice(3, 5)  # uneven silent micro-batches
        for term in ("contrastive", "retrieval", "retrieval_dedup", "encoded"):
            video = data["video"][part].clone().requires_grad_()
            text = data["text"][part].clone().requires_grad_()
            scale = data["logit_scale"].clone().requires_grad_()
            if term == "encoded":
                # The silent embeddings travel as the "video" gradient of this term.
                video = data["encoded"][silent_part].clone().requires_grad_()
                loss = encoded_retrieval_loss(text, video, data["encoded_rows"][silent_part],
                                              data["indices"][part].masked_fill(~data["mask"][part], -1), scale)
            elif term == "contrastive":
                loss = contrastive_loss_from_embeddings(text, video, scale)
            else:
                loss = retrieval_augmentation_loss(
                    video, data["silent"][part], scale, retrieved_mask=data["mask"][part],
                    retrieved_indices=data["indices"][part] if term == "retrieval_dedup" else None)
            loss.backward()
            results[f"{split_name}/{term}"] = {
                "loss": loss.item(),
                "video_grad": video.grad.tolist(),
                "text_grad": text.grad.tolist() if text.grad is not None else None,
                "scale_grad": scale.grad.item(),
            }

    # DDP + CachedFeatureAccumulator + retrieval + learnable logit_scale: the synced gradients must be the
    # single-process gradients of the full global batch (8 items, 4 per rank in 2 micro-batches of 2).
    from torch.nn.parallel import DistributedDataParallel
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from objectives_tiny import TinyDualEncoder, ddp_data, ddp_encoded_loss_fn, ddp_loss_fn
    from ophclip_train.objectives import CachedFeatureAccumulator
    ddp_inputs = ddp_data()
    torch.manual_seed(rank)  # DDP must broadcast rank 0's weights
    ddp = DistributedDataParallel(TinyDualEncoder())
    local = slice(4 * rank, 4 * rank + 4)
    micro = [{"x_text": ddp_inputs["x_text"][local][i : i + 2], "x_video": ddp_inputs["x_video"][local][i : i + 2]}
             for i in (0, 2)]
    ddp_losses = CachedFeatureAccumulator().accumulate_step(
        micro, lambda b: ddp(b["x_text"], b["x_video"]), ddp_loss_fn(ddp.module, ddp_inputs, local),
        no_sync=ddp.no_sync)
    torch.save({"losses": ddp_losses, "grads": {n: p.grad for n, p in ddp.module.named_parameters()}},
               os.path.join(out_dir, f"ddp_{rank}.pt"))

    # The same with the encoded retrieval form: this rank's silent videos are one more micro-batch with no text,
    # returned after pass 1 as the trainer does (it is placed first; the synchronised backward stays a narrated one).
    ddp.module.zero_grad(set_to_none=True)
    local_silent = slice(3 * rank, 3 * rank + 3)
    ddp_losses = CachedFeatureAccumulator().accumulate_step(
        micro, lambda b: ddp(None, b["x_silent"]) if "x_silent" in b else ddp(b["x_text"], b["x_video"]),
        ddp_encoded_loss_fn(ddp.module, ddp_inputs, local, local_silent), no_sync=ddp.no_sync,
        after_first_pass=lambda text, video: [{"x_silent": ddp_inputs["x_silent"][local_silent]}])
    torch.save({"losses": ddp_losses, "grads": {n: p.grad for n, p in ddp.module.named_parameters()}},
               os.path.join(out_dir, f"ddp_encoded_{rank}.pt"))

    bank = SilentVideoBank.from_embeddings(
        torch.randn(20, D, generator=torch.Generator().manual_seed(1)), [f"s{i}" for i in range(20)])
    table = torch.randn(20, D, generator=torch.Generator().manual_seed(2))
    encoded = []
    def encode(row_ids):
        encoded.append(row_ids.tolist())
        return table[torch.from_numpy(row_ids)] * 3.0
    counts = [
        refresh_bank(bank, encode, bank.rows_for_refresh(1, rows_per_step=7), rank, world, accelerator.gather),
        refresh_bank(bank, encode, [19], rank, world, accelerator.gather),  # rank 1's share is empty
    ]
    np.save(os.path.join(out_dir, f"bank_{rank}.npy"), bank.embeddings.numpy())
    with open(os.path.join(out_dir, f"rank_{rank}.json"), "w") as f:
        json.dump({"results": results, "encoded": encoded, "counts": counts}, f)
    dist.barrier()
    dist.destroy_process_group()
    '''
)


TINY = textwrap.dedent(
    '''
    import math
    import torch
    import torch.nn.functional as F
    from torch import nn
    import numpy as np
    from ophclip_train.objectives import make_video_level_loss_fn, video_level_loss

    class TinyDualEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.text = nn.Linear(5, 8)
            self.video = nn.Linear(6, 8)
            self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))

        def forward(self, x_text, x_video):
            text = torch.zeros(0, 8) if x_text is None else F.normalize(self.text(x_text), dim=-1)
            return text, F.normalize(self.video(x_video), dim=-1)

    def ddp_data():
        g = torch.Generator().manual_seed(5)
        return {"x_text": torch.randn(8, 5, generator=g), "x_video": torch.randn(8, 6, generator=g),
                "silent": F.normalize(torch.randn(8, 3, 8, generator=g), dim=-1),
                "mask": torch.rand(8, 3, generator=g) > 0.2, "indices": torch.randint(0, 12, (8, 3), generator=g),
                "x_silent": torch.randn(6, 6, generator=g), "silent_rows": torch.tensor([1, 4, 9, 4, 0, 11])}

    def ddp_loss_fn(module, data, rows):
        def loss_fn(text, video):
            return video_level_loss(text, video, data["silent"][rows], logit_scale=module.logit_scale,
                                    retrieval_weight=0.5, retrieved_mask=data["mask"][rows],
                                    retrieved_indices=data["indices"][rows])
        return loss_fn

    def ddp_encoded_loss_fn(module, data, rows, silent):
        retrieved = (None, data["mask"][rows], data["indices"][rows])
        return make_video_level_loss_fn(module.logit_scale, retrieval_weight=0.5, retrieved=retrieved,
                                        silent_rows=data["silent_rows"][silent].numpy())
    '''
)


def run_two_processes(script, tmp_path) -> None:
    """Run `script tmp_path` in 2 processes (torchrun, gloo on the CPU); it writes what the test compares."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
         str(tmp_path)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,  # a hang guard, not a speed check
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_two_processes_global_losses_and_bank_refresh(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    (tmp_path / "objectives_tiny.py").write_text(TINY)
    run_two_processes(script, tmp_path)

    data = torch.load(tmp_path / "data.pt")
    ranks = [json.loads((tmp_path / f"rank_{r}.json").read_text()) for r in range(2)]
    world = 2

    # Single-process reference on the full global batch.
    for term in ("contrastive", "retrieval", "retrieval_dedup", "encoded"):
        video = data["video"].clone().requires_grad_()
        text = data["text"].clone().requires_grad_()
        scale = data["logit_scale"].clone().requires_grad_()
        if term == "encoded":
            video = data["encoded"].clone().requires_grad_()
            loss = encoded_retrieval_loss(text, video, data["encoded_rows"], data["indices"].masked_fill(~data["mask"], -1),
                                          scale)
        elif term == "contrastive":
            loss = contrastive_loss_from_embeddings(text, video, scale)
        else:
            loss = retrieval_augmentation_loss(
                video, data["silent"], scale, retrieved_mask=data["mask"],
                retrieved_indices=data["indices"] if term == "retrieval_dedup" else None)
        loss.backward()
        for split_name, sizes in {"even": [3, 3], "uneven": [4, 2]}.items():
            got = [r["results"][f"{split_name}/{term}"] for r in ranks]
            for r in range(world):
                # Every rank computes the single-process loss of the global batch...
                assert got[r]["loss"] == pytest.approx(loss.item(), rel=1e-6), (term, split_name, r)
                # ...and differentiates that same loss; the tensor the loss reads directly (logit_scale) gets dL/ds.
                assert got[r]["scale_grad"] == pytest.approx(scale.grad.item(), rel=1e-5, abs=1e-7)
            # The gather's backward sums the ranks' (identical) gradients of each slice: rank r's local grad is
            # world_size * dL/dx_r; DDP's average of the parameter gradients is therefore the full-batch gradient.
            local_video = torch.cat([torch.tensor(g["video_grad"]) for g in got])
            torch.testing.assert_close(local_video, world * video.grad, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(local_video / world, video.grad, atol=1e-6, rtol=1e-5)
            if term in ("contrastive", "encoded"):  # the encoded form also moves the titles
                local_text = torch.cat([torch.tensor(g["text_grad"]) for g in got])
                torch.testing.assert_close(local_text, world * text.grad, atol=1e-6, rtol=1e-5)
            else:
                assert all(g["text_grad"] is None for g in got)

    # DDP: the all-reduced (averaged) gradients of the accumulated step are the full-batch gradients.
    sys.path.insert(0, str(tmp_path))
    try:
        from objectives_tiny import TinyDualEncoder, ddp_data, ddp_loss_fn
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("objectives_tiny", None)
    torch.manual_seed(0)
    single = TinyDualEncoder()
    inputs = ddp_data()
    full = ddp_loss_fn(single, inputs, slice(None))(*single(inputs["x_text"], inputs["x_video"]))
    full["loss"].backward()
    assert set(full) == {"video_contrastive_loss", "retrieval_loss", "loss"}
    for r in range(world):
        result = torch.load(tmp_path / f"ddp_{r}.pt")
        for name, value in full.items():
            torch.testing.assert_close(result["losses"][name], value.detach(), atol=1e-6, rtol=1e-5)
        for name, p in single.named_parameters():
            torch.testing.assert_close(result["grads"][name], p.grad, atol=1e-6, rtol=1e-5, msg=f"rank {r} {name}")

    # The encoded form under DDP: the silent micro-batches of both ranks (row 4 on both) against all titles.
    single.zero_grad(set_to_none=True)
    text, video = single(inputs["x_text"], inputs["x_video"])
    _, silent = single(None, inputs["x_silent"])
    full = video_level_loss(text, video, logit_scale=single.logit_scale, retrieval_weight=0.5, silent_embeds=silent,
                            silent_rows=inputs["silent_rows"],
                            retrieved_indices=inputs["indices"].masked_fill(~inputs["mask"], -1))
    full["loss"].backward()
    assert full["retrieval_loss"].item() > 0
    for r in range(world):
        result = torch.load(tmp_path / f"ddp_encoded_{r}.pt")
        for name, value in full.items():
            torch.testing.assert_close(result["losses"][name], value.detach(), atol=1e-6, rtol=1e-5)
        for name, p in single.named_parameters():
            torch.testing.assert_close(result["grads"][name], p.grad, atol=1e-6, rtol=1e-5, msg=f"encoded rank {r} {name}")

    # The bank refresh: each rank encoded its contiguous share; both banks are identical and equal a single-process
    # refresh of the same rows.
    assert ranks[0]["encoded"] == [[7, 8, 9, 10], [19]] and ranks[1]["encoded"] == [[11, 12, 13]]
    assert ranks[0]["counts"] == ranks[1]["counts"] == [7, 1]
    banks = [np.load(tmp_path / f"bank_{r}.npy") for r in range(world)]
    assert np.array_equal(banks[0], banks[1])
    from datasets_ophvl.knowledge_base import SilentVideoBank

    reference = SilentVideoBank.from_embeddings(
        torch.randn(20, 8, generator=torch.Generator().manual_seed(1)), [f"s{i}" for i in range(20)])
    table = torch.randn(20, 8, generator=torch.Generator().manual_seed(2))

    def encode(row_ids):
        return table[torch.from_numpy(row_ids)] * 3.0

    refresh_bank(reference, encode, reference.rows_for_refresh(1, rows_per_step=7), 0, 1)
    refresh_bank(reference, encode, [19], 0, 1)
    np.testing.assert_array_equal(banks[0], reference.embeddings.numpy())
    assert not np.allclose(banks[0][7], F.normalize(torch.randn(20, 8, generator=torch.Generator().manual_seed(1)),
                                                    dim=-1)[7].numpy())  # the rows really changed


LOCAL_LOSS_WORKER = textwrap.dedent(
    '''
    import json, math, os, sys
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch import nn

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    import ophclip_train.objectives.distributed as distributed
    from ophclip_train.objectives import clip_level_loss, contrastive_loss_from_embeddings

    rank, world = dist.get_rank(), dist.get_world_size()
    out_dir = sys.argv[1]
    exchanges = []
    exchange = distributed._gather_sizes

    def counted(*args, **kwargs):
        exchanges.append(1)
        return exchange(*args, **kwargs)

    distributed._gather_sizes = counted  # counts the per-call batch-size collectives

    g = torch.Generator().manual_seed(0)
    text_all = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    video_all = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    results = {}
    cases = {"even": ([3, 3], True), "even_exchanged": ([3, 3], False), "short_last": ([4, 2], False)}
    for name, (sizes, equal) in cases.items():
        part = slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))
        for local in (True, False):
            text = text_all[part].clone().requires_grad_()
            video = video_all[part].clone().requires_grad_()
            scale = torch.tensor(math.log(10.0), requires_grad=True)
            before = len(exchanges)
            loss = contrastive_loss_from_embeddings(text, video, scale, local_loss=local, equal_batches=equal)
            loss.backward()
            results[f"{name}/{'local' if local else 'global'}"] = {
                "loss": loss.item(), "text_grad": text.grad.tolist(), "video_grad": video.grad.tolist(),
                "scale_grad": scale.grad.item(), "exchanges": len(exchanges) - before}

    # DDP with the local loss selected the way the trainer does (clip_level_loss, equal batches): the averaged
    # parameter gradients must be the single-process gradients of the global batch.
    from torch.nn.parallel import DistributedDataParallel

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.text, self.video = nn.Linear(5, 8), nn.Linear(6, 8)
            self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))

        def forward(self, x_text, x_video):
            return F.normalize(self.text(x_text), dim=-1), F.normalize(self.video(x_video), dim=-1)

    torch.manual_seed(0)
    ddp = DistributedDataParallel(Tiny())
    g = torch.Generator().manual_seed(5)
    x_text, x_video = torch.randn(8, 5, generator=g), torch.randn(8, 6, generator=g)
    local = slice(4 * rank, 4 * rank + 4)
    losses = clip_level_loss(*ddp(x_text[local], x_video[local]), ddp.module.logit_scale, local_loss=True,
                             equal_batches=True)
    losses["loss"].backward()
    results["ddp_grads"] = {n: p.grad.tolist() for n, p in ddp.module.named_parameters()}
    results["ddp_loss"] = losses["loss"].item()
    with open(os.path.join(out_dir, f"local_{rank}.json"), "w") as f:
        json.dump(results, f)
    dist.barrier()
    dist.destroy_process_group()
    '''
)


def test_two_processes_local_loss_has_the_global_gradients(tmp_path):
    script = tmp_path / "local_worker.py"
    script.write_text(LOCAL_LOSS_WORKER)
    run_two_processes(script, tmp_path)
    ranks = [json.loads((tmp_path / f"local_{r}.json").read_text()) for r in range(2)]
    world = 2

    g = torch.Generator().manual_seed(0)
    text = F.normalize(torch.randn(6, 8, generator=g), dim=-1).requires_grad_()
    video = F.normalize(torch.randn(6, 8, generator=g), dim=-1).requires_grad_()
    scale = torch.tensor(math.log(10.0), requires_grad=True)
    reference = contrastive_loss_from_embeddings(text, video, scale)
    reference.backward()

    for case in ("even", "even_exchanged", "short_last"):
        local = [r[f"{case}/local"] for r in ranks]
        full = [r[f"{case}/global"] for r in ranks]
        # each rank returns its share: the shares average to the global loss (a rank alone does not equal it)
        assert sum(x["loss"] for x in local) / world == pytest.approx(reference.item(), rel=1e-6)
        assert local[0]["loss"] != pytest.approx(reference.item(), rel=1e-3)
        # identical gradients to the global form: every local row gets world_size * dL/dx, logit_scale's mean is dL/ds
        for key, expected in (("video_grad", video.grad), ("text_grad", text.grad)):
            got_local = torch.cat([torch.tensor(x[key]) for x in local])
            got_global = torch.cat([torch.tensor(x[key]) for x in full])
            torch.testing.assert_close(got_local, world * expected, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(got_local, got_global, atol=1e-6, rtol=1e-5)
        assert sum(x["scale_grad"] for x in local) / world == pytest.approx(scale.grad.item(), rel=1e-5, abs=1e-7)
        # no batch-size collective when the sizes are declared equal; one per call otherwise
        expected_exchanges = 0 if case == "even" else 1
        assert [x["exchanges"] for x in local + full] == [expected_exchanges] * 4, case

    # DDP: the averaged gradients of the local loss are the single-process gradients of the global batch
    torch.manual_seed(0)
    single_text, single_video = torch.nn.Linear(5, 8), torch.nn.Linear(6, 8)
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(10.0)))
    g = torch.Generator().manual_seed(5)
    x_text, x_video = torch.randn(8, 5, generator=g), torch.randn(8, 6, generator=g)
    loss = contrastive_loss_from_embeddings(F.normalize(single_text(x_text), dim=-1),
                                            F.normalize(single_video(x_video), dim=-1), logit_scale)
    loss.backward()
    expected = {"logit_scale": logit_scale.grad, "text.weight": single_text.weight.grad,
                "text.bias": single_text.bias.grad, "video.weight": single_video.weight.grad,
                "video.bias": single_video.bias.grad}
    assert sum(r["ddp_loss"] for r in ranks) / world == pytest.approx(loss.item(), rel=1e-6)
    for r in range(world):
        for name, grad in expected.items():
            torch.testing.assert_close(torch.tensor(ranks[r]["ddp_grads"][name]), grad, atol=1e-6, rtol=1e-5,
                                       msg=f"rank {r} {name}")


def test_local_loss_on_one_process_is_the_global_loss():
    text, video = unit(5, 8), unit(5, 8)
    torch.testing.assert_close(contrastive_loss_from_embeddings(text, video, 2.0, local_loss=True, equal_batches=True),
                               contrastive_loss_from_embeddings(text, video, 2.0))


def test_trainer_option_selects_the_local_loss():
    from types import SimpleNamespace

    from ophclip_train.config import parse_config
    from ophclip_train.trainer import Pretrainer

    base = ["--data_path", "x", "--model_config", "tiny"]
    for extra, local in (([], False), (["--local_loss"], True)):
        config = parse_config(base + extra)
        # every contrastive term of a step gets the option, and no per-call size exchange (drop_last batches)
        assert Pretrainer._loss_forms(SimpleNamespace(config=config)) == {"local_loss": local, "equal_batches": True}
