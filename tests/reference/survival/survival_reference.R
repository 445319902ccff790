# Reference values from R's survival package for tests/test_durability.py.
#
# Run from the repository root:
#   Rscript tests/reference/survival/survival_reference.R
# Reads the frozen CSVs in tests/reference/survival/inputs/ and writes
# tests/reference/survival/survival_reference.json. The tests never need R.
#
# Inputs (see inputs/README.md for provenance):
#   alda_*.csv       Singer & Willett (2003) datasets from the R package alda (CC0);
#                    in these files censor = 1 means CENSORED, so event = 1 - censor.
#   synthetic_*.csv  per-subject / counting-process tables derived from kanalysis' synthetic
#                    serial and maintenance cohorts and frozen (make_inputs.py).
#   competing_example.csv  small competing-risks table with many tied times (make_inputs.py).
suppressPackageStartupMessages({library(survival); library(jsonlite)})

here <- "tests/reference/survival"
inp <- function(f) read.csv(file.path(here, "inputs", f), stringsAsFactors = FALSE)
out <- list(R_version = R.version.string,
            survival_version = as.character(packageVersion("survival")))

# ---- Kaplan-Meier: every conf.type, quantiles with CI, landmarks, RMST ----------------------
km_case <- function(d, group, times, tau) {
  f <- if (is.null(group)) Surv(time, event) ~ 1 else
    as.formula(paste("Surv(time, event) ~", group))
  res <- list()
  for (ct in c("log", "log-log", "plain")) {
    # survfit(Surv(time, event) ~ group, conf.type = ct)
    fit <- survfit(f, data = d, conf.type = ct)
    strata <- if (is.null(fit$strata)) rep("all", length(fit$time)) else
      rep(sub(".*=", "", names(fit$strata)), fit$strata)
    q <- quantile(fit, probs = c(0.25, 0.5, 0.75))
    qn <- function(m) if (is.null(dim(m))) matrix(m, nrow = 1) else unclass(m)
    s <- summary(fit, times = times, extend = FALSE)
    sstrata <- if (is.null(s$strata)) rep("all", length(s$time)) else
      sub(".*=", "", as.character(s$strata))
    res[[ct]] <- list(
      curve = list(group = strata, time = fit$time, n_risk = fit$n.risk,
                   n_event = fit$n.event, survival = fit$surv,
                   std_err_log = fit$std.err, lower = fit$lower, upper = fit$upper),
      quantile = list(group = if (is.null(fit$strata)) "all" else sub(".*=", "", names(fit$strata)),
                      q25 = qn(q$quantile)[, 1], q50 = qn(q$quantile)[, 2],
                      q75 = qn(q$quantile)[, 3],
                      lower25 = qn(q$lower)[, 1], lower50 = qn(q$lower)[, 2],
                      lower75 = qn(q$lower)[, 3],
                      upper25 = qn(q$upper)[, 1], upper50 = qn(q$upper)[, 2],
                      upper75 = qn(q$upper)[, 3]),
      landmarks = list(group = sstrata, time = s$time, survival = s$surv, lower = s$lower,
                       upper = s$upper, at_risk = s$n.risk)
    )
  }
  # print(survfit(...), rmean = tau): restricted mean and its SE
  fit <- survfit(f, data = d)
  tab <- summary(fit, rmean = tau)$table
  if (is.null(dim(tab))) tab <- matrix(tab, nrow = 1, dimnames = list("all", names(tab)))
  res$rmst <- list(group = sub(".*=", "", rownames(tab)), tau = tau,
                   rmst = unname(tab[, "rmean"]), se = unname(tab[, "se(rmean)"]),
                   median = unname(tab[, "median"]))
  res
}

# ---- Cox: Efron and Breslow, Wald summary, cox.zph (km transform) ---------------------------
cox_case <- function(formula, d) {
  res <- list()
  for (ties in c("efron", "breslow")) {
    fit <- coxph(as.formula(formula), data = d, ties = ties)
    sm <- summary(fit)
    zph <- cox.zph(fit, transform = "km")
    res[[ties]] <- list(
      term = rownames(sm$coefficients), coef = unname(sm$coefficients[, "coef"]),
      se = unname(sm$coefficients[, "se(coef)"]), hr = unname(sm$conf.int[, "exp(coef)"]),
      lower = unname(sm$conf.int[, "lower .95"]), upper = unname(sm$conf.int[, "upper .95"]),
      p = unname(sm$coefficients[, "Pr(>|z|)"]), loglik = fit$loglik,
      zph_term = rownames(zph$table), zph_chisq = unname(zph$table[, "chisq"]),
      zph_df = unname(zph$table[, "df"]), zph_p = unname(zph$table[, "p"]))
  }
  res
}

# ---- log-rank -------------------------------------------------------------------------------
lr_case <- function(formula, d) {
  # survdiff(Surv(time, event) ~ group [+ strata(s)])
  sd <- survdiff(as.formula(formula), data = d)
  list(chisq = sd$chisq, df = length(sd$n) - 1, observed = as.vector(sd$obs),
       expected = as.vector(sd$exp),
       p = pchisq(sd$chisq, length(sd$n) - 1, lower.tail = FALSE))
}

