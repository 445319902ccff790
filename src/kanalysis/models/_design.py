"""Input checks and design matrices shared by :func:`kanalysis.lmm` and :func:`kanalysis.mmrm`.

The data frame is read once: the rows needed by the model are kept (rows with a missing outcome
or covariate are dropped and counted), the fixed-effects design is built with formulaic, and the
rows are sorted by subject so that per-subject sums can be taken with ``np.add.reduceat``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from formulaic import Formula

from kanalysis.errors import ConfigurationError, DataValidationError, StatisticalWarning
from kanalysis.requirements import require_columns

_FACTOR_CALL = re.compile(r"C\(\s*([A-Za-z_][A-Za-z0-9_.]*)")


@dataclass
class Design:
    """Model matrices and bookkeeping for one fit (rows sorted by subject)."""

    data: pd.DataFrame  # analysis rows, sorted by subject (original index kept)
    y: np.ndarray
    X: np.ndarray
    fe_names: list[str]
    model_spec: object  # formulaic ModelSpec of the fixed part (for new data / reference grids)
    response: str
    subject_codes: np.ndarray  # integer subject code per row (0..n_subjects-1), nondecreasing
    subject_labels: np.ndarray  # subject id per code
    subject_starts: np.ndarray  # first row of each subject
    n_dropped: int
    variables: list[str]
    factor_variables: list[str] = field(default_factory=list)
    dropped_columns: list[str] = field(default_factory=list)
    term_columns: dict = field(default_factory=dict)  # formula term -> its kept columns
    gram: np.ndarray | None = None  # [X y]'[X y] over the rows with an outcome
    n_observed: int = 0  # rows with an outcome

    # Deprecated spellings (the "groups" of lmm(groups=) are subjects).
    @property
    def group_codes(self) -> np.ndarray:
        return self.subject_codes

    @property
    def group_labels(self) -> np.ndarray:
        return self.subject_labels

    @property
    def group_starts(self) -> np.ndarray:
        return self.subject_starts


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def _required_variables(formula: str, columns=()) -> set[str]:
    """Data columns a formula uses. formulaic's ``required_variables`` misses the arguments of
    stateful transforms such as ``center(day)``, so identifiers that name a column are added."""
    try:
        found = set(Formula(formula).required_variables)
    except Exception as exc:  # formulaic raises several parser error types
        raise ConfigurationError(f"could not parse the formula {formula!r}: {exc}") from exc
    cols = set(map(str, columns))
    found |= {tok for tok in _IDENTIFIER.findall(formula) if tok in cols}
    return found


def _check_columns(data: pd.DataFrame, columns: list[str], what: str) -> None:
    # A column named by an argument that the data lack is a configuration error of the call.
    require_columns(data, columns, table="the data", what=what, allow_missing=True,
                    error=ConfigurationError)


def _row_list(index: pd.Index, limit: int = 10) -> str:
    rows = list(index[:limit])
    more = "" if len(index) <= limit else f" and {len(index) - limit} more"
    return f"{rows}{more}"


def build_design(
    data: pd.DataFrame,
    formula: str,
    subject: str,
    extra_columns: list[str] | None = None,
    what: str = "model",
    keep_missing_outcome: bool = False,
) -> Design:
    """Validate ``data`` and build the fixed-effects design for ``formula``.

    Rows with a missing value in the outcome, a covariate or ``extra_columns`` are dropped (and
    counted); a missing subject id is an error because it cannot be attributed to anyone. With
    ``keep_missing_outcome`` rows missing only the outcome are kept (``y`` is NaN there; the
    checks on the fixed effects use the rows with an outcome): a prepared model can then be
    refitted with outcomes filled in. Infinite outcomes or covariates are an error.
    """
    if not isinstance(data, pd.DataFrame):
        raise ConfigurationError(f"{what}: data must be a pandas DataFrame, got {type(data)!r}")
    if not isinstance(formula, str) or "~" not in formula:
        raise ConfigurationError(
            f"{what}: formula must be a string like 'score ~ day * arm', got {formula!r}"
        )
    response = formula.split("~", 1)[0].strip()
    if not response:
        raise ConfigurationError(f"{what}: the formula {formula!r} has no outcome on the left")
    variables = sorted(_required_variables(formula, data.columns))
    extra_columns = [c for c in (extra_columns or []) if c is not None]
    _check_columns(data, [subject], f"{what} (subject/groups column)")
    _check_columns(data, variables, f"{what} (formula {formula!r})")
    _check_columns(data, extra_columns, what)

    if data[subject].isna().any():
        bad = data.index[data[subject].isna().to_numpy()]
        raise DataValidationError(
            f"{what}: the subject column {subject!r} is missing in rows {_row_list(bad)}; "
            "every row must belong to a subject (fill or drop these rows)."
        )
    if response in data.columns and not pd.api.types.is_numeric_dtype(data[response]):
        raise DataValidationError(
            f"{what}: the outcome column {response!r} must be numeric, found dtype "
            f"{data[response].dtype} (convert it with pd.to_numeric)."
        )
    if len(data) == 0:
        raise DataValidationError(f"{what}: the data have no rows.")
    needed = list(dict.fromkeys(variables + extra_columns + [subject]))
    frame = data[needed]
    for col in needed:
        vals = frame[col]
        if pd.api.types.is_numeric_dtype(vals) and not pd.api.types.is_bool_dtype(vals):
            inf = np.isinf(vals.to_numpy(dtype=float, na_value=np.nan))
            if inf.any():
                bad = frame.index[inf]
                raise DataValidationError(
                    f"{what}: column {col!r} holds infinite values in rows {_row_list(bad)}; "
                    "use NaN for a missing value or fix these rows.")
    check = [c for c in needed if not (keep_missing_outcome and c == response)]
    keep = frame[check].notna().all(axis=1).to_numpy()
    observed = frame[response].notna().to_numpy() if response in frame.columns else \
        np.ones(len(frame), dtype=bool)
    n_dropped = int((~keep).sum())
    if n_dropped:  # row selections copy every column: only when there is something to drop
        frame = frame.loc[keep]
    if len(frame) == 0 or not (observed & keep).any():
        raise DataValidationError(
            f"{what}: no rows left after dropping rows with missing values in {needed} "
            f"({len(data)} rows given).")
    # Stable sort by subject so that each subject's rows are contiguous and keep their order.
    codes, labels = pd.factorize(frame[subject], sort=True)
    if np.any(codes[1:] < codes[:-1]):
        order = np.argsort(codes, kind="stable")
        frame = frame.iloc[order]
        codes = codes[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])

    try:
        mm = Formula(formula).get_model_matrix(
            frame, na_action="ignore" if keep_missing_outcome else "raise")
    except Exception as exc:
        raise ConfigurationError(
            f"{what}: could not build the design matrix for {formula!r}: {exc}"
        ) from exc
    y = np.asarray(mm.lhs, dtype=float).ravel()
    if y.shape[0] != len(frame):
        raise ConfigurationError(f"{what}: the formula must have exactly one outcome column")
    X = _float_columns(mm.rhs)
    fe_names = [str(c) for c in mm.rhs.columns]
    spec = mm.rhs.model_spec
    term_columns = {str(t): [fe_names[j] for j in idx]
                    for t, idx in spec.term_indices.items()}
    empty = [t for t, cols in term_columns.items() if not cols]
    if empty:
        warnings.warn(
            f"{what}: the formula term(s) {empty} give no column in the analysis rows (a factor "
            "with a single level, e.g. one arm), so the model cannot estimate them and they are "
            "left out; drop them from the formula to silence this warning.",
            StatisticalWarning, stacklevel=3)
    obs = np.isfinite(y)
    # One product over the rows gives [X y]'[X y]: the aliasing check, the OLS fit below and
    # the engines' starting values all use it, so no later step reads the rows for them.
    gram = _gram(X, y, obs)
    X, fe_names, dropped, kept = _drop_aliased(X, fe_names, what, gram=gram[:-1, :-1])
    if dropped:
        gram = gram[np.ix_(kept + [gram.shape[0] - 1], kept + [gram.shape[0] - 1])]
    term_columns = {t: [c for c in cols if c in set(fe_names)]
                    for t, cols in term_columns.items()}
    if len(starts) < 2:
        raise ConfigurationError(
            f"{what}: the data hold a single subject ({labels[0]!r} in column {subject!r}); "
            "a mixed model needs at least two subjects.")
    n_obs = int(obs.sum())
    yty = float(gram[-1, -1])
    beta_ols, rss = ols_from_gram(gram)
    if rss <= 1e-9 * max(yty, 1e-300):  # the Gram's rounding: confirm on the rows
        yo, Xo = (y, X) if obs.all() else (y[obs], X[obs])
        rss = float(np.sum((yo - Xo @ beta_ols) ** 2))
    if rss <= 1e-20 * max(yty, 1e-300) or n_obs <= X.shape[1]:
        raise DataValidationError(
            f"{what}: the fixed effects fit the outcome {response!r} exactly (e.g. it is "
            "constant), so there is no residual variation to model; check the outcome column.")
    factors = set(_FACTOR_CALL.findall(formula))
    for v in variables:
        if v != response and not pd.api.types.is_numeric_dtype(frame[v]):
            factors.add(v)
    return Design(
        data=frame,
        y=y,
        X=X,
        fe_names=fe_names,
        model_spec=mm.rhs.model_spec,
        response=response,
        subject_codes=codes.astype(np.int64),
        subject_labels=np.asarray(labels),
        subject_starts=starts,
        n_dropped=n_dropped,
        variables=[v for v in variables if v != response],
        factor_variables=sorted(factors),
        dropped_columns=dropped,
        term_columns=term_columns,
        gram=gram,
        n_observed=n_obs,
    )


def _float_columns(frame: pd.DataFrame) -> np.ndarray:
    """The model matrix as one float64 array in column-major order, filled column by column
    (``np.asarray`` on a frame of mixed integer and float columns interleaves row by row, about
    ten times slower at a million rows)."""
    out = np.empty(frame.shape, dtype=float, order="F")
    for j in range(frame.shape[1]):
        out[:, j] = frame.iloc[:, j].to_numpy(dtype=float)
    return out


def _gram(X: np.ndarray, y: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``[X y]'[X y]`` over ``rows`` (a boolean mask), by BLAS, without copying the rows."""
    if not rows.all():
        X, y = X[rows], y[rows]
    p = X.shape[1]
    out = np.empty((p + 1, p + 1))
    out[:p, :p] = X.T @ X
    out[:p, p] = out[p, :p] = X.T @ y
    out[p, p] = y @ y
    return out


