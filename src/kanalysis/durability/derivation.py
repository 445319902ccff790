"""From a cohort to the per-subject durability table: time zero, relapse, censoring.

:func:`derive` writes one row per subject at risk of relapse; :func:`counting_process` splits
follow-up into ``(start, stop]`` rows with a time-varying infusion covariate;
:func:`censoring_reasons` tabulates how follow-up ended by arm.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from kanalysis.durability._checks import _require_columns
from kanalysis.errors import ConfigurationError, DataValidationError
from kanalysis.rules import (
    CONFIRMATION_DAYS,
    RELAPSE_RULES,
    baseline_scores,
    last_induction_day,
    parse_relapse_rule,
)

__all__ = ["CONFIRMATION_DAYS", "DEFAULT_RELAPSE_THRESHOLD", "RELAPSE_RULES", "SUBJECT_COVARIATES",
           "censoring_reasons", "counting_process", "derive"]

#: Default cut-off of relapse rule (b): MADRS >= 22 (SUSTAIN-1, Daly et al. 2019).
DEFAULT_RELAPSE_THRESHOLD = 22.0
SUBJECT_COVARIATES = ("site", "age", "sex", "n_failed_trials", "episode_duration_months",
                      "anxious_distress", "bmi", "family_history_aud", "disposition")


def _confirmed(days, worse, gap, n_consecutive, unconfirmed_last):
    """First index i whose worsening is confirmed, the confirming index j, and a flag.

    Worsening at i is confirmed by assessment j, the later of the (n_consecutive - 1)-th next
    observed assessment and the first one at least gap[0] days after i, when every observed
    assessment from i to j is worse and day_j - day_i <= gap[1]. Worsening that runs into the end
    of the data before it can be confirmed is unconfirmed: counted at i when
    ``unconfirmed_last == "count"``.
    Returns (i, j, unconfirmed_at_end) with -1 for "none".
    """
    n = len(days)
    # run_end[k]: last index of the run of consecutive worse assessments starting at k
    run_end = np.full(n, -1)
    for k in range(n - 1, -1, -1):
        if worse[k]:
            run_end[k] = run_end[k + 1] if k + 1 < n and worse[k + 1] else k
    for i in np.flatnonzero(worse):
        j = max(i + n_consecutive - 1, int(np.searchsorted(days, days[i] + gap[0] - 1e-9)))
        if j < n:
            if j <= run_end[i] and days[j] - days[i] <= gap[1] + 1e-9:
                return i, j, False
            continue
        if run_end[i] == n - 1:
            # worse from i to the last assessment, confirmation not possible any more
            return (i, -1, True) if unconfirmed_last == "count" else (-1, -1, True)
    return -1, -1, False


def derive(
    cohort,
    scale: str | None = None,
    relapse_rule: str | Sequence[str] = "a",
    *,
    origin: str = "auto",
    response_reduction: float | None = None,
    relapse_threshold: float | None = None,
    n_consecutive: int = 2,
    confirmation_days: dict | None = None,
    clinical_event_types: Sequence[str] = ("hospitalisation", "suicide_attempt"),
    unconfirmed_last: str = "censor",
    relapse_day: str = "first",
    follow_up_days: float | None = None,
    eligibility_window: float = 1.0,
    relapse_score: float | None = None,
) -> pd.DataFrame:
    """One row per subject at risk of relapse: time, event, censoring reason and covariates.

    Steps, each rule a parameter with its published default:

    1. Response status at every assessment (:func:`kanalysis.outcomes.responder_status`):
       baseline = last non-missing score on or before the first infusion, response = >= 50%
       reduction.
    2. Time zero (``origin``): ``"first_response"`` (duration of response: the first responding
       assessment), ``"last_induction"`` (day of the last induction infusion; only subjects in
       response at the last assessment up to ``eligibility_window`` days later are at risk,
       Murrough et al. 2013), ``"randomization"`` (``subjects.randomization_day``, the
       maintenance design), or ``"auto"``: randomization when the subjects table has
       randomisation days, else first response.
    3. Relapse after time zero by ``relapse_rule`` (any of them, the earliest counts):
       (a) loss of response, improvement < ``response_reduction`` (50%) on ``n_consecutive`` (2)
       consecutive non-missing assessments (Murrough et al. 2013); (b) score >=
       ``relapse_threshold`` (MADRS 22) on 2 consecutive assessments 5-15 days apart
       (``confirmation_days``; SUSTAIN-1, Daly et al. 2019); (c) a clinical event of
       ``clinical_event_types`` (SUSTAIN-1). Missed visits are skipped: "consecutive" means
       consecutive non-missing assessments. Worsening at the last assessment that cannot be
       confirmed any more is censored (``unconfirmed_last="censor"``, flagged in
       ``unconfirmed_worsening``) or counted (``"count"``). The relapse day is the first
       worse assessment (``relapse_day="first"``) or the confirming one (``"confirmation"``).
    4. Otherwise censored at the last non-missing assessment, with ``censor_reason``:
       ``dropout`` (the subject dropped out), ``end_of_follow_up`` (followed to the last planned
       assessment or to ``follow_up_days``), ``last_assessment`` (completed, but later planned
       assessments are missing) or ``no_follow_up`` (no assessment after time zero: time 0).

    Parameters
    ----------
    cohort : kanalysis.Cohort
        Needs ``subjects``, ``assessments`` and ``infusions``; ``clinical_events`` for rule (c).
    scale : str, optional
        Default: the cohort's primary scale.
    relapse_rule : str or sequence
        ``"a"``, ``"b"``, ``"c"``, their names (:data:`kanalysis.rules.RELAPSE_RULE_ALIASES`)
        or combinations (``"b+c"`` is SUSTAIN-1's definition); see
        :func:`kanalysis.rules.parse_relapse_rule`.
    response_reduction : float, optional
        Response rule (default: the scale's, 0.5).
    relapse_threshold : float, optional
        Cut-off of rule (b), default 22 (MADRS, SUSTAIN-1). ``relapse_score`` is its deprecated
        name (the notebooks' parameter has always been ``relapse_threshold``).
    follow_up_days : float, optional
        Administrative end of follow-up, in days after time zero.

    Returns
    -------
    pandas.DataFrame
        ``subject_id, arm, time, event`` (1 relapse, 0 censored), ``censor_reason``,
        ``status`` (0 censored, 1 relapse, 2 dropout: the competing risk for
        :func:`cumulative_incidence`), ``relapse_by`` (rule that fired), ``origin``,
        ``origin_day``, ``event_day`` (study day), ``baseline``, ``score_at_origin``,
        ``unconfirmed_worsening`` and the subject covariates. Subjects not at risk (never
        responded, no post-baseline data, baseline 0, not randomised) are listed with the
        reason in ``result.attrs["excluded"]``.
    """
    from kanalysis.outcomes import responder_status

    for name in ("subjects", "assessments", "infusions"):
        if getattr(cohort, name, None) is None:
            raise DataValidationError(f"derive needs a Cohort with a {name} table.")
    if relapse_score is not None:
        warnings.warn("derive: 'relapse_score' is deprecated; use relapse_threshold=",
                      DeprecationWarning, stacklevel=2)
        if relapse_threshold is not None and float(relapse_threshold) != float(relapse_score):
            raise ConfigurationError(
                f"derive: relapse_threshold={relapse_threshold} and its deprecated name "
                f"relapse_score={relapse_score} disagree; pass relapse_threshold only.")
        relapse_threshold = relapse_score
    relapse_threshold = DEFAULT_RELAPSE_THRESHOLD if relapse_threshold is None else float(
        relapse_threshold)
    rules = parse_relapse_rule(relapse_rule)
    if unconfirmed_last not in ("censor", "count"):
        raise ConfigurationError(
            f"unconfirmed_last must be 'censor' or 'count', got {unconfirmed_last!r}.")
    if relapse_day not in ("first", "confirmation"):
        raise ConfigurationError(
            f"relapse_day must be 'first' or 'confirmation', got {relapse_day!r}.")
    if n_consecutive < 1:
        raise ConfigurationError(f"n_consecutive must be >= 1, got {n_consecutive}.")
    gaps = dict(CONFIRMATION_DAYS, **(confirmation_days or {}))
    subjects = cohort.subjects
    has_rand = ("randomization_day" in subjects.columns
                and subjects["randomization_day"].notna().any())
    if origin == "auto":
        origin = "randomization" if has_rand else "first_response"
    if origin not in ("first_response", "last_induction", "randomization"):
        raise ConfigurationError(
            "origin must be 'auto', 'first_response', 'last_induction' or 'randomization', "
            f"got {origin!r}.")
    if origin == "randomization" and not has_rand:
        raise DataValidationError(
            "origin='randomization' needs subjects.randomization_day; this cohort has none.")
    clin = getattr(cohort, "clinical_events", None)
    if "c" in rules and clin is None:
        raise ConfigurationError(
            "relapse rule (c) needs the clinical_events table, which this cohort does not have; "
            "use rule 'a' or 'b', or add clinical_events.csv.")

    status = responder_status(cohort, scale, response_reduction=response_reduction)

    obs = status[status["score"].notna()]
    sc_name = status["scale"].iloc[0] if len(status) else scale
    # last planned assessment per subject (missing-score rows included)
    a_all = cohort.assessments
    a_all = a_all[a_all["scale"].astype(str).str.upper() == str(sc_name).upper()]
    last_planned = a_all.groupby("subject_id")["day"].max()

    base = baseline_scores(cohort, sc_name).set_index("subject_id")["baseline"]
    last_induction = last_induction_day(cohort.infusions)
    events_by_subject = {}
    if "c" in rules and len(clin):
        ce = clin[clin["event"].isin(clinical_event_types)]
        events_by_subject = {k: np.sort(v.to_numpy(float)) for k, v in ce.groupby("subject_id")["day"]}

    groups = {k: v for k, v in obs.groupby("subject_id", sort=False)}
    rows, excluded = [], []
    subj = subjects.set_index("subject_id")
    for sid, srow in subj.iterrows():
        arm = srow.get("arm")
        if sid not in base.index:
            excluded.append((sid, arm, "no_baseline"))
            continue
        b = float(base[sid])
        g = groups.get(sid)
        if g is None or len(g) == 0:
            if origin != "randomization":
                excluded.append((sid, arm, "no_post_baseline_data"))
                continue
            g = obs.iloc[:0]
        days = g["day"].to_numpy(float)
        score = g["score"].to_numpy(float)
        resp = g["response"].to_numpy(float)
        if origin != "randomization" and b <= 0:
            excluded.append((sid, arm, "baseline_zero"))
            continue
        # ---- time zero
        if origin == "first_response":
            hit = np.flatnonzero(resp == 1)
            if len(hit) == 0:
                excluded.append((sid, arm, "never_responded"))
                continue
            t0 = days[hit[0]]
        elif origin == "last_induction":
            if sid not in last_induction.index:
                excluded.append((sid, arm, "no_induction_infusion"))
                continue
            t0 = float(last_induction[sid])
            upto = np.flatnonzero(days <= t0 + eligibility_window)
            if len(upto) == 0 or resp[upto[-1]] != 1:
                excluded.append((sid, arm, "not_in_response_at_origin"))
                continue
        else:
            t0 = srow.get("randomization_day")
            if t0 is None or not np.isfinite(t0):
                excluded.append((sid, arm, "not_randomised"))
                continue
            t0 = float(t0)
        at0 = np.flatnonzero(days <= t0)
        score0 = score[at0[-1]] if len(at0) else np.nan
        after = days > t0
        end = t0 + follow_up_days if follow_up_days is not None else math.inf
        after &= days <= end + 1e-9
        d_after, s_after, r_after = days[after], score[after], resp[after]
        # ---- relapse candidates
        cands = []  # (day, rule)
        unconfirmed = False
        for rule in rules:
            if rule == "c":
                ev = events_by_subject.get(sid)
                if ev is not None:
                    ev = ev[(ev > t0) & (ev <= end + 1e-9)]
                    if len(ev):
                        cands.append((float(ev[0]), "c"))
                continue
            if rule == "a":
                # undefined improvement (baseline 0) is not evidence of relapse
                worse = r_after == 0
            else:
                worse = s_after >= relapse_threshold
            i, j, unc = _confirmed(d_after, worse, gaps[rule], n_consecutive, unconfirmed_last)
            if i >= 0:
                use = j if (relapse_day == "confirmation" and j >= 0) else i
                cands.append((float(d_after[use]), rule))
            elif unc:
                unconfirmed = True
        dropped = srow.get("disposition") == "dropped_out"
        rec = {"subject_id": sid, "arm": arm}
        if cands:
            day_ev, by = min(cands)
            rec.update(time=day_ev - t0, event=1, censor_reason=None, status=1, relapse_by=by,
                       event_day=day_ev)
        else:
            if len(d_after):
                last = float(d_after[-1])
                if follow_up_days is not None and last >= end - 1e-9:
                    reason = "end_of_follow_up"
                elif dropped:
                    reason = "dropout"
                elif last >= float(last_planned.get(sid, last)) - 1e-9:
                    reason = "end_of_follow_up"
                else:
                    reason = "last_assessment"
            else:
                last = t0
                reason = "dropout" if dropped else "no_follow_up"
            rec.update(time=last - t0, event=0, censor_reason=reason,
                       status=2 if reason == "dropout" else 0, relapse_by=None, event_day=last)
        rec.update(origin=origin, origin_day=t0, baseline=b, score_at_origin=score0,
                   unconfirmed_worsening=bool(unconfirmed and not cands))
        for c in SUBJECT_COVARIATES:
            if c in subj.columns:
                rec[c] = srow.get(c)
        rows.append(rec)
    cols = ["subject_id", "arm", "time", "event", "censor_reason", "status", "relapse_by",
            "origin", "origin_day", "event_day", "baseline", "score_at_origin",
            "unconfirmed_worsening"] + [c for c in SUBJECT_COVARIATES if c in subj.columns]
    out = pd.DataFrame(rows, columns=cols)
    out["event"] = out["event"].astype(int)
    out["status"] = out["status"].astype(int)
    out.attrs["excluded"] = pd.DataFrame(excluded, columns=["subject_id", "arm", "reason"])
    out.attrs["relapse_rule"] = "+".join(rules)
    out.attrs["origin"] = origin
    return out


def counting_process(
    table: pd.DataFrame,
    infusions: pd.DataFrame,
    *,
    time: str = "time",
    event: str = "event",
    origin: str = "origin_day",
    phase: str | None = "maintenance",
    covariate: str = "maintenance_infusions",
    kind: str = "cumulative",
    window: float = 14.0,
) -> pd.DataFrame:
    """Split per-subject follow-up into ``(start, stop]`` rows with a time-varying infusion covariate.

    Times are on the analysis scale of ``table`` (days since each subject's ``origin`` study
    day). An infusion on study day ``d`` happens at analysis time ``u = d - origin``; the
    covariate changes just after ``u``, so the interval ending at ``u`` keeps the old value.
    Infusions at or before time 0 set the starting value; those at or after the subject's
    follow-up end are ignored.

    Parameters
    ----------
    table : pandas.DataFrame
        Per-subject table from :func:`derive` (``subject_id``, ``time``, ``event``, ``origin_day``).
    infusions : pandas.DataFrame
        The cohort's infusions table (``subject_id``, ``day``, ``phase``).
    phase : str or None
        Keep infusions of this phase only (None = all infusions).
    covariate : str
        Name of the new column.
    kind : {"cumulative", "any", "recent"}
        ``cumulative``: number of such infusions received so far; ``any``: 1 after the first;
        ``recent``: 1 within ``window`` days after an infusion (exposure that wears off).
    window : float
        Days an infusion counts as recent (``kind="recent"``).

    Returns
    -------
    pandas.DataFrame
        The input columns plus ``start``, ``stop`` and ``covariate``; ``event`` is 1 only on the
        subject's last interval when the subject had the event. Fit with
        ``cox(cp, "maintenance_infusions + ...", time="stop", start="start")``.
    """
    _require_columns(table, ["subject_id", time, event, origin], "table")
    _require_columns(infusions, ["subject_id", "day"] + (["phase"] if phase else []), "infusions")
    if kind not in ("cumulative", "any", "recent"):
        raise ConfigurationError(f"kind must be 'cumulative', 'any' or 'recent', got {kind!r}.")
    inf = infusions if phase is None else infusions[infusions["phase"] == phase]
    inf = inf[["subject_id", "day"]].merge(table[["subject_id", origin, time]], on="subject_id")
    inf["u"] = inf["day"] - inf[origin]
    inf = inf[inf["u"] < inf[time]]
    by_subject = {k: np.sort(v.to_numpy()) for k, v in inf.groupby("subject_id")["u"]}
    rows = []
    for rec in table.to_dict("records"):
        u = by_subject.get(rec["subject_id"], np.array([]))
        end = float(rec[time])
        if kind == "recent":
            cuts = np.concatenate([u, u + window])
        else:
            cuts = u
        cuts = np.unique(cuts[(cuts > 0) & (cuts < end)])
        bounds = np.concatenate([[0.0], cuts, [end]])
        if end == 0:
            bounds = np.array([0.0, 0.0])
        for j in range(len(bounds) - 1):
            a, b = bounds[j], bounds[j + 1]
            if kind == "cumulative":
                val = float(np.sum(u <= a))
            elif kind == "any":
                val = float(np.any(u <= a))
            else:
                val = float(np.any((u <= a) & (u + window > a)))
            row = dict(rec)
            row.update({"start": a, "stop": b, covariate: val,
                        event: int(rec[event]) if j == len(bounds) - 2 else 0})
            rows.append(row)
    out = pd.DataFrame(rows)
    # zero-length follow-up cannot enter a (start, stop] risk set
    return out[out["stop"] > out["start"]].reset_index(drop=True)


def censoring_reasons(table: pd.DataFrame, group: str | None = "arm") -> pd.DataFrame:
    """How follow-up ended, by group: relapse, or each censoring reason, with counts.

    Parameters
    ----------
    table : pandas.DataFrame
        The output of :func:`derive` (``event``/``censor_reason`` per subject).
    group : str or None
        Grouping column (None: one group ``"all"``).

    Returns
    -------
    pandas.DataFrame
        ``<group>, outcome, n`` (``outcome`` is ``relapse`` or the censoring reason), one row per
        observed combination in group order; ``attrs["count_columns"]`` = ``{"n": None}``.
    """
    _require_columns(table, ["censor_reason"] + ([group] if group else []), "table")
    gname = group if group is not None else "group"
    frame = table.assign(outcome=table["censor_reason"].fillna("relapse").astype(str))
    if group is None:
        frame = frame.assign(group="all")
    out = frame.groupby([gname, "outcome"]).size().rename("n").reset_index()
    out["n"] = out["n"].astype(int)
    out.attrs["count_columns"] = {"n": None}
    return out
