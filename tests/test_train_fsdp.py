"""Tests of the sharded-training launch configs (`configs/accelerate_fsdp.yaml`, `configs/accelerate_deepspeed_zero2.yaml`).

Accelerate 1.15 selects FSDP (and DeepSpeed) only on top of an accelerator's multi-process mode: on a CPU-only
machine a launch with the FSDP config becomes plain DDP over gloo, and the FSDP plugin itself refuses to sync module
states without a device. These tests pin both facts on CPU (so the README's statement fails loudly the day accelerate
starts sharding on CPU) and check that the config files parse and select what they say. A harness patch (here only,
never in the library) then makes accelerate take its FSDP2 path on CPU processes anyway, and the trainer's sharded run
is compared with DDP. The two-process runs reuse the tiny assets and options of `test_train_accelerate`.
"""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from ophclip_testing import free_port
from test_train_accelerate import (  # noqa: F401  (assets: the module's fixture, reused)
    REPO_ROOT, SCRIPT, assert_same_tensors, assets, base_args, metrics_of, subprocess_env, weights)


CONFIGS = REPO_ROOT / "configs"
FSDP_CONFIG = CONFIGS / "accelerate_fsdp.yaml"
DEEPSPEED_CONFIG = CONFIGS / "accelerate_deepspeed_zero2.yaml"
CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="states what accelerate does without a GPU")

# Records, per rank, which distributed mode the trainer's accelerator chose and what `prepare` wrapped the model in.
PROBED_RUN = """
import json, os, runpy, sys
from ophclip_train import trainer

original = trainer.Pretrainer._setup_model
def probed(self):
    original(self)
    record = {"distributed_type": str(self.accelerator.distributed_type), "wrapper": type(self.module).__name__}
    folder = os.environ["OPHCLIP_PROBE_DIR"]
    with open(os.path.join(folder, f"rank{self.accelerator.process_index}.json"), "w") as handle:
        json.dump(record, handle)
trainer.Pretrainer._setup_model = probed
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

# The harness patch that makes accelerate shard on CPU processes: accelerate 1.15 reads the launch's FSDP plugin only
# when the processes' distributed type is an accelerator one (state.py), so right after PartialState is built its
# MULTI_CPU (gloo, device cpu) is renamed MULTI_GPU; AcceleratorState then selects FSDP and `prepare` runs accelerate's
# own `fsdp2_prepare_model` (torch's `fully_shard`, which works over gloo). Test harness only, never the library.
FORCE_FSDP = """
from accelerate.state import PartialState
from accelerate.utils import DistributedType

_original_init = PartialState.__init__
def _init(self, *args, **kwargs):
    _original_init(self, *args, **kwargs)
    if self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.MULTI_GPU
PartialState.__init__ = _init
"""

# As if every silent video the second process retrieves failed to decode: its silent micro-batch is empty. Under FSDP
# it must still take part in the collective forward and backward (a placeholder), or the first process waits forever.
NO_SILENT_ON_RANK_1 = """
import numpy as np
from ophclip_train import trainer as _trainer

_original_silent = _trainer.Pretrainer._silent_micro_batch
def _silent(self, step, retrieved):
    micro = _original_silent(self, step, retrieved)
    return {"silent_rows": np.zeros(0, dtype=np.int64)} if self.accelerator.process_index == 1 else micro
