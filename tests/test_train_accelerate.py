"""Tests of `train_accelerate.py`: OphCLIP pretraining with Accelerate on OphVL-mini (tiny), one and two processes.

Every run uses the tiny ResNet + BERT config of `ophclip_testing`, 32-px frames, 2 frames per video and batches of
4 clips / 2 videos per process, so a step takes a fraction of a second on two cores. Runs that must be killed or
need two processes are subprocesses; the others run in-process through `train_accelerate.main`.
"""

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ophclip_testing import OphCLIPModelTester, tiny_tokenizer


REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "train_accelerate.py"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from datasets_ophvl import generate_ophvl_mini

    root = tmp_path_factory.mktemp("train")
    generate_ophvl_mini(root / "ophvl", size="tiny", progress=False)
    OphCLIPModelTester().get_config().to_json_file(root / "tiny_config.json")
    tiny_tokenizer().save_pretrained(root / "tokenizer")
    return root


def base_args(assets, output_dir, *extra) -> list[str]:
    return [
        "--data_path", str(assets / "ophvl"),
        "--model_config", str(assets / "tiny_config.json"),
        "--tokenizer_name_or_path", str(assets / "tokenizer"),
        "--image_size", "32", "--num_frames", "2",
        "--clip_batch_size", "4", "--video_batch_size", "2", "--bank_batch_size", "4",
        "--schedule", "cv", "--retrieval_k", "2", "--bank_refresh_rows_per_step", "2",
        "--learning_rate", "1e-3", "--warmup_steps", "1", "--seed", "0",
        "--logging_steps", "1", "--save_steps", "0", "--report_to", "jsonl",
        "--output_dir", str(output_dir),
        *extra,
    ]


@contextlib.contextmanager
def accelerate_state_reset():
    """Leave accelerate's process-wide state as it was found, whatever the block does with it."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    try:
        yield
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
        PartialState._reset_state()


def train_in_process(args) -> dict:
    """`train_accelerate.main(args)` in this process, leaving accelerate's process-wide state as it found it."""
    import train_accelerate

    with accelerate_state_reset():
        return train_accelerate.main(args)


def subprocess_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    env["TOKENIZERS_PARALLELISM"] = "false"
    return env


def train_subprocess(args, timeout=240):
    result = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO_ROOT, env=subprocess_env(),
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def metrics_of(output_dir) -> list[dict]:
    from ophclip_train.tracking import read_metrics

    return read_metrics(Path(output_dir) / "logs" / "pretrain" / "metrics.jsonl")


def weights(folder) -> dict:
    return load_file(str(Path(folder) / "model.safetensors"))


def assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:5]}"


# -- configuration ------------------------------------------------------------------------------------------------


def test_schedule_parsing():
    from ophclip_train.config import parse_schedule

    assert parse_schedule("clip:3,video:1") == ["clip"] * 3 + ["video"]
    assert parse_schedule("cccv") == ["clip"] * 3 + ["video"]
    assert parse_schedule("video:1, clip:2") == ["video", "clip", "clip"]
    assert parse_schedule("clip") == ["clip"]
    for bad in ("", "cxv", "clip:x", "audio:1", "clip:0"):
        with pytest.raises(ValueError):
            parse_schedule(bad)


def test_yaml_config_and_command_line_overrides(tmp_path):
    from ophclip_train.config import parse_config

    config_file = tmp_path / "run.yaml"
    config_file.write_text("data_path: somewhere\nmodel_config: tiny\nmax_steps: 7\nretrieval: false\n"
                           "clip_batch_size: 6\n")
    config = parse_config(["--config", str(config_file), "--max_steps", "9", "--gradient_accumulation_steps", "2"])
    assert config.training.max_steps == 9  # the command line wins
    assert config.objectives.retrieval is False and config.data.clip_batch_size == 6  # the file's values
    assert config.data.video_batch_size == 8  # a default
    assert config.to_dict()["max_steps"] == 9

    config_file.write_text("data_path: somewhere\nmodel_config: tiny\nclip_batchsize: 6\n")
    with pytest.raises(ValueError, match="unknown option"):
        parse_config(["--config", str(config_file)])
    with pytest.raises(ValueError, match="divisible"):
        parse_config(["--data_path", "x", "--model_config", "tiny", "--clip_batch_size", "5",
                      "--gradient_accumulation_steps", "2"])
    with pytest.raises(ValueError, match="model_name_or_path"):
        parse_config(["--data_path", "x"])


def test_example_config_parses():
    from ophclip_train.config import parse_config

    config = parse_config(["--config", str(REPO_ROOT / "configs" / "pretrain_mini.yaml")])
    assert config.data.data_path and config.training.max_steps > 0
    assert config.objectives.pattern()


