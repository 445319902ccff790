# Reference values for kanalysis.design.analytic, computed in base R from the published formulas
# (longpower, gsDesign and powerSurvEpi are not packaged in Debian). Run from the repository root:
#   Rscript tests/reference/design/analytic.R
# writes tests/reference/design/analytic.json. Sources:
#   Lu, Luo & Chen (2008) Int J Biostat 4(1):9 - MMRM sample size with monotone dropout
#   Diggle, Heagerty, Liang & Zeger (2002) Analysis of Longitudinal Data, 2nd ed., sec. 2.4
#   Liu & Liang (1997) Biometrics 53:937-947 (general covariance; random intercept + slope)
#   Schoenfeld (1983) Biometrics 39:499-503; Freedman (1982) Stat Med 1:121-129
#   Lachin & Foulkes (1986) Biometrics 42:507-519 (exponential, uniform accrual, losses)
#   stats::power.prop.test (R itself) for two proportions
library(jsonlite)

out <- list(R_version = R.version.string)

# ---- Lu, Luo & Chen (2008): phi for monotone dropout --------------------------------------
llc_phi <- function(R, r) {
  J <- nrow(R)
  r <- c(r, 0)
  I <- matrix(0, J, J)
  for (j in seq_len(J)) {
    w <- r[j] - r[j + 1]
    if (w > 0) {
      Rj <- R[1:j, 1:j, drop = FALSE]
      I[1:j, 1:j] <- I[1:j, 1:j] + w * solve(Rj)
    }
  }
  solve(I)[J, J]
}
ar1 <- function(rho, J) rho^abs(outer(1:J, 1:J, "-"))
cs <- function(rho, J) { R <- matrix(rho, J, J); diag(R) <- 1; R }

# Table 2 grid of LLC (AR(1) with correlation p1J between the first and last visit, linear
# retention from 1 to 1 - aJ).
tab2 <- list()
for (J in c(2, 4)) for (aJ in c(.1, .2, .3, .4)) for (p1J in c(0, .1, .3, .5, .7, .9)) {
  rho <- if (p1J == 0) 0 else p1J^(1 / (J - 1))
  tab2[[length(tab2) + 1]] <- list(J = J, aJ = aJ, p1J = p1J,
    phi = llc_phi(ar1(rho, J), seq(1, 1 - aJ, length.out = J)))
}
out$llc_table2 <- tab2

# Sample size N (total) for a few general inputs: z and t quantiles, per-arm phi and sigma.
llc_n <- function(delta, sa, sb, phia, phib, lambda, alpha, power, method) {
  if (method == "z") {
    Na <- (phia * sa^2 + lambda * phib * sb^2) * (qnorm(1 - alpha / 2) + qnorm(power))^2 / delta^2
    return(Na * (1 + 1 / lambda))
  }
  f <- function(N) {
    Na <- N * lambda / (1 + lambda)
    ncp <- delta * sqrt(Na / (phia * sa^2 + lambda * phib * sb^2))
    pt(ncp - qt(1 - alpha / 2, N - 2), N - 2) - power
  }
  uniroot(f, c(4, 1e5), tol = 1e-12)$root
}
cases <- list(
  list(delta = 0.5, sa = 1, sb = 1, Ra = cs(0.5, 3), Rb = cs(0.5, 3), ra = c(1, 1, 1),
       rb = c(1, 1, 1), lambda = 1, power = 0.9),
  list(delta = 3, sa = 8, sb = 9, Ra = ar1(0.6, 4), Rb = ar1(0.5, 4), ra = c(1, .92, .85, .8),
       rb = c(1, .9, .8, .7), lambda = 1, power = 0.8),
  list(delta = 4, sa = 10, sb = 10, Ra = cs(0.4, 5), Rb = cs(0.4, 5),
       ra = c(.98, .95, .9, .85, .8), rb = c(.98, .95, .9, .85, .8), lambda = 2, power = 0.85)
)
out$llc_cases <- lapply(cases, function(cs_) {
  phia <- llc_phi(cs_$Ra, cs_$ra); phib <- llc_phi(cs_$Rb, cs_$rb)
  list(delta = cs_$delta, sa = cs_$sa, sb = cs_$sb, Ra = cs_$Ra, Rb = cs_$Rb, ra = cs_$ra,
       rb = cs_$rb, lambda = cs_$lambda, power = cs_$power, phia = phia, phib = phib,
       N_z = llc_n(cs_$delta, cs_$sa, cs_$sb, phia, phib, cs_$lambda, 0.05, cs_$power, "z"),
       N_t = llc_n(cs_$delta, cs_$sa, cs_$sb, phia, phib, cs_$lambda, 0.05, cs_$power, "t"))
})

