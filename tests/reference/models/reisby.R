# Reference values: Reisby imipramine HAM-D data (Hedeker & Gibbons 2006, ch. 4).
# Run from the repository root: Rscript tests/reference/models/reisby.R  -> reisby.json
args <- commandArgs(trailingOnly = FALSE)
source(file.path(dirname(normalizePath(sub("^--file=", "", grep("^--file=", args, value = TRUE)[1]))), "helpers.R"))

d <- read.csv(data_path("riesby.csv"))
d <- d[!is.na(d$hamd), ]
d$id <- factor(d$id)
dataset <- "data/riesby.csv"

fits <- list()

f1 <- lmer(hamd ~ week + (1 + week | id), data = d, REML = TRUE, control = LMER_CONTROL)
fits[[1]] <- lmm_record(f1, "reisby_week_reml", dataset, pred_grid = data.frame(week = 0:5),
  call = list(formula = "hamd ~ week", groups = "id", re_formula = "~ 1 + week", reml = TRUE),
  r_call = "lmerTest::lmer(hamd ~ week + (1 + week | id), REML = TRUE, control = LMER_CONTROL)")

f2 <- lmer(hamd ~ week + (1 + week | id), data = d, REML = FALSE, control = LMER_CONTROL)
fits[[2]] <- lmm_record(f2, "reisby_week_ml", dataset,
  call = list(formula = "hamd ~ week", groups = "id", re_formula = "~ 1 + week", reml = FALSE),
  r_call = "lmerTest::lmer(hamd ~ week + (1 + week | id), REML = FALSE, control = LMER_CONTROL)")

f3 <- lmer(hamd ~ week * endog + (1 + week | id), data = d, REML = TRUE, control = LMER_CONTROL)
fits[[3]] <- lmm_record(f3, "reisby_week_endog_reml", dataset,
  pred_grid = expand.grid(week = 0:5, endog = 0:1),
  call = list(formula = "hamd ~ week * endog", groups = "id", re_formula = "~ 1 + week", reml = TRUE),
  r_call = "lmerTest::lmer(hamd ~ week * endog + (1 + week | id), REML = TRUE, control = LMER_CONTROL)")

f4 <- lmer(hamd ~ week * endog + (1 + week | id), data = d, REML = FALSE, control = LMER_CONTROL)
fits[[4]] <- lmm_record(f4, "reisby_week_endog_ml", dataset,
  call = list(formula = "hamd ~ week * endog", groups = "id", re_formula = "~ 1 + week", reml = FALSE),
  r_call = "lmerTest::lmer(hamd ~ week * endog + (1 + week | id), REML = FALSE, control = LMER_CONTROL)")

f5 <- lmer(hamd ~ week + (1 | id), data = d, REML = FALSE, control = LMER_CONTROL)
fits[[5]] <- lmm_record(f5, "reisby_intercept_ml", dataset,
  call = list(formula = "hamd ~ week", groups = "id", re_formula = "~ 1", reml = FALSE),
  r_call = "lmerTest::lmer(hamd ~ week + (1 | id), REML = FALSE, control = LMER_CONTROL)")

# Likelihood-ratio test of the nested ML fits (random intercept vs intercept + slope).
lrt <- anova(f5, f2, refit = FALSE)

out <- list(
  dataset = list(file = dataset, source = paste(
    "Reisby et al. (1977) imipramine study, HAM-D weeks 0-5; Hedeker & Gibbons (2006),",
    "Longitudinal Data Analysis, ch. 4; Hedeker's public course file RIESBY.DAT as mirrored in",
    "CEHS-research/eBook_multilevel. Rows with missing hamd are dropped (375 scores, 66 subjects)."),
    n_rows_used = nrow(d)),
  llf_definition = LLF_NOTE_LMM,
  published = list(source = "Hedeker & Gibbons (2006) Table 4.5 (ML)", reisby_week_ml = list(
    fe_params = list(Intercept = 23.577, week = -2.377), bse = list(Intercept = 0.546, week = 0.209),
    cov_re = c(12.63, -1.42, 2.08), scale = 12.22, minus2llf = 2219.04)),
  lrt = list(small = "reisby_intercept_ml", big = "reisby_week_ml",
             statistic = lrt$Chisq[2], df = lrt$Df[2], pvalue = lrt$`Pr(>Chisq)`[2]),
  fits = fits,
  session = session_info())
write_json_atomic(out, "reisby.json")
