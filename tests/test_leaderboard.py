"""The leaderboard: result records (JSON lines), the markdown tables, the weights hash, and what a model publishes
(the model card's `model-index` and the `.eval_results/*.yaml` files, written by `model_cards.eval_results` from
`published_metrics`)."""

import doctest
import json
import math
import warnings

import numpy as np
import pytest
import torch
import yaml
from huggingface_hub import ModelCard

from evaluate_suite import leaderboard
from evaluate_suite.leaderboard import (
    EvalRecord,
    append_record,
    latest_records,
    leaderboard_table,
    metric_unit,
    published_metrics,
    read_records,
    render_leaderboard,
    weights_hash,
)
from model_cards import eval_results as hub_metadata
from model_cards.eval_results import eval_result_entries, update_model_card, write_eval_results


JAN, FEB, MAR = "2025-01-01T00:00:00+00:00", "2025-02-01T00:00:00+00:00", "2025-03-01T00:00:00+00:00"
CLIP_HASH, OPH_HASH = "aa11aa11ff00ff00", "bb22bb22ee00ee00"


def records() -> list[EvalRecord]:
    """Two models x two benchmarks; ophclip's phase result twice (the March one is the latest); clip has no
    retrieval result."""
    return [
        EvalRecord("clip-b16", CLIP_HASH, "c101", "zero-shot", {"accuracy": 0.25, "f1": 0.2049, "num_videos": 2},
                   prompts_hash="p1", date=JAN, extra={"split": "test"}),
        EvalRecord("ophclip", OPH_HASH, "c101", "zero-shot", {"accuracy": 0.5312, "f1": None, "num_videos": 2},
                   prompts_hash="p1", date=MAR, extra={"split": "test"}),
        EvalRecord("ophclip", OPH_HASH, "ophvl:test", "retrieval",
                   {"t2v_R@1": 0.2344, "t2v_R@5": 0.51, "t2v_MedR": 5.0, "v2t_R@1": 0.2, "num_clips": 40}, date=JAN),
        EvalRecord("ophclip", OPH_HASH, "c101", "zero-shot", {"accuracy": 0.1, "f1": 0.1}, date=FEB),
    ]


TABLE = """\
### Phase recognition: zero-shot

| model | c101 / accuracy | c101 / f1 |
|---|---:|---:|
| clip-b16 `aa11aa11` | 25.0 | 20.5 |
| ophclip `bb22bb22` | 53.1 | n/a |

### Retrieval

| model | ophvl:test / t2v_R@1 | ophvl:test / t2v_R@5 | ophvl:test / v2t_R@1 |
|---|---:|---:|---:|
| ophclip `bb22bb22` | 23.4 | 51.0 | 20.0 |"""


def model_index(recs, model_id, *, dataset_ids=None, **selection):
    """The model-index of one model's records, as the leaderboard publishes it."""
    return hub_metadata.model_index(published_metrics(recs, model_id, **selection), dataset_ids=dataset_ids)


def test_doctests():
    for module in (leaderboard, hub_metadata):
        assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0


# -- records --------------------------------------------------------------------------------------------------------


def test_records_round_trip(tmp_path):
    path = tmp_path / "sub" / "results.jsonl"
    for record in records():
        append_record(path, record)
    back = read_records(path)
    assert back == records() and back.malformed == []
    assert all(len(line) and line.startswith("{") for line in path.read_text().splitlines())


def test_record_defaults_and_nan_written_as_null(tmp_path):
    record = EvalRecord("m", "h", "b", "zero-shot",
                        {"accuracy": float("nan"), "f1": np.float32(0.5), "FPR": float("inf")},
                        skipped={"v3": "unreadable"},
                        extra={"per_video": {"v1": {"f1": np.float64("nan")}}, "ids": np.arange(3), "fps": 1.0})
    assert record.date.endswith("+00:00") and record.prompts_hash is None
    path = tmp_path / "results.jsonl"
    append_record(path, record)

    def refuse(constant):
        raise AssertionError(f"non-strict JSON constant {constant}")

    line = json.loads(path.read_text(), parse_constant=refuse)  # strict JSON: no NaN/Infinity tokens
    assert line["metrics"] == {"accuracy": None, "f1": 0.5, "FPR": None}
    assert line["extra"] == {"per_video": {"v1": {"f1": None}}, "ids": [0, 1, 2], "fps": 1.0}
    (back,) = read_records(path)
    assert back.metrics["accuracy"] is None and back.skipped == {"v3": "unreadable"} and back.date == record.date


