from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kanalysis._paths import (
    COHORT_MARKER,
    RUN_MARKER,
    InputFileError,
    OutputPathError,
    check_input_dir,
    check_input_file,
    check_output_dir,
    check_output_file,
    write_marker,
)
from kanalysis.errors import KanalysisError


def _cohort_folder(path):
    path.mkdir()
    (path / "metadata.json").write_text(json.dumps({"schema_version": "1.1"}))
    (path / "subjects.csv").write_text("subject_id,arm\n")
    return path


def test_new_and_empty_folders_are_accepted(tmp_path):
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    (tmp_path / "empty").mkdir()
    check_output_dir(tmp_path / "empty")


def test_a_cohort_folder_may_be_replaced_but_a_foreign_one_not(tmp_path):
    check_output_dir(_cohort_folder(tmp_path / "cohort"))
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.docx").write_text("years of work")
    with pytest.raises(OutputPathError, match="not a kanalysis cohort folder"):
        check_output_dir(foreign)
    assert (foreign / "chapter1.docx").read_text() == "years of work"


def test_a_metadata_json_from_another_tool_is_not_a_marker(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "metadata.json").write_text("[1, 2]")
    with pytest.raises(OutputPathError):
        check_output_dir(other)


def test_run_marker_marks_a_run_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "01.ipynb").write_text("{}")
    with pytest.raises(OutputPathError):
        check_output_dir(run, marker=RUN_MARKER)
    write_marker(run, RUN_MARKER, run_id="x")
    check_output_dir(run, marker=RUN_MARKER)
    with pytest.raises(OutputPathError):  # a run folder is not a cohort folder
        check_output_dir(run, marker=COHORT_MARKER)


@pytest.mark.parametrize("bad", ["", "   "])
def test_empty_path_refused(bad):
    with pytest.raises(OutputPathError, match="empty"):
        check_output_dir(bad)


def test_file_fifo_link_and_path_under_file_refused(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("x")
    with pytest.raises(OutputPathError, match="existing file"):
        check_output_dir(f)
    with pytest.raises(OutputPathError, match="under"):
        check_output_dir(f / "out")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OutputPathError, match="FIFO"):
        check_output_dir(fifo)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "empty_target", target_is_directory=True)
    with pytest.raises(OutputPathError, match="symbolic link"):
        check_output_dir(link)


def test_output_is_contains_or_lies_in_an_input(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "data.csv").write_text("a\n1\n")
    with pytest.raises(OutputPathError, match="is an input"):
        check_output_dir(export, inputs=[export])
    with pytest.raises(OutputPathError, match="contains an input"):
        check_output_dir(tmp_path, inputs=[export / "data.csv"])
    with pytest.raises(OutputPathError, match="inside an input"):
        check_output_dir(export / "cohort", inputs=[export])
    check_output_dir(tmp_path / "cohort", inputs=[export])


def test_not_writable_place_refused(tmp_path):
    with pytest.raises(OutputPathError, match="cannot write"):
        check_output_dir("/proc/kanalysis-out")


def test_output_file_replaces_only_its_own_files(tmp_path):
    report = tmp_path / "report.md"
    check_output_file(report, signature=b"# Import report")
    report.write_text("# Import report: x\n")
    check_output_file(report, signature=b"# Import report")
    mine = tmp_path / "mine.md"
    mine.write_text("# My notes\n")
    with pytest.raises(OutputPathError, match="not written by kanalysis"):
        check_output_file(mine, signature=b"# Import report")
    with pytest.raises(OutputPathError, match="is an input"):
        check_output_file(report, inputs=[report], signature=b"# Import report")
    with pytest.raises(OutputPathError, match="folder"):
        check_output_file(tmp_path, signature=b"#")


def test_input_file_checks(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("x\n")
    assert check_input_file(f) == f
    with pytest.raises(InputFileError, match="not found"):
        check_input_file(tmp_path / "none.csv", table="subjects")
    with pytest.raises(InputFileError, match="is a folder"):
        check_input_file(tmp_path)
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    with pytest.raises(InputFileError, match="FIFO"):
        check_input_file(fifo, table="subjects")
    with pytest.raises(InputFileError, match="character device"):
        check_input_file("/dev/null")
    with pytest.raises(InputFileError, match="not a folder"):
        check_input_dir(f)
    assert issubclass(InputFileError, KanalysisError) and issubclass(OutputPathError, KanalysisError)


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_path_any_levels_under_a_file_names_the_file_as_given(tmp_path, monkeypatch, levels):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    target = Path("notes.txt", *["sub"] * levels)
    for check in (check_output_dir, check_output_file):
        with pytest.raises(OutputPathError) as err:
            check(target)
        message = str(err.value)
        assert "lies under 'notes.txt', which is a file" in message
        assert str(tmp_path) not in message and "cannot be inspected" not in message
