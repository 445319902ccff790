"""``kanalysis design``: outputs from a scenario file; bad input is one clear line, exit 2,
before any simulation."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from kanalysis.cli import main
from kanalysis.design.cli import parse_n
from kanalysis.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "design_ketamine_mmrm.toml"


def test_parse_n():
    assert parse_n("40:200:40") == [40, 80, 120, 160, 200]
    assert parse_n("10:12") == [10, 11, 12]
    assert parse_n("20, 30") == [20, 30]
    for bad in ("a:b", "40:20:10", "10:20:0", "1:2:3:4"):
        with pytest.raises(ConfigurationError, match="--n"):
            parse_n(bad)


def test_design_command_writes_outputs_and_extends(tmp_path, capsys):
    out = tmp_path / "design"
    args = ["design", "--scenario", str(EXAMPLE), "--n", "15:25:10", "--n-sim", "2", "--seed",
            "9", "--null", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "root seed 9" in printed
    for name in ("power_table.csv", "replicates.parquet", "report.md", "results.json",
                 "power_curve.png", "power_curve.pdf"):
        assert (out / name).exists(), name
    table = pd.read_csv(out / "power_table.csv")
    assert list(table["n per arm"]) == [15, 25, 15, 25]
    res = json.loads((out / "results.json").read_text())
    assert res["seed"] == "9" and str(tmp_path) not in (out / "results.json").read_text()
    # A second run with more replicates adds to the store.
    assert main(args[:6] + ["3"] + args[7:]) == 0
    assert len(pd.read_parquet(out / "replicates.parquet")) == 2 * 2 * 3


def test_design_command_refuses_foreign_folders(tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    rc = main(["design", "--scenario", str(EXAMPLE), "--n", "10", "--n-sim", "1",
               "--out", str(foreign), "--no-progress"])
    assert rc == 2 and "--out" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert not (foreign / "replicates.parquet").exists()


@pytest.mark.parametrize("content, extra, message", [
    ("[scenario]\nvisits = ['a', 'b']\nsd = 1.0\nretention = [0.9, 1.0]\n[scenario.means]\n"
     "x = [0, 0]\ny = [1, 1]\n", [], "retention"),
    ("[scenario]\nvisits = ['a']\n", [], "means"),
    ("[scenario\n", [], "not valid TOML"),
    ("[scenario]\nsynthetic = 'serial'\n", [], "one arm"),
    ("[scenario]\nvisits = ['a']\nsd = 1.0\n[scenario.means]\nx = [0]\ny = [1]\n"
     "[analysis]\nfoo = 1\n", [], "unknown"),
    ("[scenario]\nvisits = ['a']\nsd = 1.0\n[scenario.means]\nx = [0]\ny = [1]\n",
     ["--analysis", "responder"], "threshold"),
    ("[scenario]\nvisits = ['a']\nsd = 1.0\n[scenario.means]\nx = [0]\ny = [1]\n",
     ["--scheduler", "nonsense"], "scheduler"),
])
def test_bad_scenarios_are_one_clear_line(tmp_path, capsys, content, extra, message):
    path = tmp_path / "s.toml"
    path.write_text(content)
    rc = main(["design", "--scenario", str(path), "--n", "10", "--n-sim", "2",
               "--out", str(tmp_path / "o"), "--no-progress", *extra])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o" / "replicates.parquet").exists()


def test_design_refuses_unreadable_scenario_files_with_a_message(tmp_path, capsys):
    """A folder, a non-UTF-8 file and a missing file: exit 2, a message naming the file, no
    traceback."""
    from kanalysis.cli import main

    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe not text")
    cases = {tmp_path: "is a folder", binary: "not UTF-8", tmp_path / "none.toml": "not found"}
    for path, words in cases.items():
        code = main(["design", "--scenario", str(path), "--n", "40", "--n-sim", "2",
                     "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and words in err and "Traceback" not in err, (path, err)
