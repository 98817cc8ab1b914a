"""Decision support: do predicted traits explain a binary outcome? (dissertation §3.9, the MBA-admission case study)

Pure functions on a pandas table with one row per person / video — the predicted traits, a 0/1 outcome and control
columns — built on statsmodels:

* :func:`fit_binary` — one logit or probit model, P(y = 1) = G(α₀ + α·x + α⃗·controls), G the logistic or normal CDF
  (eq. 3.13); coefficients, standard errors, z, p-values, significance stars (* p < 0.1, ** p < 0.05, *** p < 0.01,
  as in Table 3.7) and McFadden's pseudo-R² = 1 − ln L / ln L₀ (the paper's "R²" column can only be a pseudo-R² for
  a binary outcome; McFadden's is statsmodels' ``prsquared``).
* :func:`trait_regressions` — the paper's design: the traits are strongly correlated (Table 3.6), so each trait enters
  alone, with the controls, under both links, plus a controls-only model per link for reference.
* :func:`vif` — variance inflation factors, VIF_j = 1 / (1 − R_j²), R_j² from regressing trait j on the other traits
  (with an intercept); :func:`kmo` — the Kaiser–Meyer–Olkin measure of sampling adequacy from the correlation matrix
  R and the partial correlations p_ij = −(R⁻¹)_ij / √((R⁻¹)_ii (R⁻¹)_jj):
  MSA_j = Σ_{i≠j} r_ij² / (Σ_{i≠j} r_ij² + Σ_{i≠j} p_ij²), overall KMO with both sums over all i ≠ j.
* :func:`parallel_analysis` — Horn's (1965) parallel analysis: keep the leading factors whose correlation-matrix
  eigenvalues exceed the ``quantile`` of the eigenvalues of same-shaped uncorrelated normal data (principal-component
  eigenvalues, Horn's original; the paper does not say which variant it plotted).
* :func:`one_factor` — a one-factor principal-axis solution (statsmodels ``Factor(method="pa")``, the paper's
  "principal factor solution") with regression-method factor scores; the factor's sign is chosen so the loadings
  sum to a positive number (a factor's sign is arbitrary; this makes "more of the factor" mean "more of most traits").
  :func:`outcome_analysis` then regresses the outcome on that factor with the controls (eq. 3.14).

Non-numeric control columns are one-hot encoded (first level dropped); rows with a missing value in any column used
are dropped, with a warning saying how many.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "CONTROLS_ONLY",
    "BinaryFit",
    "FactorSolution",
    "OutcomeAnalysis",
    "ParallelAnalysis",
    "fit_binary",
    "kmo",
    "one_factor",
    "outcome_analysis",
    "parallel_analysis",
    "stars",
    "trait_regressions",
    "vif",
]

_LINKS = ("logit", "probit")
#: the ``predictor`` label of the controls-only reference models in :func:`trait_regressions`
CONTROLS_ONLY = "(controls only)"


def stars(p: float) -> str:
    """Significance stars of Table 3.7: * p < 0.1, ** p < 0.05, *** p < 0.01."""
    if not math.isfinite(p):
        return ""
    return "***" if p < 0.01 else "**" if p < 0.05 else "*" if p < 0.1 else ""


def _columns(data: pd.DataFrame, name: str, cols: Sequence[str]) -> list[str]:
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data is {type(data).__name__}; expected a pandas DataFrame")
    cols = list(cols)
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise ValueError(f"{name}={missing!r}: not columns of the table; it has {list(data.columns)}")
    return cols


def _numeric_matrix(data: pd.DataFrame, name: str, cols: Sequence[str]) -> np.ndarray:
    x = data[list(cols)]
    bad = [c for c in cols if not pd.api.types.is_numeric_dtype(x[c]) and not pd.api.types.is_bool_dtype(x[c])]
    if bad:
        raise ValueError(f"{name}: column(s) {bad} are not numeric")
    arr = x.to_numpy(dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite values (drop or impute missing values first)")
    return arr


def _design(data: pd.DataFrame, outcome: str, predictors: Sequence[str], controls: Sequence[str]
            ) -> tuple[pd.Series, pd.DataFrame]:
    """y (0/1) and X = [const, predictors, controls (categoricals one-hot)] on the complete rows."""
    _columns(data, "outcome", [outcome])
    predictors = _columns(data, "predictors", predictors)
    controls = _columns(data, "controls", controls)
    used = list(dict.fromkeys([outcome, *predictors, *controls]))
    frame = data[used]
    complete = frame.dropna()
    if len(complete) < len(frame):
        warnings.warn(f"dropped {len(frame) - len(complete)} of {len(frame)} rows with missing values in {used}",
                      stacklevel=3)
    y = complete[outcome]
    if pd.api.types.is_bool_dtype(y):
        y = y.astype(int)
    values = set(pd.unique(y))
    if not values <= {0, 1} or len(values) < 2:
        raise ValueError(f"outcome={outcome!r} has values {sorted(values, key=str)[:5]}; expected a binary 0/1 "
                         "column with both values present")
    x = complete[[*predictors, *controls]]
    cats = [c for c in x.columns if not (pd.api.types.is_numeric_dtype(x[c]) or pd.api.types.is_bool_dtype(x[c]))]
    if cats:
        x = pd.get_dummies(x, columns=cats, drop_first=True)
    x = x.astype(np.float64)
    import statsmodels.api as sm

    return y.astype(np.float64), sm.add_constant(x, has_constant="add")


@dataclass(frozen=True)
class BinaryFit:
    """One fitted logit / probit model."""

    link: str  # "logit" or "probit"
    coefficients: pd.DataFrame  # one row per term (const, predictors, controls): coef, se, z, p, ci_low, ci_high, stars
    pseudo_r2: float  # McFadden's pseudo-R²
    log_likelihood: float  # ln L of the fitted model
    null_log_likelihood: float  # ln L₀ of the intercept-only model
    llr_p: float  # p-value of the likelihood-ratio test against the intercept-only model
    nobs: int  # rows used
    converged: bool  # whether the optimiser converged

    def term(self, name: str) -> dict[str, Any]:
        """The row of term ``name`` as a dict (coef, se, z, p, ci_low, ci_high, stars)."""
        if name not in self.coefficients.index:
            raise ValueError(f"name={name!r}: not a term of this model; expected one of "
                             f"{list(self.coefficients.index)}")
        return {"term": name, **self.coefficients.loc[name].to_dict()}


def fit_binary(data: pd.DataFrame, outcome: str, predictors: Sequence[str], controls: Sequence[str] = (), *,
               link: str = "logit") -> BinaryFit:
    """Fit P(outcome = 1) = G(α₀ + Σ α_k predictor_k + Σ α_c control_c) by maximum likelihood (statsmodels).

    Raises:
        ValueError: unknown link or column, non-binary outcome, or a fit that cannot be estimated (perfect
            separation, singular design).
    """
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import PerfectSeparationError, PerfectSeparationWarning

    if link not in _LINKS:
        raise ValueError(f"link={link!r}; expected one of {list(_LINKS)}")
    y, x = _design(data, outcome, predictors, controls)
    model = (sm.Logit if link == "logit" else sm.Probit)(y, x)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PerfectSeparationWarning)
            res = model.fit(disp=0, maxiter=200)
    except (PerfectSeparationError, PerfectSeparationWarning) as err:
        raise ValueError(f"{link} of {outcome!r} on {list(predictors) + list(controls)}: the outcome is perfectly "
                         f"separated ({err}); drop or merge the separating column(s)") from None
    except np.linalg.LinAlgError as err:
        raise ValueError(f"{link} of {outcome!r}: singular design ({err}); check for duplicated or constant "
                         "predictors / controls") from None
    ci = res.conf_int()
    table = pd.DataFrame({"coef": res.params, "se": res.bse, "z": res.tvalues, "p": res.pvalues,
                          "ci_low": ci[0], "ci_high": ci[1]})
    table["stars"] = table["p"].map(stars)
    return BinaryFit(link=link, coefficients=table, pseudo_r2=float(res.prsquared), log_likelihood=float(res.llf),
                     null_log_likelihood=float(res.llnull), llr_p=float(res.llr_pvalue), nobs=int(res.nobs),
                     converged=bool(res.mle_retvals.get("converged", True)))


def trait_regressions(data: pd.DataFrame, outcome: str, traits: Sequence[str], controls: Sequence[str] = (), *,
                      links: Sequence[str] = _LINKS) -> pd.DataFrame:
    """Table 3.7: per link, a controls-only model, then each trait alone with the controls.

    Returns one row per (link, predictor): link, predictor (the trait, or "(controls only)"), coef, se, z, p, stars
    (of the trait; NaN / "" for the controls-only row), pseudo_r2, nobs, converged.
    """
    traits = _columns(data, "traits", traits)
    if not traits:
        raise ValueError("traits is empty; expected at least one trait column")
    rows = []
    for link in links:
        if controls:
            base = fit_binary(data, outcome, [], controls, link=link)
            rows.append({"link": link, "predictor": CONTROLS_ONLY, "coef": math.nan, "se": math.nan, "z": math.nan,
                         "p": math.nan, "stars": "", "pseudo_r2": base.pseudo_r2, "nobs": base.nobs,
                         "converged": base.converged})
        for trait in traits:
            fit = fit_binary(data, outcome, [trait], controls, link=link)
            t = fit.term(trait)
            rows.append({"link": link, "predictor": trait, "coef": t["coef"], "se": t["se"], "z": t["z"], "p": t["p"],
                         "stars": t["stars"], "pseudo_r2": fit.pseudo_r2, "nobs": fit.nobs,
                         "converged": fit.converged})
    return pd.DataFrame(rows)


def vif(data: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """Variance inflation factor of each column among ``columns`` (statsmodels, with an intercept), indexed by name."""
    from statsmodels.stats.outliers_influence import variance_inflation_factor
    import statsmodels.api as sm

    columns = _columns(data, "columns", columns)
    if len(columns) < 2:
        raise ValueError(f"columns={columns!r}; expected at least two columns")
    x = sm.add_constant(pd.DataFrame(_numeric_matrix(data, "columns", columns), columns=columns), has_constant="add")
    with np.errstate(divide="ignore"):
        values = [float(variance_inflation_factor(x.to_numpy(), i + 1)) for i in range(len(columns))]
    return pd.Series(values, index=columns, name="vif")


def _corr(x: np.ndarray, name: str) -> np.ndarray:
    if x.ndim != 2 or x.shape[0] < 3 or x.shape[1] < 2:
        raise ValueError(f"{name} has shape {x.shape}; expected (N, P) with N >= 3 rows and P >= 2 columns")
    sd = x.std(axis=0)
    if np.any(sd == 0):
        raise ValueError(f"{name}: column(s) {list(np.flatnonzero(sd == 0))} are constant; expected varying values")
    return np.corrcoef(x, rowvar=False)


def kmo(data: pd.DataFrame, columns: Sequence[str]) -> tuple[pd.Series, float]:
    """Kaiser–Meyer–Olkin sampling adequacy: per-column MSA (Series) and the overall KMO (module docstring).

    A singular correlation matrix is inverted with the pseudo-inverse (with a warning).
    """
    columns = _columns(data, "columns", columns)
    r = _corr(_numeric_matrix(data, "columns", columns), "columns")
    try:
        inv = np.linalg.inv(r)
    except np.linalg.LinAlgError:
        warnings.warn("the correlation matrix is singular; KMO uses its pseudo-inverse", stacklevel=2)
        inv = np.linalg.pinv(r)
    d = np.sqrt(np.abs(np.diag(inv)))
    partial = -inv / np.outer(d, d)
    off = ~np.eye(len(columns), dtype=bool)
    r2 = np.where(off, r**2, 0.0)
    p2 = np.where(off, partial**2, 0.0)
    msa = r2.sum(axis=0) / (r2.sum(axis=0) + p2.sum(axis=0))
    overall = float(r2.sum() / (r2.sum() + p2.sum()))
    return pd.Series(msa, index=columns, name="msa"), overall


@dataclass(frozen=True)
class ParallelAnalysis:
    """Horn's parallel analysis (the data of the scree plot, Fig. 3.7)."""

    observed: np.ndarray  # (P,) eigenvalues of the data's correlation matrix, descending
    random_mean: np.ndarray  # (P,) mean eigenvalues of uncorrelated normal data of the same shape
    random_quantile: np.ndarray  # (P,) their ``quantile`` (the retention threshold)
    n_factors: int  # leading observed eigenvalues above the threshold (stops at the first one below)
    quantile: float  # the quantile used
    n_iter: int  # random data sets drawn


