from __future__ import annotations

import pytest

from kanalysis._io import atomic_open, atomic_write_text, replace_folder


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "results.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write(b"half-")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_replace_folder_swaps_whole_folders(tmp_path):
    target = tmp_path / "cohort"
    target.mkdir()
    (target / "stale.csv").write_text("x")
    staging = tmp_path / ".staging"
    staging.mkdir()
    (staging / "subjects.csv").write_text("y")
    replace_folder(staging, target)
    assert [p.name for p in target.iterdir()] == ["subjects.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort"]
