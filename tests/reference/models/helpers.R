# Shared helpers for the kanalysis model reference scripts.
# Each script is run from the repository root as `Rscript tests/reference/models/<name>.R`
# and writes <name>.json next to itself. Numbers are written with full precision (digits = NA).
suppressPackageStartupMessages({
  library(jsonlite)
  library(lme4)
  library(lmerTest)
  library(nlme)
  library(emmeans)
  library(numDeriv)
})

script_dir <- function() {
  arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
  if (length(arg) == 0) return(normalizePath("tests/reference/models"))
  dirname(normalizePath(sub("^--file=", "", arg[1])))
}
REF_DIR <- script_dir()
data_path <- function(file) file.path(REF_DIR, "data", file)

write_json_atomic <- function(obj, file) {
  path <- file.path(REF_DIR, file)
  tmp <- paste0(path, ".tmp")
  writeLines(toJSON(obj, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null",
                    na = "null"), tmp)
  file.rename(tmp, path)
  message("wrote ", path)
}

session_info <- function() {
  pk <- c("lme4", "lmerTest", "nlme", "emmeans", "numDeriv", "pbkrtest", "jsonlite")
  list(R = R.version.string,
       packages = as.list(setNames(vapply(pk, function(p) as.character(packageVersion(p)), ""), pk)),
       generated = format(Sys.time(), "%Y-%m-%d %H:%M:%S UTC", tz = "UTC"))
}

# Canonical fixed-effect names, shared with the Python tests: pieces of an interaction are
# "var" (numeric) or "var=level" (factor), sorted and joined by ":"; "(Intercept)" -> "Intercept".
# `factors` is a named list: variable name -> its levels.
canonical_names <- function(nm, factors = list()) {
  vapply(nm, function(term) {
    if (term == "(Intercept)") return("Intercept")
    pieces <- strsplit(term, ":", fixed = TRUE)[[1]]
    pieces <- vapply(pieces, function(p) {
      for (f in names(factors)) {
        if (startsWith(p, f)) {
          lev <- substring(p, nchar(f) + 1)
          if (lev %in% factors[[f]]) return(paste0(f, "=", lev))
        }
      }
      p
    }, "")
    paste(sort(pieces), collapse = ":")
  }, "", USE.NAMES = FALSE)
}

named <- function(values, names) as.list(setNames(as.numeric(values), names))

matrix_json <- function(m, names) list(names = I(names), values = unname(lapply(seq_len(nrow(m)), function(i) I(as.numeric(m[i, ])))))

re_name <- function(x) ifelse(x == "(Intercept)", "Intercept", x)

LMER_CONTROL <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))

# One lme4/lmerTest fit -> reference record.
lmm_record <- function(fit, id, dataset, call, r_call, factors = list(), blups = TRUE,
                       pred_grid = NULL) {
  s <- summary(fit)  # lmerTest: Satterthwaite df
  co <- s$coefficients
  nm <- canonical_names(rownames(co), factors)
  est <- co[, "Estimate"]; se <- co[, "Std. Error"]; df <- co[, "df"]
  tq <- qt(0.975, df)
  vc <- VarCorr(fit)
  stopifnot(length(vc) == 1)
  G <- as.matrix(vc[[1]])
  re_terms <- re_name(colnames(G))
  attr(G, "stddev") <- NULL; attr(G, "correlation") <- NULL
  opt <- fit@optinfo
  grad <- tryCatch(max(abs(opt$derivs$gradient)), error = function(e) NA)
  rec <- list(
    id = id, kind = "lmm", dataset = dataset, call = call, r_call = r_call,
    n_obs = nobs(fit), n_groups = as.integer(ngrps(fit)[1]),
    reml = isREML(fit),
    fe_names_r = rownames(co),
    fe_params = named(est, nm), bse = named(se, nm), df = named(df, nm),
    tvalues = named(co[, "t value"], nm), pvalues = named(co[, "Pr(>|t|)"], nm),
    conf_int = list(lower = named(est - tq * se, nm), upper = named(est + tq * se, nm)),
    llf = as.numeric(logLik(fit)), aic = AIC(fit), bic = BIC(fit),
    scale = sigma(fit)^2,
    cov_re = matrix_json(G, re_terms),
    re_sd = named(sqrt(diag(G)), re_terms),
    optimizer = list(name = opt$optimizer, max_abs_gradient = grad,
                     code = opt$conv$opt,
                     messages = I(as.character(c(opt$conv$lme4$messages, unlist(opt$warnings)))))
  )
  if (!is.null(pred_grid)) {
    # Population-average predictions x'beta with SE, Satterthwaite df (lmerTest::contest, one
    # row of L per grid point) and 95% CI.
    X <- model.matrix(delete.response(terms(fit)), pred_grid)
    ct <- as.data.frame(contest(fit, X, joint = FALSE, confint = TRUE, level = 0.95))
    rec$predictions <- list(
      note = "lmerTest::contest(fit, L = model.matrix(fixed terms, grid), joint = FALSE, confint = TRUE)",
      grid = pred_grid,
      table = data.frame(predicted = ct$Estimate, std_error = ct$`Std. Error`, df = ct$df,
                         ci_lower = ct$lower, ci_upper = ct$upper))
  }
  if (blups) {
    b <- ranef(fit)[[1]]
    rec$random_effects <- list(groups = rownames(b), terms = I(re_name(colnames(b))),
                               values = unname(lapply(seq_len(nrow(b)), function(i) I(as.numeric(b[i, ])))))
  }
  rec
}

LLF_NOTE_LMM <- paste(
  "llf = as.numeric(logLik(fit)) from lme4: for REML the restricted log-likelihood",
  "-0.5*[(n-p)*log(2*pi*sigma^2) + log|L_theta|^2 + log|R_X|^2 + (n-p)] at the optimum, i.e.",
  "-0.5*[(n-p)*log(2*pi) + log|V| + log|X'V^-1X| + r'V^-1 r] (the SAS PROC MIXED convention,",
  "no log|X'X| term); for ML the ordinary Gaussian log-likelihood.")
