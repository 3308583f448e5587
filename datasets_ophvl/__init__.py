"""datasets_ophvl: the OphVL format, shard writing, the streaming builder and frame-decoding loaders.

Importing the package needs no optional dependency: the names below are imported on first use (`lazy.py`), so
`datasets` (streaming) and `decord` (decoding) are only required by the parts that use them. Of ours it imports only
`modeling_ophclip` (the video processor, the folder-writing helper), and only where a function needs it.

- `OphVL`: a `datasets.GeneratorBasedBuilder` streaming the raw shards of one subset (`clips`, `videos`, `silent`)
  from a local folder or `hf://datasets/...`.
- `load_ophvl`: the same stream decoded to sampled frames; `OphVLCollator` turns examples into model inputs.
- `skip_counts`: how many bad samples this process skipped, by reason (`SKIP_REASONS`); `reader` is the one shard
  reader everything above (and the trainer's silent-video scan, and evaluation) reads OphVL through.
"""

from .lazy import lazy_exports


_LAZY = {
    ".builder": ("OphVL", "OphVLConfig"),
    ".reader": ("SKIP_REASONS", "SkipCounter", "skip_counts"),
    ".streaming": ("OphVLCollator", "VideoDecodeError", "decode_sampled_frames", "load_ophvl"),
    ".shards": ("ShardWriter", "read_whole_shard"),
    ".format": ("SUBSETS", "validate_record", "record_text"),
    ".media": ("encode_video",),
    ".card": ("write_dataset_card",),
    ".mini": ("generate_ophvl_mini",),
    ".knowledge_base": ("SilentVideoBank",),
}


__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
