"""Import CDISC ADaM datasets (ADSL, ADQS, ADEX, ADAE, ADTTE) from SAS transport or SAS7BDAT files.

Which variables are used, and how, is documented in ``docs/own_data.md``. In short:

- **ADSL** -> ``subjects`` (USUBJID, TRT01P or ARM, SITEID, AGE, SEX, EOSSTT, DCSREAS, EOSDT, RANDDT,
  BMIBL; sponsor variables for the kanalysis covariates through ``subject_variables``).
- **ADQS** -> ``assessments`` (PARAMCD -> scale, AVISIT/AVISITN (+ ATPT/ATPTN), ADTM/ADT/ADY -> day,
  AVAL -> score; records with ANL01FL = "Y" and an empty DTYPE only). BASE, CHG and PCHG are checked
  against AVAL and then left out, because kanalysis derives them.
- **ADEX** -> ``infusions`` (EXTRT/TRTA + EXROUTE -> drug, EXDOSE or AVAL -> dose, EXDOSU/AVALU,
  ASTDTM/ASTDT/ASTDY -> day, AENDTM - ASTDTM -> duration, APHASE -> phase).
- **ADAE** -> ``adverse_events`` (AEDECOD, AESEV, AESER, ASTDTM/ASTDT/ASTDY).
- **ADVS** -> ``vitals`` (SYSBP, DIABP, PULSE at ADTM, placed within the infusion they follow);
  CADSS ratings from ADQS taken during an infusion become ``vitals.cadss``.
- **ADTTE** -> an extra table ``time_to_event`` (PARAMCD, AVAL in days, ``event`` = 1 where **CNSR = 0**).

ADaM counts study days from 1 (no day 0: ADY = ADT - TRTSDT + 1 on or after the first dose); kanalysis
counts from 0 at the first infusion. Where dates are present the day is recomputed from them; where
only ADY is present, day = ADY - 1 for ADY >= 1 and ADY otherwise.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kanalysis.errors import ConfigurationError
from kanalysis.importers._common import (
    WARNING,
    ImportLog,
    ImportResult,
    days_between,
    finish_import,
)
from kanalysis.privacy import detect_identifiers
from kanalysis.validation import ValidationReport

__all__ = ["DEFAULT_DRUG_MAP", "DEFAULT_SCALE_MAP", "DEFAULT_SUBJECT_VARIABLES", "import_adam",
           "read_sas_dataset"]

DATASETS = ("adsl", "adqs", "adex", "adae", "advs", "adtte")
REQUIRED = ("adsl", "adqs", "adex")

# PARAMCD of total scores -> kanalysis scale. Item-level parameters are left out.
DEFAULT_SCALE_MAP: dict[str, str] = {
    "MADRSTOT": "MADRS", "MADRS": "MADRS", "MADRS10": "MADRS", "MADRSTT": "MADRS",
    "HAMD17": "HAMD17", "HAMDTOT": "HAMD17", "HAMD17T": "HAMD17", "HAMDT17": "HAMD17",
    "PHQ9": "PHQ9", "PHQ9TOT": "PHQ9", "PHQ9T": "PHQ9",
    "QIDSTOT": "QIDS_SR16", "QIDSSR16": "QIDS_SR16", "QIDS": "QIDS_SR16",
    "CADSSTOT": "CADSS", "CADSS": "CADSS", "BDI2TOT": "BDI2", "BDIITOT": "BDI2",
    "GAD7TOT": "GAD7", "GAD7": "GAD7", "PCL5TOT": "PCL5",
}
# Treatment name (upper case, substring) -> kanalysis drug; first match wins, nasal routes noted.
DEFAULT_DRUG_MAP: list[tuple[str, str]] = [
    ("ESKETAMINE", "esketamine_in"),
    ("KETAMINE", "ketamine_iv"),
    ("MIDAZOLAM", "midazolam_iv"),
    ("SALINE", "saline_iv"),
    ("PLACEBO", "placebo"),
]
# ADVS parameters -> vitals columns.
DEFAULT_VITALS_MAP: dict[str, str] = {
    "SYSBP": "sbp", "SBP": "sbp", "DIABP": "dbp", "DBP": "dbp", "PULSE": "heart_rate",
    "HR": "heart_rate", "HRATE": "heart_rate",
}
# A reading belongs to the last infusion that started up to this long before it (and at most one
# hour after it, for pre-dose readings).
_WINDOW_DAYS = 0.5
_PRE_DOSE_DAYS = 1 / 24

# kanalysis subject covariates that ADaM does not standardise: candidate sponsor variables.
DEFAULT_SUBJECT_VARIABLES: dict[str, list[str]] = {
    "n_failed_trials": ["NFAILTRT", "NTRTFAIL", "NFAILAD", "PRTRTFN"],
    "episode_duration_months": ["EPIDURM", "EPDURMO", "MDEDURM"],
    "anxious_distress": ["ANXDISFL", "ANXDSTFL", "ANXDIST"],
    "bmi": ["BMIBL", "BMI"],
    "family_history_aud": ["FHAUDFL", "FAMHXAUD"],
}
_SAS_EPOCH = pd.Timestamp("1960-01-01")
_UNIT_DAYS = {"DAY": 1.0, "DAYS": 1.0, "D": 1.0, "WEEK": 7.0, "WEEKS": 7.0, "MONTH": 30.4375,
              "MONTHS": 30.4375, "YEAR": 365.25, "YEARS": 365.25, "HOUR": 1 / 24, "HOURS": 1 / 24}


def read_sas_dataset(path: Path, *, encoding: str | None = None) -> pd.DataFrame:
    """Read one .xpt or .sas7bdat file with pyreadstat; dates come back as datetime64.

    Raises
    ------
    ConfigurationError
        The file cannot be read (the message names the file and suggests an encoding).
    """
    import pyreadstat

    reader = pyreadstat.read_xport if path.suffix.lower() == ".xpt" else pyreadstat.read_sas7bdat
    try:
        kwargs: dict[str, Any] = {"dates_as_pandas_datetime": True}
        if encoding:
            kwargs["encoding"] = encoding
        df, _meta = reader(str(path), **kwargs)
    except Exception as err:
        hint = (" The text may be in another encoding: pass --encoding latin1 (or windows-1252)."
                if "conver" in str(err).lower() or "encod" in str(err).lower() or "unicode" in str(err).lower()
                else "")
        raise ConfigurationError(f"cannot read {path.name}: {err}.{hint}") from None
    df.columns = [str(c).upper() for c in df.columns]
    for column in df.columns:
        if df[column].dtype == object:
            df[column] = df[column].map(lambda v: v.strip() if isinstance(v, str) else v).replace("", None)
        elif pd.api.types.is_numeric_dtype(df[column]) and re.search(r"DTM$", column):
            df[column] = _SAS_EPOCH + pd.to_timedelta(df[column], unit="s")
        elif pd.api.types.is_numeric_dtype(df[column]) and re.search(r"(^|[A-Z])DT$", column):
            df[column] = _SAS_EPOCH + pd.to_timedelta(df[column], unit="D")
    return df


def _find_files(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in (".xpt", ".sas7bdat") and path.stem.lower() in DATASETS:
            found.setdefault(path.stem.lower(), []).append(path)
    return found


def import_adam(
    folder: str | os.PathLike,
    *,
    scale_map: dict[str, str] | None = None,
    subject_variables: dict[str, str] | None = None,
    drug_map: dict[str, str] | None = None,
    encoding: str | None = None,
    population: str | None = None,
    default_duration_min: float | None = None,
    pseudonymise: bool = False,
    name: str | None = None,
    design: str | None = None,
) -> ImportResult:
    """Import a folder of ADaM datasets into a cohort.

    Parameters
    ----------
    folder : path
        Folder with ``adsl``, ``adqs`` and ``adex`` (required) and ``adae``, ``advs``, ``adtte``
        (optional), each
        as ``.xpt`` or ``.sas7bdat`` (file names case-insensitive).
    scale_map : dict, optional
        PARAMCD -> kanalysis scale, added to :data:`DEFAULT_SCALE_MAP`.
    subject_variables : dict, optional
        kanalysis subject column -> ADSL variable for covariates ADaM does not standardise
        (``n_failed_trials``, ``episode_duration_months``, ``anxious_distress``, ``bmi``,
        ``family_history_aud``); defaults are looked up in :data:`DEFAULT_SUBJECT_VARIABLES`.
    drug_map : dict, optional
        Treatment name (EXTRT/TRTA, exact, case-insensitive) -> kanalysis drug.
    encoding : str, optional
        Text encoding of the files when it is not the one they declare (e.g. ``"latin1"``).
    population : str, optional
        ADSL flag selecting the analysis population (e.g. ``"FASFL"``): only subjects with ``"Y"``
        are kept. Default: every subject in ADSL.
    default_duration_min : float, optional
        Infusion duration to use when ADEX has no end time (e.g. 40 for the usual ketamine infusion).
    pseudonymise : bool, default False
        Replace USUBJID by ``P0001`` ...; USUBJID is already a study pseudonym, so off by default.
    name, design : str, optional
        Cohort name and design for the metadata; the design is otherwise inferred from the
        infusions (``maintenance`` when any maintenance phase, ``serial`` when several infusions,
        else ``single``).

    Returns
    -------
    ImportResult

    Notes
    -----
    ADTTE's ``CNSR`` is 0 for an event and >= 1 for a censored time (the code gives the reason),
    which is the reverse of the ``event_observed`` indicator most Python survival libraries use. The
    ``time_to_event`` table therefore has an explicit ``event`` column (1 = event, 0 = censored)
    and keeps the original code as ``cnsr``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigurationError(f"ADaM folder {str(folder)!r} does not exist or is not a folder.")
    report = ValidationReport()
    log = ImportLog(source="adam")
    found = _find_files(folder)
    data: dict[str, pd.DataFrame] = {}
    for ds in DATASETS:
        paths = found.get(ds, [])
        if not paths:
            if ds in REQUIRED:
                report.add(ds.upper(), None, None,
                           f"required dataset missing: no {ds}.xpt or {ds}.sas7bdat in {folder}")
            continue
        if len(paths) > 1:
            # Which copy is current cannot be told from the folder; picking one would be a
            # silent choice (the same rule as a cohort folder with both .csv and .parquet).
            report.add(ds.upper(), None, None,
                       f"several files for {ds.upper()} ({', '.join(p.name for p in paths)}); "
                       "keep exactly one of them in the folder")
            continue
        try:
            df = read_sas_dataset(paths[0], encoding=encoding)
        except ConfigurationError as err:
            report.add(ds.upper(), None, None, str(err))
            continue
        log.add_file(paths[0], ds.upper(), len(df), df.shape[1])
        data[ds] = df
    if any(ds not in data for ds in REQUIRED):
        return finish_import(None, {}, report, log)
    for ds, df in data.items():
        if "USUBJID" not in df.columns:
            report.add(ds.upper(), "USUBJID", None, "required variable missing")
    if not report.ok:
        return finish_import(None, {}, report, log)

    used: dict[str, set[str]] = {ds: {"USUBJID"} for ds in data}
    adsl = data["adsl"]
    if population:
        if population.upper() not in adsl.columns:
            report.add("ADSL", population.upper(), None, "population flag not found in ADSL")
        else:
            keep = adsl[population.upper()].astype(str).str.upper() == "Y"
            log.notes.append(f"ADSL: population {population.upper()} = 'Y' keeps {int(keep.sum())} of {len(adsl)} subjects")
            adsl = adsl[keep]
            used["adsl"].add(population.upper())
    ids = set(adsl["USUBJID"].dropna())
    for ds in ("adqs", "adex", "adae", "adtte"):
        if ds in data:
            outside = ~data[ds]["USUBJID"].isin(ids)
            if outside.any():
                log.notes.append(f"{ds.upper()}: {int(outside.sum())} record(s) of subjects not in the "
                                 "(selected) ADSL left out")
                data[ds] = data[ds][~outside]

    anchor = _anchor(adsl, data["adex"], report, used)
    tables: dict[str, pd.DataFrame] = {}
    tables["infusions"] = _infusions(data["adex"], anchor, drug_map, default_duration_min, report, log, used["adex"])
    tables["subjects"] = _subjects(adsl, anchor, subject_variables, report, log, used["adsl"])
    tables["assessments"] = _assessments(data["adqs"], anchor, scale_map, report, log, used["adqs"])
    if "adae" in data:
        tables["adverse_events"] = _adverse_events(data["adae"], anchor, tables["infusions"], report, log, used["adae"])
    # CADSS rated during an infusion is within-infusion monitoring: it goes to vitals.cadss.
    a = tables["assessments"]
    number, minute = _infusion_window(a["subject_id"], a["day"], tables["infusions"])
    during = (a["scale"].isin(["CADSS", "CADSS19"]) & number.notna()).to_numpy()
    cadss = None
    if during.any():
        cadss = pd.DataFrame({"subject_id": a["subject_id"][during], "infusion_number": number[during],
                              "minute": minute[during], "cadss": a["score"][during]})
        tables["assessments"] = a[~during].reset_index(drop=True)
        log.notes.append(f"ADQS: {int(during.sum())} CADSS rating(s) taken during an infusion moved to "
                         "vitals.cadss (minute since infusion start)")
    if "advs" in data or cadss is not None:
        tables["vitals"] = _vitals(data.get("advs"), cadss, anchor, tables["infusions"], report, log,
                                   used.get("advs", set()))
    extra = {}
    if "adtte" in data:
        extra["time_to_event"] = _time_to_event(data["adtte"], anchor, report, log, used["adtte"])

    # Everything not used is left out; identifier-like variables are named as such in the report.
    for ds, df in data.items():
        left = [c for c in df.columns if c not in used[ds]]
        if not left:
            continue
        findings = detect_identifiers(df[left], table=ds.upper())
        log.drop_identifiers(ds.upper(), findings)
        plain = [c for c in left if c not in set(findings["column"])]
        if plain:
            log.drop(ds.upper(), ", ".join(plain), "not used by the kanalysis data model")

    id_key = None
    if pseudonymise:
        order = sorted(ids, key=lambda s: (anchor.get(s, pd.Timestamp.max), str(s)))
        key = {s: f"P{i + 1:04d}" for i, s in enumerate(order)}
        for t in [*tables.values(), *extra.values()]:
            t["subject_id"] = t["subject_id"].map(key)
        id_key = pd.DataFrame({"original_id": list(key), "subject_id": list(key.values())})
        log.notes.append("USUBJID replaced by pseudonyms P0001 ...; the key is not stored in the cohort folder")

    inf = tables["infusions"]
    if design is None:
        if (inf["phase"] == "maintenance").any():
            design = "maintenance"
        elif len(inf) and inf.groupby("subject_id").size().max() > 1:
            design = "serial"
        else:
            design = "single"
    for name_, t in tables.items():
        log.rows(name_, len(t), len(t))
    metadata = {"name": name or folder.name, "design": design, "source": "adam", "privacy": "strict",
                "min_cell_count": 11}
    return finish_import(tables, metadata, report, log, extra_tables=extra, id_key=id_key)


