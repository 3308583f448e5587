#!/usr/bin/env python
"""Pretrain OphCLIP on OphVL with Accelerate.

Clip-level (clip <-> narration) and video-level (video <-> title summary) contrastive learning in alternation, with
retrieval augmentation from a memory bank of silent surgical videos; one process, or many with `accelerate launch`.

```bash
# one process
python train_accelerate.py --config configs/pretrain_mini.yaml
# override any option of the file on the command line
python train_accelerate.py --config configs/pretrain_mini.yaml --max_steps 50 --retrieval false
# two processes on CPU (gloo); on GPUs drop nothing but --mixed_precision
accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \
    train_accelerate.py --config configs/pretrain_mini.yaml
# continue an interrupted run
python train_accelerate.py --config configs/pretrain_mini.yaml --resume latest
```

`python train_accelerate.py --help` lists every option. The run writes `<output_dir>/checkpoints/step-N`,
`<output_dir>/logs/<run_name>/metrics.jsonl` (and TensorBoard events when available), and at the end
`<output_dir>/final`: the model and processor, loadable with
`AutoModel.from_pretrained(folder, trust_remote_code=True)` / `AutoProcessor.from_pretrained(...)`.
"""

import sys

from ophclip_train.config import parse_config
from ophclip_train.trainer import run


def main(argv=None) -> dict:
    """Parse `argv` (default: the command line) and train; returns the run's summary."""
    return run(parse_config(argv))


if __name__ == "__main__":
    try:
        summary = main(sys.argv[1:])
    except (ValueError, OSError) as error:
        # Bad settings, data or checkpoints are reported before anything is trained: one line, no traceback.
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if summary.get("interrupted"):
        # Stopped by SIGTERM with a checkpoint but no final model: not a success for `train && publish` chains or
        # schedulers (128 + SIGTERM, as a shell reports a process that SIGTERM ended).
        print(f"stopped after step {summary['global_step']}; resume with --resume latest", file=sys.stderr)
        sys.exit(143)
