"""The OphVL dataset card: `build_dataset_card` renders `templates/dataset_card.md` (a Jinja template, through
huggingface_hub's `DatasetCard.from_template`) from the build's statistics, curation settings and skipped counts.

```python
stats = folder_stats("ophvl")                                    # or the builder's own counts
card = build_dataset_card(stats, repo_id="org/ophvl", curation=settings, skipped=skip_counts, license="other")
card.save("ophvl/README.md")
```

The metadata is `DatasetCardData` with the `configs:` block (one config per subset, `clips` the default) that makes
the repository open with `datasets.load_dataset(repo_id, "clips", streaming=True)`; it round-trips through
`DatasetCard.load`. The same inputs give a byte-identical card (nothing depends on time or on the machine).

This module imports nothing from the rest of the project: it knows the OphVL layout (`data/<subset>/train-*.tar`,
`<key>.mp4` + `<key>.json`) itself, and a test checks that it agrees with `datasets_ophvl.format`.
"""

import fnmatch
import json
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData

from .model_card import ARXIV_ID, ARXIV_URL, CITATION


DATASET_CARD_TEMPLATE = Path(__file__).resolve().parent / "templates" / "dataset_card.md"

SUBSETS = ("clips", "videos", "silent")
SPLIT = "train"
DEFAULT_SUBSET = "clips"
SUBSET_FIELDS = {
    "clips": "`video_id`, `start`, `end` (s), `narration`, `sentence_ids`",
    "videos": "`video_id`, `duration` (s), `title`, `title_summary`",
    "silent": "`video_id`, `duration` (s), `title`",
}
SUBSET_ROLES = {
    "clips": "short clips cut from narrated procedures, each with the narration spoken over it (clip-level pairs)",
    "videos": "whole narrated procedures with their title and a structured title summary (video-level pairs)",
    "silent": "whole procedures without narration, with their title only: the retrieval knowledge base",
}
TITLE_SUMMARY_FIELDS = ("surgery", "phases", "instruments", "medications", "disease_cause", "surgical_objective",
                        "postoperative_care")
TAGS = ("ophthalmology", "surgery", "video", "video-text", "webdataset")
TASK_CATEGORIES = ("video-text-to-text",)
DEFAULT_PRIVACY = ("Surgical videos can identify patients and staff through faces, voices, on-screen text and "
                   "metadata. Publish only videos you have the right to share, with audio removed and burned-in "
                   "text checked; do not use the data to identify people.")
DEFAULT_LICENSE_NOTE = ("The videos keep the rights of their creators; the licence covers what the curators may "
                        "grant. Check it before training or redistributing.")
# What a sample's json says about its length and its text, per subset (used by `folder_stats`).
_TEXT_FIELD = {"clips": "narration", "videos": "title", "silent": "title"}


def ophvl_configs(subsets: Sequence[str] = SUBSETS, split: str = SPLIT, default: str = DEFAULT_SUBSET) -> list[dict]:
    """The `configs:` entries of an OphVL card: one per subset, its shards under `data/<subset>/`."""
    return [{"config_name": subset, "data_files": [{"split": split, "path": f"data/{subset}/{split}-*.tar"}],
             **({"default": True} if subset == default else {})} for subset in subsets]


def size_category(samples: int) -> str:
    """The Hub's `size_categories` value for a number of samples."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M")):
        if samples < limit:
            return name
    return "10M<n<100M"


# ---------------------------------------------------------------------------------------------------------------------
# Statistics from a folder


def config_files(folder, configs: Sequence[Mapping]) -> dict[str, list[Path]]:
    """`{config name: [data files]}`: the files of `folder` each config's `data_files` patterns match."""
    folder = Path(folder)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    matched = {}
    for config in configs:
        data_files = config.get("data_files") or []
        if isinstance(data_files, (str, Mapping)):
            data_files = [data_files]
        patterns = []
        for entry in data_files:
            paths = entry.get("path") if isinstance(entry, Mapping) else entry
            patterns += [paths] if isinstance(paths, str) else list(paths or [])
        matched[config["config_name"]] = [folder / f for f in files if any(fnmatch.fnmatch(f, p) for p in patterns)]
    return matched