# --- time origin and study days ---------------------------------------------------------------------
def _anchor(adsl: pd.DataFrame, adex: pd.DataFrame, report, used) -> pd.Series:
    """First infusion date-time per subject: ADEX ASTDTM, else ASTDT, else ADSL TRTSDTM / TRTSDT."""
    anchor = pd.Series(pd.NaT, index=pd.Index(adsl["USUBJID"].unique()), dtype="datetime64[ns]")
    for var, table, ds in (("ASTDTM", adex, "adex"), ("ASTDT", adex, "adex"),
                           ("TRTSDTM", adsl, "adsl"), ("TRTSDT", adsl, "adsl")):
        if var in table.columns:
            first = pd.to_datetime(table[var]).groupby(table["USUBJID"]).min()
            anchor = anchor.fillna(first.reindex(anchor.index))
            used[ds].add(var)
    missing = anchor.isna()
    if missing.any():
        report.add("ADEX", "ASTDTM", None,
                   "no first-dose date for some subjects (ADEX ASTDTM/ASTDT and ADSL TRTSDTM/TRTSDT "
                   "all missing): study days fall back on ADY", [f"{int(missing.sum())} subject(s)"],
                   severity=WARNING)
    return anchor


def _study_day(df: pd.DataFrame, anchor: pd.Series, dtm: str, dt: str, dy: str, used: set) -> pd.Series:
    """Study day since the first infusion from a date-time, else a date, else an ADaM day."""
    start = df["USUBJID"].map(anchor)
    day = pd.Series(np.nan, index=df.index)
    if dtm in df.columns:
        used.add(dtm)
        day = day.fillna(days_between(pd.to_datetime(df[dtm]), start))
    if dt in df.columns:
        used.add(dt)
        whole = days_between(pd.to_datetime(df[dt]), start.dt.normalize())
        day = day.fillna(whole)
    if dy in df.columns:
        used.add(dy)
        ady = pd.to_numeric(df[dy], errors="coerce")
        day = day.fillna(ady.where(ady < 1, ady - 1))  # ADaM has no day 0
    return day


