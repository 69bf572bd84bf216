# Frozen reference values for the small-sample convention and the degenerate cases of
# analysis/sandwich.py, the survival estimators (analysis/outcomes/), analysis/outcomes/counts.py
# and the Cox engine analysis/outcomes/coxph.py.
#
# Run once from the repository root:
#
#     Rscript tests/reference/make_reference_small_sample.R
#
# Reads  tests/reference/reference_data.csv (written by tests/reference/make_data.py)
# Writes tests/reference/r_values_small_sample.json (tests read it; they never run R).
#
# Made with R 4.2.2, survival 3.5-3, MASS 7.3-58.2, sandwich 3.0-2 (Debian packages).
#
# The package multiplies every robust variance by G / (G - 1) (G clusters, or persons when
# there is no cluster). sandwich::vcovCL(type = "HC0", cadjust = TRUE) applies exactly that
# factor, so its values are frozen as they are. survival's robust variances (coxph with
# cluster= or robust = TRUE, survfit with cluster=, summary(coxph)$robscore) apply none;
# they are frozen as R reports them, with G, and the tests apply the factor.

suppressPackageStartupMessages({
  library(survival)
  library(MASS)
  library(sandwich)
})

here <- "tests/reference"
d <- read.csv(file.path(here, "reference_data.csv"))

