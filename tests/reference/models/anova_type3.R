# Type III tables (lmerTest anova(type = 3), Satterthwaite and Kenward-Roger) for kanalysis.lmm
# on the Reisby HAM-D data, with the visit week as a factor and as a number.
# Run from the repository root: Rscript tests/reference/models/anova_type3.R -> anova_type3.json
suppressPackageStartupMessages({library(lmerTest); library(jsonlite)})
args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", grep("^--file=", args, value = TRUE)[1])))
d <- read.csv(file.path(here, "..", "..", "data", "models", "riesby.csv"))
d <- d[!is.na(d$hamd), ]
d$id <- factor(d$id)
d$endo <- factor(ifelse(d$endog == 1, "endogenous", "reactive"), levels = c("endogenous", "reactive"))
d$wk <- factor(d$week)
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))
tab <- function(fit, ddf) {
  a <- anova(fit, type = 3, ddf = ddf)
  data.frame(term = rownames(a), num_df = a$NumDF, den_df = a$DenDF, F = a[["F value"]],
             p_value = a[["Pr(>F)"]])
}
fits <- list()
f1 <- lmer(hamd ~ wk * endo + (1 | id), data = d, REML = TRUE, control = ctrl)
fits$factor_week <- list(
  call = list(formula = "hamd ~ C(wk) * endo", groups = "id", re_formula = "~ 1", reml = TRUE),
  r_call = "lmer(hamd ~ wk * endo + (1 | id), REML = TRUE); anova(type = 3)",
  satterthwaite = tab(f1, "Satterthwaite"), kenward_roger = tab(f1, "Kenward-Roger"),
  llf = as.numeric(logLik(f1)))
f2 <- lmer(hamd ~ week * endo + (1 + week | id), data = d, REML = TRUE, control = ctrl)
fits$numeric_week <- list(
  call = list(formula = "hamd ~ week * endo", groups = "id", re_formula = "~ 1 + week",
              reml = TRUE),
  r_call = "lmer(hamd ~ week * endo + (1 + week | id), REML = TRUE); anova(type = 3)",
  satterthwaite = tab(f2, "Satterthwaite"), llf = as.numeric(logLik(f2)))
out <- list(source = "lmerTest anova(type = 3) on data/riesby.csv (tests/data/models)",
            session = paste(R.version.string, "lme4", packageVersion("lme4"), "lmerTest",
                            packageVersion("lmerTest"), "pbkrtest", packageVersion("pbkrtest")),
            fits = fits)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           file.path(here, "anova_type3.json"))