def parallel_analysis(data: pd.DataFrame, columns: Sequence[str], *, n_iter: int = 200, quantile: float = 0.95,
                      seed: int = 0) -> ParallelAnalysis:
    """How many factors to keep: observed eigenvalues vs the ``quantile`` of random-data eigenvalues (Horn 1965)."""
    columns = _columns(data, "columns", columns)
    x = _numeric_matrix(data, "columns", columns)
    if n_iter < 1:
        raise ValueError(f"n_iter={n_iter}; expected >= 1")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile={quantile}; expected a value in (0, 1)")
    observed = np.sort(np.linalg.eigvalsh(_corr(x, "columns")))[::-1]
    rng = np.random.default_rng(seed)
    n, p = x.shape
    sims = np.stack([np.sort(np.linalg.eigvalsh(np.corrcoef(rng.standard_normal((n, p)), rowvar=False)))[::-1]
                     for _ in range(n_iter)])
    threshold = np.quantile(sims, quantile, axis=0)
    above = observed > threshold
    n_factors = int(np.argmin(above)) if not above.all() else p
    return ParallelAnalysis(observed=observed, random_mean=sims.mean(axis=0), random_quantile=threshold,
                            n_factors=n_factors, quantile=quantile, n_iter=n_iter)


@dataclass(frozen=True)
class FactorSolution:
    """A one-factor principal-axis solution."""

    loadings: pd.Series  # (P,) loading of each column on the factor (sign: Σ loadings > 0)
    communalities: pd.Series  # (P,) share of each column's variance the factor explains
    scores: np.ndarray  # (N,) regression-method factor scores of the rows
    variance_explained: float  # Σ loadings² / P