_trainer.Pretrainer._silent_micro_batch = _silent
"""

# FSDP reduce-scatters gradients and computes the clipping norm from shards where DDP all-reduces whole tensors: the
# same sums in another order, so the weights may differ by float32 rounding (a few 1e-7 relative per step).
FSDP_RTOL, FSDP_ATOL = 1e-5, 1e-6


def launch_two_processes(script, args, probe_dir) -> subprocess.CompletedProcess:
    """`accelerate launch --config_file configs/accelerate_fsdp.yaml SCRIPT train_accelerate.py ARGS` (2 processes),
    each rank recording its distributed mode and wrapper in `probe_dir`; asserts success."""
    env = {**subprocess_env(), "OPHCLIP_PROBE_DIR": str(probe_dir)}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(FSDP_CONFIG),
               "--main_process_port", str(free_port()), str(script), str(SCRIPT), *args]
    # Its own process group: if the hang guard fires, the ranks go too (a rank left alone waits for its peer).
    proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=900)  # a hang guard, not a speed check
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr[-4000:]
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def probe_records(probe_dir) -> list[dict]:
    return [json.loads((probe_dir / f"rank{rank}.json").read_text()) for rank in range(2)]


def test_fsdp_config_parses_and_selects_fsdp():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    config = load_config_from_file(str(FSDP_CONFIG))
    assert config.distributed_type == DistributedType.FSDP
    assert config.num_processes == 2 and config.mixed_precision == "no" and not config.use_cpu
    fsdp = config.fsdp_config
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
    # A device-free plugin: sync_module_states would need a GPU (see test_fsdp_plugin_needs_a_device_to_sync).
    assert fsdp["fsdp_sync_module_states"] is False


def test_deepspeed_config_parses_and_selects_zero2():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    from ophclip_train.config import TrainingArguments

    config = load_config_from_file(str(DEEPSPEED_CONFIG))
    assert config.distributed_type == DistributedType.DEEPSPEED
    ds = config.deepspeed_config
    assert ds["zero_stage"] == 2
    # The trainer accumulates itself (feature cache) and DeepSpeed clips in its engine: 1 step, the trainer's norm.
    assert ds["gradient_accumulation_steps"] == 1
    assert ds["gradient_clipping"] == TrainingArguments().max_grad_norm


@CPU_ONLY
def test_fsdp_plugin_needs_a_device_to_sync():
    """The symptom the README quotes: accelerate's FSDP plugin with sync_module_states looks for a GPU (or another
    accelerator) and raises without one."""
    from unittest import mock

    from accelerate import FullyShardedDataParallelPlugin

    # The plugin writes FSDP_* variables into os.environ; left there, they reach later launches' processes.
    with mock.patch.dict(os.environ, {"ACCELERATE_USE_FSDP": "true"}):
        with pytest.raises(RuntimeError, match="no available devices found"):
            FullyShardedDataParallelPlugin(sync_module_states=True)


@CPU_ONLY
def test_fsdp_config_on_cpu_trains_as_ddp(assets, tmp_path):  # noqa: F811
    """Launched with the FSDP config on two CPU processes, the run trains, saves and resumes, but as DDP over gloo:
    accelerate keeps MULTI_CPU and wraps the model in DistributedDataParallel (no sharding)."""
    probe_dir, out = tmp_path / "probe", tmp_path / "run"
    probe_dir.mkdir()
    script = tmp_path / "probed_run.py"
    script.write_text(PROBED_RUN)

    def launch(*extra):
        return launch_two_processes(script, base_args(assets, out, "--save_steps", "1", *extra), probe_dir)

    first = launch("--max_steps", "1")
    assert "the launch asked for FSDP, but accelerate runs MULTI_CPU here" in first.stderr  # said, not silent
    launch("--max_steps", "2", "--resume", "latest")
    records = probe_records(probe_dir)
    assert records == [{"distributed_type": "DistributedType.MULTI_CPU", "wrapper": "DistributedDataParallel"}] * 2
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if not p.name.startswith(".")) == [
        "step-1", "step-2"]
    # The final model is the step-2 checkpoint's (the resumed run trained step 2 and wrote both).
    checkpoint = {name[len("model."):]: tensor for name, tensor in weights(out / "checkpoints" / "step-2").items()
                  if name.startswith("model.")}
    assert_same_tensors(weights(out / "final"), checkpoint)
    assert [r["step"] for r in metrics_of(out) if "level" in r] == [1, 2]


@CPU_ONLY
def test_fsdp_forced_on_cpu_trains_saves_and_resumes_like_ddp(assets, tmp_path):  # noqa: F811
    """The trainer under real FSDP2 sharding (forced by the harness patch `FORCE_FSDP`, with the launch config's
    plugin: full sharding, one unit, sharded checkpoints) on 2 CPU processes against DDP with the same launch: both
    levels, retrieval with the memory bank (built and refreshed through the sharded model; the second process's
    retrieved silent videos "fail to decode", so it runs a placeholder through FSDP), a periodic evaluation (on
    weights gathered from the shards), a sharded save at step 2 and 4, and a `--resume` from step 2. The final weights
    of the straight and of the resumed FSDP run equal DDP's within FSDP_RTOL / FSDP_ATOL."""
    from evaluate_suite.leaderboard import weights_hash

    # One bank row refreshed per step: the second process's share is empty, and it runs a placeholder forward so
    # that the first one's (collective under FSDP) does not wait for it.
    common = ("--max_steps", "4", "--save_steps", "2", "--eval_steps", "4", "--bank_refresh_rows_per_step", "1",
              "--eval_data", str(assets / "ophvl" / "benchmark"))
    ddp_script, fsdp_script = tmp_path / "ddp_run.py", tmp_path / "fsdp_run.py"
    ddp_script.write_text(NO_SILENT_ON_RANK_1 + PROBED_RUN)
    fsdp_script.write_text(FORCE_FSDP + NO_SILENT_ON_RANK_1 + PROBED_RUN)
    ddp, fsdp, debug = tmp_path / "ddp", tmp_path / "fsdp", tmp_path / "debug"
    probes = {name: tmp_path / f"probe_{name}" for name in ("ddp", "fsdp", "resumed")}
    for folder in probes.values():
        folder.mkdir()

    launch_two_processes(ddp_script, base_args(assets, ddp, *common), probes["ddp"])
    assert probe_records(probes["ddp"]) == [
        {"distributed_type": "DistributedType.MULTI_CPU", "wrapper": "DistributedDataParallel"}] * 2
    launch_two_processes(fsdp_script, base_args(assets, fsdp, *common), probes["fsdp"])
    # Really FSDP: accelerate's FSDP mode, and the training module itself became an FSDP2 module (`fully_shard`).
    assert probe_records(probes["fsdp"]) == [
        {"distributed_type": "DistributedType.FSDP", "wrapper": "FSDPOphCLIPPretrainingModule"}] * 2
    step2 = fsdp / "checkpoints" / "step-2"
    assert (step2 / "pytorch_model_fsdp_0").is_dir() and not (step2 / "model.safetensors").exists()
    assert sorted(p.name for p in (step2 / "pytorch_model_fsdp_0").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    expected = weights(ddp / "final")
    straight = weights(fsdp / "final")

    def assert_close_to_ddp(actual):
        assert actual.keys() == expected.keys()
        for name, tensor in expected.items():
            torch.testing.assert_close(actual[name], tensor, rtol=FSDP_RTOL, atol=FSDP_ATOL, msg=name)

    assert_close_to_ddp(straight)
    ddp_records, fsdp_records = ([r for r in metrics_of(out) if "level" in r] for out in (ddp, fsdp))
    assert [r["level"] for r in fsdp_records] == ["clip", "video", "clip", "video"]
    for ours, theirs in zip(fsdp_records, ddp_records):
        assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-5)
        assert ours["bank/refreshed_rows"] == theirs["bank/refreshed_rows"] == 1
    ddp_eval, fsdp_eval = ({k: v for r in metrics_of(out) for k, v in r.items() if k.startswith("eval/")}
                           for out in (ddp, fsdp))
    assert fsdp_eval.keys() == ddp_eval.keys()
    assert fsdp_eval == pytest.approx(ddp_eval, rel=1e-4, abs=1e-6)

    # Resume the sharded run from its step-2 checkpoint (the same --max_steps, hence the same schedule).
    resumed = launch_two_processes(fsdp_script, base_args(assets, fsdp, *common, "--resume", str(step2),
                                                          "--debug_dir", str(debug)), probes["resumed"])
    assert f"resumed from {step2} at step 2" in resumed.stderr
    assert_close_to_ddp(weights(fsdp / "final"))
    assert [r["step"] for r in metrics_of(fsdp) if "level" in r] == [1, 2, 3, 4, 3, 4]
    # Every process records the hash of the gathered weights (no process holds them whole).
    dumps = [json.loads((debug / f"rank{rank}_final.json").read_text()) for rank in range(2)]
    full = {f"model.{name}": tensor for name, tensor in weights(fsdp / "final").items()}
    assert [d["state_dict_sha256"] for d in dumps] == [weights_hash(full, length=64)] * 2