def test_weight_decay_groups():
    from modeling_ophclip import OphCLIPModel
    from ophclip_train.modeling import OphCLIPPretrainingModule, parameter_groups
    from ophclip_train.objectives import SimSiamHead

    config = OphCLIPModelTester().get_config(learnable_logit_scale=True)
    module = OphCLIPPretrainingModule(OphCLIPModel(config), SimSiamHead(config.projection_dim, 8))
    decay, no_decay = parameter_groups(module, 0.1)
    names = {id(p): n for n, p in module.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert all(p.ndim >= 2 for p in decay["params"]) and decay["weight_decay"] == 0.1
    assert no_decay["weight_decay"] == 0.0
    assert "model.logit_scale" not in decayed
    assert not any("bias" in n or "LayerNorm" in n or "normalization" in n for n in decayed)
    assert "model.visual_projection.weight" in decayed
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(module.parameters()))


def test_model_from_pretrained_towers_and_from_a_checkpoint(tmp_path):
    """`--vision_model_name_or_path` / `--text_model_name_or_path` load the towers' weights into a new model;
    `--model_name_or_path` continues from an OphCLIP checkpoint with its processor."""
    from transformers import BertModel, ResNetModel

    from ophclip_train.config import DataArguments, ModelArguments
    from ophclip_train.modeling import build_model_and_processor

    tester = OphCLIPModelTester()
    vision, text = ResNetModel(tester.vision_config()), BertModel(tester.text_config(), add_pooling_layer=False)
    vision.save_pretrained(tmp_path / "vision")
    text.save_pretrained(tmp_path / "text")
    tiny_tokenizer().save_pretrained(tmp_path / "text")
    model, processor = build_model_and_processor(
        ModelArguments(model_config="tiny", vision_model_name_or_path=str(tmp_path / "vision"),
                       text_model_name_or_path=str(tmp_path / "text"), projection_dim=16, image_size=32),
        DataArguments(num_frames=3))
    assert_same_tensors(model.vision_model.state_dict(), vision.state_dict())
    assert_same_tensors(model.text_model.state_dict(), text.state_dict())
    assert model.config.projection_dim == 16 and model.config.use_text_projection  # BERT width 32 != 16
    assert processor.tokenizer.vocab_size == len(tiny_tokenizer())
    assert processor.video_processor.num_frames == 3 and processor.video_processor.crop_size["height"] == 32

    model.save_pretrained(tmp_path / "checkpoint")
    processor.save_pretrained(tmp_path / "checkpoint")
    again, processor2 = build_model_and_processor(
        ModelArguments(model_name_or_path=str(tmp_path / "checkpoint"), learnable_logit_scale=True),
        DataArguments(num_frames=2))
    assert_same_tensors(again.state_dict(), model.state_dict())
    assert isinstance(again.logit_scale, torch.nn.Parameter) and again.config.learnable_logit_scale
    assert processor2.video_processor.num_frames == 2 and processor2.video_processor.crop_size["height"] == 32


def test_video_augment_is_seeded_and_keeps_shape():
    from ophclip_train.modeling import VideoAugment

    augment = VideoAugment([0.5] * 3, [0.25] * 3, crop_scale=0.5, color_jitter=0.4)
    videos = torch.randn(2, 3, 3, 16, 16)
    first = augment(videos, torch.Generator().manual_seed(1))
    again = augment(videos, torch.Generator().manual_seed(1))
    other = augment(videos, torch.Generator().manual_seed(2))
    assert first.shape == videos.shape and torch.equal(first, again) and not torch.equal(first, other)


# -- training runs --------------------------------------------------------------------------------------------------