def one_factor(data: pd.DataFrame, columns: Sequence[str]) -> FactorSolution:
    """Principal-axis factoring with one factor (statsmodels) and regression factor scores."""
    from statsmodels.multivariate.factor import Factor

    columns = _columns(data, "columns", columns)
    x = _numeric_matrix(data, "columns", columns)
    _corr(x, "columns")
    res = Factor(x, n_factor=1, method="pa").fit()
    loadings = np.asarray(res.loadings)[:, 0]
    scores = np.asarray(res.factor_scoring(method="regression"))[:, 0]
    if loadings.sum() < 0:
        loadings, scores = -loadings, -scores
    return FactorSolution(loadings=pd.Series(loadings, index=columns, name="loading"),
                          communalities=pd.Series(loadings**2, index=columns, name="communality"),
                          scores=scores, variance_explained=float((loadings**2).mean()))


@dataclass(frozen=True)
class OutcomeAnalysis:
    """Everything :func:`outcome_analysis` computes (tables for the report)."""

    regressions: pd.DataFrame  # trait_regressions rows, then the factor rows (predictor = "factor")
    vif: pd.Series  # per trait
    msa: pd.Series  # per-trait KMO measure of sampling adequacy
    kmo: float  # overall KMO
    parallel: ParallelAnalysis  # scree-plot data and the suggested number of factors
    factor: FactorSolution  # the one-factor solution
    data: pd.DataFrame = field(repr=False)  # the analysed rows with a "factor" column added