def ols_from_gram(gram: np.ndarray) -> tuple[np.ndarray, float]:
    """OLS coefficients and residual sum of squares from ``[X y]'[X y]``:
    :math:`\\hat\beta = (X'X)^{-1}X'y`, :math:`RSS = y'y - \\hat\beta'X'y` (floored at 0)."""
    XtX, Xty, yty = gram[:-1, :-1], gram[:-1, -1], float(gram[-1, -1])
    try:
        beta = np.linalg.solve(XtX, Xty)
    except np.linalg.LinAlgError:
        beta = np.linalg.lstsq(XtX, Xty, rcond=None)[0]
    return beta, max(yty - float(beta @ Xty), 0.0)


def _drop_aliased(X: np.ndarray, names: list[str], what: str, gram: np.ndarray):
    """Drop columns that are linear combinations of earlier ones (as R's lm/lmer do), judged
    on the Gram matrix ``X'X`` of the rows with an outcome. Returns the kept matrix, names,
    dropped names and kept positions."""
    p = X.shape[1]
    if p == 0:
        raise ConfigurationError(f"{what}: the fixed-effects part of the formula has no columns")
    scale = np.sqrt(np.diag(gram)).copy()
    scale[scale == 0] = 1.0
    Gs = gram / np.outer(scale, scale)
    try:  # clearly full rank: the Cholesky factor of the scaled Gram matrix (= R of the QR)
        Rg = np.linalg.cholesky(Gs)
        if np.all(np.abs(np.diag(Rg)) > 1e-6):
            return X, names, [], list(range(p))
    except np.linalg.LinAlgError:
        pass
    # Gram-Schmidt in column order: column j is aliased when its squared residual on the
    # earlier kept columns, Gs_jj - g' Gs_KK^{-1} g (a Schur complement of the scaled Gram
    # matrix, i.e. the squared diagonal of R in a QR), is numerically zero.
    kept: list[int] = []
    for j in range(p):
        if kept:
            g = Gs[kept, j]
            resid = Gs[j, j] - g @ np.linalg.lstsq(Gs[np.ix_(kept, kept)], g, rcond=None)[0]
        else:
            resid = Gs[j, j]
        if resid > 1e-12 and Gs[j, j] > 0:
            kept.append(j)
    if len(kept) == p:
        return X, names, [], kept
    dropped = [names[j] for j in range(p) if j not in kept]
    warnings.warn(
        f"{what}: the fixed-effects column(s) {dropped} are linear combinations of other columns "
        "(for example an empty factor cell) and were dropped from the model.",
        StatisticalWarning,
        stacklevel=3,
    )
    return np.asfortranarray(X[:, kept]), [names[j] for j in kept], dropped, kept


