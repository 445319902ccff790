# Reference values for tests/test_safety.py, computed in R from the frozen CSVs in this folder.
#
# Run from the repository root:
#   Rscript tests/reference/safety/safety_reference.R
# Writes tests/reference/safety/safety_reference.json (committed). The test suite never runs R.
# Seen with R 4.2.2, lme4 1.1-31, lmerTest 3.1-3, jsonlite.
#
# Everything is computed here from the raw CSVs (vitals, subjects, infusions, adverse_events,
# assessments) with base R, so the Python code is checked end to end, not only its last step.

suppressPackageStartupMessages({
  library(survival)
  library(lme4)
  library(lmerTest)
  library(jsonlite)
})

dir <- "tests/reference/safety"
rd <- function(name) read.csv(file.path(dir, paste0(name, ".csv")), stringsAsFactors = FALSE)
subjects <- rd("subjects")
infusions <- rd("infusions")
vitals <- rd("vitals")
ae <- rd("adverse_events")
# pandas writes booleans as True/False, which read.csv leaves as text.
ae$serious <- ae$serious %in% c("True", "TRUE", "true")
assessments <- rd("assessments")
out <- list(versions = list(R = R.version.string,
                            lme4 = as.character(packageVersion("lme4")),
                            lmerTest = as.character(packageVersion("lmerTest"))))

# ---- 1. exact binomial CIs: binom.test(x, n, conf.level = level)$conf.int --------------------
cases <- data.frame(x = c(0, 1, 5, 10, 3, 17, 0, 12, 2), n = c(10, 10, 10, 10, 47, 138, 1, 13, 4),
                    level = c(0.95, 0.95, 0.95, 0.95, 0.9, 0.95, 0.95, 0.99, 0.95))
cases$lower <- NA; cases$upper <- NA
for (i in seq_len(nrow(cases))) {
  ci <- binom.test(cases$x[i], cases$n[i], conf.level = cases$level[i])$conf.int
  cases$lower[i] <- ci[1]; cases$upper[i] <- ci[2]
}
out$binom_test <- cases

# ---- 2. threshold exceedances: a session exceeds if any reading has sbp > 180 or dbp > 110 ------
v <- merge(vitals, subjects[, c("subject_id", "arm")], by = "subject_id")
v$key <- paste(v$subject_id, v$infusion_number)
has_bp <- !is.na(v$sbp) | !is.na(v$dbp)
over <- (!is.na(v$sbp) & v$sbp > 180) | (!is.na(v$dbp) & v$dbp > 110)
sessions <- unique(v[has_bp, c("key", "subject_id", "infusion_number", "arm")])
sessions$exceeded <- sessions$key %in% v$key[over]
exceed_table <- function(groups) {
  agg <- aggregate(exceeded ~ ., data = sessions[, c(groups, "exceeded")],
                   FUN = function(e) c(n = length(e), k = sum(e)))
  res <- agg[, groups, drop = FALSE]
  res$n_sessions <- agg$exceeded[, "n"]; res$n_exceeding <- agg$exceeded[, "k"]
  res$proportion <- res$n_exceeding / res$n_sessions
  ci <- t(mapply(function(k, n) binom.test(k, n)$conf.int, res$n_exceeding, res$n_sessions))
  res$lower <- ci[, 1]; res$upper <- ci[, 2]
  res
}
out$exceedances_arm <- exceed_table("arm")
out$exceedances_arm_infusion <- exceed_table(c("arm", "infusion_number"))
subj <- aggregate(exceeded ~ subject_id + arm, data = sessions, FUN = any)
subj_agg <- aggregate(exceeded ~ arm, data = subj, FUN = function(e) c(n = length(e), k = sum(e)))
out$exceedances_subject <- data.frame(
  arm = subj_agg$arm, n_subjects = subj_agg$exceeded[, "n"], n_exceeding = subj_agg$exceeded[, "k"],
  lower = mapply(function(k, n) binom.test(k, n)$conf.int[1], subj_agg$exceeded[, "k"], subj_agg$exceeded[, "n"]),
  upper = mapply(function(k, n) binom.test(k, n)$conf.int[2], subj_agg$exceeded[, "k"], subj_agg$exceeded[, "n"]))
# Other thresholds, as a check that they are used: SBP > 170 or DBP > 105.
over2 <- (!is.na(v$sbp) & v$sbp > 170) | (!is.na(v$dbp) & v$dbp > 105)
sessions2 <- sessions; sessions2$exceeded <- sessions2$key %in% v$key[over2]
agg2 <- aggregate(exceeded ~ arm, data = sessions2, FUN = sum)
out$exceedances_170_105 <- data.frame(arm = agg2$arm, n_exceeding = agg2$exceeded)