def _sample_stats(subset: str, records: list[dict]) -> dict:
    seconds = []
    words = []
    for record in records:
        if subset == "clips" and isinstance(record.get("start"), (int, float)) and isinstance(record.get("end"),
                                                                                             (int, float)):
            seconds.append(record["end"] - record["start"])
        elif isinstance(record.get("duration"), (int, float)):
            seconds.append(record["duration"])
        text = record.get(_TEXT_FIELD.get(subset, ""))
        if isinstance(text, str):
            words.append(len(text.split()))
    stats = {}
    if seconds:
        stats["hours"] = round(sum(seconds) / 3600, 3)
        stats["mean_seconds"] = round(sum(seconds) / len(seconds), 2)
    if words:
        stats["mean_words"] = round(sum(words) / len(words), 1)
    return stats


def folder_stats(folder, configs: Sequence[Mapping] | None = None) -> dict:
    """Per subset of an OphVL folder: `samples`, `shards`, `bytes` and, from the samples' json, `hours`,
    `mean_seconds` (clip or video length) and `mean_words` (narration or title). Reads the tar shards' json members
    only (the mp4 members are skipped over)."""
    stats = {}
    for name, files in config_files(folder, configs or ophvl_configs()).items():
        keys, records = set(), []
        for path in files:
            with tarfile.open(path, "r:") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    key, _, ext = member.name.partition(".")
                    keys.add(key)
                    if ext == "json":
                        try:
                            records.append(json.loads(tar.extractfile(member).read()))
                        except (ValueError, UnicodeDecodeError):
                            pass
        stats[name] = {"samples": len(keys), "shards": len(files), "bytes": sum(p.stat().st_size for p in files),
                       **_sample_stats(name, records)}
    return stats


# ---------------------------------------------------------------------------------------------------------------------
# Sections


def _value(value) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        text = ", ".join(str(v) for v in value)
    elif isinstance(value, (Mapping, list, tuple)):
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _size(num_bytes) -> str:
    if not isinstance(num_bytes, (int, float)):
        return "–"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if num_bytes < 1000 or unit == "TB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1000


def subset_rows(stats: Mapping, subsets: Sequence[str]) -> str:
    rows = []
    for subset in subsets:
        row = stats.get(subset) or {}
        rows.append(f"| `{subset}` | {row.get('samples', 0)} | {row.get('shards', 0)} | {_size(row.get('bytes'))} | "
                    f"{SUBSET_FIELDS.get(subset, '–')} |")
    return "\n".join(rows)


def field_notes(subsets: Sequence[str]) -> str:
    lines = [f"- `{s}`: {SUBSET_ROLES[s]}." for s in subsets if s in SUBSET_ROLES]
    if "videos" in subsets:
        lines.append("- `title_summary` attributes: " + ", ".join(f"`{f}`" for f in TITLE_SUMMARY_FIELDS) +
                     " (strings or lists of strings; missing ones empty).")
    return "\n".join(lines)


_STAT_COLUMNS = (("hours", "hours"), ("mean_seconds", "mean length (s)"), ("mean_words", "mean words of text"))


def statistics_section(stats: Mapping, subsets: Sequence[str]) -> str:
    totals = sum(int((stats.get(s) or {}).get("samples", 0)) for s in subsets)
    lines = [f"{totals} samples in {len(subsets)} subsets."]
    columns = [(key, label) for key, label in _STAT_COLUMNS if any(key in (stats.get(s) or {}) for s in subsets)]
    extra = []
    for subset in subsets:
        for key in (stats.get(subset) or {}):
            if key not in ("samples", "shards", "bytes") and key not in dict(_STAT_COLUMNS) and key not in extra:
                extra.append(key)
    columns += [(key, key) for key in extra]
    if columns:
        lines += ["", "| subset | " + " | ".join(label for _, label in columns) + " |",
                  "|---|" + "---:|" * len(columns)]
        for subset in subsets:
            row = stats.get(subset) or {}
            lines.append(f"| `{subset}` | " + " | ".join(_value(row[k]) if k in row else "–" for k, _ in columns) +
                         " |")
    return "\n".join(lines)


