# MMRM reference machinery: nlme::gls fit -> polished REML/ML optimum -> fixed effects, SEs,
# Satterthwaite df (observed information, numDeriv), LS-means and contrasts (emmeans' linear
# functions). nlme::gls with corSymm + varIdent stops ~1e-4 short of the optimum (see
# /work/shared/research/r_reference_notes.md), so the gls estimate is only the starting point:
# a few Newton steps on an independent R implementation of the same likelihood finish the job,
# and the record keeps both (gls as reported, and polished).

# Structures: theta -> Sigma (m x m). Visit positions are 1..m (as.integer(visit factor)).
sigma_from_theta <- function(structure, theta, m) {
  idx <- outer(seq_len(m), seq_len(m), function(i, j) abs(i - j))
  switch(structure,
    us = {
      L <- matrix(0, m, m)
      L[lower.tri(L, diag = TRUE)] <- theta
      diag(L) <- exp(diag(L))
      L %*% t(L)
    },
    cs = exp(2 * theta[1]) * ((1 - theta[2]) * diag(m) + theta[2]),
    csh = { s <- exp(theta[1:m]); (s %o% s) * ((1 - theta[m + 1]) * diag(m) + theta[m + 1]) },
    ar1 = exp(2 * theta[1]) * theta[2]^idx,
    ar1h = { s <- exp(theta[1:m]); (s %o% s) * theta[m + 1]^idx },
    toep = { r <- c(1, theta[-1]); exp(2 * theta[1]) * matrix(r[idx + 1], m, m) },
    stop("unknown structure ", structure))
}

theta_from_sigma <- function(structure, S) {
  m <- nrow(S); sd <- sqrt(diag(S)); R <- cov2cor(S)
  switch(structure,
    us = { L <- t(chol(S)); diag(L) <- log(diag(L)); L[lower.tri(L, diag = TRUE)] },
    cs = c(log(mean(sd)), mean(R[lower.tri(R)])),
    csh = c(log(sd), mean(R[lower.tri(R)])),
    ar1 = c(log(mean(sd)), R[2, 1]),
    ar1h = c(log(sd), R[2, 1]),
    toep = c(log(mean(sd)), R[1, -1]))
}

mmrm_setup <- function(d, formula, subject, visit) {
  X <- model.matrix(formula, d)
  y <- model.response(model.frame(formula, d))
  vi <- as.integer(d[[visit]])
  sid <- as.character(d[[subject]])
  rows <- split(seq_len(nrow(d)), factor(sid, levels = unique(sid)))
  rows <- lapply(rows, function(r) r[order(vi[r])])
  list(X = X, y = y, vi = vi, rows = rows, m = nlevels(d[[visit]]),
       n = nrow(X), p = ncol(X), visit_levels = levels(d[[visit]]))
}

# Gaussian (RE)ML log-likelihood given the within-subject covariance S (SAS convention for REML:
# -0.5 * [(n-p) log 2pi + log|V| + log|X'V^-1 X| + r'V^-1 r]).
gls_pieces <- function(S, st) {
  p <- st$p
  XtVX <- matrix(0, p, p); XtVy <- numeric(p); yVy <- 0; logdet <- 0
  for (r in st$rows) {
    v <- st$vi[r]
    R <- chol(S[v, v, drop = FALSE])
    Xw <- backsolve(R, st$X[r, , drop = FALSE], transpose = TRUE)
    yw <- backsolve(R, st$y[r], transpose = TRUE)
    XtVX <- XtVX + crossprod(Xw); XtVy <- XtVy + drop(crossprod(Xw, yw))
    yVy <- yVy + sum(yw^2); logdet <- logdet + 2 * sum(log(diag(R)))
  }
  list(XtVX = XtVX, XtVy = XtVy, yVy = yVy, logdet = logdet)
}

mmrm_loglik <- function(theta, structure, st, reml = TRUE) {
  S <- sigma_from_theta(structure, theta, st$m)
  ev <- eigen(S, symmetric = TRUE, only.values = TRUE)$values
  if (any(!is.finite(ev)) || min(ev) <= 0) return(-1e100)
  g <- gls_pieces(S, st)
  RX <- chol(g$XtVX)
  beta <- backsolve(RX, backsolve(RX, g$XtVy, transpose = TRUE))
  rss <- g$yVy - sum(beta * g$XtVy)
  if (reml) {
    -0.5 * ((st$n - st$p) * log(2 * pi) + g$logdet + 2 * sum(log(diag(RX))) + rss)
  } else {
    -0.5 * (st$n * log(2 * pi) + g$logdet + rss)
  }
}

mmrm_vcov <- function(theta, structure, st) {
  solve(gls_pieces(sigma_from_theta(structure, theta, st$m), st)$XtVX)
}

polish <- function(theta, structure, st, reml, steps = 8) {
  f <- function(t) mmrm_loglik(t, structure, st, reml)
  ll0 <- f(theta)
  for (k in seq_len(steps)) {
    g <- grad(f, theta)
    H <- hessian(f, theta)
    step <- -solve(H, g)
    # Halve the Newton step until the likelihood does not decrease.
    for (h in 0:30) {
      cand <- theta + step / 2^h
      if (f(cand) >= f(theta) - 1e-12) break
    }
    theta <- cand
    if (max(abs(g)) < 1e-9) break
  }
  list(theta = theta, llf = f(theta), llf_start = ll0, max_abs_gradient = max(abs(grad(f, theta))),
       hessian = hessian(f, theta))
}

