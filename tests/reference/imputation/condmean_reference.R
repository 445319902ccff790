# Independent closed-form reference for conditional mean imputation (Wolbers et al. 2022)
# under MAR, JR, CR and CIR, built on nlme::gls REML estimates, with an ANCOVA per visit.
#
# Run from the repository root:  Rscript tests/reference/imputation/condmean_reference.R
# Writes tests/reference/imputation/condmean_data.csv (the analysis data), condmean_ice.csv
# and condmean_reference.json. The tests read these files and never need R.
#
# The data are the public antidepressant trial (rbmi's antidepressant_data) with three changes
# so that every rule is exercised: 10 completers lose visit 5 (intermittent missing, MAR);
# 8 completers get an ICE at visit 7 with visit 7 observed (left out of the fit under a
# non-MAR strategy, kept in the analysis); 5 completers get an ICE at visit 6 with visit 6
# observed and visit 7 removed (imputed conditioning on the observed post-ICE value).
suppressMessages({library(nlme); library(jsonlite)})
out_dir <- "tests/reference/imputation"
d <- read.csv("tests/data/models/antidepressant_dia_hamd17.csv",
              colClasses = c(PATIENT = "character", VISIT = "character"))
d <- d[, c("PATIENT", "VISIT", "THERAPY", "BASVAL", "CHANGE")]
visits <- c("4", "5", "6", "7")
nvis <- table(d$PATIENT)
complete <- sort(names(nvis)[nvis == 4])
inter <- complete[1:10]
postobs <- complete[11:18]
postobs2 <- complete[19:23]
d2 <- d[!(d$PATIENT %in% inter & d$VISIT == "5") & !(d$PATIENT %in% postobs2 & d$VISIT == "7"), ]
d2 <- d2[order(d2$PATIENT, d2$VISIT), ]
write.csv(d2, file.path(out_dir, "condmean_data.csv"), row.names = FALSE)

last <- tapply(match(d2$VISIT, visits), d2$PATIENT, max)
ids <- sort(unique(d2$PATIENT))
drop_ids <- names(last)[last < 4 & !(names(last) %in% postobs2)]
ice <- rbind(
  data.frame(PATIENT = drop_ids, VISIT = visits[last[drop_ids] + 1]),
  data.frame(PATIENT = postobs, VISIT = "7"),
  data.frame(PATIENT = postobs2, VISIT = "6"))
ice <- ice[order(ice$PATIENT), ]
write.csv(ice, file.path(out_dir, "condmean_ice.csv"), row.names = FALSE)

# full grid of subjects x visits with subject-level covariates
subj <- unique(d2[, c("PATIENT", "THERAPY", "BASVAL")])
subj <- subj[order(subj$PATIENT), ]
grid <- merge(subj, data.frame(VISIT = visits), by = NULL)
grid <- grid[order(grid$PATIENT, grid$VISIT), ]
grid <- merge(grid, d2[, c("PATIENT", "VISIT", "CHANGE")], all.x = TRUE, sort = FALSE)
grid <- grid[order(grid$PATIENT, grid$VISIT), ]
grid$VISIT <- factor(grid$VISIT, levels = visits)
grid$THERAPY <- factor(grid$THERAPY, levels = c("DRUG", "PLACEBO"))
n <- length(ids); t <- 4
Y <- matrix(grid$CHANGE, n, t, byrow = TRUE)
kice <- rep(t + 1, n); names(kice) <- ids
kice[ice$PATIENT] <- match(ice$VISIT, visits)
arm <- as.character(subj$THERAPY)

