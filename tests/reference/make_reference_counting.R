# Frozen reference values for the Cox engine on counting-process data
# (analysis/outcomes/coxph.py, fit_cox(..., entry=)) and the counting-process estimators
# (analysis/outcomes/counting.py: cox_counting, km_counting, aj_counting) from R's survival.
#
# Run from the repository root (after make_data_counting.py has written counting_data.csv):
#   Rscript tests/reference/make_reference_counting.R
# Writes tests/reference/r_values_counting.json. Tests read that file and never run R.
#
# Made with R 4.2.2, survival 3.5-3 (Debian packages).
#
# Cox cases: coxph(Surv(start, stop, event) ~ <covariates> [+ strata(stratum)] + cluster(id),
#   data = d, weights = w, ties = <ties>, control = ctrl), ctrl = coxph.control(eps = 1e-11,
#   iter.max = 100, toler.chol = 1e-13) so the reference is fully converged. Frozen: the
#   coefficients, model-based (naive.var) and robust (var) variances, log-likelihoods, n,
#   nevent, the score test (sctest) and the robust score test (robscore). R's robust variance
#   and robscore have no small-sample factor: the tests apply G / (G - 1) (G = 300 persons).
#   For the cases with z: residuals(fit, "score") per row in data order (unweighted, as R
#   gives them: the package's are w times these) and residuals(fit, "schoenfeld") with the
#   stratum and time of each event.
# KM: survfit(Surv(start, stop, event) ~ x, data = d, weights = w): time, n.risk, n.event and
#   surv of each arm, at every time of the arm.
# AJ: survfit(Surv(start, stop, factor(etype)) ~ x, data = d, weights = w, id = row): the
#   cumulative incidence of state 1 (etype 1; etype 2 competes) of each arm at every time.
#   Each interval is its own "subject" (id = row number): with id = id, survfit's multi-state
#   code first joins a person's contiguous intervals without a transition into one and keeps
#   the weight of the last (survfitCI, the "extra" rows), so time-varying weights would be
#   lost. The point estimate depends on the ids only through that joining.
suppressPackageStartupMessages(library(survival))

here <- "tests/reference"
d <- read.csv(file.path(here, "counting_data.csv"))
ctrl <- coxph.control(eps = 1e-11, iter.max = 100, toler.chol = 1e-13)

num <- function(x) paste0("[", paste(sprintf("%.17g", as.vector(x)), collapse = ", "), "]")
mat <- function(m) paste0("[", paste(apply(m, 1, num), collapse = ", "), "]")

cases <- list(
  list(name = "breslow_x", ties = "breslow", covs = "x", st = FALSE, resid = FALSE),
  list(name = "efron_x", ties = "efron", covs = "x", st = FALSE, resid = FALSE),
  list(name = "breslow_xz_strata", ties = "breslow", covs = c("x", "z"), st = TRUE, resid = TRUE),
  list(name = "efron_xz_strata", ties = "efron", covs = c("x", "z"), st = TRUE, resid = TRUE)
)

out <- character(0)
for (cs in cases) {
  rhs <- paste(cs$covs, collapse = " + ")
  if (cs$st) rhs <- paste0(rhs, " + strata(stratum)")
  call_txt <- paste0("coxph(Surv(start, stop, event) ~ ", rhs, " + cluster(id), data = d, ",
                     "weights = w, ties = '", cs$ties, "', control = ctrl)")
  fit <- eval(parse(text = call_txt))
  s <- summary(fit)
  txt <- paste0(
    '  "', cs$name, '": {\n',
    '    "ties": "', cs$ties, '", "strata": ', tolower(cs$st), ', "covariates": ',
    paste0("[", paste0('"', cs$covs, '"', collapse = ", "), "]"), ',\n',
    '    "r_call": "', gsub('"', "'", call_txt), '",\n',
    '    "coef": ', num(coef(fit)), ',\n',
    '    "se": ', num(sqrt(diag(fit$naive.var))), ',\n',
    '    "robust_se": ', num(sqrt(diag(fit$var))), ',\n',
    '    "var": ', mat(fit$naive.var), ',\n',
    '    "robust_var": ', mat(fit$var), ',\n',
    '    "loglik": ', num(fit$loglik), ',\n',
    '    "score_test": ', num(s$sctest[["test"]]), ', "robust_score_test": ',
    num(s$robscore[["test"]]), ',\n',
    '    "n": ', fit$n, ', "nevent": ', fit$nevent, ', "n_clusters": ',
    length(unique(d$id)), ', "iter": ', fit$iter)
  if (cs$resid) {
    sch <- residuals(fit, type = "schoenfeld")
    ev <- d[d$event == 1, ]
    ev <- ev[order(ev$stratum, ev$stop), ]
    txt <- paste0(txt, ',\n',
      '    "score_residuals": ', mat(residuals(fit, type = "score")), ',\n',
      '    "schoenfeld": ', mat(sch), ',\n',
      '    "schoenfeld_time": ', num(as.numeric(rownames(sch))), ',\n',
      '    "schoenfeld_stratum": ', num(ev$stratum))
  }
  out <- c(out, paste0(txt, '\n  }'))
}

curves <- function(fit, pick) {
  # one entry per arm (x = 0, x = 1)
  s <- summary(fit, censored = TRUE)
  arms <- sub("x=", "", as.character(s$strata))
  res <- character(0)
  for (a in c("0", "1")) {
    k <- arms == a
    res <- c(res, paste0('    "', a, '": {"time": ', num(s$time[k]), ', ', pick(s, k), '}'))
  }
  paste(res, collapse = ",\n")
}
km <- survfit(Surv(start, stop, event) ~ x, data = d, weights = w)
km_txt <- curves(km, function(s, k) paste0(
  '"n_risk": ', num(s$n.risk[k]), ', "n_event": ', num(s$n.event[k]),
  ', "surv": ', num(s$surv[k])))
d$row <- seq_len(nrow(d))
aj <- survfit(Surv(start, stop, factor(etype)) ~ x, data = d, weights = w, id = row)
state1 <- which(aj$states == "1")
aj_txt <- curves(aj, function(s, k) paste0('"cif": ', num(s$pstate[k, state1])))
out <- c(out,
  paste0('  "km": {\n    "r_call": "survfit(Surv(start, stop, event) ~ x, data = d, weights = w)",\n',
         km_txt, '\n  }'),
  paste0('  "aj": {\n    "r_call": "survfit(Surv(start, stop, factor(etype)) ~ x, data = d, ',
         'weights = w, id = row)", "state": "1",\n', aj_txt, '\n  }'))

meta <- paste0('  "_meta": {"r_version": "', R.version.string, '", "survival": "',
               as.character(packageVersion("survival")), '"}')
writeLines(c("{", paste(c(meta, out), collapse = ",\n"), "}"),
           file.path(here, "r_values_counting.json"))
cat("wrote", file.path(here, "r_values_counting.json"), "\n")
