# Reference values: "Beat the Blues" trial (BtheB, R package HSAUR3; Everitt & Hothorn,
# A Handbook of Statistical Analyses Using R, 3rd ed., ch. 13).
# Run from the repository root: Rscript tests/reference/models/btheb.R
#   -> data/btheb_long.csv (long format, exported once) and btheb.json
args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", grep("^--file=", args, value = TRUE)[1])))
source(file.path(here, "helpers.R"))

data("BtheB", package = "HSAUR3")
wide <- BtheB
wide$subject <- seq_len(nrow(wide))
times <- c(2, 3, 5, 8)
long <- do.call(rbind, lapply(seq_along(times), function(k) {
  data.frame(subject = wide$subject, drug = as.character(wide$drug),
             length = as.character(wide$length), treatment = as.character(wide$treatment),
             bdi_pre = wide$bdi.pre, time = times[k],
             bdi = wide[[c("bdi.2m", "bdi.3m", "bdi.5m", "bdi.8m")[k]]])
}))
long <- long[order(long$subject, long$time), ]
# 0/1 codes so that the Python formula does not depend on the order of string levels.
long$treatment_btheb <- as.integer(long$treatment == "BtheB")
long$drug_yes <- as.integer(long$drug == "Yes")
long$length_gt6m <- as.integer(long$length == ">6m")
csv <- data_path("btheb_long.csv")
write.csv(long, paste0(csv, ".tmp"), row.names = FALSE, na = "")
file.rename(paste0(csv, ".tmp"), csv)

d <- long[!is.na(long$bdi), ]
d$subject <- factor(d$subject)
dataset <- "data/btheb_long.csv"
fixed <- "bdi ~ bdi_pre + time + treatment_btheb + drug_yes + length_gt6m"

fits <- list()
for (cfg in list(list("~ 1", "(1 | subject)"), list("~ 1 + time", "(1 + time | subject)"))) {
  for (reml in c(TRUE, FALSE)) {
    f <- as.formula(paste(fixed, "+", cfg[[2]]))
    fit <- lmer(f, data = d, REML = reml, control = LMER_CONTROL)
    id <- sprintf("btheb_%s_%s", if (cfg[[1]] == "~ 1") "intercept" else "slope",
                  if (reml) "reml" else "ml")
    fits[[length(fits) + 1]] <- lmm_record(fit, id, dataset,
      call = list(formula = fixed, groups = "subject", re_formula = cfg[[1]], reml = reml),
      r_call = sprintf("lmerTest::lmer(%s + %s, REML = %s, control = LMER_CONTROL)", fixed, cfg[[2]], reml))
  }
}

out <- list(
  dataset = list(file = dataset, source = paste(
    "Beat the Blues trial (Proudfoot et al. 2003, Br J Psychiatry 182:217-222), as distributed in",
    "the R package HSAUR3 (Everitt & Hothorn, GPL-2 | GPL-3), Debian package r-cran-hsaur3;",
    "reshaped to long format: BDI at 2, 3, 5 and 8 months (time), one row per subject and time;",
    "bdi missing where the subject was not assessed (dropped before fitting)."),
    n_rows_used = nrow(d),
    coding = "treatment_btheb = 1 for BtheB (0 = TAU); drug_yes = 1 for drug 'Yes'; length_gt6m = 1 for '>6m'"),
  llf_definition = LLF_NOTE_LMM,
  fits = fits,
  session = session_info())
write_json_atomic(out, "btheb.json")
