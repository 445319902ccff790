"""Transcribe SAS PROC MIXED listings shipped with the R package mmrm into JSON.

The R package mmrm (openpharma/mmrm, Apache-2.0) stores PROC MIXED listings for its example data
``fev_data`` in ``design/SAS/*.txt`` (with the SAS code in the neighbouring ``.R`` files). This
script reads them from a checkout of that repository and writes ``mmrm_sas_fev.json`` next to it:
-2 (restricted) log-likelihood, covariance parameter estimates, fixed-effect solutions and the
"Type 3 Tests of Fixed Effects", as printed (rounded). ``data/fev_data.csv`` is the same data set
(``write.csv(fev_data)`` from ``data/fev_data.rda``).

Usage::

    python tests/reference/models/transcribe_mmrm_sas.py /path/to/openpharma-mmrm-checkout
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# listing -> what the SAS code fitted (from design/SAS/*.R)
LISTINGS = {
    "un_full_reml": ("sas_log_reml.txt", "FEV1 ~ ARMCD AVISIT ARMCD*AVISIT RACE SEX; "
                     "REPEATED AVISIT / TYPE=UN; REML; DDFM=SATTERTHWAITE"),
    "un_full_weighted_reml": ("sas_weighted.txt", "FEV1 ~ RACE SEX ARMCD AVISIT ARMCD*AVISIT; "
                              "REPEATED AVISIT / TYPE=UN; WEIGHT WEIGHT; REML; "
                              "DDFM=SATTERTHWAITE"),
    "ar1_armcd_sex_reml": ("sas_coef_ci_reml_ar1.txt", "FEV1 ~ ARMCD SEX; REPEATED AVISIT / "
                           "TYPE=AR(1); REML; DDFM=SATTERTHWAITE"),
    "adh_reml": ("sas_adh_reml.txt", "FEV1 ~ 1; REPEATED AVISIT / TYPE=ANTE(1); REML"),
    "adh_ml": ("sas_adh_ml.txt", "FEV1 ~ 1; REPEATED AVISIT / TYPE=ANTE(1); ML"),
    "toeph_reml": ("sas_toeph_reml.txt", "FEV1 ~ 1; REPEATED AVISIT / TYPE=TOEPH; REML"),
    "toeph_ml": ("sas_toeph_ml.txt", "FEV1 ~ 1; REPEATED AVISIT / TYPE=TOEPH; ML"),
    "sp_exp_reml": ("sas_sp_exp_reml.txt", "FEV1 ~ 1; REPEATED / TYPE=SP(EXP)(VISITN); REML"),
    "sp_exp_ml": ("sas_sp_exp_ml.txt", "FEV1 ~ 1; REPEATED / TYPE=SP(EXP)(VISITN); ML"),
    "ar1h_reml": ("sas_ar1h_reml.txt", "FEV1 ~ 1; REPEATED AVISIT / TYPE=ARH(1); REML"),
    "csh_reml": ("sas_csh_reml.txt", "FEV1 ~ 1; REPEATED AVISIT / TYPE=CSH; REML"),
}

NUM = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"


def _section(text: str, title: str, stop: tuple[str, ...]) -> str:
    i = text.find(title)
    if i < 0:
        return ""
    rest = text[i + len(title):]
    end = min([rest.find(s) for s in stop if rest.find(s) >= 0] or [len(rest)])
    return rest[:end]


def parse(text: str) -> dict:
    out: dict = {}
    m = re.search(r"-2 Res Log Likelihood\s+(" + NUM + ")", text)
    if m:
        out["minus2_restricted_llf"] = float(m.group(1))
    m = re.search(r"-2 Log Likelihood\s+(" + NUM + ")", text)
    if m and "minus2_restricted_llf" not in out:
        out["minus2_llf"] = float(m.group(1))
    cov = _section(text, "Covariance Parameter Estimates", ("Fit Statistics",))
    params = {}
    for line in cov.splitlines():
        m = re.match(r"\s*(\S+(?:\(\S+\))?)\s+(?:USUBJID\s+)?(" + NUM + r")\s+0\.05\s", line)
        if m:
            params[m.group(1)] = float(m.group(2))
    out["covariance_parameters"] = params
    sol = _section(text, "Solution for Fixed Effects", ("Type 3 Tests", "The SAS System",
                                                         "Least Squares"))
    fixed = []
    for line in sol.splitlines():
        m = re.match(r"\s*(\S.*?)\s+(" + NUM + r")\s+(" + NUM + r")\s+(\d+)\s+(" + NUM + ")",
                     line)
        if m:
            fixed.append({"effect": re.sub(r"\s+", " ", m.group(1)),
                          "estimate": float(m.group(2)), "std_error": float(m.group(3)),
                          "df": int(m.group(4)), "t": float(m.group(5))})
    out["fixed_effects"] = fixed
    t3 = _section(text, "Type 3 Tests of Fixed Effects", ("The SAS System", "Least Squares"))
    rows = []
    for line in t3.splitlines():
        m = re.match(r"\s*([A-Z][A-Z0-9*]*)\s+(\d+)\s+(\d+)\s+(?:(" + NUM + r")\s+)?(" + NUM +
                     r")\s+", line)
        if m:
            rows.append({"term": m.group(1), "num_df": int(m.group(2)),
                         "den_df": int(m.group(3)), "F": float(m.group(5))})
    out["type3"] = rows
    return out


def main(repo: str) -> None:
    base = Path(repo) / "design" / "SAS"
    result = {"source": "SAS PROC MIXED listings in the R package mmrm (openpharma/mmrm, "
                        "Apache-2.0), design/SAS/, data fev_data; values as printed (rounded)",
              "fits": {}}
    for key, (fname, call) in LISTINGS.items():
        rec = parse((base / fname).read_text(errors="replace"))
        rec["listing"] = f"design/SAS/{fname}"
        rec["sas_model"] = call
        result["fits"][key] = rec
    out = Path(__file__).with_name("mmrm_sas_fev.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1])
