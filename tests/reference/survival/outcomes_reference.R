# Reference values for tests/test_outcomes.py (response rates and comparisons).
#
# Run from the repository root:
#   Rscript tests/reference/survival/outcomes_reference.R
# Input: inputs/synthetic_single_status.csv, responder status by visit derived from a
# kanalysis.synthetic "single" cohort (ketamine vs midazolam) and frozen by make_inputs.py.
suppressPackageStartupMessages(library(jsonlite))
here <- "tests/reference/survival"
d <- read.csv(file.path(here, "inputs", "synthetic_single_status.csv"), stringsAsFactors = FALSE)
z <- qnorm(0.975)
rates <- list(); rd <- list()
for (v in unique(d$visit)) {
  for (a in c("ketamine", "midazolam")) {
    s <- d[d$visit == v & d$arm == a & !is.na(d$response), ]
    x <- sum(s$response); n <- nrow(s)
    # Wilson score interval: prop.test without continuity correction
    ci <- prop.test(x, n, correct = FALSE)$conf.int
    rates[[length(rates) + 1]] <- list(visit = v, arm = a, n = n, responders = x,
                                       lower = ci[1], upper = ci[2])
  }
  # Newcombe (1998) method 10 from the two Wilson intervals computed by prop.test
  k <- d[d$visit == v & d$arm == "ketamine" & !is.na(d$response), "response"]
  m <- d[d$visit == v & d$arm == "midazolam" & !is.na(d$response), "response"]
  p1 <- mean(k); p0 <- mean(m)
  c1 <- prop.test(sum(k), length(k), correct = FALSE)$conf.int
  c0 <- prop.test(sum(m), length(m), correct = FALSE)$conf.int
  rd[[length(rd) + 1]] <- list(visit = v, rd = p1 - p0,
                               lower = p1 - p0 - sqrt((p1 - c1[1])^2 + (c0[2] - p0)^2),
                               upper = p1 - p0 + sqrt((c1[2] - p1)^2 + (p0 - c0[1])^2))
}
# logistic regression adjusted for baseline at 24 h:
#   glm(response ~ arm + baseline, family = binomial), Wald CI (confint.default)
s <- d[d$visit == "24h" & !is.na(d$response), ]
s$arm <- factor(s$arm, levels = c("midazolam", "ketamine"))
fit <- glm(response ~ arm + baseline, family = binomial, data = s)
b <- coef(summary(fit))["armketamine", ]
ci <- confint.default(fit)["armketamine", ]
or <- list(visit = "24h", or = exp(unname(b["Estimate"])), lower = exp(unname(ci[1])),
           upper = exp(unname(ci[2])), p = unname(b["Pr(>|z|)"]), n = nrow(s))
writeLines(toJSON(list(rates = rates, risk_difference = rd, odds_ratio = or,
                       R_version = R.version.string),
                  digits = NA, auto_unbox = TRUE, na = "null"),
           file.path(here, "outcomes_reference.json"))
cat("wrote outcomes_reference.json\n")