def test_fsdp_refuses_a_learnable_logit_scale_and_fsdp1():
    """Checked before `prepare`: under FSDP the losses would read a sharded learnable scale outside the forward."""
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from modeling_ophclip import OphCLIPModel
    from ophclip_testing import OphCLIPModelTester
    from ophclip_train.trainer import Pretrainer

    trainer = Pretrainer.__new__(Pretrainer)
    learnable = OphCLIPModel(OphCLIPModelTester().get_config(learnable_logit_scale=True))
    fixed = OphCLIPModel(OphCLIPModelTester().get_config())
    trainer.accelerator = SimpleNamespace(distributed_type=DistributedType.FSDP, is_fsdp2=True)
    with pytest.raises(ValueError, match=r"--learnable_logit_scale cannot be combined with FSDP"):
        trainer._check_sharding(learnable)
    trainer._check_sharding(fixed)
    assert trainer.sharded
    trainer.accelerator = SimpleNamespace(distributed_type=DistributedType.FSDP, is_fsdp2=False)
    with pytest.raises(ValueError, match=r"FSDP2 only: set fsdp_version: 2"):
        trainer._check_sharding(fixed)
    trainer.accelerator = SimpleNamespace(distributed_type=DistributedType.MULTI_CPU, is_fsdp2=False)
    trainer._check_sharding(learnable)  # DDP trains it
    assert not trainer.sharded


