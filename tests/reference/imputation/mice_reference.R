# Reference for MAR multiple imputation: R mice (FCS, Bayesian linear regression "norm") on the
# wide antidepressant trial, then an ANCOVA per visit (change ~ THERAPY + BASVAL) pooled by
# Rubin's rules with the Barnard-Rubin df (mice::pool). With the outcome at every visit
# regressed on the other visits, BASVAL and THERAPY, FCS under MAR targets the same model as
# an MMRM with BASVAL*VISIT + THERAPY*VISIT and unstructured covariance, so kanalysis' MAR
# imputations (ApproxBayes, Bayes) must agree within Monte Carlo error.
#
# Run from the repository root:  Rscript tests/reference/imputation/mice_reference.R
suppressMessages({library(mice); library(jsonlite)})
out_dir <- "tests/reference/imputation"
d <- read.csv("tests/data/models/antidepressant_dia_hamd17.csv",
              colClasses = c(PATIENT = "character", VISIT = "character"))
w <- reshape(d[, c("PATIENT", "VISIT", "THERAPY", "BASVAL", "CHANGE")], idvar = c("PATIENT",
             "THERAPY", "BASVAL"), timevar = "VISIT", direction = "wide")
names(w) <- sub("CHANGE.", "y", names(w))
w$THERAPY <- factor(w$THERAPY, levels = c("PLACEBO", "DRUG"))
w <- w[order(w$PATIENT), c("PATIENT", "THERAPY", "BASVAL", "y4", "y5", "y6", "y7")]
pred <- make.predictorMatrix(w); pred[, "PATIENT"] <- 0
meth <- c(PATIENT = "", THERAPY = "", BASVAL = "", y4 = "norm", y5 = "norm", y6 = "norm",
          y7 = "norm")
M <- 1000
imp <- mice(w, m = M, method = meth, predictorMatrix = pred, maxit = 20, seed = 20240613,
            printFlag = FALSE)
res <- list()
for (v in c("y4", "y5", "y6", "y7")) {
  fit <- with(imp, lm(as.formula(paste(v, "~ THERAPY + BASVAL"))))
  p <- summary(pool(fit))
  r <- p[p$term == "THERAPYDRUG", ]
  est <- sapply(fit$analyses, function(f) coef(f)["THERAPYDRUG"])
  res[[length(res) + 1]] <- list(visit = sub("y", "", v), parameter = "diff",
                                 estimate = r$estimate, std_error = r$std.error, df = r$df,
                                 p_value = r$p.value, mcse = sd(est) / sqrt(M))
}
out <- list(m = M, mice = as.character(packageVersion("mice")), R = R.version.string,
            pooled = res)
writeLines(toJSON(out, digits = 15, auto_unbox = TRUE),
           file.path(out_dir, "mice_reference.json"))
cat("wrote", file.path(out_dir, "mice_reference.json"), "\n")