def test_end_to_end_single_process(assets, tmp_path):
    """Both levels, retrieval and bank refresh, periodic zero-shot evaluation; `final/` loads as remote code."""
    from transformers import AutoModel, AutoProcessor

    out = tmp_path / "run"
    summary = train_in_process(base_args(assets, out, "--max_steps", "4", "--eval_steps", "4",
                                         "--eval_data", str(assets / "ophvl" / "benchmark")))
    assert summary["global_step"] == 4
    records = metrics_of(out)
    steps = [r for r in records if "level" in r]
    assert [r["level"] for r in steps] == ["clip", "video", "clip", "video"]
    clip, video = steps[0], steps[1]
    for record, keys in ((clip, ["clip/clip_contrastive_loss", "clip/loss", "clips_per_second"]),
                         (video, ["video/video_contrastive_loss", "video/retrieval_loss", "video/loss",
                                  "videos_per_second"])):
        for key in keys:
            assert key in record and math.isfinite(record[key]), (key, record)
        assert record["bank/refreshed_rows"] == 2
    assert video["video/loss"] == pytest.approx(video["video/video_contrastive_loss"]
                                                + 0.5 * video["video/retrieval_loss"], rel=1e-5)
    from ophclip_train.evaluation import protocols_available

    if protocols_available():
        assert any("eval/accuracy" in r for r in records), records[-1]

    final = out / "final"
    for name in ("config.json", "model.safetensors", "modeling_ophclip.py", "processor_config.json"):
        assert (final / name).is_file(), name
    model = AutoModel.from_pretrained(final, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(final, trust_remote_code=True)
    assert type(model).__name__ == "OphCLIPModel"
    assert processor.video_processor.num_frames == 2 and processor.video_processor.crop_size["height"] == 32
    reloaded = model.state_dict()
    assert_same_tensors({k: v for k, v in weights(final).items()}, {k: reloaded[k] for k in weights(final)})
    assert json.loads((out / "pretraining_config.json").read_text())["max_steps"] == 4
    # One weights hash: what training reports is what an evaluation record (and so the leaderboard) shows.
    from evaluate_suite.models import OphCLIPEncoder

    assert summary["weights_hash"] == OphCLIPEncoder.from_pretrained(final, device="cpu").weights_hash


def without(args: list[str], *options: str) -> list[str]:
    """`args` less the given options and their values."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in options:
            skip = True
        else:
            kept.append(arg)
    return kept


def test_retrieval_ablation_from_a_checkpoint(assets, tmp_path):
    """`--retrieval false` (no bank, no retrieval term), continuing from an OphCLIP checkpoint and its processor."""
    from modeling_ophclip import OphCLIPModel

    from ophclip_testing import tiny_processor

    OphCLIPModel(OphCLIPModelTester().get_config()).save_pretrained(tmp_path / "checkpoint")
    tiny_processor(size=32).save_pretrained(tmp_path / "checkpoint")
    out = tmp_path / "run"
    args = without(base_args(assets, out, "--max_steps", "2", "--retrieval", "false", "--save_steps", "2"),
                   "--model_config", "--tokenizer_name_or_path", "--image_size")
    train_in_process(["--model_name_or_path", str(tmp_path / "checkpoint"), *args])
    video = [r for r in metrics_of(out) if r.get("level") == "video"]
    assert video and "video/retrieval_loss" not in video[0] and "bank/refreshed_rows" not in video[0]
    assert video[0]["video/loss"] == video[0]["video/video_contrastive_loss"]
    checkpoint = out / "checkpoints" / "step-2"
    assert checkpoint.is_dir() and not (checkpoint / "bank").exists()


def ophvl_copy(assets, folder, *subsets) -> Path:
    """A copy of OphVL-mini under `folder` holding only the shards of `subsets` (a few hundred kB)."""
    import shutil

    for subset in subsets:
        shutil.copytree(assets / "ophvl" / "data" / subset, folder / "data" / subset)
    return folder


def with_data(args: list[str], data_path) -> list[str]:
    return ["--data_path", str(data_path), *without(args, "--data_path")]


def test_missing_data_is_an_error_before_anything_is_built(assets, tmp_path):
    """A --data_path that does not exist, or lacks the shards of a subset the run needs, fails at once with the path,
    the subset and why it is needed; nothing is built or written."""
    out = tmp_path / "run"
    args = base_args(assets, out, "--max_steps", "2")
    with pytest.raises(FileNotFoundError, match=r"--data_path .*nowhere does not exist"):
        train_in_process(with_data(args, tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no OphVL shards for subset 'clips' under .*empty/data/clips/ "
                                                r"\(expected train-\*\.tar\); the schedule has clip steps"):
        train_in_process(with_data(args, tmp_path / "empty"))
    no_videos = ophvl_copy(assets, tmp_path / "no_videos", "clips", "silent")
    with pytest.raises(FileNotFoundError, match=r"subset 'videos' under .*no_videos/data/videos/ .*video steps"):
        train_in_process(with_data(args, no_videos))
    no_silent = ophvl_copy(assets, tmp_path / "no_silent", "clips", "videos")
    with pytest.raises(FileNotFoundError, match=r"subset 'silent' under .*no_silent/data/silent/ .*retrieval is on"):
        train_in_process(with_data(args, no_silent))
    assert not out.exists()
    # Without retrieval the silent videos are not needed.
    summary = train_in_process(with_data(base_args(assets, out, "--max_steps", "1", "--no_retrieval"), no_silent))
    assert summary["global_step"] == 1


def test_settings_that_do_not_fit_the_data_are_one_error_listing_every_problem(assets, tmp_path):
    """Batch sizes larger than a process's share of the samples, a video batch without negatives and a K larger than
    the silent videos are found before anything is built, all in one line, without a traceback."""
    args = base_args(assets, tmp_path / "run", "--max_steps", "2", "--clip_batch_size", "64", "--video_batch_size",
                     "1", "--retrieval_k", "9")
    result = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO_ROOT, env=subprocess_env(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr[-4000:]
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: the data under ") and "does not fit this run's settings" in line
    for expected in ("fewer than --clip_batch_size 64", "a global video batch of 1 has no negatives",
                     "fewer than --retrieval_k 9"):
        assert expected in line, line
    assert not (tmp_path / "run" / "final").exists()


def test_unreadable_shards_are_an_error_but_a_bad_shard_is_skipped(assets, tmp_path):
    """Shards that are all garbage, or whose every video is undecodable, are an error before the first step; one
    garbage shard among good ones stays a counted skip."""
    import io
    import tarfile

    from datasets_ophvl import skip_counts

    out = tmp_path / "run"
    args = base_args(assets, out, "--max_steps", "2")
    garbage = ophvl_copy(assets, tmp_path / "garbage", "clips", "videos", "silent")
    for shard in (garbage / "data" / "videos").glob("*.tar"):
        shard.write_bytes(b"not a tar file " * 64)
    with pytest.raises(ValueError, match=r"no readable OphVL sample in subset 'videos' under .*garbage/data/videos/: "
                                         r"its 4 shard\(s\) were read .*unreadable_shard: 4.*video steps"):
        train_in_process(with_data(args, garbage))

    undecodable = ophvl_copy(assets, tmp_path / "undecodable", "clips", "videos", "silent")
    for shard in (undecodable / "data" / "silent").glob("*.tar"):
        with tarfile.open(shard) as tar:
            members = [(m.name, tar.extractfile(m).read()) for m in tar]
        with tarfile.open(shard, "w") as tar:
            for name, data in members:
                data = b"not an mp4 " * 16 if name.endswith(".mp4") else data
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match=r"subset 'silent' .*undecodable_video: \d+.*retrieval is on"):
        train_in_process(with_data(args, undecodable))
    assert not out.exists()

    one_bad = ophvl_copy(assets, tmp_path / "one_bad", "clips", "videos", "silent")
    sorted((one_bad / "data" / "clips").glob("*.tar"))[0].write_bytes(b"not a tar file " * 64)
    skip_counts.reset()
    # Five clip steps of 4 outlast the first epoch (the 19 clips of the good shards), so the bad shard was read.
    clip_only = with_data(base_args(assets, out, "--max_steps", "5", "--schedule", "c", "--no_retrieval"), one_bad)
    assert train_in_process(clip_only)["global_step"] == 5
    assert skip_counts["unreadable_shard"] >= 1  # the stream's skip (the check counts privately)


def test_resume_from_another_model_or_an_incomplete_checkpoint_is_an_error(assets, tmp_path):
    """A checkpoint of another model (projection size, a SimSiam head), a checkpoint without its optimiser, one past
    --max_steps, or one of another launch (DDP names) is refused with a message naming it, before any step; nothing
    is trained or written."""
    import shutil

    first = tmp_path / "first"
    train_in_process(base_args(assets, first, "--max_steps", "2", "--save_steps", "2", "--no_retrieval"))
    checkpoint = first / "checkpoints" / "step-2"
    out = tmp_path / "resumed"
    args = base_args(assets, out, "--max_steps", "4", "--no_retrieval", "--resume", str(checkpoint))
    with pytest.raises(ValueError, match=r"the checkpoint .*step-2 was written for a different model: 3 parameter\(s\) "
                                         r"of another shape: model\.text_projection\.weight \(checkpoint \[16, 32\], "
                                         r"this model \[8, 32\]\).*pretraining_config\.json"):
        train_in_process([*args, "--projection_dim", "8"])
    with pytest.raises(ValueError, match=r"missing from the checkpoint: simsiam_head\."):
        train_in_process([*args, "--simsiam_weight", "0.5", "--simsiam_hidden_dim", "8"])
    incomplete = tmp_path / "incomplete" / "step-2"
    shutil.copytree(checkpoint, incomplete)
    (incomplete / "optimizer.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"the checkpoint .*incomplete/step-2 is incomplete: it lacks "
                                                r"optimizer\.bin"):
        train_in_process([*without(args, "--resume"), "--resume", str(incomplete)])
    with pytest.raises(ValueError, match=r"step-2 is at step 2, past --max_steps 1"):
        train_in_process([*without(args, "--max_steps"), "--max_steps", "1"])
    # The weights of a checkpoint saved by several processes carry DDP's `module.` prefix: a different launch, said so.
    from safetensors.torch import save_file

    distributed = tmp_path / "distributed" / "step-2"
    shutil.copytree(checkpoint, distributed)
    save_file({f"module.{name}": tensor for name, tensor in weights(distributed).items()},
              str(distributed / "model.safetensors"))
    with pytest.raises(ValueError, match=r"fits this model but was saved by several processes \(DDP\) and this run "
                                         r"is a single process"):
        train_in_process([*without(args, "--resume"), "--resume", str(distributed)])
    assert not (out / "final").exists() and not (out / "logs" / "pretrain" / "metrics.jsonl").exists()


def test_accumulation_simsiam_bf16_checkpointing(assets, tmp_path):
    """Feature-cached gradient accumulation with the SimSiam term, a learnable temperature, bf16 autocast and
    activation checkpointing in one short run."""
    out = tmp_path / "run"
    train_in_process(base_args(assets, out, "--max_steps", "2", "--gradient_accumulation_steps", "2",
                               "--simsiam_weight", "0.5", "--simsiam_hidden_dim", "16",
                               "--learnable_logit_scale", "true", "--mixed_precision", "bf16",
                               "--activation_checkpointing", "--bank_full_refresh_every", "1"))
    clip = [r for r in metrics_of(out) if r.get("level") == "clip"][0]
    assert math.isfinite(clip["clip/simsiam_loss"]) and -1.0 <= clip["clip/simsiam_loss"] <= 1.0
    assert clip["clip/loss"] == pytest.approx(clip["clip/clip_contrastive_loss"] + 0.5 * clip["clip/simsiam_loss"],
                                              rel=1e-4)
    video = [r for r in metrics_of(out) if r.get("level") == "video"][0]
    assert video["bank/refreshed_rows"] == 4  # the whole bank, every step
    saved = weights(out / "final")
    assert saved["logit_scale"].item() <= math.log(100.0)
    assert json.loads((out / "final" / "config.json").read_text())["learnable_logit_scale"] is True


def test_two_processes_agree(assets, tmp_path):
    """Two CPU processes (gloo), with feature-cached gradient accumulation: identical weights and banks at the end,
    and the loss of the first global batch equals the single-process loss on the same batch."""
    from modeling_ophclip import OphCLIPModel
    from ophclip_train.objectives import clip_level_loss

    out, debug = tmp_path / "run", tmp_path / "debug"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(29500 + os.getpid() % 1000), str(SCRIPT),
               *base_args(assets, out, "--max_steps", "3", "--debug_dir", str(debug),
                         "--gradient_accumulation_steps", "2")]
    result = subprocess.run(command, cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stderr[-4000:]

    finals = [json.loads((debug / f"rank{r}_final.json").read_text()) for r in range(2)]
    assert finals[0]["state_dict_sha256"] == finals[1]["state_dict_sha256"]
    assert finals[0]["bank_sha256"] == finals[1]["bank_sha256"] and finals[0]["bank_sha256"]

    dumps = [torch.load(debug / f"rank{r}_first_step.pt") for r in range(2)]
    assert [d["world_size"] for d in dumps] == [2, 2] and dumps[0]["level"] == "clip"
    assert not torch.equal(dumps[0]["inputs"]["pixel_values_videos"], dumps[1]["inputs"]["pixel_values_videos"])
    # Recompute each process's embeddings in this single process: BatchNorm in training mode normalises over each
    # micro-batch (2 of the 4 clips), as the first (cached) pass of the accumulation did.
    model = OphCLIPModel.from_pretrained(debug / "initial_model").train()
    texts, videos = [], []
    with torch.no_grad():
        for dump in dumps:
            inputs = dump["inputs"]
            for half in range(2):
                part = {k: v.chunk(2)[half] for k, v in inputs.items()}
                text = model.get_text_features(part["input_ids"], part["attention_mask"],
                                               part.get("token_type_ids")).pooler_output
                video = model.get_video_features(part["pixel_values_videos"], part["frame_mask"]).pooler_output
                texts.append(torch.nn.functional.normalize(text, dim=-1))
                videos.append(torch.nn.functional.normalize(video, dim=-1))
            torch.testing.assert_close(torch.cat(texts[-2:]), dump["text_embeds"], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(torch.cat(videos[-2:]), dump["video_embeds"], atol=1e-5, rtol=1e-4)
        single = clip_level_loss(torch.cat(texts), torch.cat(videos), model.logit_scale)["loss"].item()
    for dump in dumps:  # every process computed the loss of the whole global batch
        assert dump["losses"]["loss"] == pytest.approx(single, abs=1e-5)
    logged = [r for r in metrics_of(out) if "level" in r][0]
    assert logged["clip/loss"] == pytest.approx(single, abs=1e-5)


HOOKED_RUN = """
import os, runpy, signal, sys
from ophclip_train import trainer

when, what = sys.argv[1], getattr(signal, sys.argv[2])  # e.g. save:4 SIGKILL, step:2 SIGTERM
hook, at = when.split(":")
if hook == "save":  # after the checkpoint of step `at` is complete
    original = trainer.Pretrainer._save
    def hooked(self, step):
        original(self, step)
        if step == int(at):
            os.kill(os.getpid(), what)
    trainer.Pretrainer._save = hooked
else:  # after training step `at` (1-based) and its logging
    original = trainer.Pretrainer.run_step
    def hooked(self, step):
        metrics = original(self, step)
        if step + 1 == int(at):
            os.kill(os.getpid(), what)
        return metrics
    trainer.Pretrainer.run_step = hooked
sys.argv = [sys.argv[3], *sys.argv[4:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_with_signal(tmp_path, when: str, signal_name: str, args, timeout=600) -> subprocess.CompletedProcess:
    """Train in a child process that sends itself `signal_name` at a hook (`save:N`: right after the step-N
    checkpoint is saved; `step:N`: right after step N), so the interruption point does not depend on speed."""
    hook = tmp_path / "hooked_run.py"
    hook.write_text(HOOKED_RUN)
    return subprocess.run([sys.executable, str(hook), when, signal_name, str(SCRIPT), *args], cwd=REPO_ROOT,
                          env=subprocess_env(), capture_output=True, text=True, timeout=timeout)


def test_kill_and_resume_gives_the_same_weights(assets, tmp_path):
    """A run killed (SIGKILL) right after its step-4 checkpoint and resumed with `--resume latest` ends with exactly
    the weights and bank of an uninterrupted run; only the newest `save_total_limit` checkpoints are kept."""
    common = ("--max_steps", "6", "--save_steps", "2", "--save_total_limit", "2")
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    train_subprocess(base_args(assets, straight, *common))

    killed = run_with_signal(tmp_path, "save:4", "SIGKILL", base_args(assets, interrupted, *common))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-4000:]
    assert not (interrupted / "final").exists()
    assert sorted(p.name for p in (interrupted / "checkpoints").iterdir() if not p.name.startswith(".")) == [
        "step-2", "step-4"]

    train_subprocess(base_args(assets, interrupted, *common, "--resume", "latest"))
    assert_same_tensors(weights(straight / "final"), weights(interrupted / "final"))
    for run in (straight, interrupted):
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-4", "step-6"]
    from datasets_ophvl import SilentVideoBank

    banks = [SilentVideoBank.load(run / "checkpoints" / "step-6" / "bank") for run in (straight, interrupted)]
    assert torch.equal(banks[0].embeddings, banks[1].embeddings)
    resumed_steps = [r["step"] for r in metrics_of(interrupted) if "level" in r]
    assert resumed_steps[-2:] == [5, 6]


def test_sigterm_saves_a_checkpoint_and_the_run_resumes(assets, tmp_path):
    """SIGTERM (a scheduler's stop) ends the run after the current step with a checkpoint of that step, no final
    folder and exit status 143 (not a success); `--resume latest` then finishes the run."""
    out = tmp_path / "stopped"
    stopped = run_with_signal(tmp_path, "step:2", "SIGTERM", base_args(assets, out, "--max_steps", "6"))
    assert stopped.returncode == 143, stopped.stderr[-4000:]
    assert "stopped by SIGTERM" in stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1] == "stopped after step 2; resume with --resume latest"
    saved = [p.name for p in (out / "checkpoints").iterdir() if not p.name.startswith(".")]
    assert saved == ["step-2"]
    assert not (out / "final").exists()
    train_subprocess(base_args(assets, out, "--max_steps", "6", "--resume", "latest"))
    assert (out / "final" / "model.safetensors").is_file()
    assert [r["step"] for r in metrics_of(out) if "level" in r][-1] == 6


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_one(assets, tmp_path, caplog):
    """A newest checkpoint whose model.safetensors was cut short (a crash or a full disk) is skipped by `--resume
    latest` with a warning naming the file, and the run continues from the previous complete checkpoint; naming the
    damaged folder itself is an error that names the file."""
    import logging

    out = tmp_path / "run"
    args = base_args(assets, out, "--max_steps", "4", "--save_steps", "2", "--no_retrieval")
    train_in_process(args)
    damaged = out / "checkpoints" / "step-4" / "model.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:-64])
    with caplog.at_level(logging.WARNING, logger="ophclip_train"):
        summary = train_in_process([*without(args, "--max_steps"), "--max_steps", "4", "--resume", "latest"])
    assert summary["global_step"] == 4
    assert any("skipping" in r.message and "step-4" in r.message and "damaged" in r.message for r in caplog.records)
    assert [r["step"] for r in metrics_of(out) if "level" in r][-2:] == [3, 4]  # steps 3 and 4 trained again
    damaged.write_bytes(damaged.read_bytes()[:-64])  # the resumed run saved step 4 again
    with pytest.raises(ValueError, match=r"step-4/model\.safetensors is damaged \(SafetensorError"):
        train_in_process([*without(args, "--max_steps"), "--max_steps", "4", "--resume", str(damaged.parent)])


def test_resume_runs_no_pickle_from_the_checkpoint(assets, tmp_path):
    """A crafted checkpoint folder with accelerate's `custom_checkpoint_0.pkl` (which accelerate would unpickle with
    weights_only=False) is refused on --resume, naming the file, and runs no code; the scheduler state is read from
    trainer_state.json, so without the pickle the run ends with the weights of an uninterrupted one."""
    import pickle

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    common = ("--max_steps", "4", "--save_steps", "2", "--no_retrieval")
    train_in_process(base_args(assets, straight, *common))
    marker = tmp_path / "code-ran.txt"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    checkpoint = straight / "checkpoints" / "step-2"
    (checkpoint / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(Payload()))
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert isinstance(state["scheduler"]["last_epoch"], int)
    with pytest.raises(ValueError, match=r"holds custom_checkpoint_0\.pkl, a pickle that could run code"):
        train_in_process(base_args(assets, resumed, *common, "--resume", str(checkpoint)))
    assert not marker.exists()
    (checkpoint / "custom_checkpoint_0.pkl").unlink()
    train_in_process(base_args(assets, resumed, *common, "--resume", str(checkpoint)))
    assert_same_tensors(weights(straight / "final"), weights(resumed / "final"))
    # A checkpoint of an earlier version (scheduler only in the pickle) is refused, saying why.
    del state["scheduler"]
    (checkpoint / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match="has no learning-rate scheduler state"):
        train_in_process(base_args(assets, tmp_path / "old", *common, "--resume", str(checkpoint)))
    assert not marker.exists()


def test_resume_with_changed_silent_videos_is_refused(assets, tmp_path):
    """The bank re-reads silent videos by (shard, byte offset, size): a resume over a dataset whose silent shards were
    swapped is refused, naming the video and the shards, instead of encoding another video into that row."""
    import shutil

    data = tmp_path / "ophvl"
    shutil.copytree(assets / "ophvl", data)
    out = tmp_path / "run"
    args = with_data(base_args(assets, out, "--max_steps", "2", "--save_steps", "2"), data)
    train_in_process(args)
    shards = sorted((data / "data" / "silent").glob("train-*.tar"))
    first, second = shards[0], shards[-1]
    swap = first.with_name("swap.tmp")
    first.rename(swap)
    second.rename(first)
    swap.rename(second)
    resume = [*without(args, "--max_steps"), "--max_steps", "4", "--resume", "latest"]
    with pytest.raises(ValueError, match=r"the silent videos under .* changed since .*step-2 was saved: "
                                         r"'ophvl-mini-silent-\d+' was in data/silent/train-\d+-of-\d+\.tar at byte \d+"):
        train_in_process(resume)


def test_nonfinite_losses_are_skipped_then_abort(assets, tmp_path):
    """An absurd learning rate blows the weights up: the NaN steps are skipped with a warning (no update), and the run
    stops with a clear error once more than --max_nonfinite_steps were skipped."""
    # Without retrieval: the bank itself refuses NaN embeddings and queries (tested in test_knowledge_base.py).
    args = base_args(assets, tmp_path / "nan", "--max_steps", "8", "--learning_rate", "1e30",
                     "--max_nonfinite_steps", "2", "--no_retrieval")
    result = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO_ROOT, env=subprocess_env(),
                            capture_output=True, text=True, timeout=240)
    assert result.returncode != 0
    assert result.stderr.count("non-finite loss") == 3, result.stderr[-4000:]
    assert "3 steps had a NaN or infinite loss (more than --max_nonfinite_steps 2)" in result.stderr


