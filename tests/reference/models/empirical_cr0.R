# Empirical (sandwich, CR0) covariance and its Satterthwaite df (Bell & McCaffrey 2002) for the
# R mmrm example data: nlme::gls + clubSandwich::vcovCR(type = "CR0") + coef_test (df_Satt),
# the reference R mmrm's own tests use for vcov = "Empirical". Complete cases, as there.
# Run from the repository root: Rscript tests/reference/models/empirical_cr0.R -> empirical_cr0.json
suppressPackageStartupMessages({library(nlme); library(clubSandwich); library(jsonlite)})
args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", grep("^--file=", args, value = TRUE)[1])))
d <- read.csv(file.path(here, "..", "..", "data", "models", "fev_data.csv"))
d <- d[complete.cases(d), ]
d$USUBJID <- factor(d$USUBJID)
ctrl <- glsControl(tolerance = 1e-10, msTol = 1e-10, maxIter = 500, msMaxIter = 500)
rec <- function(fit) {
  V <- vcovCR(fit, cluster = d$USUBJID, type = "CR0")
  ct <- coef_test(fit, vcov = V, test = "Satterthwaite")
  list(fe_names = names(coef(fit)), fe_params = unname(coef(fit)),
       vcov = unname(as.matrix(V)), se = ct$SE, df = ct$df_Satt, llf = as.numeric(logLik(fit)))
}
fits <- list(
  ar1 = c(list(call = list(formula = "FEV1 ~ ARMCD", covariance = "ar1"),
               r_call = "gls(FEV1 ~ ARMCD, correlation = corAR1(form = ~ VISITN | USUBJID))"),
          rec(gls(FEV1 ~ ARMCD, d, correlation = corAR1(form = ~ VISITN | USUBJID),
                  control = ctrl))),
  cs = c(list(call = list(formula = "FEV1 ~ ARMCD + SEX", covariance = "cs"),
              r_call = "gls(FEV1 ~ ARMCD + SEX, correlation = corCompSymm(form = ~ 1 | USUBJID))"),
         rec(gls(FEV1 ~ ARMCD + SEX, d, correlation = corCompSymm(form = ~ 1 | USUBJID),
                 control = ctrl))))
out <- list(source = "nlme::gls + clubSandwich CR0 on data/fev_data.csv (complete cases)",
            session = paste(R.version.string, "nlme", packageVersion("nlme"), "clubSandwich",
                            packageVersion("clubSandwich")),
            fits = fits)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           file.path(here, "empirical_cr0.json"))