def _text(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), None)


def _label(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return re.sub(r"\s+", "", str(value).strip().lower())


def _pick(df: pd.DataFrame, names, used: set) -> str | None:
    for n in names:
        if n in df.columns:
            used.add(n)
            return n
    return None


# --- datasets ---------------------------------------------------------------------------------------
def _subjects(adsl, anchor, subject_variables, report, log, used) -> pd.DataFrame:
    s = pd.DataFrame({"subject_id": _text(adsl["USUBJID"])}, index=adsl.index)
    dup = adsl["USUBJID"].duplicated(keep=False)
    if dup.any():
        report.add("ADSL", "USUBJID", adsl.index[dup.to_numpy()].tolist(),
                   "duplicated subject rows: ADSL must have one record per subject")
    arm = _pick(adsl, ["TRT01P", "TRT01A", "ARM", "ACTARM"], used)
    if arm is None:
        report.add("ADSL", "TRT01P", None,
                   "no treatment arm: ADSL needs TRT01P, TRT01A, ARM or ACTARM")
        s["arm"] = None
    else:
        s["arm"] = adsl[arm].map(lambda v: None if v is None else str(v).strip().lower().replace(" ", "_"))
        log.keep("subjects", "arm", f"ADSL.{arm}", "lower case, spaces as _")
    site = _pick(adsl, ["SITEID", "SITEGR1"], used)
    s["site"] = _text(adsl[site]) if site else None
    if site:
        log.keep("subjects", "site", f"ADSL.{site}")
    age = _pick(adsl, ["AGE"], used)
    s["age"] = pd.to_numeric(adsl[age], errors="coerce") if age else np.nan
    if age:
        log.keep("subjects", "age", "ADSL.AGE")
    sex = _pick(adsl, ["SEX"], used)
    sex_map = {"F": "F", "FEMALE": "F", "M": "M", "MALE": "M", "UNDIFFERENTIATED": "other", "OTHER": "other"}
    s["sex"] = adsl[sex].map(lambda v: sex_map.get(str(v).upper()) if v is not None else None) if sex else None
    if sex:
        log.keep("subjects", "sex", "ADSL.SEX", "F/M; UNDIFFERENTIATED -> other; U (unknown) -> missing")
    variables = {**{k: None for k in DEFAULT_SUBJECT_VARIABLES}, **(subject_variables or {})}
    for target, var in variables.items():
        names = [var.upper()] if var else DEFAULT_SUBJECT_VARIABLES.get(target, [])
        col = _pick(adsl, names, used)
        if col is None:
            s[target] = np.nan
            if var:
                report.add("ADSL", var.upper(), None, f"variable for {target} not found in ADSL")
            continue
        values = adsl[col]
        if values.dtype == object:
            values = values.map(lambda v: {"Y": 1.0, "N": 0.0}.get(str(v).upper(), v) if v is not None else v)
        s[target] = pd.to_numeric(values, errors="coerce")
        log.keep("subjects", target, f"ADSL.{col}", "Y/N -> 1/0" if adsl[col].dtype == object else "copied")
    for t in DEFAULT_SUBJECT_VARIABLES:
        if s[t].isna().all() and not (subject_variables or {}).get(t):
            report.add("ADSL", None, None,
                       f"no ADSL variable for {t} (sponsor-defined in ADaM): left missing; "
                       f"analyses that need it refuse or use complete cases (add it with "
                       f"--subject-variable {t}=VARNAME)", severity=WARNING)
    status = _pick(adsl, ["EOSSTT", "DCSREAS"], used)
    start = adsl["USUBJID"].map(anchor)
    if status == "EOSSTT":
        st = adsl["EOSSTT"].astype(str).str.upper()
        s["disposition"] = np.where(st.str.startswith("DISCONT"), "dropped_out", "completed")
        ongoing = st.eq("ONGOING")
        if ongoing.any():
            log.notes.append(f"ADSL: {int(ongoing.sum())} subject(s) with EOSSTT = ONGOING taken as completed (not dropped out)")
        log.keep("subjects", "disposition", "ADSL.EOSSTT", "DISCONTINUED -> dropped_out, else completed")
    elif status == "DCSREAS":
        s["disposition"] = np.where(adsl["DCSREAS"].notna(), "dropped_out", "completed")
        log.keep("subjects", "disposition", "ADSL.DCSREAS", "dropped_out where a reason is given")
    else:
        s["disposition"] = "completed"
        report.add("ADSL", "EOSSTT", None, "no EOSSTT or DCSREAS: every subject taken as completed",
                   severity=WARNING)
    reason = _pick(adsl, ["DCSREAS", "DCREASCD"], used)
    s["dropout_reason"] = adsl[reason].map(lambda v: None if v is None else str(v).strip().lower()) if reason else None
    end = _pick(adsl, ["EOSDT", "DCSDT", "LSTALVDT"], used)
    if end:
        s["dropout_day"] = days_between(pd.to_datetime(adsl[end]), start.dt.normalize())
        log.keep("subjects", "dropout_day", f"ADSL.{end} minus first dose date", "derived")
    else:
        s["dropout_day"] = np.nan
    dropped = s["disposition"] == "dropped_out"
    s["dropout_day"] = s["dropout_day"].where(dropped)
    s["dropout_reason"] = s["dropout_reason"].where(dropped, None)
    rand = _pick(adsl, ["RANDDT"], used)
    if rand:
        s["randomization_day"] = days_between(pd.to_datetime(adsl[rand]), start.dt.normalize())
        log.keep("subjects", "randomization_day", "ADSL.RANDDT minus first dose date", "derived")
    return s.reset_index(drop=True)


def _assessments(adqs, anchor, scale_map, report, log, used) -> pd.DataFrame:
    q = adqs.copy()
    if "PARAMCD" not in q.columns or "AVAL" not in q.columns:
        report.add("ADQS", "PARAMCD, AVAL", None, "ADQS needs PARAMCD and AVAL")
        return pd.DataFrame(columns=["subject_id", "scale", "day", "visit", "visit_number", "score"])
    used |= {"PARAMCD", "AVAL"}
    n0 = len(q)
    if "ANL01FL" in q.columns:
        used.add("ANL01FL")
        q = q[q["ANL01FL"].astype(str).str.upper() == "Y"]
        log.notes.append(f"ADQS: kept records with ANL01FL = 'Y' ({len(q)} of {n0})")
    if "DTYPE" in q.columns:
        used.add("DTYPE")
        derived = q["DTYPE"].notna()
        if derived.any():
            log.notes.append(f"ADQS: left out {int(derived.sum())} derived/imputed record(s) (DTYPE set, e.g. LOCF)")
        q = q[~derived]
    smap = {**DEFAULT_SCALE_MAP, **{k.upper(): v for k, v in (scale_map or {}).items()}}
    paramcd = q["PARAMCD"].astype(str).str.upper()
    scale = paramcd.map(smap)
    other = sorted(paramcd[scale.isna()].unique())
    if other:
        log.notes.append(f"ADQS: parameters not mapped to a scale and left out: {', '.join(other)} "
                         "(add them with scale_map / --scale PARAMCD=SCALE)")
    if scale.notna().sum() == 0:
        before = adqs["PARAMCD"].astype(str).str.upper().map(smap).notna().sum()
        if before and len(q) < n0:
            report.add("ADQS", "ANL01FL, DTYPE", None,
                       f"the analysis flags left no record of a known scale: {before} record(s) "
                       "of registered scales exist, but none has ANL01FL = 'Y' and an empty DTYPE")
        else:
            report.add("ADQS", "PARAMCD", None,
                       "no PARAMCD maps to a registered scale total; map yours with "
                       "--scale PARAMCD=SCALE (e.g. --scale MADRS=MADRS)",
                       sorted(paramcd.unique())[:10])
    q = q[scale.notna()]
    scale = scale[scale.notna()]
    out = pd.DataFrame({"subject_id": _text(q["USUBJID"]), "scale": scale}, index=q.index)
    out["day"] = _study_day(q, anchor, "ADTM", "ADT", "ADY", used)
    nodays = out["day"].isna()
    if nodays.any():
        report.add("ADQS", "ADT", out.index[nodays.to_numpy()].tolist(),
                   "record has no ADTM, ADT or ADY: it cannot be placed in time")
    visit = _pick(q, ["AVISIT"], used)
    visitn = _pick(q, ["AVISITN"], used)
    tpt = _pick(q, ["ATPT"], used)
    tptn = _pick(q, ["ATPTN"], used)
    label = q[visit].map(_label) if visit else pd.Series([None] * len(q), index=q.index, dtype=object)
    if tpt:
        t = q[tpt].map(_label)
        label = label.where(t.isna(), label.fillna("") + "_" + t.fillna(""))
    out["visit"] = label
    if visitn:
        key = pd.DataFrame({"scale": out["scale"], "v": pd.to_numeric(q[visitn], errors="coerce"),
                            "t": pd.to_numeric(q[tptn], errors="coerce") if tptn else 0.0})
        key["t"] = key["t"].fillna(-np.inf)
        pairs = key[["scale", "v", "t"]].drop_duplicates().sort_values(["scale", "v", "t"])
        pairs["n"] = pairs.groupby("scale").cumcount().astype(float)
        out["visit_number"] = key.merge(pairs, on=["scale", "v", "t"], how="left")["n"].to_numpy()
        log.keep("assessments", "visit_number", f"ADQS.{visitn}" + (f" and {tptn}" if tptn else ""),
                 "order of (AVISITN, ATPTN) within scale, from 0")
    else:
        out["visit_number"] = out.groupby(["subject_id", "scale"])["day"].rank(method="first") - 1
    if out["visit"].isna().any():
        out["visit"] = out["visit"].fillna("visit" + out["visit_number"].astype("Int64").astype(str))
    out["score"] = _scores(q, report)
    log.keep("assessments", "score", "ADQS.AVAL")
    log.keep("assessments", "scale", "ADQS.PARAMCD", "mapped to a registered scale")
    log.keep("assessments", "day", "ADQS.ADTM/ADT/ADY", "study day since first infusion")
    log.keep("assessments", "visit", "ADQS.AVISIT (+ ATPT)", "lower case, spaces removed")
    _check_derived(q, report, used)
    return out.reset_index(drop=True)


def _scores(q: pd.DataFrame, report) -> pd.Series:
    """AVAL as numbers; text such as "<5" (or an AVALC without AVAL) is reported, never dropped
    silently: the record is kept with a missing score."""
    aval = q["AVAL"]
    score = pd.to_numeric(aval, errors="coerce").astype(float)
    text = aval.notna() & score.isna()
    if text.any():
        report.add("ADQS", "AVAL", q.index[text.to_numpy()].tolist(),
                   "AVAL is not a number (e.g. '<5'): the score is left missing; give the total "
                   "as a number", sorted(aval[text].astype(str).unique())[:10], severity=WARNING)
    if "AVALC" in q.columns:
        only_c = aval.isna() & q["AVALC"].notna()
        if only_c.any():
            report.add("ADQS", "AVALC", q.index[only_c.to_numpy()].tolist(),
                       "AVAL missing but AVALC holds a value: the score is left missing",
                       sorted(q.loc[only_c, "AVALC"].astype(str).unique())[:10], severity=WARNING)
    inf = np.isinf(score.to_numpy())
    if inf.any():
        report.add("ADQS", "AVAL", q.index[inf].tolist(), "AVAL is infinite")
    return score


def _check_derived(q: pd.DataFrame, report, used) -> None:
    """BASE, CHG and PCHG are recomputed by kanalysis; inconsistent ones are reported as warnings."""
    aval = pd.to_numeric(q["AVAL"], errors="coerce")
    if {"BASE", "CHG"} <= set(q.columns):
        used |= {"BASE", "CHG"}
        chg = pd.to_numeric(q["CHG"], errors="coerce")
        base = pd.to_numeric(q["BASE"], errors="coerce")
        off = (chg - (aval - base)).abs() > 1e-6
        if off.any():
            report.add("ADQS", "CHG", q.index[off.to_numpy()].tolist(),
                       "CHG differs from AVAL - BASE (kanalysis recomputes change from AVAL)",
                       severity=WARNING)
        if "PCHG" in q.columns:
            used.add("PCHG")
            pchg = pd.to_numeric(q["PCHG"], errors="coerce")
            expect = 100 * chg / base.where(base != 0)
            poff = (pchg - expect).abs() > 1e-3
            if poff.any():
                report.add("ADQS", "PCHG", q.index[poff.to_numpy()].tolist(),
                           "PCHG differs from 100 * CHG / BASE", severity=WARNING)
    if "ABLFL" in q.columns:
        used.add("ABLFL")


def _infusions(adex, anchor, drug_map, default_duration_min, report, log, used) -> pd.DataFrame:
    x = adex.copy()
    if "EXDOSE" in x.columns:
        dose_var, unit_var = "EXDOSE", _pick(x, ["EXDOSU", "EXDOSEU"], used)
        used.add("EXDOSE")
    elif {"PARAMCD", "AVAL"} <= set(x.columns):
        used |= {"PARAMCD", "AVAL"}
        is_dose = x["PARAMCD"].astype(str).str.upper().isin(["DOSE", "DOSEADM", "DOSA", "EXDOSE"])
        log.notes.append(f"ADEX: dose records taken from PARAMCD in DOSE/DOSEADM/DOSA ({int(is_dose.sum())} of {len(x)})")
        x = x[is_dose]
        dose_var, unit_var = "AVAL", _pick(x, ["AVALU", "EXDOSU"], used)
    else:
        report.add("ADEX", "EXDOSE", None, "ADEX needs EXDOSE (occurrence form) or PARAMCD/AVAL dose records")
        return pd.DataFrame(columns=["subject_id", "infusion_number", "day", "drug", "dose", "dose_unit",
                                     "duration_min", "phase"])
    dose = pd.to_numeric(x[dose_var], errors="coerce")
    not_given = dose.notna() & (dose <= 0)
    if not_given.any():
        log.notes.append(f"ADEX: {int(not_given.sum())} record(s) with dose 0 (not given) left out")
    x, dose = x[~not_given], dose[~not_given]
    if x.empty:
        report.add("ADEX", dose_var, None,
                   "no exposure record with a dose > 0: the cohort needs at least one infusion "
                   "(ADEX records with dose 0 mean 'not given')")
    out = pd.DataFrame({"subject_id": _text(x["USUBJID"])}, index=x.index)
    out["day"] = _study_day(x, anchor, "ASTDTM", "ASTDT", "ASTDY", used)
    nodays = out["day"].isna()
    if nodays.any():
        report.add("ADEX", "ASTDTM", x.index[nodays.to_numpy()].tolist(),
                   "exposure record has no ASTDTM, ASTDT or ASTDY (or no first-dose date to count "
                   "from): it cannot be placed in time")
    trt = _pick(x, ["EXTRT", "TRTA", "TRTP"], used)
    route = _pick(x, ["EXROUTE", "ROUTE"], used)
    names = x[trt].astype(str).str.upper() if trt else pd.Series("", index=x.index)
    routes = x[route].astype(str).str.upper() if route else pd.Series("", index=x.index)
    exact = {k.upper(): v for k, v in (drug_map or {}).items()}

    def drug(name: str, rte: str) -> str | None:
        if name in exact:
            return exact[name]
        nasal = "NASAL" in rte
        for needle, value in DEFAULT_DRUG_MAP:
            if needle in name:
                if value == "placebo":
                    return "placebo_in" if nasal else "saline_iv"
                return value
        return name.lower() or None

    out["drug"] = [drug(n, r) for n, r in zip(names, routes, strict=True)]
    log.keep("infusions", "drug", f"ADEX.{trt}" + (f" and {route}" if route else ""), "mapped to kanalysis drug names")
    out["dose"] = dose
    units = x[unit_var].astype(str).str.strip().str.lower() if unit_var else pd.Series(None, index=x.index)
    out["dose_unit"] = units.map(lambda u: {"mg/kg": "mg/kg", "mg": "mg"}.get(u, u) if u not in (None, "none", "nan") else None)
    log.keep("infusions", "dose", f"ADEX.{dose_var}")
    log.keep("infusions", "dose_unit", f"ADEX.{unit_var}" if unit_var else "missing")
    duration = pd.Series(np.nan, index=x.index)
    if {"ASTDTM", "AENDTM"} <= set(x.columns):
        used.add("AENDTM")
        duration = (pd.to_datetime(x["AENDTM"]) - pd.to_datetime(x["ASTDTM"])) / pd.Timedelta(minutes=1)
        log.keep("infusions", "duration_min", "ADEX.AENDTM - ASTDTM", "derived")
    if "EXDUR" in x.columns:
        used.add("EXDUR")
        duration = duration.fillna(x["EXDUR"].map(_iso_minutes))
    nasal = out["drug"].astype(str).str.endswith("_in")
    duration = duration.where(~(duration.isna() & nasal), 0.0)
    if default_duration_min is not None:
        duration = duration.fillna(float(default_duration_min))
        log.notes.append(f"ADEX: infusions without an end time given duration {default_duration_min:g} min")
    if duration.isna().any():
        report.add("ADEX", "AENDTM", x.index[duration.isna().to_numpy()].tolist(),
                   "infusion duration unknown (no AENDTM or EXDUR): left missing; add it with "
                   "--default-duration-min (e.g. 40)", severity=WARNING)
    out["duration_min"] = duration
    phase = _pick(x, ["APHASE", "EPOCH", "APERIODC"], used)
    if phase:
        p = x[phase].astype(str).str.upper()
        out["phase"] = np.where(p.str.contains("MAINT"), "maintenance", "induction")
        log.keep("infusions", "phase", f"ADEX.{phase}", "MAINT... -> maintenance, else induction")
    else:
        out["phase"] = "induction"
        log.notes.append("ADEX: no APHASE/EPOCH; every infusion taken as induction")
    out = out.sort_values(["subject_id", "day"], kind="stable")
    out["infusion_number"] = (out.groupby("subject_id").cumcount() + 1).astype(float)
    log.keep("infusions", "infusion_number", "order of start days within subject", "derived")
    log.keep("infusions", "day", "ADEX.ASTDTM/ASTDT/ASTDY", "study day since first infusion")
    return out.reset_index(drop=True)


def _iso_minutes(value) -> float:
    """ISO 8601 duration such as PT40M or PT1H -> minutes."""
    if value is None:
        return np.nan
    m = re.fullmatch(r"P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?)?", str(value).strip().upper())
    if not m or not any(m.groups()):
        return np.nan
    d, h, mi = (float(g) if g else 0.0 for g in m.groups())
    return d * 1440 + h * 60 + mi


def _infusion_window(subject_id: pd.Series, day: pd.Series, infusions: pd.DataFrame):
    """Infusion number and minutes since its start for readings within an infusion window."""
    starts = {sid: g.sort_values("day")[["day", "infusion_number"]].to_numpy()
              for sid, g in infusions.groupby("subject_id")}
    numbers, minutes = [], []
    for sid, d in zip(subject_id, day, strict=True):
        found = (np.nan, np.nan)
        rows = starts.get(sid)
        if rows is not None and pd.notna(d):
            eligible = rows[rows[:, 0] <= d + _PRE_DOSE_DAYS]
            if len(eligible):
                start, number = eligible[-1]
                if d - start <= _WINDOW_DAYS:
                    found = (number, round((d - start) * 1440, 3))
        numbers.append(found[0])
        minutes.append(found[1])
    return (pd.Series(numbers, index=subject_id.index, dtype=float),
            pd.Series(minutes, index=subject_id.index, dtype=float))


def _vitals(advs, cadss, anchor, infusions, report, log, used) -> pd.DataFrame:
    """ADVS blood pressure and pulse (+ CADSS during infusions) -> one row per reading time."""
    key = ["subject_id", "infusion_number", "minute"]
    parts = []
    if advs is not None:
        v = advs.copy()
        if not {"PARAMCD", "AVAL"} <= set(v.columns):
            report.add("ADVS", "PARAMCD, AVAL", None, "ADVS needs PARAMCD and AVAL")
        else:
            used |= {"PARAMCD", "AVAL"}
            if "ANL01FL" in v.columns:
                used.add("ANL01FL")
                v = v[v["ANL01FL"].astype(str).str.upper() == "Y"]
            target = v["PARAMCD"].astype(str).str.upper().map(DEFAULT_VITALS_MAP)
            other = sorted(v.loc[target.isna(), "PARAMCD"].astype(str).unique())
            if other:
                log.notes.append(f"ADVS: parameters left out: {', '.join(other)}")
            v, target = v[target.notna()], target[target.notna()]
            if "ADTM" not in v.columns:
                report.add("ADVS", "ADTM", None,
                           "ADVS has no ADTM: readings cannot be placed within an infusion, so "
                           "vitals are left out", severity=WARNING)
            else:
                day = _study_day(v, anchor, "ADTM", "__none__", "__none__", used)
                number, minute = _infusion_window(v["USUBJID"], day, infusions)
                outside = number.isna()
                if outside.any():
                    log.notes.append(f"ADVS: {int(outside.sum())} reading(s) not within 12 h of an "
                                     "infusion left out")
                long = pd.DataFrame({"subject_id": _text(v["USUBJID"]), "infusion_number": number,
                                     "minute": minute, "param": target,
                                     "value": pd.to_numeric(v["AVAL"], errors="coerce")})[~outside]
                dup = long.duplicated(key + ["param"], keep="first")
                if dup.any():
                    report.add("ADVS", "ADTM", long.index[dup.to_numpy()].tolist(),
                               "several readings of one parameter at the same minute; the first is kept",
                               severity=WARNING)
                wide = long[~dup].pivot(index=key, columns="param", values="value").reset_index()
                wide.columns.name = None
                parts.append(wide)
                for column in sorted(set(target)):
                    log.keep("vitals", column, "ADVS.AVAL where PARAMCD = "
                             + "/".join(k for k, t in DEFAULT_VITALS_MAP.items() if t == column))
                log.keep("vitals", "minute", "ADVS.ADTM minus the infusion start", "derived")
    if cadss is not None:
        parts.append(cadss.drop_duplicates(key))
        log.keep("vitals", "cadss", "ADQS.AVAL of CADSS rated during an infusion")
    out = parts[0]
    for extra in parts[1:]:
        out = out.merge(extra, on=key, how="outer")
    for column in ("sbp", "dbp", "heart_rate", "cadss"):
        if column not in out.columns:
            out[column] = np.nan
    return out[key + ["sbp", "dbp", "heart_rate", "cadss"]].sort_values(key).reset_index(drop=True)


def _adverse_events(adae, anchor, infusions, report, log, used) -> pd.DataFrame:
    a = adae.copy()
    out = pd.DataFrame({"subject_id": _text(a["USUBJID"])}, index=a.index)
    out["day"] = _study_day(a, anchor, "ASTDTM", "ASTDT", "ASTDY", used)
    nodays = out["day"].isna()
    if nodays.any():
        report.add("ADAE", "ASTDTM", a.index[nodays.to_numpy()].tolist(),
                   "adverse event has no ASTDTM, ASTDT or ASTDY: it cannot be placed in time")
    term = _pick(a, ["AEDECOD", "AEPT"], used)
    if term is None:
        report.add("ADAE", "AEDECOD", None,
                   "ADAE needs AEDECOD (the verbatim AETERM is free text and is not imported)")
        out["term"] = None
    else:
        out["term"] = a[term].map(lambda v: None if v is None else str(v).strip().lower())
        log.keep("adverse_events", "term", f"ADAE.{term}", "lower case")
    sev = _pick(a, ["ASEV", "AESEV"], used)
    out["severity"] = a[sev].map(lambda v: None if v is None else str(v).strip().lower()) if sev else None
    ser = _pick(a, ["AESER"], used)
    if ser:
        serious = a[ser].astype(str).str.upper().map({"Y": True, "N": False})
        if serious.isna().any():
            report.add("ADAE", ser, a.index[serious.isna().to_numpy()].tolist(),
                       "AESER must be Y or N")
        out["serious"] = serious
        log.keep("adverse_events", "serious", "ADAE.AESER", "Y/N -> true/false")
    else:
        out["serious"] = False
        report.add("ADAE", "AESER", None, "no AESER: every event taken as non-serious", severity=WARNING)
    numbers = []
    for sid, day in zip(out["subject_id"], out["day"], strict=True):
        prior = infusions[(infusions["subject_id"] == sid) & (infusions["day"] <= day + 1e-9)]
        numbers.append(prior["infusion_number"].max() if len(prior) else np.nan)
    out["infusion_number"] = numbers
    log.keep("adverse_events", "infusion_number", "last infusion on or before onset", "derived")
    return out[["subject_id", "day", "infusion_number", "term", "severity", "serious"]].reset_index(drop=True)


def _time_to_event(adtte, anchor, report, log, used) -> pd.DataFrame:
    t = adtte.copy()
    need = [v for v in ("PARAMCD", "AVAL", "CNSR") if v not in t.columns]
    if need:
        report.add("ADTTE", ", ".join(need), None, "ADTTE needs PARAMCD, AVAL and CNSR")
        return pd.DataFrame(columns=["subject_id", "parameter", "time", "event", "cnsr"])
    used |= {"PARAMCD", "AVAL", "CNSR"}
    cnsr_raw = pd.to_numeric(t["CNSR"], errors="coerce")
    # Transport files store 0 as a tiny IBM float in some writers: round to the integer code.
    cnsr = cnsr_raw.round(6)
    bad = cnsr.isna() | (cnsr < 0) | (cnsr % 1 != 0)
    if bad.any():
        report.add("ADTTE", "CNSR", t.index[bad.to_numpy()].tolist(),
                   "CNSR must be 0 (event) or a positive integer censoring code")
    unit = t["AVALU"].astype(str).str.upper() if "AVALU" in t.columns else pd.Series("DAYS", index=t.index)
    if "AVALU" in t.columns:
        used.add("AVALU")
    factor = unit.map(_UNIT_DAYS)
    unknown = factor.isna()
    if unknown.any():
        report.add("ADTTE", "AVALU", t.index[unknown.to_numpy()].tolist(),
                   "unknown time unit (use DAYS, WEEKS, MONTHS, YEARS or HOURS)")
    out = pd.DataFrame({
        "subject_id": _text(t["USUBJID"]),
        "parameter": t["PARAMCD"].astype(str),
        "time": pd.to_numeric(t["AVAL"], errors="coerce") * factor,
        # ADaM: CNSR = 0 is the event. event is the usual 1 = event, 0 = censored indicator.
        "event": np.where(cnsr == 0, 1, 0),
        "cnsr": cnsr.astype("Int64"),
    }, index=t.index)
    out.loc[bad, "event"] = -1
    out["event"] = out["event"].astype("Int64").mask(bad)
    if "PARAM" in t.columns:
        used.add("PARAM")
        out["parameter_label"] = t["PARAM"]
    if "STARTDT" in t.columns:
        used.add("STARTDT")
        out["start_day"] = days_between(pd.to_datetime(t["STARTDT"]), t["USUBJID"].map(anchor).dt.normalize())
    for var, col in (("EVNTDESC", "event_description"), ("CNSDTDSC", "censor_description")):
        if var in t.columns:
            used.add(var)
            out[col] = t[var]
    log.keep("time_to_event", "event", "ADTTE.CNSR", "1 where CNSR = 0 (event), 0 where CNSR >= 1 (censored)")
    log.keep("time_to_event", "time", "ADTTE.AVAL (x AVALU)", "in days")
    log.notes.append("ADTTE: written as time_to_event.csv beside the cohort tables; event = 1 where CNSR = 0")
    return out.reset_index(drop=True)
