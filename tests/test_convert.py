"""Tests of the SurgVLP / HecVL / PeskaVLP → OphCLIP converter.

The predecessors' model is rebuilt here in plain torch, independently of transformers and of `modeling_ophclip`: a
torchvision-style bottleneck ResNet with its `global_embedder`, a BERT encoder with HF BERT's parameter names, and
SurgVLP's text aggregation written as the original token loop. A reduced-width instance with random weights is saved
under the real checkpoint key names, converted, reloaded with `OphCLIPModel.from_pretrained`, and must give the same
frame and sentence embeddings.
"""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformers import BertTokenizer

from modeling_ophclip import OphCLIPModel, OphCLIPProcessor
from modeling_ophclip.convert import (
    KEY_RULES,
    convert_surgvlp_checkpoint,
    main,
    source_key_to_target,
    target_key_to_source,
)
from remote_code import run_without_project


BASE_WIDTH = 8
RESNET_DEPTHS = (1, 2, 1, 1)
EXPANSION = 4
HIDDEN = 64  # BERT width == joint embedding width, as in the predecessors (768 there)
NUM_HEADS = 4
NUM_LAYERS = 5
INTERMEDIATE = 96
MAX_POSITIONS = 40
LAST_N_LAYERS = 4
ATOL, RTOL = 1e-5, 1e-4

VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "the", "The", "surgeon", "makes", "a", "main", "incision",
    "lens", "capsule", "phaco", "##emulsification", "##emul", "##sification", "capsulo", "##rhexis", "cortex",
    "irrigation", "aspiration", "hydro", "##dissection", "##dis", "##section", "iris", "cornea", "forceps", "of",
    "and", "with", "into", "Capsul", "##orhexis", "IOL", "##s", "implant", "##ation",
]
TEXTS = [
    "The surgeon makes a main incision.",
    "phacoemulsification of the lens",
    "Capsulorhexis with forceps and hydrodissection of the cortex, irrigation and aspiration",
    "IOLs",
]


# -- the predecessors' model in plain torch ---------------------------------------------------------------------------


class RefBottleneck(nn.Module):
    """torchvision's Bottleneck (ResNet v1.5: the stride sits in the 3x3 conv)."""

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * EXPANSION, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class RefResNet(nn.Module):
    """torchvision's ResNet with `fc` removed, at a reduced base width."""

    def __init__(self, base=BASE_WIDTH, depths=RESNET_DEPTHS):
        super().__init__()
        self.conv1 = nn.Conv2d(3, base, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = base
        for index, depth in enumerate(depths):
            planes, stride = base * 2**index, 1 if index == 0 else 2
            blocks = []
            for block in range(depth):
                downsample = None
                if block == 0 and (stride != 1 or inplanes != planes * EXPANSION):
                    downsample = nn.Sequential(
                        nn.Conv2d(inplanes, planes * EXPANSION, kernel_size=1, stride=stride, bias=False),
                        nn.BatchNorm2d(planes * EXPANSION),
                    )
                blocks.append(RefBottleneck(inplanes, planes, stride if block == 0 else 1, downsample))
                inplanes = planes * EXPANSION
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_features = inplanes

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for index in range(len(RESNET_DEPTHS)):
            x = getattr(self, f"layer{index + 1}")(x)
        return self.avgpool(x).flatten(1)


class RefImageEncoder(nn.Module):
    """SurgVLP's `ImageEncoder`: ResNet → 2048-d (here reduced) pooled features → `global_embedder`, no norm."""

    def __init__(self):
        super().__init__()
        self.model = RefResNet()
        self.global_embedder = nn.Linear(self.model.out_features, HIDDEN)

    def forward(self, frames):
        return self.global_embedder(self.model(frames))


class RefEmbeddings(nn.Module):
    def __init__(self, vocab_size):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, HIDDEN)
        self.position_embeddings = nn.Embedding(MAX_POSITIONS, HIDDEN)
        self.token_type_embeddings = nn.Embedding(2, HIDDEN)
        self.LayerNorm = nn.LayerNorm(HIDDEN, eps=1e-12)

    def forward(self, input_ids, token_type_ids):
        positions = torch.arange(input_ids.shape[1])
        summed = self.word_embeddings(input_ids) + self.position_embeddings(positions)[None]
        return self.LayerNorm(summed + self.token_type_embeddings(token_type_ids))


class RefSelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.query = nn.Linear(HIDDEN, HIDDEN)
        self.key = nn.Linear(HIDDEN, HIDDEN)
        self.value = nn.Linear(HIDDEN, HIDDEN)

    def forward(self, x, attention_mask):
        batch, length, _ = x.shape
        head_dim = HIDDEN // NUM_HEADS

        def heads(t):
            return t.view(batch, length, NUM_HEADS, head_dim).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim)
        scores = scores.masked_fill(attention_mask[:, None, None, :] == 0, float("-inf"))
        context = scores.softmax(dim=-1) @ v
        return context.transpose(1, 2).reshape(batch, length, HIDDEN)


class RefDenseLayerNorm(nn.Module):
    """BERT's `*Output` blocks: dense, then post-LN with the residual."""

    def __init__(self, in_features):
        super().__init__()
        self.dense = nn.Linear(in_features, HIDDEN)
        self.LayerNorm = nn.LayerNorm(HIDDEN, eps=1e-12)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class RefAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.self = RefSelfAttention()
        self.output = RefDenseLayerNorm(HIDDEN)

    def forward(self, x, attention_mask):
        return self.output(self.self(x, attention_mask), x)


class RefIntermediate(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(HIDDEN, INTERMEDIATE)

    def forward(self, x):
        return F.gelu(self.dense(x))  # exact (erf) GELU, BERT's "gelu"


class RefLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = RefAttention()
        self.intermediate = RefIntermediate()
        self.output = RefDenseLayerNorm(INTERMEDIATE)

    def forward(self, x, attention_mask):
        attended = self.attention(x, attention_mask)
        return self.output(self.intermediate(attended), attended)


class RefEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.ModuleList(RefLayer() for _ in range(NUM_LAYERS))


class RefPooler(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(HIDDEN, HIDDEN)


class RefBert(nn.Module):
    """A post-LN BERT encoder with HF BERT's parameter names; returns all hidden states (embeddings first)."""

    def __init__(self, vocab_size):
        super().__init__()
        self.embeddings = RefEmbeddings(vocab_size)
        self.encoder = RefEncoder()
        self.pooler = RefPooler()  # in the checkpoint, never used by SurgVLP

    def forward(self, input_ids, attention_mask, token_type_ids):
        hidden = self.embeddings(input_ids, token_type_ids)
        states = [hidden]
        for layer in self.encoder.layer:
            hidden = layer(hidden, attention_mask)
            states.append(hidden)
        return states


def reference_sentence_embedding(hidden_states, input_ids, id_to_token):
    """SurgVLP's `BertEncoder` with `agg_tokens=True`, `last_n_layers=4`, `aggregate_method='sum'`, as a token loop.

    Word pieces are merged into words by summing, [CLS] and [SEP] are words, the loop stops at [SEP], the words are
    zero-padded to the padded length L, averaged over the L positions per layer, and the layers are summed.
    """
    layers = torch.stack(hidden_states[-LAST_N_LAYERS:], dim=1)  # (B, layers, L, D)
    batch, num_layers, length, dim = layers.shape
    aggregated = []
    for b in range(batch):
        words, pieces = [], []
        for t in range(length):
            token = id_to_token[int(input_ids[b, t])]
            vector = layers[b, :, t]  # (layers, D)
            if token == "[SEP]":
                words.append(torch.stack(pieces).sum(dim=0))
                words.append(vector)
                break
            if token.startswith("##"):
                pieces.append(vector)
            else:
                if pieces:
                    words.append(torch.stack(pieces).sum(dim=0))
                pieces = [vector]
        padded = torch.zeros(length, num_layers, dim)
        padded[: len(words)] = torch.stack(words)
        aggregated.append(padded)
    embeddings = torch.stack(aggregated).permute(0, 2, 1, 3)  # (B, layers, L, D)
    return embeddings.mean(dim=2).sum(dim=1)


def _randomise_(module, generator):
    """Random weights everywhere, and non-trivial BatchNorm statistics and LayerNorm affine parameters."""
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.BatchNorm2d):
                sub.weight.copy_(torch.rand(sub.num_features, generator=generator) + 0.5)
                sub.bias.copy_(torch.randn(sub.num_features, generator=generator) * 0.1)
                sub.running_mean.copy_(torch.randn(sub.num_features, generator=generator) * 0.1)
                sub.running_var.copy_(torch.rand(sub.num_features, generator=generator) + 0.5)
                sub.num_batches_tracked.fill_(1234)
            elif isinstance(sub, nn.LayerNorm):
                sub.weight.copy_(torch.rand(sub.normalized_shape, generator=generator) + 0.5)
                sub.bias.copy_(torch.randn(sub.normalized_shape, generator=generator) * 0.1)
            elif isinstance(sub, (nn.Linear, nn.Conv2d)):
                fan_in = sub.weight[0].numel()
                sub.weight.copy_(torch.randn(sub.weight.shape, generator=generator) * math.sqrt(2.0 / fan_in))
                if sub.bias is not None:
                    sub.bias.copy_(torch.randn(sub.bias.shape, generator=generator) * 0.1)
            elif isinstance(sub, nn.Embedding):
                sub.weight.copy_(torch.randn(sub.weight.shape, generator=generator))


class Predecessor(nn.Module):
    """SurgVLP's algorithm wrapper: `backbone_img` and `backbone_text`, each holding its network as `.model`."""

    def __init__(self):
        super().__init__()
        self.backbone_img = RefImageEncoder()
        self.backbone_text = nn.Module()
        self.backbone_text.model = RefBert(len(VOCAB))


def predecessor_state_dict(model: Predecessor) -> dict:
    state_dict = dict(model.state_dict())
    # A persistent buffer in transformers < 4.31, hence present in the released checkpoints.
    state_dict["backbone_text.model.embeddings.position_ids"] = torch.arange(MAX_POSITIONS)[None]
    return state_dict


# -- fixtures --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("convert")


@pytest.fixture(scope="module")
def vocab_file(workdir):
    path = workdir / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n")
    return path


@pytest.fixture(scope="module")
def predecessor():
    torch.manual_seed(0)
    model = Predecessor()
    _randomise_(model, torch.Generator().manual_seed(1))
    return model.eval()


@pytest.fixture(scope="module")
def checkpoint(workdir, predecessor):
    path = workdir / "SurgVLP.pth"
    torch.save(predecessor_state_dict(predecessor), path)
    return path


@pytest.fixture(scope="module")
def converted_dir(workdir, checkpoint, vocab_file):
    output = workdir / "ophclip"
    convert_surgvlp_checkpoint(checkpoint, output, tokenizer=vocab_file, text_num_attention_heads=NUM_HEADS)
    return output


@pytest.fixture(scope="module")
def converted(converted_dir):
    return OphCLIPModel.from_pretrained(converted_dir).eval()


def _tokenizer(vocab_file):
    from transformers import BertTokenizer

    return BertTokenizer(vocab=str(vocab_file), do_lower_case=False, model_max_length=77)


# -- numerical parity ------------------------------------------------------------------------------------------------


def test_converted_config_matches_the_checkpoint_shapes(converted):
    config = converted.config
    vision, text = config.vision_config, config.text_config
    assert vision.model_type == "resnet" and vision.layer_type == "bottleneck"
    assert vision.embedding_size == BASE_WIDTH
    assert list(vision.depths) == list(RESNET_DEPTHS)
    assert list(vision.hidden_sizes) == [BASE_WIDTH * 2**i * EXPANSION for i in range(len(RESNET_DEPTHS))]
    assert (text.vocab_size, text.hidden_size, text.num_hidden_layers, text.num_attention_heads) == (
        len(VOCAB), HIDDEN, NUM_LAYERS, NUM_HEADS)
    assert (text.intermediate_size, text.max_position_embeddings, text.type_vocab_size) == (
        INTERMEDIATE, MAX_POSITIONS, 2)
    assert config.projection_dim == HIDDEN and not config.use_text_projection
    assert isinstance(converted.text_projection, nn.Identity)
    assert config.text_pooling == "surgvlp" and config.text_pooling_layers == LAST_N_LAYERS
    assert config.logit_scale_init_value == pytest.approx(math.log(10.0))
    assert converted.logit_scale.item() == pytest.approx(math.log(10.0))
    assert not config.learnable_logit_scale


def test_converter_returns_a_fixed_temperature(predecessor):
    model = convert_surgvlp_checkpoint(predecessor_state_dict(predecessor), text_num_attention_heads=NUM_HEADS)
    assert not model.training
    assert model.logit_scale.item() == pytest.approx(math.log(10.0)) and not model.logit_scale.requires_grad


def test_reloaded_temperature_stays_fixed(converted):
    assert not converted.logit_scale.requires_grad


def test_image_embeddings_match_the_original(converted, predecessor):
    frames = torch.randn(3, 3, 64, 80, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = predecessor.backbone_img(frames)
        actual = converted.get_image_features(frames).pooler_output
    assert expected.abs().mean() > 0.1  # a meaningful signal, not a vanishing one
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("padding", [{"padding": "longest"}, {"padding": "max_length", "max_length": 32}])
def test_text_embeddings_match_the_original(converted, predecessor, vocab_file, padding):
    tokenizer = _tokenizer(vocab_file)
    batch = tokenizer(TEXTS, truncation=True, return_tensors="pt", **padding)
    tokens = [tokenizer.convert_ids_to_tokens(ids) for ids in batch["input_ids"]]
    assert any(t.startswith("##") for row in tokens for t in row)  # word pieces are merged by the original
    lengths = batch["attention_mask"].sum(dim=1)
    assert len(set(lengths.tolist())) == len(TEXTS)  # different lengths, hence padding
    with torch.no_grad():
        states = predecessor.backbone_text.model(
            batch["input_ids"], batch["attention_mask"], torch.zeros_like(batch["input_ids"]))
        expected = reference_sentence_embedding(states, batch["input_ids"], VOCAB)
        actual = converted.get_text_features(batch["input_ids"], batch["attention_mask"]).pooler_output
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=RTOL)


def test_saved_folder_carries_remote_code_and_processor(converted_dir):
    for name in ("config.json", "configuration_ophclip.py", "modeling_ophclip.py", "model.safetensors"):
        assert (converted_dir / name).is_file(), name
    auto_map = json.loads((converted_dir / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"] == "modeling_ophclip.OphCLIPModel"
    assert not [p.name for p in converted_dir.parent.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_converted_folder_loads_as_remote_code_without_the_project(tmp_path, converted_dir, predecessor):
    frames = torch.randn(2, 3, 64, 80, generator=torch.Generator().manual_seed(3))
    torch.save(frames, tmp_path / "frames.pt")
    with torch.no_grad():
        torch.save(predecessor.backbone_img(frames), tmp_path / "expected.pt")
    script = f"""
import torch
from transformers import AutoModel
model = AutoModel.from_pretrained({str(converted_dir)!r}, trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
with torch.no_grad():
    actual = model.get_image_features(torch.load("frames.pt")).pooler_output
torch.testing.assert_close(actual, torch.load("expected.pt"), atol={ATOL}, rtol={RTOL})
print("CONVERTED-REMOTE-OK")
"""
    assert "CONVERTED-REMOTE-OK" in run_without_project(script, cwd=tmp_path).stdout


def test_processor_preprocesses_like_the_predecessors(converted_dir, vocab_file):
    processor = OphCLIPProcessor.from_pretrained(converted_dir)
    video = processor.video_processor
    assert video.size == {"height": 360, "width": 640}
    assert video.crop_size == {"height": 224, "width": 224}
    assert video.num_frames == 8
    assert video.image_mean == pytest.approx([0.485, 0.456, 0.406])
    assert video.image_std == pytest.approx([0.229, 0.224, 0.225])
    assert processor.tokenizer.model_max_length == 77
    # lowercased like the predecessors' AutoTokenizer on Bio_ClinicalBERT (no tokenizer_config.json there)
    assert processor.tokenizer.tokenize("The IOL") == ["the", "[UNK]"]
    lowercasing = BertTokenizer(vocab=str(vocab_file), do_lower_case=True)
    expected = lowercasing(TEXTS, padding=True, return_tensors="pt")["input_ids"]
    torch.testing.assert_close(processor(text=TEXTS)["input_ids"], expected)


# -- checkpoint formats ----------------------------------------------------------------------------------------------


def test_training_checkpoint_with_ddp_prefix_converts(workdir, predecessor, converted):
    training = {
        "epoch": 7,
        "state_dict": {"module." + k: v for k, v in predecessor_state_dict(predecessor).items()},
        "optimizer": {"state": {}, "param_groups": [{"lr": 8e-5}]},
    }
    path = workdir / "epoch0007.pth.tar"
    torch.save(training, path)
    model = convert_surgvlp_checkpoint(path, text_num_attention_heads=NUM_HEADS)
    expected = converted.state_dict()
    actual = model.state_dict()
    assert actual.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], atol=0, rtol=0, msg=key)


def test_in_memory_state_dict_converts_without_writing(predecessor, converted):
    model = convert_surgvlp_checkpoint(predecessor_state_dict(predecessor), text_num_attention_heads=NUM_HEADS)
    torch.testing.assert_close(model.visual_projection.weight, converted.visual_projection.weight)


def test_missing_and_unexpected_keys_are_listed_and_nothing_is_written(tmp_path, predecessor):
    state_dict = predecessor_state_dict(predecessor)
    del state_dict["backbone_img.model.layer2.1.bn2.running_var"]
    state_dict["backbone_img.model.fc.weight"] = torch.zeros(10, 256)
    path = tmp_path / "broken.pth"
    torch.save(state_dict, path)
    output = tmp_path / "out"
    with pytest.raises(ValueError) as error:
        convert_surgvlp_checkpoint(path, output, text_num_attention_heads=NUM_HEADS)
    message = str(error.value)
    assert "1 key(s) missing from the checkpoint: backbone_img.model.layer2.1.bn2.running_var" in message
    assert "1 key(s) not in the model: backbone_img.model.fc.weight" in message
    assert not output.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.pth"]


def test_shape_mismatch_is_reported(predecessor):
    state_dict = predecessor_state_dict(predecessor)
    state_dict["backbone_text.model.encoder.layer.2.output.dense.bias"] = torch.zeros(HIDDEN + 1)
    with pytest.raises(ValueError, match=rf"1 key\(s\) of another shape: backbone_text\.model\.encoder\.layer\.2\.output"
                                         rf"\.dense\.bias \(checkpoint \[{HIDDEN + 1}\], the model \[{HIDDEN}\]\)"):
        convert_surgvlp_checkpoint(state_dict, text_num_attention_heads=NUM_HEADS)


@pytest.mark.parametrize(
    "payload, expected",
    [
        ([1, 2, 3], r"holds a list; expected a SurgVLP/HecVL/PeskaVLP state_dict"),
        ({"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.bias": torch.zeros(3)}, r"expected keys starting with 'backbone_img\.'"),
        ({"backbone_img.model.conv1.weight": torch.zeros(1), "backbone_text.model.x": "text"}, r"not a dict of tensors"),
    ],
    ids=["list", "no-prefixes", "non-tensor"],
)
def test_unknown_formats_are_rejected(tmp_path, payload, expected):
    path = tmp_path / "unknown.pth"
    torch.save(payload, path)
    output = tmp_path / "out"
    with pytest.raises(ValueError, match=expected):
        convert_surgvlp_checkpoint(path, output)
    assert not output.exists()


def test_not_a_torch_file_is_rejected(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="could not read .* torch.load"):
        convert_surgvlp_checkpoint(path)


def test_attention_heads_must_divide_the_width(predecessor):
    with pytest.raises(ValueError, match="text_num_attention_heads=3"):
        convert_surgvlp_checkpoint(predecessor_state_dict(predecessor), text_num_attention_heads=3)


# -- command line ----------------------------------------------------------------------------------------------------


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("ophclip-convert: error: ")
    return err


def test_cli_bad_checkpoint_exits_1_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    torch.save({"weight": torch.zeros(2)}, bad)
    output = tmp_path / "out"
    assert main(["--checkpoint", str(bad), "--output", str(output)]) == 1
    assert "backbone_img." in _one_line_error(capsys)
    assert not output.exists()
    assert main(["--checkpoint", str(tmp_path / "missing.pth"), "--output", str(output)]) == 1
    assert "does not exist" in _one_line_error(capsys)
    assert not output.exists()


def test_cli_writes_and_refuses_to_overwrite(tmp_path, checkpoint, vocab_file, capsys):
    output = tmp_path / "nested" / "ophclip"
    args = ["--checkpoint", str(checkpoint), "--output", str(output), "--text-num-attention-heads", str(NUM_HEADS)]
    assert main(args) == 0
    assert (output / "config.json").is_file() and (output / "modeling_ophclip.py").is_file()
    assert not (output / "processor_config.json").exists()
    capsys.readouterr()

    marker = output / "keep.txt"
    marker.write_text("user data")
    assert main(args + ["--tokenizer", str(vocab_file)]) == 1
    assert "--overwrite" in _one_line_error(capsys)
    assert marker.read_text() == "user data"

    assert main(args + ["--tokenizer", str(vocab_file), "--overwrite"]) == 0
    assert not marker.exists()
    processor = OphCLIPProcessor.from_pretrained(output)
    assert processor.video_processor.size == {"height": 360, "width": 640}
    assert OphCLIPModel.from_pretrained(output).config.text_config.num_attention_heads == NUM_HEADS
    assert sorted(p.name for p in output.parent.iterdir()) == ["ophclip"]


def test_cli_accepts_an_existing_empty_output_dir(tmp_path, checkpoint):
    output = tmp_path / "empty"
    output.mkdir()
    assert main(["--checkpoint", str(checkpoint), "--output", str(output),
                 "--text-num-attention-heads", str(NUM_HEADS)]) == 0
    assert (output / "model.safetensors").is_file()


def test_cli_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--checkpoint", "--output", "--tokenizer", "--text-num-attention-heads", "--overwrite",
                   "--do-lower-case"):
        assert option in help_text


def test_cli_checkpoint_with_nan_weights_names_the_tensors(tmp_path, predecessor, capsys):
    """D13 (issue 15): NaN weights were refused as `RuntimeError: the saved folder does not reload` (the reload check
    compares with torch.equal, and NaN != NaN). The error says the checkpoint holds non-finite values, naming the
    tensors, and nothing is written."""
    state_dict = predecessor_state_dict(predecessor)
    state_dict["backbone_img.model.conv1.weight"][0, 0, 0, :2] = float("nan")
    state_dict["backbone_text.model.encoder.layer.1.output.dense.bias"][3] = float("inf")
    path = tmp_path / "diverged.pth"
    torch.save(state_dict, path)
    output = tmp_path / "out"
    assert main(["--checkpoint", str(path), "--output", str(output),
                 "--text-num-attention-heads", str(NUM_HEADS)]) == 1
    err = _one_line_error(capsys)
    assert "does not reload" not in err and "non-finite values (NaN or infinity) in 2 tensor(s)" in err
    assert "backbone_img.model.conv1.weight (2 of " in err and str(path) in err
    assert "backbone_text.model.encoder.layer.1.output.dense.bias (1 of 64 values)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["diverged.pth"]  # no output, no staging folder left

    many = {key: (value.float() * float("nan") if value.is_floating_point() else value)
            for key, value in predecessor_state_dict(predecessor).items()}
    with pytest.raises(ValueError, match=r"the checkpoint holds non-finite values .*, \.\.\. and \d+ more; expected"):
        convert_surgvlp_checkpoint(many, text_num_attention_heads=NUM_HEADS)


# -- the key renaming table -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", KEY_RULES, ids=lambda rule: rule.source.template)
def test_each_key_rule_round_trips(rule):
    """Each rule of the one table renames a SurgVLP key to its OphCLIP key and back to itself, and no other rule
    claims either key (so the table read forwards and backwards is one bijection)."""
    values = {name: "running_mean" if name == "rest" else 2 for name in rule.source.offsets}
    source, target = rule.source.format(values), rule.target.format(values)
    assert source_key_to_target(source) == target
    assert target_key_to_source(target) == source
    assert [r for r in KEY_RULES if r.source.match(source) is not None] == [rule]
    assert [r for r in KEY_RULES if r.target.match(target) is not None] == [rule]


def test_key_rules_count_torchvision_layers_from_one():
    assert source_key_to_target("backbone_img.model.layer1.0.conv3.weight") == (
        "vision_model.encoder.stages.0.layers.0.layer.2.convolution.weight")
    assert target_key_to_source("vision_model.encoder.stages.3.layers.2.shortcut.normalization.bias") == (
        "backbone_img.model.layer4.2.downsample.1.bias")
    # torchvision has no layer0 / conv0 / bn0: such keys are unknown, not renamed to index -1.
    for key in ("backbone_img.model.layer0.0.conv1.weight", "backbone_img.model.layer1.0.bn0.weight",
                "backbone_img.model.fc.weight"):
        assert source_key_to_target(key) is None
    assert source_key_to_target("backbone_text.model.embeddings.position_ids") == ""  # dropped on purpose
    assert target_key_to_source("logit_scale") == "logit_scale"  # the predecessors store none


def test_every_key_of_a_real_conversion_round_trips(predecessor, converted):
    renamed = set()
    for source in predecessor_state_dict(predecessor):
        target = source_key_to_target(source)
        if target:
            assert target_key_to_source(target) == source
            renamed.add(target)
    assert renamed >= set(converted.state_dict()) - {"logit_scale"}
    for target in converted.state_dict():
        assert source_key_to_target(target_key_to_source(target)) == target or target == "logit_scale"
