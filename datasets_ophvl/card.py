"""The dataset card written next to OphVL shards: its YAML `configs:` block makes the folder (or Hub repo) open with
plain `datasets.load_dataset(path, "clips", split="train", streaming=True).decode(False)` (raw bytes), and its body
documents the format and the build."""

import json
from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData

from .format import SUBSETS, TITLE_SUMMARY_FIELDS, configs_block
from .shards import atomic_write_bytes


_BODY = """
# {pretty_name}

OphVL-format video–language data for ophthalmic surgery, stored as WebDataset tar shards (one folder per subset,
`<key>.mp4` + `<key>.json` per sample). Open it with the OphCLIP project's `datasets_ophvl.load_ophvl` (decoded,
sampled frames) or with plain `datasets.load_dataset(path, "clips", split="train", streaming=True).decode(False)`
(raw mp4 bytes and the json of each sample; `.decode(False)` keeps `datasets` from decoding the mp4 with torchcodec;
this generic reader stops at a damaged shard or a malformed json, which `load_ophvl` skips, counts and names).

## Subsets and fields

| subset | samples | shards | json fields |
|---|---|---|---|
{subset_rows}

`title_summary` attributes: {summary_fields}.

## Build

{build}

## Skipped samples

{skipped}

## Privacy and licence

{privacy}
"""

_FIELDS = {
    "clips": "`video_id`, `start`, `end` (s), `narration`, `sentence_ids`",
    "videos": "`video_id`, `duration` (s), `title`, `title_summary`",
    "silent": "`video_id`, `duration` (s), `title`",
}


def write_dataset_card(root, pretty_name: str = "OphVL", stats: dict | None = None, build: dict | None = None,
                       skipped: dict | None = None, license: str = "other", privacy: str | None = None) -> Path:
    """Write `root/README.md`.

    Args:
        stats: per subset, `{"samples": int, "shards": int, ...}`.
        build: the curation stages and their settings (shown as JSON).
        skipped: counts of skipped inputs by reason.
    """
    stats = stats or {}
    rows = "\n".join(
        f"| `{s}` | {stats.get(s, {}).get('samples', 0)} | {stats.get(s, {}).get('shards', 0)} | {_FIELDS[s]} |"
        for s in SUBSETS
    )
    data = DatasetCardData(
        pretty_name=pretty_name,
        license=license,
        task_categories=["video-text-to-text"],
        tags=["ophthalmology", "surgery", "video", "webdataset"],
        configs=configs_block(),
    )
    body = _BODY.format(
        pretty_name=pretty_name,
        subset_rows=rows,
        summary_fields=", ".join(f"`{f}`" for f in TITLE_SUMMARY_FIELDS),
        build="```json\n" + json.dumps(build, indent=2, sort_keys=True) + "\n```" if build else "Not recorded.",
        skipped="\n".join(f"- {reason}: {count}" for reason, count in sorted(skipped.items())) if skipped else "None.",
        privacy=privacy or "Surgical videos can identify patients and staff through faces, voices, on-screen text and "
        "metadata. Publish only videos you have the right to share, with audio and burned-in text checked.",
    )
    card = DatasetCard(f"---\n{data.to_yaml()}\n---\n{body}")
    path = Path(root) / "README.md"
    atomic_write_bytes(path, str(card).encode())
    return path


def is_ophvl_card(path) -> bool:
    """Whether `path` is an OphVL dataset card (a README.md whose YAML `configs:` names OphVL subsets), as
    `write_dataset_card` and the dataset card of `model_cards` write it."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
        if not text.startswith("---"):
            return False
        metadata = yaml.safe_load(text.split("\n---", 1)[0].split("\n", 1)[1])
    except (OSError, UnicodeError, IndexError, yaml.YAMLError):
        return False  # unreadable, or without a metadata block: not ours
    configs = metadata.get("configs") if isinstance(metadata, dict) else None
    names = {c.get("config_name") for c in configs if isinstance(c, dict)} if isinstance(configs, list) else set()
    return bool(names & set(SUBSETS))