condmean <- function(strategy) {
  nonmar <- strategy != "MAR"
  keff <- if (nonmar) kice else rep(t + 1, n)
  # fit data: observed, minus post-ICE values of non-MAR subjects
  fitY <- Y
  for (i in seq_len(n)) if (keff[i] <= t) fitY[i, keff[i]:t] <- NA
  fd <- grid
  fd$CHANGE <- as.vector(t(fitY))
  fd <- fd[!is.na(fd$CHANGE), ]
  fd$VNUM <- as.integer(fd$VISIT)
  fit <- gls(CHANGE ~ BASVAL * VISIT + THERAPY * VISIT, data = fd,
             correlation = corSymm(form = ~ VNUM | PATIENT),
             weights = varIdent(form = ~ 1 | VISIT), method = "REML",
             control = glsControl(tolerance = 1e-10, msTol = 1e-10, maxIter = 500,
                                  msMaxIter = 500))
  # gls stops where the REML surface is flat to ~1e-8 in the log-likelihood, which leaves the
  # covariance ~1e-4 from the optimum. Polish: Newton steps on the profiled REML criterion
  # (written out below, independent of nlme) in a Cholesky parameterisation, with central
  # finite-difference gradients and Hessians.
  full_id <- names(which(table(fd$PATIENT) == 4))[1]
  S0 <- unclass(getVarCov(fit, individual = full_id)); S0 <- matrix(as.numeric(S0), t, t)
  Xf <- model.matrix(delete.response(terms(fit)), fd)
  yf <- fd$CHANGE
  rows <- split(seq_len(nrow(fd)), fd$PATIENT)
  vidx <- lapply(rows, function(r) as.integer(fd$VISIT[r]))
  to_S <- function(th) {
    L <- matrix(0, t, t); L[lower.tri(L, diag = TRUE)] <- th
    diag(L) <- exp(diag(L)); L %*% t(L)
  }
  L0 <- t(chol(S0)); diag(L0) <- log(diag(L0)); th <- L0[lower.tri(L0, diag = TRUE)]
  gls_beta <- function(S) {
    p <- ncol(Xf); A <- matrix(0, p, p); b <- rep(0, p); ld <- 0; yy <- 0
    for (j in seq_along(rows)) {
      r <- rows[[j]]; v <- vidx[[j]]
      Vi <- solve(S[v, v, drop = FALSE]); Xi <- Xf[r, , drop = FALSE]
      A <- A + t(Xi) %*% Vi %*% Xi; b <- b + t(Xi) %*% Vi %*% yf[r]
      yy <- yy + drop(t(yf[r]) %*% Vi %*% yf[r])
      ld <- ld + as.numeric(determinant(S[v, v, drop = FALSE])$modulus)
    }
    beta <- solve(A, b)
    list(beta = drop(beta), dev = ld + as.numeric(determinant(A)$modulus) + yy - drop(t(b) %*% beta))
  }
  dev <- function(th) gls_beta(to_S(th))$dev
  for (it in 1:6) {
    g <- sapply(seq_along(th), function(k) {
      h <- 1e-5; e <- replace(rep(0, length(th)), k, h); (dev(th + e) - dev(th - e)) / (2 * h)
    })
    if (max(abs(g)) < 1e-7) break
    H <- optimHess(th, dev, control = list(ndeps = rep(1e-4, length(th))))
    th <- th - solve(H, g)
  }
  S <- to_S(th)
  beta <- gls_beta(S)$beta
  names(beta) <- names(coef(fit))
  tt <- delete.response(terms(fit))
  X_own <- model.matrix(tt, grid)
  gr <- grid; gr$THERAPY <- factor("PLACEBO", levels = levels(grid$THERAPY))
  X_ref <- model.matrix(tt, gr)
  mu_own <- matrix(X_own %*% beta, n, t, byrow = TRUE)
  mu_ref <- matrix(X_ref %*% beta, n, t, byrow = TRUE)
  Yc <- Y
  cond <- function(y, mu, o, m) {
    if (!any(o)) return(mu[m])
    mu[m] + S[m, o, drop = FALSE] %*% solve(S[o, o, drop = FALSE], y[o] - mu[o])
  }
  for (i in seq_len(n)) {
    k <- keff[i]
    pre <- seq_len(t) < k
    obs <- !is.na(Y[i, ])
    # stage 1: MAR for missing values before the ICE, given observed values before it
    m1 <- pre & !obs
    if (any(m1)) Yc[i, m1] <- cond(Y[i, ], mu_own[i, ], pre & obs, m1)
    m2 <- !pre & !obs
    if (any(m2)) {
      mu <- mu_own[i, ]
      if (strategy == "JR") mu[k:t] <- mu_ref[i, k:t]
      if (strategy == "CR") mu <- mu_ref[i, ]
      if (strategy == "CIR") {
        if (k == 1) mu <- mu_ref[i, ] else
          mu[k:t] <- mu_own[i, k - 1] + mu_ref[i, k:t] - mu_ref[i, k - 1]
      }
      o2 <- pre | obs
      Yc[i, m2] <- cond(Yc[i, ], mu, o2, m2)
    }
  }
  res <- list()
  for (v in seq_len(t)) {
    dv <- data.frame(y = Yc[, v], THERAPY = factor(arm, levels = c("PLACEBO", "DRUG")),
                     BASVAL = subj$BASVAL)
    f <- lm(y ~ THERAPY + BASVAL, data = dv)
    cf <- summary(f)$coefficients
    res[[length(res) + 1]] <- list(visit = visits[v], parameter = "diff",
                                   estimate = cf["THERAPYDRUG", 1], std_error = cf["THERAPYDRUG", 2],
                                   df = f$df.residual)
    V <- vcov(f)
    for (a in c("PLACEBO", "DRUG")) {
      c_a <- c(1, as.numeric(a == "DRUG"), mean(subj$BASVAL))
      res[[length(res) + 1]] <- list(visit = visits[v], parameter = a,
                                     estimate = sum(c_a * coef(f)),
                                     std_error = sqrt(drop(t(c_a) %*% V %*% c_a)),
                                     df = f$df.residual)
    }
  }
  list(strategy = strategy, gls_loglik = as.numeric(logLik(fit)), reml_deviance = dev(th),
       max_gradient = max(abs(g)), sigma = S, sigma_gls = S0,
       ancova = res, imputed = Yc)
}
out <- lapply(c("MAR", "JR", "CR", "CIR"), condmean)
names(out) <- c("MAR", "JR", "CR", "CIR")
out$meta <- list(R = R.version.string, nlme = as.character(packageVersion("nlme")),
                 subjects = ids)
writeLines(toJSON(out, digits = 15, auto_unbox = TRUE, pretty = FALSE),
           file.path(out_dir, "condmean_reference.json"))
cat("wrote", file.path(out_dir, "condmean_reference.json"), "\n")
