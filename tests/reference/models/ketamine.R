# Reference values: frozen analysis frame of the bundled synthetic single-infusion ketamine cohort
# (data/ketamine_single_madrs.csv, written by export_ketamine_frame.py).
# Run from the repository root: Rscript tests/reference/models/ketamine.R  -> ketamine.json
args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", grep("^--file=", args, value = TRUE)[1])))
source(file.path(here, "helpers.R"))
source(file.path(here, "helpers_mmrm.R"))

d <- read.csv(data_path("ketamine_single_madrs.csv"), colClasses = c(subject_id = "character"))
dataset <- "data/ketamine_single_madrs.csv"

# --- LMM: trajectories on linear days and on log(1 + hours) ---
dl <- d
dl$subject_id <- factor(dl$subject_id)
fits <- list()
lmm_specs <- list(
  list(id = "ketamine_day_reml", fixed = "score ~ baseline + day * arm", re = "day", reml = TRUE),
  list(id = "ketamine_day_ml", fixed = "score ~ baseline + day * arm", re = "day", reml = FALSE),
  list(id = "ketamine_logtime_reml", fixed = "score ~ baseline + log_time * arm", re = "log_time", reml = TRUE),
  list(id = "ketamine_logtime_ml", fixed = "score ~ baseline + log_time * arm", re = "log_time", reml = FALSE))
for (s in lmm_specs) {
  f <- as.formula(sprintf("%s + (1 + %s | subject_id)", s$fixed, s$re))
  fit <- lmer(f, data = dl, REML = s$reml, control = LMER_CONTROL)
  # Population trajectory by arm at the scheduled times, baseline at its mean over the rows.
  hours <- c(2 / 3, 4, 24, 72, 168, 336)
  grid <- expand.grid(hours = hours, arm = 0:1)
  grid$day <- grid$hours / 24
  grid$log_time <- log1p(grid$hours)
  grid$baseline <- mean(dl$baseline)
  fits[[length(fits) + 1]] <- lmm_record(fit, s$id, dataset, pred_grid = grid,
    call = list(formula = s$fixed, groups = "subject_id", re_formula = paste("~ 1 +", s$re), reml = s$reml),
    r_call = sprintf("lmerTest::lmer(%s + (1 + %s | subject_id), REML = %s, control = LMER_CONTROL)",
                     s$fixed, s$re, s$reml))
}

# --- MMRM: change from baseline by visit (visit = visit number 1..6) ---
dm <- d
dm$visit <- factor(dm$visit, levels = as.character(1:6))
dm$treatment <- factor(dm$treatment, levels = c("ketamine", "midazolam"))
dm$subject_id <- factor(dm$subject_id)
dm <- dm[order(dm$subject_id, dm$visit), ]
factors <- list(visit = levels(dm$visit), treatment = levels(dm$treatment))
form <- change ~ baseline * visit + treatment * visit
for (cfg in list(list("us", TRUE), list("us", FALSE), list("cs", TRUE), list("ar1", TRUE),
                 list("csh", TRUE))) {
  structure <- cfg[[1]]; reml <- cfg[[2]]
  id <- sprintf("ketamine_mmrm_%s_%s", structure, if (reml) "reml" else "ml")
  message("fitting ", id)
  fits[[length(fits) + 1]] <- mmrm_record(
    dm, form, "subject_id", "visit", structure, reml, id, dataset,
    call = list(formula = "change ~ baseline * C(visit) + treatment * C(visit)",
                subject = "subject_id", visit = "visit", covariance = structure, reml = reml,
                df_method = "satterthwaite"),
    specs = "treatment", by = "visit", factors = factors,
    emmeans_df_mode = "df.error")  # cross-check of estimates/SE only; df here are df.error
}

out <- list(
  dataset = list(file = dataset, source = paste(
    "Synthetic: kanalysis bundled cohort data/synthetic/single (one 0.5 mg/kg IV ketamine",
    "infusion vs midazolam; MADRS at baseline, 40 min, 4 h, 24 h, days 3, 7, 14; default seed),",
    "post-baseline MADRS rows with a score, frozen by export_ketamine_frame.py."),
    n_rows_used = nrow(d),
    columns = paste("arm = 1 for ketamine (0 = midazolam); treatment = arm label; visit = visit",
                    "number 1..6 (40min, 4h, 24h, day3, day7, day14); hours = 24*day;",
                    "log_time = log(1 + hours); change = score - baseline")),
  llf_definition = paste(LLF_NOTE_LMM, "MMRM fits: the same REML convention, computed from the",
                         "polished covariance (equal to nlme::gls's logLik at its optimum)."),
  emmeans_note = EMM_NOTE,
  reference_caveats = paste(
    "ketamine_logtime_reml and ketamine_logtime_ml are boundary fits (lme4: singular; the random",
    "intercept-slope correlation is ~0.9999). Estimates, SEs, covariance and llf are well defined.",
    "lmerTest's Satterthwaite df there come from a numerical Hessian taken at the edge of the",
    "theta space: a convention rather than a well-defined quantity (a Hessian taken in an interior",
    "parametrisation gave df up to 5x smaller for the time terms); the CIs inherit this."),
  ar1_note = "ar1/csh use visit positions 1..6 (equally spaced in the index, not in time), as corAR1(form = ~ as.integer(visit) | subject).",
  fits = fits,
  session = session_info())
write_json_atomic(out, "ketamine.json")