def test_malformed_lines_are_skipped_and_counted(tmp_path):
    path = tmp_path / "results.jsonl"
    good = [json.dumps(r.to_dict()) for r in records()[:2]]
    path.write_text("\n".join([
        good[0],
        "",                                                  # blank: ignored, not malformed
        '{"model_id": "x", "weights_hash": "h", "benc',      # line 3: cut
        "[1, 2, 3]",                                         # line 4: not an object
        json.dumps({"model_id": "x", "benchmark": "b"}),     # line 5: fields missing
        json.dumps({**records()[0].to_dict(), "metrics": [0.5]}),  # line 6: metrics not an object
        good[1],
    ]) + "\n")
    with pytest.warns(UserWarning) as caught:
        back = read_records(path)
    assert [r.model_id for r in back] == ["clip-b16", "ophclip"]
    assert [number for number, _ in back.malformed] == [3, 4, 5, 6]
    messages = [str(w.message) for w in caught]
    for number in (3, 4, 5, 6):
        assert any(f"results.jsonl:{number}:" in m for m in messages)
    assert any("missing field(s) weights_hash, protocol, metrics" in m for m in messages)
    assert any("skipped 4 malformed line(s) of 6" in m for m in messages)


def test_append_after_a_truncated_line_keeps_the_new_record(tmp_path):
    path = tmp_path / "results.jsonl"
    append_record(path, records()[0])
    with open(path, "a") as f:
        f.write('{"model_id": "crashed mid-wri')  # a writer died here: no newline
    append_record(path, records()[1])
    with pytest.warns(UserWarning) as caught:
        back = read_records(path)
    assert any("results.jsonl:2:" in str(w.message) for w in caught)
    assert back == records()[:2] and [n for n, _ in back.malformed] == [2]


def test_unknown_fields_are_ignored():
    data = {**records()[0].to_dict(), "added_in_a_later_version": 1}
    assert EvalRecord.from_dict(data) == records()[0]


def test_one_unit_for_rates_and_older_percent_recalls_converted(tmp_path):
    """Every rate is stored as a fraction; a record written before that convention (no `units` field, R@K in
    percent) reads back as fractions, while ranks, counts and the other rates are untouched."""
    retrieval = records()[2]
    assert retrieval.to_dict()["units"] == "fraction"
    old = {k: v for k, v in retrieval.to_dict().items() if k != "units"}
    old["metrics"] = {"t2v_R@1": 23.44, "t2v_R@5": 51.0, "t2v_MedR": 5.0, "v2t_R@1": 20.0, "num_clips": 40}
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(old) + "\n")
    (back,) = read_records(path)
    assert back.metrics == pytest.approx(retrieval.metrics) and back.units == "fraction"
    phase_old = {k: v for k, v in records()[0].to_dict().items() if k != "units"}
    assert EvalRecord.from_dict(phase_old).metrics == records()[0].metrics
    assert all(metric_unit(m) != "percent" for r in records() for m in r.metrics)


def test_duplicates_latest_wins():
    latest = latest_records(records())
    assert len(latest) == 3
    (phase,) = [r for r in latest if r.model_id == "ophclip" and r.benchmark == "c101"]
    assert phase.date == MAR and phase.metrics["accuracy"] == 0.5312
    same_date = [EvalRecord("m", "h", "b", "p", {"accuracy": 0.1}, date=JAN),
                 EvalRecord("m", "h", "b", "p", {"accuracy": 0.2}, date=JAN)]
    assert latest_records(same_date)[0].metrics["accuracy"] == 0.2  # equal dates: later in the file
    other_weights = EvalRecord("m", "h2", "b", "p", {"accuracy": 0.3}, date=JAN)
    assert len(latest_records(same_date + [other_weights])) == 2  # another checkpoint is another row


# -- table ----------------------------------------------------------------------------------------------------------


def test_table_two_models_two_benchmarks():
    assert leaderboard_table(records()) == TABLE


def test_table_metric_choice_and_units():
    table = leaderboard_table(records(), metrics=["t2v_MedR", "accuracy"]).splitlines()
    assert table[2] == "| model | c101 / accuracy |" and table[-3] == "| model | ophvl:test / t2v_MedR |"
    assert table[-1] == "| ophclip `bb22bb22` | 5.0 |"
    assert leaderboard_table([]) == "_No results._"
    assert [metric_unit(m) for m in ("mAP", "FPR_macro", "accuracy_smoothed", "f1_seed_std", "v2t_R@10", "t2v_MnR",
                                      "frames")] == ["fraction"] * 5 + ["rank", "other"]


