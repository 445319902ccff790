# Reference values: DIA antidepressant trial (HAMD-17 change from baseline, visits 4-7).
# Run from the repository root: Rscript tests/reference/models/dia.R
#   -> dia.json (R: nlme::gls + polish + emmeans) and dia_sas_published.json (published SAS output)
args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", grep("^--file=", args, value = TRUE)[1])))
source(file.path(here, "helpers.R"))
source(file.path(here, "helpers_mmrm.R"))

d <- read.csv(data_path("antidepressant_dia_hamd17.csv"), colClasses = c(PATIENT = "character"))
d <- d[!is.na(d$CHANGE), ]
d$VISIT <- factor(d$VISIT, levels = c("4", "5", "6", "7"))
d$THERAPY <- factor(d$THERAPY, levels = c("DRUG", "PLACEBO"))
d$PATIENT <- factor(d$PATIENT)
d <- d[order(d$PATIENT, d$VISIT), ]
dataset <- "data/antidepressant_dia_hamd17.csv"
factors <- list(VISIT = levels(d$VISIT), THERAPY = levels(d$THERAPY))
form <- CHANGE ~ BASVAL * VISIT + THERAPY * VISIT
py_formula <- "CHANGE ~ BASVAL * C(VISIT) + THERAPY * C(VISIT)"

fits <- list()
for (cfg in list(list("us", TRUE), list("us", FALSE), list("cs", TRUE), list("ar1", TRUE),
                 list("csh", TRUE), list("ar1h", TRUE), list("toep", TRUE))) {
  structure <- cfg[[1]]; reml <- cfg[[2]]
  id <- sprintf("dia_%s_%s", structure, if (reml) "reml" else "ml")
  message("fitting ", id)
  extra <- if (structure == "us" && reml) {
    list(list(spec = "THERAPY", weights = "equal"), list(spec = "THERAPY", weights = "proportional"))
  } else list()
  fits[[length(fits) + 1]] <- mmrm_record(
    d, form, "PATIENT", "VISIT", structure, reml, id, dataset,
    call = list(formula = py_formula, subject = "PATIENT", visit = "VISIT",
                covariance = structure, reml = reml, df_method = "satterthwaite"),
    specs = "THERAPY", by = "VISIT", factors = factors, extra_emm = extra)
}

out <- list(
  dataset = list(file = dataset, source = paste(
    "Masked antidepressant trial (Goldstein et al. 2004) used by the DIA missing-data working",
    "group; HAMD-17 at baseline (BASVAL) and visits 4-7 (weeks 1, 2, 4, 6); CHANGE = change from",
    "baseline; monotone dropout. From the R package rbmi (insightsengineering/rbmi, Apache-2.0),",
    "`antidepressant_data`."), n_rows_used = nrow(d),
    column_types = "PATIENT string, VISIT integer label used as C(VISIT), THERAPY string (DRUG, PLACEBO)"),
  llf_definition = paste(
    "llf: REML: -0.5*[(n-p)*log(2*pi) + log|V| + log|X'V^-1X| + r'V^-1 r] (SAS PROC MIXED and",
    "lme4 convention; nlme::gls's logLik agrees, see polish$gls_logLik_reported, and SAS printed",
    "-2 RLL = 3494.2 for dia_us_reml). ML: the ordinary Gaussian log-likelihood."),
  emmeans_note = EMM_NOTE,
  polish_note = paste(
    "nlme::gls (tight glsControl) gives the starting point; Newton steps with numDeriv gradient and",
    "Hessian on an independent R implementation of the (RE)ML likelihood reach the optimum",
    "(max_abs_gradient recorded). ML standard errors here are model-based (X'V^-1X)^-1 at the ML",
    "estimate, as lme4 and SAS report them; nlme's own ML SEs are larger by sqrt(N/(N-p))."),
  fits = fits,
  session = session_info())
write_json_atomic(out, "dia.json")

sas <- list(
  source = paste("Published SAS PROC MIXED output for the DIA antidepressant trial as recorded in",
                 "/work/shared/data/public/SOURCES.md: CHANGE = BASVAL*VISIT THERAPY*VISIT;",
                 "REPEATED VISIT / TYPE=UN SUBJECT=PATIENT; METHOD=REML; DDFM=KR. Values are as printed",
                 "(rounded), so compare at the printed precision."),
  call = list(formula = py_formula, subject = "PATIENT", visit = "VISIT", covariance = "us",
              reml = TRUE, df_method = "kenward-roger"),
  minus2_restricted_llf = 3494.2,
  lsmeans_visit7 = list(DRUG = list(estimate = -7.6239, std_error = 0.7914),
                        PLACEBO = list(estimate = -4.8221, std_error = 0.7785)),
  contrasts = list(
    list(contrast = "DRUG - PLACEBO", VISIT = "4", estimate = 0.09181, std_error = 0.6826, df = 169),
    list(contrast = "DRUG - PLACEBO", VISIT = "5", estimate = -1.4032, std_error = 0.9244, df = 165),
    list(contrast = "DRUG - PLACEBO", VISIT = "6", estimate = -2.2247, std_error = 1.0008, df = 162),
    list(contrast = "DRUG - PLACEBO", VISIT = "7", estimate = -2.8018, std_error = 1.1163, df = 150,
         p_value = 0.0131)),
  model_based_se_visit7 = 1.1140,
  cov = list(names = c("4", "5", "6", "7"), values = list(
    c(19.6845, 16.5157, 15.3879, 16.3599), c(16.5157, 34.2105, 25.4250, 26.1843),
    c(15.3879, 25.4250, 38.4363, 33.8949), c(16.3599, 26.1843, 33.8949, 45.2587))))
write_json_atomic(sas, "dia_sas_published.json")