def test_push_to_hub_publishes_the_final_folder(assets, tmp_path, fake_hub):
    """`--push_to_hub` publishes `final/` (model, processor, remote code, the model card written from the run's
    options) through the real client to the loopback fake Hub, byte for byte."""
    endpoint, env, hub = fake_hub
    out = tmp_path / "run"
    train_in_process(base_args(assets, out, "--max_steps", "1", "--schedule", "c", "--retrieval", "false",
                               "--push_to_hub", "--hub_model_id", "tester/ophclip-pretrained"))
    final = out / "final"
    card = (final / "README.md").read_text()
    assert "tester/ophclip-pretrained" in card and "clip" in card
    stored = hub.files("tester/ophclip-pretrained")
    local = {p.relative_to(final).as_posix() for p in final.rglob("*") if p.is_file()}
    assert local <= set(stored)
    assert all(stored[name] == (final / name).read_bytes() for name in local)


def test_log_window_averages_each_level_over_the_window():
    """A logged record holds every level trained since the last one (the last step of a 'cccv' window is always a
    video step, so logging only that step would hide the clip loss)."""
    from ophclip_train.trainer import LogWindow

    window = LogWindow()
    steps = [{"level": "clip", "clip/loss": 3.0, "loss": 3.0, "clips_per_second": 10.0, "step_seconds": 1.0},
             {"level": "clip", "clip/loss": 1.0, "loss": 1.0, "clips_per_second": 30.0, "step_seconds": 1.0},
             {"level": "video", "video/loss": 2.0, "loss": 2.0, "videos_per_second": 4.0, "step_seconds": 2.0}]
    for metrics in steps:
        window.add(metrics)
    record = window.summarize(steps[-1])
    assert record["clip/loss"] == 2.0 and record["video/loss"] == 2.0
    assert record["clips_per_second"] == 20.0 and record["videos_per_second"] == 4.0
    assert record["level"] == "video" and record["loss"] == 2.0
    # The window restarts: one step logged alone is exactly that step's metrics.
    window.add(steps[0])
    assert window.summarize(steps[0]) == steps[0]


