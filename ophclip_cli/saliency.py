"""`ophclip attention`: text-conditioned saliency maps (Grad-CAM on ResNet towers, rollout on ViT towers)."""

from pathlib import Path

from evaluate_suite.progress import progress_bar
from .common import CLIError, IMAGE_EXTENSIONS, _frames_to_pixels, encode_texts, load_ophclip
from .plots import _save_overlay
from .video import _read_image, open_video


def gradcam_resnet(model, pixels, text_embed):
    """Grad-CAM of the frame–text similarity on the last ResNet stage: `(T, h, w)` maps in [0, 1]."""
    import torch
    import torch.nn.functional as F

    captured = {}

    def hook(_module, _inputs, output):
        output.retain_grad()
        captured["activations"] = output

    handle = model.vision_model.encoder.stages[-1].register_forward_hook(hook)
    try:
        with torch.enable_grad():
            pixels = pixels.detach().requires_grad_(False)
            embeds = F.normalize(model.get_image_features(pixels).pooler_output.float(), dim=-1)
            similarity = (embeds * text_embed).sum(dim=-1)
            model.zero_grad(set_to_none=True)
            similarity.sum().backward()
    finally:
        handle.remove()
    activations = captured["activations"]
    weights = activations.grad.mean(dim=(2, 3), keepdim=True)
    cams = F.relu((weights * activations).sum(dim=1)).detach()
    return cams, similarity.detach()


def attention_vit(model, pixels, text_embed):
    """Gradient-weighted attention rollout (Chefer et al., 2021) for a ViT tower: `(T, g, g)` maps over patches."""
    import torch
    import torch.nn.functional as F

    with torch.enable_grad():
        outputs = model.vision_model(pixel_values=pixels, output_attentions=True, return_dict=True)
        attentions = outputs.attentions
        if not attentions or attentions[0] is None:
            raise CLIError("the vision tower returned no attentions; load it with attn_implementation='eager'")
        for attention in attentions:
            attention.retain_grad()
        embeds = F.normalize(model.visual_projection(outputs.pooler_output.flatten(1)).float(), dim=-1)
        similarity = (embeds * text_embed).sum(dim=-1)
        model.zero_grad(set_to_none=True)
        similarity.sum().backward()
    num_tokens = attentions[0].shape[-1]
    rollout = torch.eye(num_tokens).unsqueeze(0).repeat(pixels.shape[0], 1, 1).to(attentions[0].device)
    for attention in attentions:
        weighted = F.relu(attention.grad * attention).mean(dim=1).detach().float()  # (T, N, N)
        rollout = rollout + weighted @ rollout
    cls_to_patches = rollout[:, 0, 1:]
    side = int(round(cls_to_patches.shape[-1] ** 0.5))
    if side * side != cls_to_patches.shape[-1]:
        raise CLIError(f"cannot arrange {cls_to_patches.shape[-1]} patch tokens in a square grid")
    return cls_to_patches.view(-1, side, side), similarity.detach()


def saliency_maps(model, processor, frames, text: str):
    """Text-conditioned saliency of decoded RGB frames `(T, H, W, 3)` for `text`.

    Returns `(images, maps, similarity, method)`: the preprocessed frames as uint8 `(T, h, w, 3)` pictures, the maps
    `(T, h, w)` in [0, 1] at the same size, the frame–text cosine similarities `(T,)` and the method's name. Load the
    model with `attn_implementation="eager"` for ViT towers (their rollout needs the attention weights)."""
    import torch
    import torch.nn.functional as F

    tower = model.config.vision_config.model_type
    text_embed = encode_texts(model, processor, [text])[0]
    pixels = _frames_to_pixels(processor, frames, model)
    if tower == "resnet":
        maps, similarity = gradcam_resnet(model, pixels, text_embed)
        method = "Grad-CAM (last ResNet stage)"
    elif hasattr(model.vision_model, "encoder") and hasattr(model.vision_model.config, "patch_size"):
        maps, similarity = attention_vit(model, pixels, text_embed)
        method = "gradient-weighted attention rollout"
    else:
        raise CLIError(f"saliency maps support ResNet and ViT (CLIP vision) towers, not {tower!r}")
    height, width = pixels.shape[-2:]
    maps = F.interpolate(maps[:, None].float(), size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    lo = maps.flatten(1).min(dim=1).values.view(-1, 1, 1)
    hi = maps.flatten(1).max(dim=1).values.view(-1, 1, 1)
    maps = ((maps - lo) / (hi - lo).clamp(min=1e-8)).cpu().numpy()
    vp = processor.video_processor
    mean = torch.tensor(vp.image_mean).view(3, 1, 1) if vp.do_normalize else torch.zeros(3, 1, 1)
    std = torch.tensor(vp.image_std).view(3, 1, 1) if vp.do_normalize else torch.ones(3, 1, 1)
    scale = vp.rescale_factor if vp.do_rescale else 1.0
    images = ((pixels.detach().float().cpu() * std + mean) / scale).clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    return images, maps, similarity, method


def cmd_attention(args) -> int:
    import numpy as np

    if args.frames < 1:
        raise CLIError(f"--frames must be at least 1, got {args.frames}")
    if not args.text.strip():
        raise CLIError("--text is empty")
    output_dir = Path(args.output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not args.overwrite:
        raise CLIError(f"output folder {str(output_dir)!r} exists and is not empty; pass --overwrite to write into it")
    source = Path(args.input)
    if source.suffix.lower() in IMAGE_EXTENSIONS:
        if not source.is_file():
            raise CLIError(f"image {str(source)!r} does not exist")
        frames, times = _read_image(source)[None], [0.0]
    else:
        from modeling_ophclip.video_processing_ophclip import uniform_frame_indices

        reader = open_video(source)
        indices = uniform_frame_indices(len(reader), min(args.frames, len(reader)))
        frames = reader.get_batch(indices).asnumpy()
        times = [i / reader.get_avg_fps() for i in indices]
    model, processor = load_ophclip(args.model, args.device, attn_implementation="eager")
    images, maps, similarity, method = saliency_maps(model, processor, frames, args.text)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i in progress_bar(range(len(images)), desc="attention", unit="frame"):
        path = output_dir / f"frame_{i:03d}_t{times[i]:.2f}s.png"
        _save_overlay(path, np.ascontiguousarray(images[i]), maps[i],
                      f"{args.text!r} — {method}, t={times[i]:.2f}s, cos={similarity[i].item():.3f}", args.alpha)
        written.append(path)
    print(f"ophclip attention: wrote {len(written)} overlays ({method}) to {output_dir}")
    return 0