def test_a_checkpoint_of_the_other_kind_of_launch_is_refused_by_name(tmp_path):
    """An FSDP run resuming a plain checkpoint, or the reverse, is told so before anything loads."""
    from ophclip_train import checkpoint as ckpt

    sharded, plain = tmp_path / "sharded", tmp_path / "plain"
    for folder in (sharded, plain):
        folder.mkdir()
        (folder / ckpt.TRAINER_STATE).write_text(json.dumps({"global_step": 2, "scheduler": {}}))
    (sharded / ckpt.FSDP_MODEL_DIR).mkdir()
    (plain / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"saved by an FSDP launch \(sharded weights\) and this run is a launch "
                                         r"without FSDP"):
        ckpt.read_trainer_state(sharded)
    with pytest.raises(ValueError, match=r"saved by a launch without FSDP \(one process or DDP\) and this run is an "
                                         r"FSDP launch"):
        ckpt.read_trainer_state(plain, sharded=True)
    with pytest.raises(FileNotFoundError, match=r"lacks pytorch_model_fsdp_0/\.metadata, optimizer_0/\.metadata"):
        ckpt.read_trainer_state(sharded, sharded=True)


class _RunsCode:
    """Unpickling this makes a folder: the side effect a crafted checkpoint would have."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_sharded_checkpoint_pickles_are_read_without_running_code(tmp_path):
    """torch unpickles a sharded checkpoint's `.metadata` and its non-tensor items unrestricted;
    `read_sharded_metadata` (run by every FSDP `--resume` before anything loads) reads a real one, and refuses a
    crafted one of either kind by name without running it."""
    import pickle

    import torch.distributed.checkpoint as dcp

    from ophclip_train import checkpoint as ckpt

    layer = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=0.01)
    layer(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    real = tmp_path / "real"
    dcp.save({"model": layer.state_dict(), "optimizer": optimizer.state_dict()}, checkpoint_id=str(real))
    metadata = ckpt.read_sharded_metadata(real)
    assert tuple(metadata.state_dict_metadata["model.weight"].size) == (3, 4)
    assert "optimizer.param_groups.0.lr" in metadata.state_dict_metadata  # a pickled (non-tensor) item, read

    marker = tmp_path / "code-ran"
    crafted_metadata = tmp_path / "crafted_metadata"
    dcp.save({"model": layer.state_dict()}, checkpoint_id=str(crafted_metadata))
    (crafted_metadata / ".metadata").write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(ValueError, match=r"\.metadata is not a torch\.distributed\.checkpoint metadata file .*"
                                         r"posix\.mkdir"):
        ckpt.read_sharded_metadata(crafted_metadata)
    crafted_item = tmp_path / "crafted_item"
    dcp.save({"model": layer.state_dict(), "extra": _RunsCode(marker)}, checkpoint_id=str(crafted_item))
    with pytest.raises(ValueError, match=r"holds a non-tensor item 'extra' that is not plain data"):
        ckpt.read_sharded_metadata(crafted_item)
    assert not marker.exists()