def outcome_analysis(data: pd.DataFrame, outcome: str, traits: Sequence[str], controls: Sequence[str] = (), *,
                     n_iter: int = 200, seed: int = 0) -> OutcomeAnalysis:
    """The whole §3.9 analysis: per-trait logit and probit (Table 3.7), VIF and KMO (Table 3.8), parallel analysis
    (Fig. 3.7), the one-factor solution and the logit / probit of the outcome on that factor (eq. 3.14, Table 3.9).

    Rows with a missing value in the outcome, a trait or a control are dropped first (with a warning), so every model
    and statistic uses the same rows.
    """
    traits = _columns(data, "traits", traits)
    controls = _columns(data, "controls", controls)
    _columns(data, "outcome", [outcome])
    if len(traits) < 2:
        raise ValueError(f"traits={traits!r}; expected at least two trait columns for the factor analysis")
    if "factor" in [outcome, *traits, *controls]:
        raise ValueError("a column is named 'factor'; rename it (the analysis adds the extracted factor under that "
                         "name)")
    used = list(dict.fromkeys([outcome, *traits, *controls]))
    complete = data[used].dropna()
    if len(complete) < len(data):
        warnings.warn(f"dropped {len(data) - len(complete)} of {len(data)} rows with missing values in {used}",
                      stacklevel=2)
    complete = complete.reset_index(drop=True)
    regressions = trait_regressions(complete, outcome, traits, controls)
    msa, overall = kmo(complete, traits)
    solution = one_factor(complete, traits)
    with_factor = complete.assign(factor=solution.scores)
    factor_rows = trait_regressions(with_factor, outcome, ["factor"], controls)
    factor_rows = factor_rows[factor_rows["predictor"] == "factor"]
    return OutcomeAnalysis(
        regressions=pd.concat([regressions, factor_rows], ignore_index=True),
        vif=vif(complete, traits), msa=msa, kmo=overall,
        parallel=parallel_analysis(complete, traits, n_iter=n_iter, seed=seed),
        factor=solution, data=with_factor,
    )