# ---- 3. within-infusion courses: t.test(x)$conf.int per arm x minute (and x infusion) -----------
course <- function(var, groups) {
  d <- v[!is.na(v[[var]]), ]
  keys <- unique(d[, groups, drop = FALSE])
  rows <- lapply(seq_len(nrow(keys)), function(i) {
    sel <- rep(TRUE, nrow(d))
    for (g in groups) sel <- sel & d[[g]] == keys[[g]][i]
    x <- d[[var]][sel]
    ci <- if (length(x) > 1 && sd(x) > 0) t.test(x)$conf.int else c(NA, NA)
    cbind(keys[i, , drop = FALSE], variable = var, n = length(x), mean = mean(x),
          sd = if (length(x) > 1) sd(x) else NA, lower = ci[1], upper = ci[2])
  })
  do.call(rbind, rows)
}
out$course_arm_minute <- do.call(rbind, lapply(c("cadss", "sbp", "dbp", "heart_rate"),
                                               course, groups = c("arm", "minute")))
out$course_sbp_arm_infusion_minute <- course("sbp", c("arm", "infusion_number", "minute"))

# ---- 4. per-session peaks: baseline = last non-missing reading at minute <= 0 -------------------
peak_of <- function(var) {
  rows <- lapply(split(v, v$key), function(s) {
    s <- s[order(s$minute), ]
    pre <- s[s$minute <= 0 & !is.na(s[[var]]), ]
    post <- s[s$minute > 0 & !is.na(s[[var]]), ]
    base <- if (nrow(pre)) pre[[var]][nrow(pre)] else NA
    pk <- if (nrow(post)) max(post[[var]]) else NA
    data.frame(subject_id = s$subject_id[1], arm = s$arm[1], infusion_number = s$infusion_number[1],
               baseline = base, peak = pk, peak_minute = if (nrow(post)) post$minute[which.max(post[[var]])] else NA)
  })
  res <- do.call(rbind, rows)
  res$peak_change <- res$peak - res$baseline
  res[order(res$subject_id, res$infusion_number), ]
}
peak_cadss <- peak_of("cadss")
peak_sbp <- peak_of("sbp")
out$peaks_sbp <- peak_sbp
out$peaks_cadss <- peak_cadss

# ---- 4b. return to baseline: first minute after the peak with value <= baseline + tolerance;
# censored at the last non-missing post-start reading; only sessions with peak - baseline > tol.
tolerances <- c(sbp = 10, dbp = 10, heart_rate = 10, cadss = 0)
rtb_of <- function(var) {
  tol <- tolerances[[var]]
  rows <- lapply(split(v, v$key), function(s) {
    s <- s[order(s$minute), ]
    pre <- s[s$minute <= 0 & !is.na(s[[var]]), ]
    post <- s[s$minute > 0 & !is.na(s[[var]]), ]
    if (!nrow(pre) || !nrow(post)) return(NULL)
    base <- pre[[var]][nrow(pre)]
    i <- which.max(post[[var]])
    elevated <- post[[var]][i] - base > tol
    after <- post[post$minute > post$minute[i] & post[[var]] <= base + tol, ]
    data.frame(subject_id = s$subject_id[1], arm = s$arm[1], infusion_number = s$infusion_number[1],
               variable = var, elevated = elevated, event = elevated && nrow(after) > 0,
               time = if (!elevated) NA else if (nrow(after)) after$minute[1] else max(post$minute))
  })
  do.call(rbind, rows)
}
rtb <- do.call(rbind, lapply(names(tolerances), rtb_of))
out$return_sessions_sbp <- rtb[rtb$variable == "sbp", ]
med_rows <- list()
for (var in names(tolerances)) {
  d <- rtb[rtb$variable == var & rtb$elevated, ]
  # survfit(Surv(time, event) ~ arm); median as R reports it
  fit <- survfit(Surv(time, event) ~ arm, data = d)
  tab <- summary(fit)$table
  med_rows[[var]] <- data.frame(variable = var, arm = sub("arm=", "", rownames(tab)),
                                n_elevated = unname(tab[, "records"]),
                                n_returned = unname(tab[, "events"]),
                                median = unname(tab[, "median"]),
                                # quantile.survfit's rule (findq), which kanalysis follows: it
                                # differs from the table's median only when a curve ends flat at
                                # exactly 0.5 (midpoint to the last follow-up time)
                                quantile_median = unname(quantile(fit, 0.5)$quantile[, 1]))
}
out$return_median <- do.call(rbind, med_rows)

