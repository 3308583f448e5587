"""`modeling_ophclip.saving`: folders written whole (the converter, the memory bank and the training checkpoints use
it) and the one report of how saved weights differ from a model's."""

import pytest

from modeling_ophclip.saving import listed, replace_folder, staged_folder, weight_shape_differences


def test_staged_folder_replaces_the_target_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "out"
    with staged_folder(target, "writing") as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".out.writing-") and not target.exists()
        (staging / "a.txt").write_text("first")
    assert (target / "a.txt").read_text() == "first"

    with pytest.raises(RuntimeError, match="interrupted"):
        with staged_folder(target) as staging:
            (staging / "a.txt").write_text("half-written")
            raise RuntimeError("interrupted")
    assert (target / "a.txt").read_text() == "first"  # the old folder is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # and nothing is left behind

    with staged_folder(target) as staging:
        (staging / "b.txt").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]  # replaced whole, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_staged_folder_creates_missing_parents(tmp_path):
    with staged_folder(tmp_path / "a" / "b" / "bank") as staging:
        (staging / "x").write_text("x")
    assert (tmp_path / "a" / "b" / "bank" / "x").is_file()


def test_replace_folder_replaces_a_link_without_touching_what_it_points_to(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "kept.txt").write_text("kept")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "new.txt").write_text("new")
    replace_folder(staging, link)
    assert not link.is_symlink() and (link / "new.txt").read_text() == "new"
    assert (real / "kept.txt").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_weight_shape_differences_names_each_kind():
    saved = {"a": (2, 3), "b": (4,), "same": (1,)}
    expected = {"a": [3, 3], "c": (5,), "same": (1,)}
    differences = weight_shape_differences(saved, expected)
    assert differences.missing == ["c"] and differences.unexpected == ["b"]
    assert differences.resized == [("a", (2, 3), (3, 3))]
    assert differences.describe("key", "the model") == (
        "1 key(s) of another shape: a (checkpoint [2, 3], the model [3, 3]); 1 key(s) missing from the checkpoint: c; "
        "1 key(s) not in the model: b")
    assert not weight_shape_differences(saved, saved) and weight_shape_differences(saved, saved).describe() == ""
    assert differences


def test_listed_cuts_long_lists_and_says_how_many_more():
    assert listed(["c", "a", "b"]) == "a, b, c"
    assert listed([f"k{i}" for i in range(7)], limit=5) == "k0, k1, k2, k3, k4, ... and 2 more"


def test_the_module_example_runs():
    import doctest

    from modeling_ophclip import saving

    result = doctest.testmod(saving)
    assert result.attempted and not result.failed