# ---- Diggle et al. (2002) and Liu & Liang (1997): slopes --------------------------------------
slope_var <- function(t, V) { X <- cbind(1, t); solve(t(X) %*% solve(V) %*% X)[2, 2] }
diggle_slope_n <- function(t, sigma2, rho, d, alpha, power, sides) {
  V <- sigma2 * ((1 - rho) * diag(length(t)) + rho)
  2 * (qnorm(1 - alpha / sides) + qnorm(power))^2 * slope_var(t, V) / d^2
}
p29 <- list()
for (rho in c(.2, .5, .8)) for (s2 in c(100, 200, 300))
  p29[[length(p29) + 1]] <- list(rho = rho, sigma2 = s2,
    n = diggle_slope_n(c(0, 2, 5), s2, rho, 0.5, 0.05, 0.8, 1))
out$diggle_p29 <- p29
p30 <- list()
for (rho in c(.2, .5, .8)) for (d in c(.2, .3, .4, .5))
  p30[[length(p30) + 1]] <- list(rho = rho, delta = d,
    n = 2 * (qnorm(.95) + qnorm(.8))^2 * (1 + 2 * rho) / (3 * d^2))
out$diggle_p30 <- p30
# ADAS-cog random intercept and slope example (longpower vignette; Liu & Liang 1997).
t <- seq(0, 1.5, 0.25)
G <- matrix(c(55, 0.8 * sqrt(55) * sqrt(24), 0.8 * sqrt(55) * sqrt(24), 24), 2)
Z <- cbind(1, t)
V <- Z %*% G %*% t(Z) + 10 * diag(length(t))
out$adas <- list(times = t, sig2_i = 55, sig2_s = 24, cov_si = 0.8 * sqrt(55) * sqrt(24),
                 sig2_e = 10, delta = 1.5,
                 n = 2 * (qnorm(.975) + qnorm(.8))^2 * slope_var(t, V) / 1.5^2)

# ---- survival ---------------------------------------------------------------------------------
surv <- list()
for (hr in c(0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.25)) for (pw in c(0.8, 0.9)) for (p in c(0.5, 2/3)) {
  z2 <- (qnorm(0.975) + qnorm(pw))^2
  k <- p / (1 - p)
  surv[[length(surv) + 1]] <- list(hr = hr, power = pw, allocation = p,
    schoenfeld = z2 / (p * (1 - p) * log(hr)^2),
    freedman = z2 * (1 + k * hr)^2 / (k * (1 - hr)^2))
}
out$events <- surv
lf_prob <- function(lam, R, Tf, eta) {
  h <- lam + eta
  s <- if (R > 0) (exp(-h * Tf) - exp(-h * (R + Tf))) / (h * R) else exp(-h * Tf)
  lam / h * (1 - s)
}
lf_n <- function(lam2, hr, R, Tf, eta, power, alpha, q1) {
  lam1 <- lam2 * hr; q2 <- 1 - q1
  phi <- function(l) l^2 / lf_prob(l, R, Tf, eta)
  lbar <- q1 * lam1 + q2 * lam2
  (qnorm(1 - alpha / 2) * sqrt(phi(lbar) * (1 / q1 + 1 / q2)) +
     qnorm(power) * sqrt(phi(lam1) / q1 + phi(lam2) / q2))^2 / (lam1 - lam2)^2
}
lf <- list()
for (cfg in list(c(log(2) / 6, 0.5, 12, 12, 0), c(log(2) / 4, 0.6, 6, 18, 0.02),
                 c(log(2) / 2.5, 0.4, 0, 4, 0.05), c(0.1, 0.7, 24, 6, 0.01)))
  for (q1 in c(0.5, 0.6))
    lf[[length(lf) + 1]] <- list(hazard_control = cfg[1], hr = cfg[2], accrual = cfg[3],
      follow_up = cfg[4], dropout = cfg[5], allocation = q1, power = 0.9,
      n = lf_n(cfg[1], cfg[2], cfg[3], cfg[4], cfg[5], 0.9, 0.05, q1))
out$lachin_foulkes <- lf

# ---- two proportions: R's power.prop.test ------------------------------------------------------
pp <- list()
for (cfg in list(c(.50, .75), c(.26, .52), c(.088, .274), c(.18, .33), c(.6, .45))) {
  n <- power.prop.test(p1 = cfg[1], p2 = cfg[2], power = 0.9)$n
  pw <- power.prop.test(p1 = cfg[1], p2 = cfg[2], n = 50)$power
  pp[[length(pp) + 1]] <- list(p1 = cfg[1], p2 = cfg[2], n_for_power_0.9 = n, power_at_50 = pw)
}
out$two_proportions <- pp

writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           "tests/reference/design/analytic.json")