def curation_section(curation) -> str:
    """Curation stages and their settings, in the given order: a mapping of stage -> settings (a mapping, list or
    value), or a list of stage names / `{"stage": ..., **settings}` entries."""
    if not curation:
        return "Not recorded."
    items = list(curation.items()) if isinstance(curation, Mapping) else [
        (entry.get("stage", f"stage {i + 1}"), {k: v for k, v in entry.items() if k != "stage"})
        if isinstance(entry, Mapping) else (entry, None) for i, entry in enumerate(curation)]
    lines = []
    for number, (stage, settings) in enumerate(items, start=1):
        if isinstance(settings, Mapping) and settings:
            details = "; ".join(f"`{k}`: {_value(v)}" for k, v in settings.items())
        elif settings in (None, {}, []):
            details = ""
        else:
            details = _value(settings)
        lines.append(f"{number}. **{stage}**" + (f": {details}" if details else ""))
    return "\n".join(lines)


def skipped_section(skipped: Mapping | None) -> str:
    if not skipped or not any(skipped.values()):
        return "None."
    rows = "\n".join(f"| {reason} | {count} |" for reason, count in sorted(skipped.items()))
    return f"| reason | count |\n|---|---:|\n{rows}\n\n{sum(skipped.values())} in total."


# ---------------------------------------------------------------------------------------------------------------------
# The card


def build_dataset_card(
    stats: Mapping | None,
    *,
    repo_id: str,
    curation=None,
    skipped: Mapping | None = None,
    pretty_name: str = "OphVL",
    summary: str | None = None,
    license: str = "other",
    license_note: str = DEFAULT_LICENSE_NOTE,
    privacy: str | None = None,
    configs: Sequence[Mapping] | None = None,
    tags: Sequence[str] = (),
    template_path=DATASET_CARD_TEMPLATE,
) -> DatasetCard:
    """The dataset card of an OphVL-format dataset.

    Args:
        stats: per subset, `{"samples": int, "shards": int, "bytes": int, "hours": float, ...}` (`folder_stats`
            computes them from a folder); keys other than samples/shards/bytes go to the statistics table.
        repo_id: the Hub repository (`org/name`): the `repo_id` of the loading examples.
        curation: the curation stages and their settings, in order (see `curation_section`).
        skipped: counts of inputs left out while building, by reason.
        pretty_name, summary: the title and first paragraph.
        license, license_note: the licence (metadata) and a sentence about it.
        privacy: the privacy paragraph (default: a warning about identifiable surgical video).
        configs: the `configs:` entries (default: `ophvl_configs()`, one per subset, `clips` the default).
        tags: added to `TAGS`.
        template_path: the Jinja template.

    Returns:
        A `huggingface_hub.DatasetCard`; `card.save(folder / "README.md")`.
    """
    if not repo_id or not isinstance(repo_id, str):
        raise ValueError("repo_id (the Hub repository, org/name) is required: it is the repo_id of the examples")
    stats = dict(stats or {})
    configs = [dict(c) for c in (configs or ophvl_configs())]
    subsets = [c["config_name"] for c in configs]
    total = sum(int((stats.get(s) or {}).get("samples", 0)) for s in subsets)
    card_data = DatasetCardData(
        pretty_name=pretty_name,
        license=license,
        task_categories=list(TASK_CATEGORIES),
        size_categories=[size_category(total)],
        tags=list(dict.fromkeys([*TAGS, *tags])),
        configs=configs,
    )
    return DatasetCard.from_template(
        card_data,
        template_path=str(template_path),
        title=pretty_name,
        repo_id=repo_id,
        summary=summary or f"`{repo_id}`: surgical videos paired with text for video–language pretraining.",
        paper_link=f"[arXiv {ARXIV_ID}]({ARXIV_URL}), ICCV 2025",
        subset_rows=subset_rows(stats, subsets),
        field_notes=field_notes(subsets),
        statistics=statistics_section(stats, subsets),
        curation=curation_section(curation),
        skipped=skipped_section(skipped),
        privacy=privacy or DEFAULT_PRIVACY,
        license_name=license,
        license_note=license_note,
        citation=CITATION,
    )


__all__ = [
    "DATASET_CARD_TEMPLATE",
    "SUBSETS",
    "build_dataset_card",
    "config_files",
    "curation_section",
    "folder_stats",
    "ophvl_configs",
    "size_category",
]