def test_timing_hooks_see_each_phase_of_each_step_by_name(assets, tmp_path):
    """`Pretrainer.add_timing_hook`: after every training step's data, forward + backward and optimiser phases, in
    that order, each hook is called with the phase's name and its seconds (what benchmarks/bench_train.py uses)."""
    from ophclip_train.config import parse_config
    from ophclip_train.trainer import TIMED_PHASES, Pretrainer

    trainer = Pretrainer(parse_config(base_args(assets, tmp_path / "run", "--max_steps", "2", "--retrieval",
                                                "false")))
    calls, second = [], []
    trainer.add_timing_hook(lambda phase, seconds: calls.append((phase, seconds)))
    trainer.add_timing_hook(lambda phase, seconds: second.append(phase))
    with pytest.raises(TypeError, match="a timing hook must be callable"):
        trainer.add_timing_hook("data")
    with accelerate_state_reset():
        trainer.setup()
        assert calls == []  # building the model and the streams is no training phase
        levels = [trainer.run_step(step)["level"] for step in range(2)]
    assert levels == ["clip", "video"]
    assert TIMED_PHASES == ("data", "forward_backward", "optimizer_step")
    assert [phase for phase, _ in calls] == list(TIMED_PHASES) * 2
    assert second == list(TIMED_PHASES) * 2  # every hook is told, in the order they were added
    assert all(isinstance(seconds, float) for _, seconds in calls)


