"""Tiny configs, inputs and media shared by the tests (in the spirit of transformers' `*ModelTester` classes)."""

import math

import numpy as np
import torch
from transformers import BertConfig, BertTokenizer, CLIPVisionConfig, ResNetConfig

from modeling_ophclip import OphCLIPConfig, OphCLIPProcessor, OphCLIPVideoProcessor


WORDS = [
    "the", "surgeon", "makes", "a", "main", "incision", "lens", "capsule", "phaco", "##emulsification", "capsulo",
    "##rhexis", "cortex", "irrigation", "aspiration", "viscoelastic", "injection", "hydro", "##dissection", "iris",
    "cornea", "forceps", "knife", "cannula", "implant", "intraocular", "removal", "of", "and", "with", "into",
]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_tokenizer(model_max_length: int = 32) -> BertTokenizer:
    vocab = {token: i for i, token in enumerate(SPECIAL + WORDS)}
    return BertTokenizer(vocab=vocab, model_max_length=model_max_length, do_lower_case=True)


class OphCLIPModelTester:
    """Builds tiny OphCLIP configs and matching inputs; `vision` is "resnet" or "clip"."""

    def __init__(self, vision: str = "resnet", batch_size: int = 3, num_frames: int = 4, image_size: int = 32,
                 seq_length: int = 7, hidden_size: int = 32, projection_dim: int = 16, text_pooling: str = "surgvlp"):
        self.vision = vision
        self.batch_size = batch_size
        self.num_frames = num_frames
        self.image_size = image_size
        self.seq_length = seq_length
        self.hidden_size = hidden_size
        self.projection_dim = projection_dim
        self.text_pooling = text_pooling
        self.vocab_size = len(SPECIAL) + len(WORDS)

    def text_config(self) -> BertConfig:
        return BertConfig(vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_hidden_layers=4,
                          num_attention_heads=4, intermediate_size=37, max_position_embeddings=64,
                          hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)

    def vision_config(self):
        if self.vision == "resnet":
            return ResNetConfig(embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1])
        return CLIPVisionConfig(hidden_size=self.hidden_size, intermediate_size=37, num_hidden_layers=2,
                                num_attention_heads=4, image_size=self.image_size, patch_size=8)

    def get_config(self, **overrides) -> OphCLIPConfig:
        kwargs = dict(text_config=self.text_config(), vision_config=self.vision_config(),
                      projection_dim=self.projection_dim, use_text_projection=True, text_pooling=self.text_pooling)
        kwargs.update(overrides)
        return OphCLIPConfig(**kwargs)

    def prepare_inputs(self, seed: int = 0) -> dict:
        generator = torch.Generator().manual_seed(seed)
        input_ids = torch.randint(len(SPECIAL), self.vocab_size, (self.batch_size, self.seq_length), generator=generator)
        input_ids[:, 0] = SPECIAL.index("[CLS]")
        attention_mask = torch.ones_like(input_ids)
        # Texts of different lengths: text i has seq_length - i real tokens, then [SEP], then padding.
        for i in range(self.batch_size):
            length = max(2, self.seq_length - i)
            input_ids[i, length - 1] = SPECIAL.index("[SEP]")
            input_ids[i, length:] = SPECIAL.index("[PAD]")
            attention_mask[i, length:] = 0
        pixel_values_videos = torch.randn(
            self.batch_size, self.num_frames, 3, self.image_size, self.image_size, generator=generator
        )
        return {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values_videos": pixel_values_videos}


def tiny_processor(size: int = 32, model_max_length: int = 32) -> OphCLIPProcessor:
    return OphCLIPProcessor(OphCLIPVideoProcessor(size=size, crop_size=size, num_frames=4),
                            tiny_tokenizer(model_max_length))


def save_tiny_model(folder, vision: str = "resnet", seed: int = 0):
    """A tiny random OphCLIP checkpoint (weights from `seed`) with the tiny processor, saved in `folder`; returns it
    as a string, as the commands take it."""
    from modeling_ophclip import OphCLIPModel

    torch.manual_seed(seed)
    OphCLIPModel(OphCLIPModelTester(vision=vision).get_config()).save_pretrained(folder)
    tiny_processor().save_pretrained(folder)
    return str(folder)


def free_port() -> int:
    """A loopback port no one listens on now (a fixed one can be taken by another run on the same machine)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_app(demo) -> str:
    """Serve a built web app (`ophclip_cli.app.build_app`) on a free loopback port, one request at a time, without
    blocking; returns its URL (close it with `demo.close()`)."""
    from ophclip_cli.app import launch_kwargs

    port = free_port()
    demo.queue(default_concurrency_limit=1).launch(server_name="127.0.0.1", server_port=port,
                                                    prevent_thread_lock=True, quiet=True, **launch_kwargs(demo.core))
    return f"http://127.0.0.1:{port}/"


def write_test_video(path, num_frames: int = 24, fps: int = 12, height: int = 48, width: int = 64) -> np.ndarray:
    """Write an H.264 mp4 whose frame i shows a bar at a position that depends on i; returns the RGB frames."""
    import av

    frames = np.zeros((num_frames, height, width, 3), dtype=np.uint8)
    for i in range(num_frames):
        x = int(i * (width - 8) / max(1, num_frames - 1))
        frames[i, :, x : x + 8, 0] = 255
        frames[i, :, :, 1] = int(255 * i / max(1, num_frames - 1))
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "10", "preset": "veryfast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return frames


LN10 = math.log(10.0)