alda <- function(f, time) {
  d <- inp(f)
  d$time <- d[[time]]
  d$event <- 1 - d$censor
  d
}

alc <- alda("alda_alcohol_relapse.csv", "weeks")
coc <- alda("alda_cocaine_relapse_1.csv", "weeks")
psy <- alda("alda_psychiatric_discharge.csv", "days")
rea <- alda("alda_rearrest.csv", "days")

out$km <- list(
  alda_alcohol_relapse = km_case(alc, NULL, c(1, 2, 4, 8, 12, 20), tau = 12),
  alda_cocaine_relapse_1 = km_case(coc, "needle", c(1, 2, 4, 8, 12), tau = 10),
  alda_psychiatric_discharge = km_case(psy, "treatment_plan", c(7, 14, 30, 60, 90), tau = 60),
  alda_rearrest = km_case(rea, "person_crime", c(30, 180, 365, 730), tau = 730)
)
out$cox <- list(
  alda_cocaine_relapse_1 = cox_case("Surv(time, event) ~ needle", coc),
  alda_psychiatric_discharge = cox_case("Surv(time, event) ~ treatment_plan", psy),
  alda_rearrest = cox_case("Surv(time, event) ~ person_crime + property_crime + age", rea)
)
# stratified Cox: coxph(Surv(time, event) ~ person_crime + age + strata(property_crime))
out$cox_strata <- list(
  alda_rearrest = cox_case("Surv(time, event) ~ person_crime + age + strata(property_crime)", rea)
)
out$logrank <- list(
  alda_cocaine_relapse_1 = lr_case("Surv(time, event) ~ needle", coc),
  alda_psychiatric_discharge = lr_case("Surv(time, event) ~ treatment_plan", psy),
  alda_rearrest_stratified = lr_case("Surv(time, event) ~ person_crime + strata(property_crime)",
                                     rea)
)

# ---- competing risks: multi-state survfit (Aalen-Johansen) ----------------------------------
cif_case <- function(d) {
  d$state <- factor(d$status, levels = 0:2, labels = c("censor", "relapse", "dropout"))
  # survfit(Surv(time, state) ~ arm): pstate columns (free, relapse, dropout)
  fit <- survfit(Surv(time, state) ~ arm, data = d)
  strata <- rep(sub(".*=", "", names(fit$strata)), fit$strata)
  ps <- fit$pstate
  cn <- fit$states
  col <- function(m, state) m[, which(cn == state)]
  # std.err: infinitesimal jackknife (R's default for multi-state curves); CI conf.type "log"
  list(group = strata, time = fit$time,
       survival = col(ps, "(s0)"), cif_relapse = col(ps, "relapse"),
       cif_dropout = col(ps, "dropout"),
       se_survival = col(fit$std.err, "(s0)"), se_relapse = col(fit$std.err, "relapse"),
       se_dropout = col(fit$std.err, "dropout"),
       lower_relapse = col(fit$lower, "relapse"), upper_relapse = col(fit$upper, "relapse"),
       lower_survival = col(fit$lower, "(s0)"), upper_survival = col(fit$upper, "(s0)"))
}
if (file.exists(file.path(here, "inputs", "competing_example.csv"))) {
  out$cif <- list(competing_example = cif_case(inp("competing_example.csv")))
}

# ---- synthetic cohorts (frozen derived tables) ----------------------------------------------
syn <- function(f) file.exists(file.path(here, "inputs", f))
if (syn("synthetic_maintenance.csv")) {
  d <- inp("synthetic_maintenance.csv")
  out$km$synthetic_maintenance <- km_case(d, "arm", c(14, 28, 56, 84), tau = 56)
  out$cox$synthetic_maintenance <- cox_case("Surv(time, event) ~ arm", d)
  out$logrank$synthetic_maintenance <- lr_case("Surv(time, event) ~ arm", d)
  if (all(c("status") %in% names(d))) out$cif$synthetic_maintenance <- cif_case(d)
}
if (syn("synthetic_serial.csv")) {
  d <- inp("synthetic_serial.csv")
  out$km$synthetic_serial <- km_case(d, "arm", c(7, 14, 28, 56), tau = 28)
  out$cox$synthetic_serial <- cox_case("Surv(time, event) ~ anxious_distress + baseline + age", d)
}
if (syn("synthetic_maintenance_cp.csv")) {
  # counting-process Cox: coxph(Surv(start, stop, event) ~ maintenance_infusions)
  d <- inp("synthetic_maintenance_cp.csv")
  out$cox$synthetic_maintenance_cp <- cox_case(
    "Surv(start, stop, event) ~ maintenance_infusions", d)
}

writeLines(toJSON(out, digits = NA, na = "null", auto_unbox = TRUE, pretty = FALSE),
           file.path(here, "survival_reference.json"))
cat("wrote", file.path(here, "survival_reference.json"), "\n")