num <- function(x) ifelse(is.na(x) | !is.finite(x), "null", sprintf("%.17g", x))
to_json <- function(x, indent = "") {
  inner <- paste0(indent, "  ")
  if (is.list(x)) {
    keys <- names(x)
    items <- vapply(seq_along(x), function(i) {
      paste0(inner, '"', keys[i], '": ', to_json(x[[i]], inner))
    }, character(1))
    return(paste0("{\n", paste(items, collapse = ",\n"), "\n", indent, "}"))
  }
  vals <- if (is.character(x)) paste0('"', x, '"') else num(as.numeric(x))
  if (length(x) == 1 && is.null(attr(x, "as_array"))) return(vals)
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
se_of <- function(v) named(sqrt(diag(v)))

out <- list()
out$meta <- list(
  R = R.version.string,
  survival = as.character(packageVersion("survival")),
  MASS = as.character(packageVersion("MASS")),
  sandwich = as.character(packageVersion("sandwich")),
  n = nrow(d),
  n_sets = length(unique(d$match_set)),
  n_sets_group0 = length(unique(d$match_set[d$treatment == 0])),
  n_sets_group1 = length(unique(d$match_set[d$treatment == 1])),
  n_group0 = sum(d$treatment == 0),
  n_group1 = sum(d$treatment == 1)
)

# ---------------------------------------------------------------- Cox
cox_ctrl <- coxph.control(eps = 1e-14, toler.chol = 1e-15, iter.max = 100)
f_cox <- Surv(time, event) ~ treatment + age + female
# vcovCL on an unweighted coxph: the clustered sandwich with G / (G - 1). (sandwich's
# bread for a weighted coxph does not match the weighted score, so weighted Cox models are
# checked against coxph(cluster=) times the factor instead.)
cox_u <- coxph(f_cox, data = d, ties = "efron", control = cox_ctrl)
out$cox_vcovcl_cluster <- list(
  coef = named(coef(cox_u)),
  se = se_of(vcovCL(cox_u, cluster = ~match_set, type = "HC0", cadjust = TRUE))
)

# Robust score tests (survival's robscore, no factor) and the ordinary score test of the
# treatment-only model.
f_trt <- Surv(time, event) ~ treatment
s_wc <- summary(coxph(f_trt, data = d, ties = "efron", weights = weight, cluster = match_set,
                      control = cox_ctrl))
s_w <- summary(coxph(f_trt, data = d, ties = "efron", weights = weight, robust = TRUE,
                     control = cox_ctrl))
s_c <- summary(coxph(f_trt, data = d, ties = "efron", cluster = match_set, control = cox_ctrl))
s_u <- summary(coxph(f_trt, data = d, ties = "efron", control = cox_ctrl))
out$score_tests <- list(
  robscore_weighted_cluster = s_wc$robscore[["test"]],
  robscore_weighted_robust = s_w$robscore[["test"]],
  robscore_cluster = s_c$robscore[["test"]],
  sctest_unweighted = s_u$sctest[["test"]],
  logrank_unweighted = survdiff(f_trt, data = d)$chisq
)
# the same with three covariates: a 3-df test
s3 <- summary(coxph(f_cox, data = d, ties = "efron", weights = weight, cluster = match_set,
                    control = cox_ctrl))
out$score_tests$robscore_weighted_cluster_3df <- s3$robscore[["test"]]
out$score_tests$sctest_weighted_cluster_3df <- s3$sctest[["test"]]

# Monotone likelihood: 8 persons, every treated event before every control event.
mono <- data.frame(time = 1:8, event = 1, treatment = rep(c(1, 0), each = 4),
                   weight = rep(c(1, 0.25), each = 4), set = rep(1:4, 2))
fit_mono <- withCallingHandlers(
  coxph(Surv(time, event) ~ treatment, data = mono, weights = weight, cluster = set),
  warning = function(w) {
    out$monotone$r_warning <<- conditionMessage(w)
    invokeRestart("muffleWarning")
  }
)
out$monotone$coef <- unname(coef(fit_mono))
out$monotone$robust_se <- unname(sqrt(diag(vcov(fit_mono))))

# ---------------------------------------------------------------- Kaplan-Meier
km_curves <- function(fit) {
  s <- summary(fit, censored = TRUE)
  res <- list()
  for (lev in c(0, 1)) {
    k <- s$strata == paste0("treatment=", lev)
    res[[paste0("group", lev)]] <- list(
      time = arr(s$time[k]), surv = arr(s$surv[k]), std_err = arr(s$std.err[k])
    )
  }
  res
}
out$km_weighted_cluster <- km_curves(
  survfit(Surv(time, event) ~ treatment, data = d, weights = weight, cluster = match_set,
          robust = TRUE)
)
out$km_weighted_robust <- km_curves(
  survfit(Surv(time, event) ~ treatment, data = d, weights = weight, robust = TRUE)
)

# ---------------------------------------------------------------- negative binomial
ctrl <- glm.control(epsilon = 1e-13, maxit = 200)
nb_w <- glm.nb(count ~ treatment + age + offset(log(exposure)), data = d, weights = weight,
               control = ctrl)
nb_u <- glm.nb(count ~ treatment + age + offset(log(exposure)), data = d, control = ctrl)
out$nb <- list(
  weighted_cluster = se_of(vcovCL(nb_w, cluster = ~match_set, type = "HC0", cadjust = TRUE)),
  weighted_person = se_of(vcovCL(nb_w, cluster = ~id, type = "HC0", cadjust = TRUE)),
  unweighted_cluster = se_of(vcovCL(nb_u, cluster = ~match_set, type = "HC0", cadjust = TRUE))
)

# ---------------------------------------------------------------- before/after Poisson GEE
long <- rbind(
  data.frame(id = d$id, match_set = d$match_set, treatment = d$treatment, weight = d$weight,
             after = 0, y = d$count_before, E = d$exposure_before),
  data.frame(id = d$id, match_set = d$match_set, treatment = d$treatment, weight = d$weight,
             after = 1, y = d$count_after, E = d$exposure)
)
ba_block <- function(fit, cluster) {
  v <- vcovCL(fit, cluster = cluster, type = "HC0", cadjust = TRUE)
  b <- coef(fit)
  contrast <- function(cc) sqrt(drop(t(cc) %*% v %*% cc))
  # coefficients: (Intercept), after, treatment, after:treatment
  list(
    se_log_rr_hat = contrast(c(0, 1, 0, 1)),
    se_log_rr_ost = contrast(c(0, 1, 0, 0)),
    se_log_ratio = contrast(c(0, 0, 0, 1))
  )
}
pois_u <- glm(y ~ after * treatment + offset(log(E)), family = poisson, data = long)
pois_w <- suppressWarnings(glm(y ~ after * treatment + offset(log(E)), family = poisson,
                               data = long, weights = weight))
out$before_after_person <- ba_block(pois_u, ~id)
out$before_after_weighted_match_set <- ba_block(pois_w, ~match_set)

writeLines(to_json(out), file.path(here, "r_values_small_sample.json"))
cat("wrote", file.path(here, "r_values_small_sample.json"), "\n")
