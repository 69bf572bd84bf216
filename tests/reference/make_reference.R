# Frozen reference values for the survival estimators (analysis/outcomes/kaplan_meier.py,
# absolute.py, rmst.py, competing_risks.py, cox.py, logrank.py) and analysis/outcomes/counts.py.
#
# Run once from the repository root, after tests/reference/make_data.py:
#
#     Rscript tests/reference/make_reference.R
#
# Reads  tests/reference/reference_data.csv and tests/reference/rossi.csv
# Writes tests/reference/r_values.json (tests read it; they never run R).
#
# Made with R 4.2, survival 3.5-3, MASS 7.3-58.2, cmprsk 2.2-11 (Debian packages).
# jsonlite is not installed, so a small JSON writer is defined below.

suppressPackageStartupMessages({
  library(survival)
  library(MASS)
  library(cmprsk)
})

here <- "tests/reference"
d <- read.csv(file.path(here, "reference_data.csv"))
rossi <- read.csv(file.path(here, "rossi.csv"))
times <- c(0, 30, 90, 180, 365.25, 500, 730)
t12 <- 365.25
tau <- 730

# ---------------------------------------------------------------- JSON writer
num <- function(x) {
  ifelse(is.na(x) | !is.finite(x), "null", sprintf("%.17g", x))
}
to_json <- function(x, indent = "") {
  inner <- paste0(indent, "  ")
  if (is.list(x)) {
    keys <- names(x)
    items <- vapply(seq_along(x), function(i) {
      paste0(inner, '"', keys[i], '": ', to_json(x[[i]], inner))
    }, character(1))
    return(paste0("{\n", paste(items, collapse = ",\n"), "\n", indent, "}"))
  }
  if (is.character(x)) {
    vals <- paste0('"', x, '"')
  } else {
    vals <- num(as.numeric(x))
  }
  if (length(x) == 1 && is.null(attr(x, "as_array"))) {
    return(vals)
  }
  paste0("[", paste(vals, collapse = ", "), "]")
}
arr <- function(x) {
  x <- as.numeric(x)
  attr(x, "as_array") <- TRUE
  x
}
named <- function(x) {
  out <- as.list(as.numeric(x))
  names(out) <- names(x)
  out
}

out <- list()
out$meta <- list(
  R = R.version.string,
  survival = as.character(packageVersion("survival")),
  MASS = as.character(packageVersion("MASS")),
  cmprsk = as.character(packageVersion("cmprsk")),
  times = arr(times)
)

# ---------------------------------------------------------------- Cox models
cox_block <- function(fit) {
  list(coef = named(coef(fit)), se = named(sqrt(diag(vcov(fit)))))
}
# tight convergence (default eps 1e-9) so that the reference is accurate beyond 1e-6
cox_ctrl <- coxph.control(eps = 1e-14, toler.chol = 1e-15, iter.max = 100)
f_cox <- Surv(time, event) ~ treatment + age + female
out$cox_unweighted <- cox_block(coxph(f_cox, data = d, ties = "efron", control = cox_ctrl))
out$cox_cluster <- cox_block(
  coxph(f_cox, data = d, ties = "efron", cluster = match_set, control = cox_ctrl)
)
out$cox_weighted_cluster <- cox_block(
  coxph(f_cox, data = d, ties = "efron", weights = weight, cluster = match_set,
        control = cox_ctrl)
)
out$cox_weighted_robust <- cox_block(
  coxph(f_cox, data = d, ties = "efron", weights = weight, robust = TRUE, control = cox_ctrl)
)

# ---------------------------------------------------------------- Kaplan-Meier
km_block <- function(fit, rmean_fit = fit) {
  s <- summary(fit, times = times, extend = TRUE)
  tab <- summary(rmean_fit, rmean = tau)$table
  res <- list()
  for (lev in c(0, 1)) {
    k <- s$strata == paste0("treatment=", lev)
    res[[paste0("group", lev)]] <- list(
      surv = arr(s$surv[k]), std_err = arr(s$std.err[k]), n_risk = arr(s$n.risk[k]),
      rmean = tab[paste0("treatment=", lev), "rmean"],
      se_rmean = tab[paste0("treatment=", lev), "se(rmean)"]
    )
  }
  res
}
km_u <- survfit(Surv(time, event) ~ treatment, data = d)
out$km_unweighted <- km_block(km_u)
km_w <- survfit(Surv(time, event) ~ treatment, data = d, weights = weight, cluster = match_set,
                influence = TRUE)