satterthwaite_df <- function(L, theta, structure, st, hess) {
  A <- solve(-hess)
  apply(L, 1, function(l) {
    vf <- function(t) drop(t(l) %*% mmrm_vcov(t, structure, st) %*% l)
    v <- vf(theta)
    g <- grad(vf, theta)
    2 * v^2 / drop(t(g) %*% A %*% g)
  })
}

gls_structure_args <- function(structure, subject, visit, m) {
  pos <- as.formula(sprintf("~ as.integer(%s) | %s", visit, subject))
  het <- varIdent(form = as.formula(sprintf("~ 1 | %s", visit)))
  switch(structure,
    us = list(correlation = corSymm(form = pos), weights = het,
              r = sprintf("correlation = corSymm(form = ~ as.integer(%s) | %s), weights = varIdent(form = ~ 1 | %s)", visit, subject, visit)),
    cs = list(correlation = corCompSymm(form = pos), weights = NULL,
              r = sprintf("correlation = corCompSymm(form = ~ as.integer(%s) | %s)", visit, subject)),
    csh = list(correlation = corCompSymm(form = pos), weights = het,
               r = sprintf("correlation = corCompSymm(form = ~ as.integer(%s) | %s), weights = varIdent(form = ~ 1 | %s)", visit, subject, visit)),
    ar1 = list(correlation = corAR1(form = pos), weights = NULL,
               r = sprintf("correlation = corAR1(form = ~ as.integer(%s) | %s)", visit, subject)),
    ar1h = list(correlation = corAR1(form = pos), weights = het,
                r = sprintf("correlation = corAR1(form = ~ as.integer(%s) | %s), weights = varIdent(form = ~ 1 | %s)", visit, subject, visit)),
    toep = list(correlation = corARMA(form = pos, p = m - 1), weights = NULL,  # = Toeplitz
                r = sprintf("correlation = corARMA(form = ~ as.integer(%s) | %s, p = m - 1)", visit, subject)))
}

GLS_CONTROL <- glsControl(maxIter = 500, msMaxIter = 500, tolerance = 1e-10, msTol = 1e-12,
                          returnObject = TRUE)

# Within-subject covariance implied by a gls fit, by visit level.
gls_sigma <- function(fit, visit_levels) {
  m <- length(visit_levels)
  S <- corMatrix(fit$modelStruct$corStruct)[[1]]
  if (nrow(S) != m) {  # first group may be incomplete: rebuild from a complete one
    all <- corMatrix(fit$modelStruct$corStruct)
    S <- all[[which(vapply(all, nrow, 1L) == m)[1]]]
  }
  sd <- rep(fit$sigma, m)
  if (!is.null(fit$modelStruct$varStruct)) {
    w <- coef(fit$modelStruct$varStruct, unconstrained = FALSE, allCoef = TRUE)
    sd <- fit$sigma * w[visit_levels]
  }
  (sd %o% sd) * S
}

EMM_NOTE <- paste(
  "LS-means and contrasts use emmeans' linear functions (emm@linfct: factors crossed, numeric",
  "covariates at their mean over the analysis rows, equal weights unless stated) applied to the",
  "polished estimates; SE from (X'V^-1X)^-1; df = Satterthwaite with the observed information",
  "(numDeriv Hessian of the (RE)ML log-likelihood in the covariance parameters; df is invariant",
  "to the parametrisation at the optimum); CI = estimate +- qt(0.975, df) * SE.")

lin_rows <- function(L, beta, V, df, labels) {
  est <- drop(L %*% beta); se <- sqrt(diag(L %*% V %*% t(L))); tq <- qt(0.975, df)
  cbind(labels, estimate = est, std_error = se, df = df, t = est / se,
        p_value = 2 * pt(-abs(est / se), df), ci_lower = est - tq * se, ci_upper = est + tq * se)
}