def test_table_stays_narrow_with_many_benchmarks():
    """One table per task and protocol, one row per model: eleven benchmarks of three protocols do not make one row
    of 40 columns."""
    many = []
    for i in range(6):
        many.append(EvalRecord("m", "h", f"phase{i}", "zero-shot", {"accuracy": 0.5, "f1": 0.4}))
        many.append(EvalRecord("m", "h", f"phase{i}", "linear-probe-10%", {"accuracy": 0.6, "f1": 0.5}))
    for i in range(5):
        many.append(EvalRecord("m", "h", f"tools{i}", "zero-shot", {"mAP": 0.3, "FPR": 0.1}))
    table = leaderboard_table(many)
    headings = [line for line in table.splitlines() if line.startswith("### ")]
    assert headings == ["### Phase recognition: linear-probe-10%", "### Phase recognition: zero-shot",
                        "### Instrument recognition: zero-shot"]
    widths = [line.count(" | ") for line in table.splitlines() if line.startswith("| m ")]
    assert widths == [12, 12, 10]


def test_table_escapes_pipes():
    record = EvalRecord("a|b", "", "bench", "zero-shot", {"accuracy": 1.0})
    assert leaderboard_table([record]).splitlines()[-1] == "| a\\|b | 100.0 |"


# -- model-index ----------------------------------------------------------------------------------------------------


def published(results):
    return sorted((r.task_type, r.dataset_type, r.dataset_name, r.dataset_split, r.metric_type, r.metric_value,
                   r.metric_config, r.metric_name) for r in results)


def test_model_index_values():
    results = model_index(records(), "ophclip", dataset_ids={"c101": "org/cataract-101"})
    retrieval = ("feature-extraction", "ophvl:test", "ophvl:test", None)
    assert published(results) == [
        (*retrieval, "t2v_R@1", 23.44, "retrieval", "retrieval t2v_R@1 (%)"),
        (*retrieval, "t2v_R@5", 51.0, "retrieval", "retrieval t2v_R@5 (%)"),
        (*retrieval, "v2t_R@1", 20.0, "retrieval", "retrieval v2t_R@1 (%)"),
        ("video-classification", "org/cataract-101", "c101", "test", "accuracy", 53.12, "zero-shot",
         "zero-shot accuracy (%)"),
    ]  # f1 of the latest phase record is undefined (null): left out, not published as the older 0.1
    assert published(model_index(records(), "ophclip", metrics=["t2v_MedR"]))[0][4:6] == ("t2v_MedR", 5.0)
    with pytest.raises(ValueError, match="no result of model 'nobody'"):
        model_index(records(), "nobody")


def test_model_index_round_trip_through_the_card(tmp_path):
    card_path = tmp_path / "README.md"
    update_model_card(card_path, published_metrics(records(), "ophclip"), model_name="OphCLIP-base", title="ophclip")
    card = ModelCard.load(card_path)
    assert card.data.model_name == "OphCLIP-base"
    assert published(card.data.eval_results) == published(model_index(records(), "ophclip"))
    assert "model-index:" in card_path.read_text() and "## Evaluation" in card.text

    # An existing card keeps its text and metadata; its results are replaced.
    card.text = "# OphCLIP\n\nHand-written description.\n"
    card.data.license = "apache-2.0"
    card.save(card_path)
    newer = EvalRecord("ophclip", OPH_HASH, "c101", "zero-shot", {"accuracy": 0.6}, date="2025-04-01T00:00:00+00:00")
    update_model_card(card_path, published_metrics(records() + [newer], "ophclip"), title="ophclip")
    card = ModelCard.load(card_path)
    assert card.text.strip() == "# OphCLIP\n\nHand-written description.".strip() and card.data.license == "apache-2.0"
    assert card.data.model_name == "OphCLIP-base"
    accuracy = [r.metric_value for r in card.data.eval_results if r.metric_type == "accuracy"]
    assert accuracy == [60.0]