out$km_weighted_cluster <- km_block(km_w)

# Retention ratio and difference at 12 months in the weighted, clustered data, from R's
# infinitesimal-jackknife influence values (one row per matched set, both arms): the
# covariance between the arms that share a matched set is included.
ratio_at <- function(fit, t) {
  s <- summary(fit, times = t, extend = TRUE)
  surv <- s$surv # stratum 1 = treatment 0, stratum 2 = treatment 1
  infl <- fit$influence.surv
  col <- function(j) {
    tt <- fit[j]$time
    max(which(tt <= t))
  }
  i0 <- infl[[1]][, col(1)]
  i1 <- infl[[2]][, col(2)]
  stopifnot(identical(rownames(infl[[1]]), rownames(infl[[2]])))
  list(
    s0 = surv[1], s1 = surv[2],
    log_rr = log(surv[2] / surv[1]),
    se_log_rr = sqrt(sum((i1 / surv[2] - i0 / surv[1])^2)),
    rd = surv[2] - surv[1],
    se_rd = sqrt(sum((i1 - i0)^2))
  )
}
out$retention_12m_weighted_cluster <- ratio_at(km_w, t12)

# RMST up to tau and its robust SE from the same influence values (summary()'s
# se(rmean) is Greenwood-type on the weighted counts, not robust, so it is not used for
# the weighted fit): RMST = sum of S(t_j) * width_j, so its influence is the same sum of
# the influence values of S(t_j).
rmst_infl <- function(fit, j, tau) {
  tt <- fit[j]$time
  ss <- fit[j]$surv
  inside <- tt < tau
  widths <- diff(c(tt[inside], tau))
  list(
    rmst = tt[inside][1] + sum(ss[inside] * widths),
    infl = drop(fit$influence.surv[[j]][, inside, drop = FALSE] %*% widths)
  )
}
r0 <- rmst_infl(km_w, 1, tau)
r1 <- rmst_infl(km_w, 2, tau)
out$rmst_weighted_cluster <- list(
  rmst0 = r0$rmst, se0 = sqrt(sum(r0$infl^2)),
  rmst1 = r1$rmst, se1 = sqrt(sum(r1$infl^2)),
  diff = r1$rmst - r0$rmst, se_diff = sqrt(sum((r1$infl - r0$infl)^2))
)

# ---------------------------------------------------------------- cumulative incidence
ci <- cuminc(d$time, d$event_type, d$treatment, cencode = 0)
tp <- timepoints(ci, times)
out$cuminc <- list(
  est_group0_cause1 = arr(tp$est["0 1", ]), var_group0_cause1 = arr(tp$var["0 1", ]),
  est_group1_cause1 = arr(tp$est["1 1", ]), var_group1_cause1 = arr(tp$var["1 1", ]),
  est_group0_cause2 = arr(tp$est["0 2", ]), est_group1_cause2 = arr(tp$est["1 2", ])
)
ms_block <- function(fit) {
  s <- summary(fit, times = times, extend = TRUE)
  res <- list()
  for (lev in c(0, 1)) {
    k <- s$strata == paste0("treatment=", lev)
    # state columns: (s0) = event-free, 1, 2
    res[[paste0("group", lev)]] <- list(
      cif1 = arr(s$pstate[k, 2]), se1 = arr(s$std.err[k, 2]),
      cif2 = arr(s$pstate[k, 3]), se2 = arr(s$std.err[k, 3])
    )
  }
  res
}
d$state <- factor(d$event_type, levels = 0:2, labels = c("censor", "cause1", "cause2"))
out$aj_unweighted <- ms_block(survfit(Surv(time, state) ~ treatment, data = d, id = id))
# Weighted: survfit's robust (IJ) SE per person.
out$aj_weighted <- ms_block(survfit(Surv(time, state) ~ treatment, data = d, id = id, weights = weight))
# Weighted and clustered: survival 3.5-3 ignores cluster= in a multi-state survfit
# (the SEs equal those without it), so the per-person influence values are summed
# within matched sets here (influence.pstate: persons x (time 0, times) x states).
aj_w <- survfit(Surv(time, state) ~ treatment, data = d, id = id, weights = weight,
                influence = TRUE)
