# Frozen reference values for analysis/outcomes/stacked.py: the IPTW (ATT) log HR and log IRR with the
# M-estimation sandwich of the whole stack of estimating equations, written independently of
# the Python code: the per-person estimating functions of the propensity model (logistic
# score), of the weight normalisation and of the outcome model (R's own Cox score residuals
# from survival::coxph; the NB2 score by formula at the glm.nb fit), and one numerical
# Jacobian of their sum in ALL parameters at once (central differences), so no block of the
# derivation in analysis/outcomes/stacked.py (closed-form influence functions, chain rule through the
# weights) is reused.
#
# Run once from the repository root, after tests/reference/iptw_stacked/make_data.py:
#
#     Rscript tests/reference/iptw_stacked/make_reference.R
#
# Reads  tests/reference/iptw_stacked/data.csv
# Writes tests/reference/iptw_stacked/reference.json (tests read it; they never run R).
# Made with R 4.2.2, survival 3.5-3, MASS 7.3-58.2 (Debian packages).

suppressPackageStartupMessages({
  library(survival)
  library(MASS)
})

here <- "tests/reference/iptw_stacked"
d <- read.csv(file.path(here, "data.csv"))
X <- cbind(1, d$x1, d$x2, d$x3)
a <- d$treatment
nt <- sum(a)
ps <- glm(treatment ~ x1 + x2 + x3, family = binomial, data = d,
          control = glm.control(epsilon = 1e-14, maxit = 100))
alpha_hat <- unname(coef(ps))

# control weight c * min(odds, cap); treated 1
weights_of <- function(alpha, cc, cap) {
  m <- pmin(exp(drop(X %*% alpha)), cap)
  ifelse(a == 1, 1, cc * m)
}

stack_psi <- function(theta, cap, outcome, nb_theta = NA) {
  alpha <- theta[1:4]
  cc <- theta[5]
  b <- theta[-(1:5)]
  e <- plogis(drop(X %*% alpha))
  m <- pmin(exp(drop(X %*% alpha)), cap)
  w <- ifelse(a == 1, 1, cc * m)
  logistic <- X * (a - e)
  normalise <- a - (1 - a) * cc * m
  if (outcome == "cox") {
    f0 <- suppressWarnings(coxph(Surv(time, event) ~ treatment, data = d, weights = w,
                                 ties = "efron", init = b,
                                 control = coxph.control(iter.max = 0)))
    u <- cbind(residuals(f0, type = "score") * w)  # score residuals are unweighted
  } else {
    Z <- cbind(1, a)
    mu <- d$expo * exp(drop(Z %*% b))
    u <- Z * (w * (d$y - mu) / (1 + mu / nb_theta))
  }
  cbind(logistic, normalise, u)
}

sandwich_of <- function(theta, cap, outcome, nb_theta = NA) {
  psi <- stack_psi(theta, cap, outcome, nb_theta)
  k <- length(theta)
  A <- matrix(0, k, k)
  for (j in seq_len(k)) {
    h <- 1e-5 * max(1, abs(theta[j]))
    up <- theta; up[j] <- up[j] + h
    dn <- theta; dn[j] <- dn[j] - h
    A[, j] <- -(colSums(stack_psi(up, cap, outcome, nb_theta)) -
                colSums(stack_psi(dn, cap, outcome, nb_theta))) / (2 * h)
  }
  B <- crossprod(psi)
  Ainv <- solve(A)
  V <- Ainv %*% B %*% t(Ainv)
  ob <- 6:k  # outcome block
  Abb <- solve(A[ob, ob, drop = FALSE])
  Vk <- Abb %*% crossprod(psi[, ob, drop = FALSE]) %*% t(Abb)
  list(V = V, Vk = Vk, score_at_estimate = colSums(psi))
}

cases <- list(untrimmed = NA, trim95 = 0.95)
out <- list()
for (name in names(cases)) {
  odds_c <- exp(drop(X %*% alpha_hat))[a == 0]
  cap <- if (is.na(cases[[name]])) Inf else unname(quantile(odds_c, cases[[name]], type = 7))
  cc <- nt / sum(pmin(odds_c, cap))
  w <- weights_of(alpha_hat, cc, cap)
  cox <- coxph(Surv(time, event) ~ treatment, data = d, weights = w, ties = "efron",
               robust = TRUE, control = coxph.control(eps = 1e-11))
  b_cox <- unname(coef(cox))
  sc <- sandwich_of(c(alpha_hat, cc, b_cox), cap, "cox")
  nb <- glm.nb(y ~ treatment + offset(log(expo)), data = d, weights = w,
               control = glm.control(epsilon = 1e-13, maxit = 100))
  b_nb <- unname(coef(nb))
  sn <- sandwich_of(c(alpha_hat, cc, b_nb), cap, "nb", nb$theta)
  out[[name]] <- list(
    cap = cap,
    log_normalisation = log(cc),
    cox = list(log_hr = b_cox, se_stacked = sqrt(sc$V[6, 6]), se_weights_known = sqrt(sc$Vk[1, 1]),
               se_coxph_robust = sqrt(cox$var[1, 1]),
               max_abs_score = max(abs(sc$score_at_estimate))),
    nb = list(log_irr = b_nb[2], theta = nb$theta, se_stacked = sqrt(sn$V[7, 7]),
              se_weights_known = sqrt(sn$Vk[2, 2]),
              max_abs_score = max(abs(sn$score_at_estimate)))
  )
}
out$alpha <- alpha_hat

# ---------------------------------------------------------------- JSON writer (no jsonlite)
num <- function(x) ifelse(is.na(x) | !is.finite(x), "null", sprintf("%.17g", x))
to_json <- function(x, indent = "") {
  inner <- paste0(indent, "  ")
  if (is.list(x)) {
    items <- vapply(seq_along(x), function(i) {
      paste0(inner, '"', names(x)[i], '": ', to_json(x[[i]], inner))
    }, character(1))
    return(paste0("{\n", paste(items, collapse = ",\n"), "\n", indent, "}"))
  }
  vals <- num(as.numeric(x))
  if (length(x) == 1) return(vals)
  paste0("[", paste(vals, collapse = ", "), "]")
}
writeLines(to_json(out), file.path(here, "reference.json"))