def test_model_index_uses_the_latest_checkpoint():
    retrained = EvalRecord("ophclip", "cc33cc33", "c101", "zero-shot", {"accuracy": 0.7}, date="2025-05-01T00:00:00Z")
    with pytest.warns(UserWarning, match="leaving out results of bb22bb22ee00ee00"):
        results = model_index(records() + [retrained], "ophclip")
    assert [(r.metric_type, r.metric_value) for r in results] == [("accuracy", 70.0)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        older = model_index(records() + [retrained], "ophclip", weights_hash=OPH_HASH)
    assert len(older) == 4


# -- .eval_results --------------------------------------------------------------------------------------------------


def test_eval_results_yaml_files(tmp_path):
    paths = write_eval_results(tmp_path, published_metrics(records(), "ophclip"),
                               dataset_ids={"c101": "org/cataract-101"})
    assert sorted(p.relative_to(tmp_path).as_posix() for p in paths) == [
        ".eval_results/cataract-101.yaml", ".eval_results/ophvl_test.yaml"]
    phase = yaml.safe_load((tmp_path / ".eval_results" / "cataract-101.yaml").read_text())
    assert phase == [{"dataset": {"id": "org/cataract-101", "task_id": "zero-shot_accuracy"}, "value": 53.12,
                      "date": MAR, "notes": f"protocol zero-shot; accuracy in percent; weights {OPH_HASH}; prompts p1"}]
    retrieval = yaml.safe_load((tmp_path / ".eval_results" / "ophvl_test.yaml").read_text())
    assert [(e["dataset"]["id"], e["dataset"]["task_id"], e["value"]) for e in retrieval] == [
        ("ophvl:test", "retrieval_t2v_R1", 23.44), ("ophvl:test", "retrieval_t2v_R5", 51.0),
        ("ophvl:test", "retrieval_v2t_R1", 20.0)]
    entries = eval_result_entries(published_metrics(records(), "clip-b16"), source_url="https://example.org/run",
                                  source_name="OphCLIP eval")
    assert {(e.task_id, e.value, e.source_url) for e in entries} == {
        ("zero-shot_accuracy", 25.0, "https://example.org/run"), ("zero-shot_f1", 20.49, "https://example.org/run")}


# -- render ---------------------------------------------------------------------------------------------------------


def test_render_leaderboard(tmp_path):
    results = tmp_path / "results.jsonl"
    for record in records():
        append_record(results, record)

    printed = render_leaderboard(results)
    assert printed["table"] == TABLE and printed["num_records"] == 3 and printed["malformed_lines"] == []
    assert "model_index" not in printed and not (tmp_path / "leaderboard.md").exists()

    out = tmp_path / "board"
    rendered = render_leaderboard(results, out_dir=out, model_id="ophclip")
    assert rendered["leaderboard_md"] == str(out / "leaderboard.md")
    assert TABLE in (out / "leaderboard.md").read_text()
    index = yaml.safe_load((out / "model_index.yaml").read_text())
    assert index == yaml.safe_load(rendered["model_index"]) and index["model-index"][0]["name"] == "ophclip"
    assert {r["dataset"]["type"] for r in index["model-index"][0]["results"]} == {"c101", "ophvl:test"}
    assert published(ModelCard.load(out / "README.md").data.eval_results) == published(model_index(records(),
                                                                                                     "ophclip"))
    assert sorted(rendered["eval_results"]) == ["c101.yaml", "ophvl_test.yaml"]
    assert sorted(rendered["eval_results_files"]) == [str(out / ".eval_results" / "c101.yaml"),
                                                      str(out / ".eval_results" / "ophvl_test.yaml")]
    json.dumps(rendered)  # the command line prints it


# -- weights hash ---------------------------------------------------------------------------------------------------


def tiny_ophclip():
    from ophclip_testing import OphCLIPModelTester

    from modeling_ophclip import OphCLIPModel

    torch.manual_seed(0)
    return OphCLIPModel(OphCLIPModelTester().get_config()).eval()


def test_weights_hash_of_a_module():
    model = tiny_ophclip()
    first = weights_hash(model)
    assert len(first) == 16 and int(first, 16) >= 0
    assert weights_hash(model) == first == weights_hash(model.state_dict())
    state = {k: v.clone() for k, v in reversed(list(model.state_dict().items()))}
    assert weights_hash(state) == first  # order of the state dict does not matter
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-3
    assert weights_hash(model) != first
    assert len(weights_hash(model, length=12)) == 12

    layer = torch.nn.Linear(3, 2)
    as_half = {k: v.half() for k, v in layer.state_dict().items()}
    assert weights_hash(layer) != weights_hash(as_half)  # dtype is part of the hash
    strided = {"w": torch.arange(6.0).reshape(2, 3).t()}
    assert weights_hash(strided) == weights_hash({"w": torch.arange(6.0).reshape(2, 3).t().contiguous()})
    with pytest.raises(TypeError):
        weights_hash(3.0)


def test_weights_hash_of_a_folder(tmp_path):
    model = tiny_ophclip()
    model.save_pretrained(tmp_path / "a")
    model.save_pretrained(tmp_path / "b")
    first = weights_hash(tmp_path / "a")
    assert first == weights_hash(str(tmp_path / "b"))  # same weights saved twice
    (tmp_path / "a" / "config.json").write_text("{}")
    assert weights_hash(tmp_path / "a") == first  # only weight files count
    assert weights_hash(tmp_path / "a" / "model.safetensors") == first  # the folder's only weight file
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-3
    model.save_pretrained(tmp_path / "b")
    assert weights_hash(tmp_path / "b") != first
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no weight file"):
        weights_hash(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="Hub ids are not fetched"):
        weights_hash("org/not-a-local-folder")


def test_nan_metric_is_not_published():
    record = EvalRecord("m", "h", "cadis", "zero-shot", {"mAP": 0.42, "FPR": float("nan")})
    (result,) = model_index([record], "m")
    assert (result.metric_type, result.metric_value, result.task_type) == ("mAP", 42.0, "video-classification")
    assert result.task_name == "Surgical instrument recognition"
    assert math.isclose(leaderboard.published_value("FPR", 0.05), 5.0)