# Kaplan-Meier medians of small hand cases (ties, censoring, a curve flat at exactly 0.5).
km_cases <- list(
  list(time = c(10, 20, 30, 40), event = c(1, 1, 1, 1)),
  list(time = c(10, 20, 20, 30, 40, 50), event = c(1, 0, 1, 1, 0, 1)),
  list(time = c(20, 20, 40, 60, 60, 80), event = c(1, 1, 1, 0, 0, 0)),
  list(time = c(20, 40, 60, 80), event = c(1, 0, 0, 0)),
  list(time = c(10, 10, 20, 40, 60, 60, 80, 100), event = c(1, 1, 0, 1, 1, 0, 1, 1)))
out$km_median_cases <- lapply(km_cases, function(k) {
  # summary(survfit(Surv(time, event) ~ 1))$table["median"]
  fit <- survfit(Surv(k$time, k$event) ~ 1)
  m <- summary(fit)$table[["median"]]
  # quantile(fit, 0.5): R's findq rule, which kanalysis.rules.km_median follows; the table's
  # median (survmean) instead gives the start of a flat at exactly 0.5 that runs to the end
  q <- unname(quantile(fit, 0.5)$quantile)
  list(time = k$time, event = k$event, median = m, quantile_median = q)
})

# ---- 5. mixed models over infusion number (lme4 + lmerTest Satterthwaite) ---------------------
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))
lmm_out <- function(fit) {
  cf <- summary(fit)$coefficients  # lmerTest: Estimate, Std. Error, df, t value, Pr(>|t|)
  vc <- as.data.frame(VarCorr(fit))
  list(terms = rownames(cf), estimate = unname(cf[, "Estimate"]),
       std_error = unname(cf[, "Std. Error"]), df = unname(cf[, "df"]),
       p_value = unname(cf[, "Pr(>|t|)"]), loglik = as.numeric(logLik(fit)),
       varcorr = vc, singular = isSingular(fit))
}
pc <- peak_cadss[!is.na(peak_cadss$peak), ]
pc$peak_cadss <- pc$peak
pc$infusion_index <- pc$infusion_number - 1
# lmer(peak_cadss ~ infusion_index * arm + (1 + infusion_index | subject_id), REML = TRUE, control = ctrl)
fit_cadss <- lmer(peak_cadss ~ infusion_index * arm + (1 + infusion_index | subject_id), data = pc,
                  REML = TRUE, control = ctrl)
out$lmm_peak_cadss_slope <- lmm_out(fit_cadss)
# lmer(peak_cadss ~ infusion_index * arm + (1 | subject_id), REML = TRUE, control = ctrl)
fit_cadss_ri <- lmer(peak_cadss ~ infusion_index * arm + (1 | subject_id), data = pc, REML = TRUE,
                     control = ctrl)
out$lmm_peak_cadss_intercept <- lmm_out(fit_cadss_ri)
ps <- peak_sbp[!is.na(peak_sbp$peak_change), ]
ps$peak_sbp_change <- ps$peak_change
ps$infusion_index <- ps$infusion_number - 1
# lmer(peak_sbp_change ~ infusion_index * arm + (1 + infusion_index | subject_id), REML = TRUE, control = ctrl)
fit_sbp <- lmer(peak_sbp_change ~ infusion_index * arm + (1 + infusion_index | subject_id), data = ps,
                REML = TRUE, control = ctrl)
out$lmm_peak_sbp_slope <- lmm_out(fit_sbp)