out$aj_weighted_cluster <- list()
for (lev in c(0, 1)) {
  j <- lev + 1
  infl <- aj_w$influence.pstate[[j]] # persons x times x states (event-free, 1, 2)
  person <- match(as.integer(rownames(infl)), d$id)
  person_set <- d$match_set[person]
  w <- d$weight[person] # multi-state influence values are per unit weight
  rows <- rep(seq_along(aj_w$strata), aj_w$strata) == j
  tt <- aj_w$time[rows]
  col <- vapply(times, function(t) max(c(0, which(tt <= t))), numeric(1))
  se_at <- function(state) {
    tot <- rowsum(w * infl[, , state], person_set)
    se <- sqrt(colSums(tot^2))[-1] # the first column is the starting time
    ifelse(col == 0, 0, se[pmax(col, 1)])
  }
  pstate <- aj_w$pstate[rows, ]
  out$aj_weighted_cluster[[paste0("group", lev)]] <- list(
    cif1 = arr(ifelse(col == 0, 0, pstate[pmax(col, 1), 2])), se1 = arr(se_at(2)),
    cif2 = arr(ifelse(col == 0, 0, pstate[pmax(col, 1), 3])), se2 = arr(se_at(3))
  )
}

# ---------------------------------------------------------------- log-rank
out$survdiff <- list(chisq = survdiff(Surv(time, event) ~ treatment, data = d)$chisq)

# ---------------------------------------------------------------- negative binomial
cluster_vcov <- function(fit, cluster) {
  x <- model.matrix(fit)
  u <- weights(fit, "working") * residuals(fit, "working") * x
  meat <- crossprod(rowsum(u, cluster))
  bread <- vcov(fit) # dispersion fixed at 1 for glm.nb and poisson
  bread %*% meat %*% bread
}
nb_block <- function(fit, cluster) {
  list(
    coef = named(coef(fit)), se = named(sqrt(diag(vcov(fit)))),
    se_cluster = named(sqrt(diag(cluster_vcov(fit, cluster)))),
    se_robust = named(sqrt(diag(cluster_vcov(fit, seq_len(nrow(d)))))),
    theta = fit$theta, se_theta = fit$SE.theta, twologlik = fit$twologlik
  )
}
ctrl <- glm.control(epsilon = 1e-13, maxit = 200)
nb_u <- glm.nb(count ~ treatment + age + offset(log(exposure)), data = d, control = ctrl)
out$nb_unweighted <- nb_block(nb_u, d$match_set)
nb_w <- glm.nb(count ~ treatment + age + offset(log(exposure)), data = d, weights = weight,
               control = ctrl)
out$nb_weighted <- nb_block(nb_w, d$match_set)

# ---------------------------------------------------------------- before/after Poisson
long <- rbind(
  data.frame(id = d$id, match_set = d$match_set, treatment = d$treatment, weight = d$weight,
             after = 0, y = d$count_before, E = d$exposure_before),
  data.frame(id = d$id, match_set = d$match_set, treatment = d$treatment, weight = d$weight,
             after = 1, y = d$count_after, E = d$exposure)
)
ba_block <- function(fit, cluster) {
  v <- cluster_vcov(fit, cluster)
  b <- coef(fit)
  contrast <- function(cc) c(est = sum(cc * b), se = sqrt(drop(t(cc) %*% v %*% cc)))
  # coefficients: (Intercept), after, treatment, after:treatment
  hat <- contrast(c(0, 1, 0, 1))
  ost <- contrast(c(0, 1, 0, 0))
  rr <- contrast(c(0, 0, 0, 1))
  list(
    log_rr_hat = hat[["est"]], se_log_rr_hat = hat[["se"]],
    log_rr_ost = ost[["est"]], se_log_rr_ost = ost[["se"]],
    log_ratio = rr[["est"]], se_log_ratio = rr[["se"]]
  )
}
pois_u <- glm(y ~ after * treatment + offset(log(E)), family = poisson, data = long)
pois_w <- glm(y ~ after * treatment + offset(log(E)), family = poisson, data = long,
              weights = weight)
out$before_after_person <- ba_block(pois_u, long$id)
out$before_after_weighted_match_set <- suppressWarnings(ba_block(pois_w, long$match_set))

# ---------------------------------------------------------------- Rossi (Fox & Weisberg)
rossi_fit <- coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio,
                   data = rossi, ties = "efron", control = cox_ctrl)
out$rossi <- cox_block(rossi_fit)

writeLines(to_json(out), file.path(here, "r_values.json"))
cat("wrote", file.path(here, "r_values.json"), "\n")