@pytest.mark.parametrize("form", ["encoded", "detached"])
def test_retrieval_queries_are_the_first_pass_title_embeddings(assets, tmp_path, form):
    """A video step with retrieval spends no text forward of its own on the queries: the bank is searched with the
    titles' embeddings from the step's first pass. Encoded form: the text tower runs once per pass, pass 1 without
    gradients (twice in all); detached form with one micro-batch: once, with gradients, its embeddings the queries."""
    from ophclip_train.config import parse_config
    from ophclip_train.trainer import Pretrainer

    trainer = Pretrainer(parse_config(base_args(assets, tmp_path / "run", "--max_steps", "2",
                                                "--retrieval_form", form)))
    with accelerate_state_reset():
        trainer.setup()
        assert trainer.run_step(0)["level"] == "clip"
        text_calls, queries, titles = [], [], []
        handle = trainer.unwrapped.model.text_model.register_forward_hook(
            lambda module, args, output: text_calls.append(torch.is_grad_enabled()))
        search = trainer.bank.search

        def recording_search(vectors, k):
            queries.append(torch.as_tensor(vectors).clone())
            return search(vectors, k)

        trainer.bank.search = recording_search
        inner = trainer._narrated_embed_fn

        def narrated_embed_fn(micro):
            text, video = inner(micro)
            titles.append(text.detach().clone())
            return text, video

        trainer._narrated_embed_fn = narrated_embed_fn
        record = trainer.run_step(1)
        handle.remove()
    assert record["level"] == "video"
    if form == "encoded":
        assert record["video/silent_videos_encoded"] == 2
        assert text_calls == [False, True]  # pass 1 without gradients, pass 2 with them: no third forward
    else:
        assert text_calls == [True]  # the step's only forward: no extra one for the queries
    assert len(queries) == 1
    torch.testing.assert_close(queries[0], torch.nn.functional.normalize(titles[0].float(), dim=-1))
