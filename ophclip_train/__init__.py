"""Pretraining of OphCLIP on the Hugging Face stack (accelerate).

- `ophclip_train.objectives`: the pretraining objectives (clip-level and video-level symmetric InfoNCE over the global
  batch, silent-video retrieval augmentation, the optional SimSiam term), the memory-bank helpers (`retrieve`,
  `refresh_bank`) and `CachedFeatureAccumulator`, gradient accumulation that keeps the contrastive batch whole.
- `ophclip_train.config`: the options of `train_accelerate.py` (dataclasses for `HfArgumentParser`, YAML + command
  line), `parse_config`, `parse_schedule`.
- `ophclip_train.trainer`: `Pretrainer`, the training loop on Accelerate (levels in alternation, the memory bank,
  checkpoints and resumption, trackers, periodic evaluation, the final save and push).
- `ophclip_train.data`: resumable per-level streams over OphVL and row access to the silent videos of the bank.
- `ophclip_train.modeling`: model and processor construction, the module DDP wraps, weight-decay groups, the
  SimSiam augmentations.
- `ophclip_train.checkpoint`, `ophclip_train.tracking`, `ophclip_train.evaluation`: atomic rotated checkpoints, the
  JSON-lines tracker, the zero-shot evaluation adapter.

Importing the package imports nothing heavy: it imports the configuration (`config.py`, standard library only)
plainly; import the other submodules you need (`from ophclip_train.trainer import Pretrainer`). Of ours the
submodules import `modeling_ophclip`, `datasets_ophvl`, `evaluate_suite` (periodic evaluation, the weights hash) and
`model_cards` (the final model card); only `ophclip_cli` and the app sit above this package.
"""

from .config import PretrainConfig, parse_config, parse_schedule


__all__ = ["PretrainConfig", "parse_config", "parse_schedule"]
