"""Tests for kanalysis.privacy and the end-to-end identifier-planting test of strict mode."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from privacy_scan import scan_small_counts

from kanalysis.errors import ConfigurationError
from kanalysis.privacy import (
    PrivacyPolicy,
    collapse_rare_categories,
    detect_identifiers,
    drop_identifiers,
    format_count,
    suppress_small_counts,
)

ROOT = Path(__file__).resolve().parents[1]


# --- identifier detection ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "column, kind",
    [
        ("Patient Name", "name"), ("lastName", "name"), ("SURNAME", "name"), ("first_name", "name"),
        ("MRN", "mrn"), ("Medical Record Number", "mrn"), ("nhs_number", "mrn"),
        ("E-mail", "email"), ("email_address", "email"),
        ("Phone", "phone"), ("mobile", "phone"), ("Tel", "phone"),
        ("Street address", "address"), ("ZIP", "address"), ("postcode", "address"),
        ("DOB", "birth_date"), ("Date of birth", "birth_date"), ("BRTHDT", "birth_date"),
        ("SSN", "ssn"), ("social_security_number", "ssn"),
        ("visit_date", "exact_date"), ("ADT", "exact_date"), ("admission", "exact_date"),
        ("Comments", "free_text"), ("clinician notes", "free_text"),
    ],
)
def test_identifier_columns_are_found_by_name(column, kind):
    df = pd.DataFrame({column: [None, None]})
    found = detect_identifiers(df, table="t")
    assert found["column"].tolist() == [column]
    assert found["kind"].iloc[0] == kind
    assert found["detected_by"].iloc[0] == "column name"


@pytest.mark.parametrize(
    "values, kind",
    [
        (["ada@example.org", "b.c+1@uni.no", None], "email"),
        (["123-45-6789", "987-65-4321"], "ssn"),
        (["+47 912 34 567", "(212) 555-0199", "555 123 4567"], "phone"),
        (["2024-03-01", "2024-03-09"], "exact_date"),
        (["01.03.2024", "15.04.2024"], "exact_date"),
        (["A1234567", "B7654321", "C1111111"], "mrn"),
        ([10234567, 10234568, 10234569], "mrn"),
        (["Ingrid Haugen", "Lars Berg", "Kari Dahl"], "name"),
        (["she said she felt much better after the second infusion",
          "dizzy for an hour, husband drove her home afterwards",
          "no complaints today, appointment moved to next week"], "free_text"),
    ],
)
def test_identifier_content_is_found_under_an_innocent_name(values, kind):
    df = pd.DataFrame({"x7": values, "score": [20.0] * len(values)})
    found = detect_identifiers(df)
    assert found["column"].tolist() == ["x7"]
    assert found["kind"].iloc[0] == kind
    assert found["detected_by"].iloc[0] == "content"
    # The finding never carries a value.
    flat = " ".join(found.astype(str).to_numpy().ravel())
    for v in values:
        if v is not None:
            assert str(v) not in flat


def test_model_columns_and_synthetic_cohorts_are_not_flagged(synthetic_dir):
    import kanalysis as ka

    df = pd.DataFrame({
        "subject_id": ["S001", "S002", "S003"], "arm": ["ketamine", "midazolam", "ketamine"],
        "site": ["Oslo University Hospital", "Bergen Clinic", "Oslo University Hospital"],
        "sex": ["F", "M", "other"], "age": [34.0, 51.0, 47.0], "visit": ["week2", "day1", "40min"],
        "term": ["nausea", "dissociation", "headache"], "dose": ["0.5", "0.5", "0.75"],
        "day": [0.02778, 1.0, 7.0], "dropout_reason": ["Adverse Event", "Lost To Follow-Up", None],
    })
    assert detect_identifiers(df).empty
    for design in ("single", "clinic"):
        cohort = ka.load_cohort(synthetic_dir / design)
        for name, table in cohort.tables.items():
            assert detect_identifiers(table, table=name).empty, name


def test_drop_identifiers_keeps_listed_columns_and_does_not_modify_input():
    df = pd.DataFrame({"MRN": ["A1234567", "B7654321"], "mail": ["a@b.org", "c@d.org"],
                       "score": [10.0, 12.0]})
    before = df.copy()
    cleaned, found = drop_identifiers(df, keep=["MRN"])
    assert list(cleaned.columns) == ["MRN", "score"]
    assert found["column"].tolist() == ["mail"]
    pd.testing.assert_frame_equal(df, before)


# --- format_count -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n, threshold, expected",
    [(0, 11, "0"), (1, 11, "<11"), (10, 11, "<11"), (11, 11, "11"), (250, 11, "250"),
     (4, 5, "<5"), (5, 5, "5"), (4, 1, "4"), (None, 11, "NA"), (float("nan"), 11, "NA"),
     (12.0, 11, "12")],
)
def test_format_count(n, threshold, expected):
    assert format_count(n, threshold) == expected


def test_format_count_options_and_bad_threshold():
    assert format_count(0, 11, suppress_zero=True) == "<11"
    assert format_count(3, prefix="n = ") == "n = <11"
    for bad in (0, -3, 2.5, True, "11"):
        with pytest.raises(ConfigurationError):
            format_count(5, bad)


# --- suppress_small_counts --------------------------------------------------------------------------
def _recoverable_cells(table: np.ndarray, mask: np.ndarray, row_totals: bool, col_totals: bool,
                       threshold: int) -> list[tuple[int, int]]:
    """Cells an attacker can pin down, or bound below the threshold as a group, from one total."""
    leaks = []
    lines = []
    if row_totals:
        lines += [[(i, j) for j in range(table.shape[1])] for i in range(table.shape[0])]
    if col_totals:
        lines += [[(i, j) for i in range(table.shape[0])] for j in range(table.shape[1])]
    for line in lines:
        hidden = [c for c in line if mask[c]]
        if len(hidden) == 1:
            leaks.append(hidden[0])
        elif len(hidden) > 1 and len(hidden) < len(line):
            # The hidden group's sum (total minus shown cells) must not itself be a small count
            # while a shown cell is still available to hide with it.
            total = sum(table[c] for c in hidden)
            if 0 < total < threshold:
                leaks.extend(hidden)
    return leaks


def test_suppression_hand_case():
    t = pd.DataFrame({"ketamine": [30, 4, 25], "midazolam": [28, 15, 20]},
                     index=["nausea", "vomiting", "headache"])
    out, mask = suppress_small_counts(t, ["ketamine", "midazolam"], return_mask=True)
    # 4 is primary; 15 protects it in its row; 25 and 20 protect 4 and 15 in their columns.
    assert mask.to_numpy().tolist() == [[False, False], [True, True], [True, True]]
    assert out.loc["nausea"].tolist() == [30, 28]
    assert out["ketamine"].isna().tolist() == [False, True, True]
    assert str(out["ketamine"].dtype) == "Int64"


def test_suppression_rows_only_and_none():
    t = pd.DataFrame({"a": [30, 4], "b": [28, 15], "c": [12, 40]})
    _, rows_only = suppress_small_counts(t, ["a", "b", "c"], margins="rows", return_mask=True)
    # Row 2: 4 hidden, smallest shown non-zero (15) hidden too; row 1 untouched.
    assert rows_only.to_numpy().tolist() == [[False] * 3, [True, True, False]]
    _, primary = suppress_small_counts(t, ["a", "b", "c"], margins="none", return_mask=True)
    assert primary.to_numpy().tolist() == [[False] * 3, [True, False, False]]


def test_suppression_with_shown_totals():
    t = pd.DataFrame({"ketamine": [3, 40, 43], "midazolam": [20, 30, 50], "total": [23, 70, 93]},
                     index=["event", "no_event", "all"])
    out, mask = suppress_small_counts(t, ["ketamine", "midazolam"], total_column="total",
                                      total_row="all", label="<11", return_mask=True)
    assert out.at["event", "ketamine"] == "<11"
    # The event row total (23) is shown, so a second event-row cell must be hidden; the
    # ketamine column total (43) is shown, so a second ketamine cell must be hidden.
    assert mask.loc["event", ["ketamine", "midazolam"]].sum() >= 2
    assert mask.loc[["event", "no_event"], "ketamine"].sum() >= 2
    assert out.at["all", "total"] == "93"


def test_suppression_zero_handling():
    t = pd.DataFrame({"a": [0, 50], "b": [30, 45]})
    out = suppress_small_counts(t, ["a", "b"])
    assert out.notna().all().all()  # zero is not a small count by default
    out0 = suppress_small_counts(t, ["a", "b"], suppress_zero=True)
    assert out0.isna().sum().sum() == 4  # 0 hidden, then its row and column partners, then 45


def test_suppression_never_leaves_a_recoverable_cell_on_random_tables():
    rng = np.random.default_rng(20240611)
    threshold = 11
    for trial in range(200):
        shape = (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
        table = rng.choice([0, 1, 2, 3, 5, 8, 9, 11, 14, 20, 35, 80], size=shape)
        margins = ["both", "rows", "columns"][trial % 3]
        df = pd.DataFrame(table, columns=[f"c{j}" for j in range(shape[1])])
        out, mask = suppress_small_counts(df, list(df.columns), threshold, margins=margins,
                                          return_mask=True)
        m = mask.to_numpy()
        # Every small count is hidden; every shown value is unchanged.
        assert m[(table >= 1) & (table < threshold)].all()
        shown = ~m
        assert (out.to_numpy()[shown].astype(int) == table[shown]).all()
        leaks = _recoverable_cells(table, m, margins in ("both", "rows"),
                                   margins in ("both", "columns"), threshold)
        # A line where everything is hidden, or with no shown partner left, cannot be fixed
        # further without hiding the total; the only allowed leaks are lines of length 1.
        if leaks:
            row_len, col_len = shape[1], shape[0]
            assert (margins != "columns" and row_len == 1) or (margins != "rows" and col_len == 1), (
                trial, table.tolist(), m.tolist())


def test_suppression_with_a_repeated_index():
    t = pd.DataFrame({"a": [30, 4, 25], "b": [28, 15, 20]}, index=["x", "x", "y"])
    out, mask = suppress_small_counts(t, ["a", "b"], return_mask=True)
    expected, _ = suppress_small_counts(t.reset_index(drop=True), ["a", "b"], return_mask=True)
    assert list(out.index) == ["x", "x", "y"] and list(mask.index) == ["x", "x", "y"]
    assert out.reset_index(drop=True).equals(expected)


def test_suppression_input_checks():
    t = pd.DataFrame({"a": [1, 2]})
    with pytest.raises(ConfigurationError, match="not in the table"):
        suppress_small_counts(t, ["b"])
    with pytest.raises(ConfigurationError, match="margins"):
        suppress_small_counts(t, ["a"], margins="diagonal")
    with pytest.raises(ConfigurationError, match="negative"):
        suppress_small_counts(pd.DataFrame({"a": [-1, 2]}), ["a"])
    before = t.copy()
    suppress_small_counts(t, ["a"])
    pd.testing.assert_frame_equal(t, before)


def test_collapse_rare_categories():
    s = pd.Series(["nausea"] * 12 + ["priapism"] + ["headache"] * 11 + [None])
    out = collapse_rare_categories(s)
    assert set(out.dropna()) == {"nausea", "headache", "other"}
    assert out.isna().sum() == 1
    counts = pd.Series({"nausea": 3, "priapism": 20, "headache": 15})
    out2 = collapse_rare_categories(s, count=counts, other="pooled")
    assert (out2 == "pooled").sum() == 12


def test_privacy_policy():
    strict = PrivacyPolicy()
    assert strict.strict and not strict.allows_row_level and strict.threshold == 11
    assert strict.format_count(7) == "<11" and PrivacyPolicy("none").format_count(7) == "7"
    assert PrivacyPolicy("strict", min_cell_count=5).format_count(7) == "7"
    with pytest.raises(ConfigurationError):
        PrivacyPolicy("lenient")
    with pytest.raises(ConfigurationError):
        PrivacyPolicy("strict", min_cell_count=0)
    assert PrivacyPolicy.from_metadata({"source": "clinic"}).strict
    assert not PrivacyPolicy.from_metadata({"source": "synthetic"}).strict
    assert PrivacyPolicy.from_metadata({"privacy": "strict", "min_cell_count": 5}).min_cell_count == 5
    assert PrivacyPolicy.from_metadata({"privacy": "none"}, override="strict").strict
    assert PrivacyPolicy("STRICT").mode == "strict"


@pytest.mark.parametrize(
    ("privacy", "threshold", "metadata", "expected"),
    [
        ("none", 11, {"privacy": "STRICT"}, ("strict", 11)),
        ("strict", 11, {"privacy": "none"}, ("strict", 11)),
        ("none", 11, {"privacy": "none", "min_cell_count": 30}, ("none", 30)),
        ("Strict", 20, {"privacy": "strict", "min_cell_count": 5}, ("strict", 20)),
        ("none", 11, {"source": "synthetic"}, ("none", 11)),
        ("none", 11, {"source": "clinic"}, ("strict", 11)),
        ("none", 11, None, ("none", 11)),
        (None, None, {"privacy": "strict", "min_cell_count": 30.0}, ("strict", 30)),
    ],
)
def test_policy_resolves_to_the_stricter_setting(privacy, threshold, metadata, expected):
    policy = PrivacyPolicy.resolve(privacy, threshold, metadata)
    assert (policy.mode, policy.min_cell_count) == expected


@pytest.mark.parametrize(
    ("privacy", "threshold", "metadata", "match"),
    [
        ("lenient", 11, {}, "parameter `privacy`.*'lenient'"),
        ("none", 11, {"privacy": "private"}, "metadata.json.*'private'"),
        ("none", 11, {"min_cell_count": "eleven"}, "metadata.json.*min_cell_count"),
        ("none", 0, {}, "parameter `min_cell_count`"),
        ("none", 11, ["strict"], "metadata.json must hold an object"),
    ],
)
def test_policy_rejects_unknown_values(privacy, threshold, metadata, match):
    with pytest.raises(ConfigurationError, match=match):
        PrivacyPolicy.resolve(privacy, threshold, metadata)


def test_policy_apply_suppresses_counts_their_complements_and_derived_values():
    table = pd.DataFrame({
        "visit": ["day1", "day1", "day7", "day7"],
        "arm": ["a", "b", "a", "b"],
        "responders": [4, 30, 25, 20],
        "n": [40, 35, 40, 9],
        "rate": [0.1, 30 / 35, 25 / 40, 20 / 9],
        "day": [1.0, 1.0, 7.0, 7.0],
    })
    policy = PrivacyPolicy("strict", 11)
    out = policy.apply(table, {"responders": "n"})
    # 4 is small; 35 - 30 = 5 gives a small complement; n = 9 is a small denominator.
    assert out["responders"].tolist() == ["<11", "<11", 25, "<11"]
    assert out["n"].tolist() == [40, 35, 40, "<11"]
    assert out["rate"].isna().tolist() == [True, True, False, True]
    assert out["day"].tolist() == [1.0, 1.0, 7.0, 7.0]  # coordinates stay
    assert table["responders"].tolist() == [4, 30, 25, 20]  # input unchanged
    assert PrivacyPolicy("none").apply(table, {"responders": "n"}).equals(table)
    # Several counts in a row: secondary suppression within the row.
    wide = pd.DataFrame({"n_mild": [3, 40], "n_severe": [30, 50]})
    assert policy.apply(wide, ["n_mild", "n_severe"]).iloc[0].tolist() == ["<11", "<11"]


def test_privacy_policy_suppress_collapse_and_row_level():
    strict = PrivacyPolicy()
    t = pd.DataFrame({"a": [3, 40]})
    assert PrivacyPolicy("none").suppress(t, ["a"]).equals(t)
    assert strict.suppress(t, ["a"])["a"].tolist() == ["<11", "<11"]
    with pytest.raises(ConfigurationError, match="row-level"):
        strict.check_row_level(pd.DataFrame({"subject_id": ["S1"], "score": [3]}))
    PrivacyPolicy("none").check_row_level(pd.DataFrame({"subject_id": ["S1"]}))
    s = pd.Series(["a"] * 11 + ["b"])
    assert set(strict.collapse_rare(s)) == {"a", "other"}
    assert PrivacyPolicy("none").collapse_rare(s).equals(s)


# --- identifier planting: import, run every notebook in strict mode, scan the outputs -------------------
N_PLANTED = 90  # subjects taken from a bundled cohort (keeps the notebook runs short)
PLANTED_BASE = "single"  # a design on which every notebook runs
PLANTED_SITE = "Tromsoe Satellite Unit"
PLANTED_TERM = "priapism"
_TEXT_SUFFIXES = {".ipynb", ".html", ".htm", ".csv", ".tex", ".json", ".svg", ".md", ".txt", ".py"}


def _planted_export(folder: Path, synthetic_dir: Path) -> tuple[Path, dict[str, list[str]]]:
    """Write a clinic-style export of a bundled synthetic cohort with identifiers planted in it."""
    import kanalysis as ka

    full = ka.load_cohort(synthetic_dir / PLANTED_BASE)
    keep = set(full.subjects["subject_id"].iloc[:N_PLANTED])
    cohort = ka.Cohort(**{name: t[t["subject_id"].isin(keep)].reset_index(drop=True)
                          for name, t in full.tables.items()}, metadata=full.metadata)
    subjects = cohort.subjects.copy()
    ids = subjects["subject_id"].tolist()
    first = ["Ingrid", "Lars", "Kari", "Ola", "Sigrid", "Magnus", "Astrid", "Henrik"]
    last = ["Haugen", "Berg", "Dahl", "Lund", "Moen", "Strand", "Vik", "Bakke", "Solberg"]
    names = {s: f"{first[i % len(first)]}{'abcdefgh'[i // 72 % 8]} {last[i % len(last)]}" for i, s in enumerate(ids)}
    mrn = {s: f"MRN{7300000 + 37 * i}" for i, s in enumerate(ids)}
    email = {s: f"patient{9100 + i}@kliniken-example.no" for i, s in enumerate(ids)}
    phone = {s: f"+47 {400 + i:03d} 55 {10 + i % 90:02d}" for i, s in enumerate(ids)}
    origin = {s: pd.Timestamp("2023-01-09 08:00") + pd.Timedelta(days=3 * i, minutes=7 * i)
              for i, s in enumerate(ids)}
    # A rare category: one subject at a one-patient satellite site.
    subjects.loc[subjects.index[0], "site"] = PLANTED_SITE

    def when(df):
        return [(origin[s] + pd.Timedelta(days=float(d))).strftime("%Y-%m-%d %H:%M:%S.%f")
                for s, d in zip(df["subject_id"], df["day"], strict=True)]

    pat = subjects.drop(columns=["dropout_day"]).assign(
        **{"Hospital number": subjects["subject_id"].map(mrn),
           "Patient name": subjects["subject_id"].map(names),
           "Contact e-mail": subjects["subject_id"].map(email),
           "Mobile": subjects["subject_id"].map(phone),
           "Dropout date": [
               (origin[s] + pd.Timedelta(days=float(d))).strftime("%Y-%m-%d %H:%M:%S.%f")
               if pd.notna(d) else "" for s, d in zip(subjects["subject_id"], subjects["dropout_day"], strict=True)]}
    ).drop(columns=["subject_id"])
    pat.to_csv(folder / "patients.csv", index=False)
    a = cohort.assessments.assign(**{"Hospital number": cohort.assessments["subject_id"].map(mrn),
                                     "Patient name": cohort.assessments["subject_id"].map(names),
                                     "Rated at": when(cohort.assessments)})
    a.drop(columns=["subject_id", "day"]).to_csv(folder / "ratings.csv", index=False)
    inf = cohort.infusions.assign(**{"Hospital number": cohort.infusions["subject_id"].map(mrn),
                                     "Started": when(cohort.infusions)})
    inf.drop(columns=["subject_id", "day"]).to_csv(folder / "infusions.csv", index=False)
    ae = cohort.adverse_events.copy()
    ae.loc[ae.index[0], "term"] = PLANTED_TERM  # a rare adverse event, one patient
    ae = ae.assign(**{"Hospital number": ae["subject_id"].map(mrn), "Onset": when(ae),
                      "Reported by": ae["subject_id"].map(phone)})
    ae.drop(columns=["subject_id", "day"]).to_csv(folder / "adverse_events.csv", index=False)
    v = cohort.vitals.assign(**{"Hospital number": cohort.vitals["subject_id"].map(mrn)})
    v.drop(columns=["subject_id"]).to_csv(folder / "vitals.csv", index=False)
    s_cols = [c for c in subjects.columns if c not in ("subject_id", "dropout_day")]
    mapping = f'''
[cohort]
name = "planted"
primary_scale = "{cohort.primary_scale}"

[subjects]
file = "patients.csv"
[subjects.columns]
subject_id = "Hospital number"
dropout_date = "Dropout date"
{chr(10).join(f'{c} = "{c}"' for c in s_cols)}

[assessments]
file = "ratings.csv"
[assessments.columns]
subject_id = "Hospital number"
datetime = "Rated at"
scale = "scale"
score = "score"
visit = "visit"
visit_number = "visit_number"

[infusions]
file = "infusions.csv"
[infusions.columns]
subject_id = "Hospital number"
datetime = "Started"
{chr(10).join(f'{c} = "{c}"' for c in cohort.infusions.columns if c not in ("subject_id", "day"))}

[adverse_events]
file = "adverse_events.csv"
[adverse_events.columns]
subject_id = "Hospital number"
datetime = "Onset"
{chr(10).join(f'{c} = "{c}"' for c in ae.columns if c in ("infusion_number", "term", "severity", "serious"))}

[vitals]
file = "vitals.csv"
[vitals.columns]
subject_id = "Hospital number"
{chr(10).join(f'{c} = "{c}"' for c in cohort.vitals.columns if c != "subject_id")}
'''
    (folder / "mapping.toml").write_text(mapping)
    planted = {
        "name": sorted(set(names.values())),
        "mrn": sorted(mrn.values()),
        "email": sorted(email.values()),
        "phone": sorted(phone.values()),
        "rare": [PLANTED_SITE, PLANTED_TERM],
    }
    return folder / "mapping.toml", planted


def _scan_outputs(out: Path, planted: dict[str, list[str]], pseudonyms: list[str]) -> list[str]:
    """Every planted string, subject id or planted calendar date found in a text output file."""
    files = [p for p in out.rglob("*") if p.is_file()]
    strings = list(itertools.chain(planted["name"], planted["mrn"], planted["email"],
                                   planted["phone"], planted["rare"]))
    id_pattern = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(map(re.escape, pseudonyms)) + r")(?![0-9])")
    # The planted calendar dates lie in 2023-2024; run metadata carries today's date only.
    date_pattern = re.compile(r"(?<!\d)202[34]-\d\d-\d\d(?!\d)")
    # Embedded images are base64: drop long runs of it so random letters cannot match.
    base64_run = re.compile(r"[A-Za-z0-9+/=\\n]{120,}")
    leaks = []
    for path in files:
        if path.suffix.lower() not in _TEXT_SUFFIXES:
            continue
        text = base64_run.sub(" ", path.read_text(encoding="utf-8", errors="replace"))
        lower = text.lower()
        for s in strings:
            if s.lower() in lower:
                leaks.append(f"{path.relative_to(out)}: {s!r}")
        for m in set(id_pattern.findall(text)):
            leaks.append(f"{path.relative_to(out)}: subject id {m}")
        for m in set(date_pattern.findall(text)):
            leaks.append(f"{path.relative_to(out)}: calendar date {m}")
    return sorted(set(leaks))


@pytest.mark.notebooks
def test_planted_identifiers_never_reach_strict_outputs(tmp_path, synthetic_dir):
    """Plant identifiers and rare categories, import, run every notebook strict (by the
    parameter), scan every file for identifiers and for small counts."""
    from kanalysis.importers import import_clinic

    raw = tmp_path / "raw"
    raw.mkdir()
    mapping, planted = _planted_export(raw, synthetic_dir)
    result = import_clinic(mapping)
    assert result.ok, result.to_markdown()
    cohort_dir = result.save(tmp_path / "cohort")
    # The import itself already removed the direct identifiers.
    dropped = {d["column"] for d in result.log.dropped}
    assert {"Patient name", "Contact e-mail", "Mobile", "Reported by"} <= dropped
    pseudonyms = result.id_key["subject_id"].tolist()

    out = tmp_path / "out"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, "-m", "kanalysis.cli", "run", "--cohort", str(cohort_dir),
         "--privacy", "strict", "--out", str(out), "--run-id", "planted", "--no-progress"],
        capture_output=True, text=True, env=env, timeout=1500, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = [p for p in out.rglob("*") if p.is_file()]
    executed = {p.stem for p in files if p.suffix == ".ipynb"}
    assert executed == {p.stem for p in (ROOT / "notebooks").glob("[0-9]*.py")}, executed
    assert any(p.suffix == ".html" for p in files) and any(p.suffix == ".csv" for p in files)

    leaks = _scan_outputs(out, planted, pseudonyms)
    assert not leaks, "identifiers in strict outputs:\n" + "\n".join(sorted(set(leaks))[:60])
    # ... and no count below the threshold in any table, figure text, results.json or page.
    small = scan_small_counts(out / "planted", 11)
    assert not small, "small counts in strict outputs:\n" + "\n".join(small[:60])


def test_planted_export_import_drops_every_identifier(tmp_path, synthetic_dir):
    """The import step of the planting test on its own (fast; no notebooks)."""
    from kanalysis.importers import import_clinic

    raw = tmp_path / "raw"
    raw.mkdir()
    mapping, planted = _planted_export(raw, synthetic_dir)
    result = import_clinic(mapping)
    assert result.ok, result.to_markdown()
    folder = result.save(tmp_path / "cohort")
    text = "\n".join(p.read_text() for p in folder.iterdir() if p.is_file())
    for s in itertools.chain(planted["name"], planted["mrn"], planted["email"], planted["phone"]):
        assert s not in text
    assert not re.search(r"\d{4}-\d{2}-\d{2}", text), "a calendar date reached the cohort folder"
    shutil.rmtree(raw)


def test_output_scanner_finds_planted_strings_and_ignores_images(tmp_path):
    """The scanner of the planting test must catch what it looks for (and not base64 noise)."""
    planted = {"name": ["Ingrid Haugen"], "mrn": ["MRN7300037"], "email": ["patient9100@x.no"],
               "phone": ["+47 400 55 10"], "rare": [PLANTED_SITE, PLANTED_TERM]}
    pseudonyms = [f"P{i:04d}" for i in range(1, 91)]
    (tmp_path / "tables").mkdir()
    blob = "iVBORw0KGgo" + "P0001AbP0002" * 40  # an image payload that happens to contain ids
    (tmp_path / "a.ipynb").write_text('{"outputs": [{"image/png": "' + blob + '"}]}')
    assert _scan_outputs(tmp_path, planted, pseudonyms) == []
    (tmp_path / "tables" / "t.csv").write_text("subject_id,score\nP0007,12\n")
    (tmp_path / "fig.svg").write_text("<svg><text>Priapism</text></svg>")
    (tmp_path / "r.html").write_text("<p>seen 2023-04-05 by ingrid haugen</p>")
    (tmp_path / "x.tex").write_text("site & MRN7300037 \\\\")
    leaks = "\n".join(_scan_outputs(tmp_path, planted, pseudonyms))
    for found in ("subject id P0007", "'priapism'", "'Ingrid Haugen'", "calendar date 2023-04-05",
                  "'MRN7300037'"):
        assert found in leaks
