from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kanalysis.errors import DataValidationError, StatisticalWarning
from kanalysis.requirements import complete_cases, require_columns


@pytest.fixture
def subjects():
    return pd.DataFrame({"subject_id": [f"S{i}" for i in range(6)], "arm": ["a", "b"] * 3,
                         "bmi": [20.0, np.nan, 25.0, 30.0, np.nan, 22.0],
                         "age": [30.0, 40, 50, 60, 70, np.nan]})


def test_require_columns_names_absent_column(subjects):
    with pytest.raises(DataValidationError, match="'n_failed_trials'.*lack") as err:
        require_columns(subjects, ["bmi", "n_failed_trials"], what="the Cox model")
    assert err.value.problems["column"].tolist() == ["n_failed_trials"]


def test_require_columns_names_subjects_missing_values(subjects):
    with pytest.raises(DataValidationError, match=r"'bmi' is missing for 2 subject\(s\): S1, S4"):
        require_columns(subjects, "bmi")
    require_columns(subjects, "bmi", allow_missing=True)
    require_columns(subjects, ["arm"])


def test_complete_cases_reports_who_was_dropped(subjects):
    with pytest.warns(StatisticalWarning, match="complete cases, 3 of 6 subjects"):
        cc = complete_cases(subjects, ["bmi", "age"], what="adjusted model")
    assert cc.n_used == 3 and cc.n_dropped == 3 and sorted(cc.dropped) == ["S1", "S4", "S5"]
    assert cc.by_column == {"bmi": 2, "age": 1}
    assert cc.data["bmi"].notna().all() and len(cc.data) == 3


def test_complete_cases_drops_a_subject_from_all_its_rows():
    long = pd.DataFrame({"subject_id": ["A", "A", "B"], "x": [1.0, np.nan, 2.0]})
    cc = complete_cases(long, "x", warn=False)
    assert cc.data["subject_id"].tolist() == ["B"] and cc.n_total == 2


def test_complete_cases_refuses_when_too_few_remain(subjects):
    with pytest.raises(DataValidationError, match="only 3 of 6"):
        complete_cases(subjects, ["bmi", "age"], min_subjects=5, warn=False)