# Fit one MMRM: gls + polish + emmeans linear functions.
# specs/by: factor names for LS-means; extra_emm: list of list(spec=, weights=) without `by`.
mmrm_record <- function(d, formula, subject, visit, structure, reml, id, dataset, call,
                        specs, by, factors, emmeans_df_mode = "satterthwaite", extra_emm = list()) {
  st <- mmrm_setup(d, formula, subject, visit)
  ga <- gls_structure_args(structure, subject, visit, st$m)
  t0 <- proc.time()[["elapsed"]]
  fit <- do.call(gls, c(list(model = formula, data = d, method = if (reml) "REML" else "ML",
                             control = GLS_CONTROL, na.action = na.omit),
                        ga[c("correlation", if (!is.null(ga$weights)) "weights")]))
  gls_seconds <- proc.time()[["elapsed"]] - t0
  S_gls <- gls_sigma(fit, st$visit_levels)
  pol <- polish(theta_from_sigma(structure, S_gls), structure, st, reml)
  S <- sigma_from_theta(structure, pol$theta, st$m)
  V <- mmrm_vcov(pol$theta, structure, st)
  g <- gls_pieces(S, st)
  beta <- drop(solve(g$XtVX, g$XtVy))
  nm <- canonical_names(colnames(st$X), factors)
  Lfe <- diag(st$p)
  df_fe <- satterthwaite_df(Lfe, pol$theta, structure, st, pol$hessian)
  se <- sqrt(diag(V)); tq <- qt(0.975, df_fe)

  emm_spec <- as.formula(sprintf("~ %s | %s", specs, by))
  emm <- emmeans(fit, emm_spec, mode = emmeans_df_mode)
  grid <- emm@grid
  Lls <- emm@linfct
  df_ls <- satterthwaite_df(Lls, pol$theta, structure, st, pol$hessian)
  ls <- data.frame(as.character(grid[[specs]]), as.character(grid[[by]]))
  names(ls) <- c(specs, by)
  ls <- lin_rows(Lls, beta, V, df_ls, ls)
  ls$t <- NULL; ls$p_value <- NULL

  con <- contrast(emm, method = "pairwise")
  Lc <- con@linfct
  df_c <- satterthwaite_df(Lc, pol$theta, structure, st, pol$hessian)
  cl <- data.frame(contrast = as.character(con@grid$contrast), as.character(con@grid[[by]]))
  names(cl)[2] <- by
  cl <- lin_rows(Lc, beta, V, df_c, cl)

  # emmeans as it reports on the gls fit itself (cross-check only).
  es <- as.data.frame(summary(emm)); cs <- as.data.frame(summary(con, infer = TRUE))

  # LS-means of `specs` averaged over `by`. The weights are built here from the `by` x `specs`
  # linear functions: emmeans' "proportional" weights for a gls fit with varIdent use the
  # ref_grid's .wgt., which divides the visit counts by the varIdent SD ratios (a quirk: the
  # variance weights are taken for case weights), so it is kept only as a cross-check.
  extra <- lapply(extra_emm, function(e) {
    w <- if (e$weights == "proportional") {
      as.numeric(table(d[[by]])[as.character(grid[[by]])])  # frequencies in the analysis rows
    } else rep(1, nrow(grid))
    lev <- levels(d[[e$spec]])
    L2 <- t(vapply(lev, function(l) {
      s <- as.character(grid[[specs]]) == l
      colSums(Lls[s, , drop = FALSE] * w[s]) / sum(w[s])
    }, numeric(ncol(Lls))))
    lab <- data.frame(lev); names(lab) <- e$spec
    r <- lin_rows(L2, beta, V, satterthwaite_df(L2, pol$theta, structure, st, pol$hessian), lab)
    r$t <- NULL; r$p_value <- NULL
    em2 <- emmeans(fit, as.formula(paste("~", e$spec)), weights = e$weights, mode = "df.error")
    list(specs = e$spec, weights = e$weights,
         weights_used = if (e$weights == "proportional") "frequency of each level of the averaged-over factor in the analysis rows" else "equal",
         table = r, emmeans_on_gls = as.data.frame(summary(em2)))
  })

  vlev <- st$visit_levels
  list(
    id = id, kind = "mmrm", dataset = dataset, call = call, structure = structure, reml = reml,
    r_call = sprintf("nlme::gls(%s, data, method = \"%s\", %s, control = GLS_CONTROL) + Newton polish",
                     deparse(formula), if (reml) "REML" else "ML", ga$r),
    n_obs = st$n, n_subjects = length(st$rows), fe_names_r = colnames(st$X),
    fe_params = named(beta, nm), bse = named(se, nm), df = named(df_fe, nm),
    tvalues = named(beta / se, nm), pvalues = named(2 * pt(-abs(beta / se), df_fe), nm),
    conf_int = list(lower = named(beta - tq * se, nm), upper = named(beta + tq * se, nm)),
    llf = pol$llf, scale = mean(diag(S)),
    scale_note = "mean of the diagonal of cov (for homogeneous structures this is sigma^2)",
    cov = matrix_json(S, vlev), corr = matrix_json(cov2cor(S), vlev),
    theta = list(parametrisation = structure, values = I(pol$theta)),
    lsmeans = list(specs = specs, by = by, weights = "equal", table = ls),
    contrasts = list(specs = specs, by = by, method = "pairwise", table = cl),
    lsmeans_extra = extra,
    polish = list(llf_gls_start = pol$llf_start, llf_polished = pol$llf,
                  max_abs_gradient = pol$max_abs_gradient,
                  gls_logLik_reported = as.numeric(logLik(fit)),
                  gls_fe_params = named(coef(fit), nm),
                  max_abs_fe_change = max(abs(coef(fit) - beta)),
                  gls_cov = matrix_json(S_gls, vlev), gls_seconds = gls_seconds),
    emmeans_on_gls = list(
      mode = emmeans_df_mode,
      note = "emmeans() applied to the (unpolished) gls fit, as emmeans reports it; cross-check only",
      lsmeans = es, contrasts = cs)
  )
}
