"""Tests of the sharded-training launch configs (`configs/accelerate_fsdp.yaml`, `configs/accelerate_deepspeed_zero2.yaml`).

Accelerate 1.15 selects FSDP (and DeepSpeed) only on top of an accelerator's multi-process mode: on a CPU-only
machine a launch with the FSDP config becomes plain DDP over gloo, and the FSDP plugin itself refuses to sync module
states without a device. These tests pin both facts on CPU (so the README's statement fails loudly the day accelerate
starts sharding on CPU, and a real FSDP-vs-DDP comparison can replace them) and check that the config files parse and
select what they say. The two-process run reuses the tiny assets and options of `test_train_accelerate`.
"""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

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
    env = {**subprocess_env(), "OPHCLIP_PROBE_DIR": str(probe_dir)}

    def launch(*extra):
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(FSDP_CONFIG),
                   "--main_process_port", str(29500 + (os.getpid() + 500) % 1000), str(script), str(SCRIPT),
                   *base_args(assets, out, "--save_steps", "1", *extra)]
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

    first = launch("--max_steps", "1")
    assert "the launch asked for FSDP, but accelerate runs MULTI_CPU here" in first.stderr  # said, not silent
    launch("--max_steps", "2", "--resume", "latest")
    records = [json.loads((probe_dir / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert records == [{"distributed_type": "DistributedType.MULTI_CPU", "wrapper": "DistributedDataParallel"}] * 2
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if not p.name.startswith(".")) == [
        "step-1", "step-2"]
    # The final model is the step-2 checkpoint's (the resumed run trained step 2 and wrote both).
    checkpoint = {name[len("model."):]: tensor for name, tensor in weights(out / "checkpoints" / "step-2").items()
                  if name.startswith("model.")}
    assert_same_tensors(weights(out / "final"), checkpoint)
    assert [r["step"] for r in metrics_of(out) if "level" in r] == [1, 2]