def reference_grid(
    design: Design, factors: list[str], extra_levels: dict | None = None,
    data: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """All combinations of the levels of ``factors``; other numeric variables at their mean.

    The means are taken over the analysis rows (``data``, default the design's rows), as emmeans
    and SAS LSMEANS do.
    """
    data = design.data if data is None else data
    levels = {}
    for f in factors:
        if extra_levels and f in extra_levels:
            levels[f] = list(extra_levels[f])
        else:
            col = data[f]
            if isinstance(col.dtype, pd.CategoricalDtype):
                levels[f] = [v for v in col.cat.categories if v in set(col)]
            else:
                uniq = list(pd.unique(col))
                num = pd.to_numeric(pd.Series(uniq), errors="coerce")
                if num.notna().all():  # numbers or numeric strings ("4", "10"): numeric order
                    levels[f] = [u for _, u in sorted(zip(num, uniq, strict=True),
                                                      key=lambda z: z[0])]
                else:
                    levels[f] = sorted(uniq, key=str)
    index = pd.MultiIndex.from_product([levels[f] for f in factors], names=factors)
    grid = index.to_frame(index=False)
    for v in design.variables:
        if v in factors:
            continue
        if v in design.factor_variables:
            continue
        grid[v] = float(data[v].mean())
    for f in factors:
        if isinstance(data[f].dtype, pd.CategoricalDtype):
            grid[f] = pd.Categorical(grid[f], categories=data[f].cat.categories)
        else:
            grid[f] = grid[f].astype(data[f].dtype)
    return grid


def design_rows(design: Design, frame: pd.DataFrame) -> np.ndarray:
    """Fixed-effects rows for new data, with the columns of the fitted model."""
    try:
        mm = design.model_spec.get_model_matrix(frame)
    except Exception as exc:
        raise ConfigurationError(f"could not build the design matrix for the new data: {exc}") from exc
    names = [str(c) for c in mm.columns]
    pos = {n: i for i, n in enumerate(names)}
    missing = [n for n in design.fe_names if n not in pos]
    if missing:
        raise ConfigurationError(f"new data lacks the model columns {missing}")
    arr = np.asarray(mm, dtype=float)
    return arr[:, [pos[n] for n in design.fe_names]]