# ---- 6. adverse events --------------------------------------------------------------------------
treated <- unique(infusions$subject_id)
pop <- subjects[subjects$subject_id %in% treated, ]
n_arm <- table(pop$arm)
inf_arm <- table(merge(infusions, subjects, by = "subject_id")$arm)
a <- merge(ae, subjects[, c("subject_id", "arm")], by = "subject_id")
wilson <- function(k, n) prop.test(k, n, correct = FALSE)$conf.int
# Newcombe (1998) method 10: hybrid score interval for p1 - p2 from the two Wilson intervals.
newcombe <- function(k1, n1, k2, n2) {
  p1 <- k1 / n1; p2 <- k2 / n2
  w1 <- wilson(k1, n1); w2 <- wilson(k2, n2)
  d <- p1 - p2
  c(d, d - sqrt((p1 - w1[1])^2 + (w2[2] - p2)^2), d + sqrt((w1[2] - p1)^2 + (p2 - w2[1])^2))
}
inc_rows <- list(); rd_rows <- list()
for (term in sort(unique(a$term))) {
  k <- c()
  for (arm in names(n_arm)) {
    at <- a[a$term == term & a$arm == arm, ]
    ks <- length(unique(at$subject_id)); ne <- nrow(at)
    bt <- binom.test(ks, n_arm[[arm]])$conf.int
    pt <- poisson.test(ne, inf_arm[[arm]])$conf.int
    inc_rows[[length(inc_rows) + 1]] <- data.frame(
      term = term, arm = arm, n_subjects = as.integer(n_arm[[arm]]), n_with_event = ks,
      proportion = ks / n_arm[[arm]], lower = bt[1], upper = bt[2], n_events = ne,
      n_infusions = as.integer(inf_arm[[arm]]), events_per_infusion = ne / inf_arm[[arm]],
      rate_lower = pt[1], rate_upper = pt[2])
    k[arm] <- ks
  }
  nc <- newcombe(k[["ketamine"]], n_arm[["ketamine"]], k[["midazolam"]], n_arm[["midazolam"]])
  rd_rows[[length(rd_rows) + 1]] <- data.frame(term = term, risk_difference = nc[1],
                                                lower = nc[2], upper = nc[3])
}
out$ae_incidence <- do.call(rbind, inc_rows)
out$ae_risk_difference <- do.call(rbind, rd_rows)
# Newcombe's own worked examples (Stat Med 1998;17:873, table II, method 10), through the same code.
out$newcombe_examples <- data.frame(
  k1 = c(56, 9, 6, 5, 0, 0, 10, 10), n1 = c(70, 10, 7, 56, 10, 10, 10, 10),
  k2 = c(48, 3, 2, 0, 0, 0, 0, 0), n2 = c(80, 10, 7, 29, 20, 10, 20, 10))
nce <- t(mapply(newcombe, out$newcombe_examples$k1, out$newcombe_examples$n1,
                out$newcombe_examples$k2, out$newcombe_examples$n2))
out$newcombe_examples$lower <- nce[, 2]; out$newcombe_examples$upper <- nce[, 3]
# Worst severity per subject and term (mild < moderate < severe).
sev_rank <- c(mild = 1, moderate = 2, severe = 3)
a$rank <- sev_rank[a$severity]
worst <- aggregate(rank ~ subject_id + arm + term, data = a, FUN = max)
worst$severity <- names(sev_rank)[worst$rank]
out$ae_worst_severity <- aggregate(subject_id ~ term + arm + severity, data = worst, FUN = length)
names(out$ae_worst_severity)[4] <- "n_with_event"
ser <- a[a$serious, ]
out$ae_any_serious <- data.frame(
  arm = names(n_arm),
  n_with_event = sapply(names(n_arm), function(g) length(unique(ser$subject_id[ser$arm == g]))),
  n_subjects = as.integer(n_arm))

# ---- 7. dissociation and response: lm(change ~ peak_cadss + baseline) --------------------------
first <- pc[pc$infusion_number == 1, c("subject_id", "arm", "peak_cadss")]
m <- assessments[assessments$scale == "MADRS", ]
base <- do.call(rbind, lapply(split(m[m$day <= 0, ], m$subject_id[m$day <= 0]), function(s)
  s[which.max(s$day), c("subject_id", "score")]))
names(base)[2] <- "baseline"
dr <- function(target_day) {
  post <- m[m$day == target_day, c("subject_id", "score")]
  d <- merge(merge(first, base, by = "subject_id"), post, by = "subject_id")
  d$change <- d$score - d$baseline
  fit <- lm(change ~ peak_cadss + baseline, data = d)
  cf <- summary(fit)$coefficients
  ci <- confint(fit, level = 0.95)
  list(terms = rownames(cf), estimate = unname(cf[, 1]), std_error = unname(cf[, 2]),
       t = unname(cf[, 3]), p_value = unname(cf[, 4]), ci_lower = unname(ci[, 1]),
       ci_upper = unname(ci[, 2]), n = nrow(d), df_residual = fit$df.residual)
}
# lm(change ~ peak_cadss + baseline), change = MADRS at day 1 (24 h) minus baseline
out$dissociation_day1 <- dr(1)
# the same at the end of induction (day 21 here)
out$dissociation_day21 <- dr(21)

writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE, na = "null"),
           file.path(dir, "safety_reference.json"))
cat("wrote", file.path(dir, "safety_reference.json"), "\n")
