# Frozen reference values for analysis/outcomes/coxph.py (the Cox engine) from R's survival::coxph.
#
# Run from the repository root (after make_data_coxph.py has written coxph_data.csv and coxph_halving.csv):
#   Rscript tests/reference/make_reference_coxph.R
# Writes tests/reference/r_values_coxph.json. Tests read that file and never run R.
#
# Every case fits
#   coxph(Surv(<time>, event) ~ <covariates> [+ strata(<strata>)], data = <file>,
#         ties = <ties>, [weights = weight],
#         [cluster = cluster | robust = TRUE],
#         control = coxph.control(eps = 1e-11, iter.max = 100, toler.chol = 1e-13))
# i.e. the robust variance is per observation when no cluster is given (robust = TRUE),
# clustered otherwise. eps is tightened so the reference is fully converged. Each case's
# exact call is stored with it ("r_call").
suppressPackageStartupMessages(library(survival))

here <- "tests/reference"
main_covs <- c("treatment", "age", "male", "injecting", "x_cont", "x_skew")

cases <- list(
  list(name = "efron",                       ties = "efron",   w = FALSE, cl = FALSE, st = FALSE),
  list(name = "breslow",                     ties = "breslow", w = FALSE, cl = FALSE, st = FALSE),
  list(name = "efron_weights",               ties = "efron",   w = TRUE,  cl = FALSE, st = FALSE),
  list(name = "efron_cluster",               ties = "efron",   w = FALSE, cl = TRUE,  st = FALSE),
  list(name = "efron_strata",                ties = "efron",   w = FALSE, cl = FALSE, st = TRUE),
  list(name = "breslow_strata",              ties = "breslow", w = FALSE, cl = FALSE, st = TRUE),
  list(name = "efron_weights_cluster_strata",   ties = "efron",   w = TRUE, cl = TRUE, st = TRUE),
  list(name = "breslow_weights_cluster_strata", ties = "breslow", w = TRUE, cl = TRUE, st = TRUE),
  # 150 small strata (one per cluster): many segment restarts in the cumulative sums
  list(name = "efron_weights_cluster_as_strata", ties = "efron", w = TRUE, cl = FALSE, st = "cluster"),
  # continuous times, almost no ties
  list(name = "efron_exact_times", ties = "efron", w = TRUE, cl = TRUE, st = FALSE, time = "time_exact"),
  # coxph_halving.csv: a Cauchy covariate; Newton from zero overshoots and must halve its step
  list(name = "halving", ties = "efron", w = FALSE, cl = FALSE, st = FALSE, file = "coxph_halving.csv",
       covs = "x")
)

num <- function(x) paste0("[", paste(sprintf("%.17g", as.vector(x)), collapse = ", "), "]")
mat <- function(m) paste0("[", paste(apply(m, 1, num), collapse = ", "), "]")

ctrl <- coxph.control(eps = 1e-11, iter.max = 100, toler.chol = 1e-13)
out <- character(0)
for (cs in cases) {
  d <- read.csv(file.path(here, if (is.null(cs$file)) "coxph_data.csv" else cs$file))
  covs <- if (is.null(cs$covs)) main_covs else cs$covs
  rhs <- paste(covs, collapse = " + ")
  st <- if (isTRUE(cs$st)) "stratum" else if (is.character(cs$st)) cs$st else NULL
  time <- if (is.null(cs$time)) "time" else cs$time
  if (!is.null(st)) rhs <- paste0(rhs, " + strata(", st, ")")
  call_txt <- paste0("coxph(Surv(", time, ", event) ~ ", rhs, ", data = d, ties = '", cs$ties, "'",
                     if (cs$w) ", weights = weight" else "",
                     if (cs$cl) ", cluster = cluster" else ", robust = TRUE",
                     ", control = ctrl)")
  fit <- eval(parse(text = call_txt))
  out <- c(out, paste0(
    '  "', cs$name, '": {\n',
    '    "ties": "', cs$ties, '", "weights": ', tolower(cs$w), ', "cluster": ', tolower(cs$cl),
    ', "strata": ', if (is.null(st)) "null" else paste0('"', st, '"'),
    ', "time": "', time, '",\n',
    '    "file": "', if (is.null(cs$file)) "coxph_data.csv" else cs$file, '", "covariates": ',
    paste0("[", paste0('"', covs, '"', collapse = ", "), "]"), ',\n',
    '    "r_call": "', gsub('"', "'", call_txt), '",\n',
    '    "coef": ', num(coef(fit)), ',\n',
    '    "se": ', num(sqrt(diag(fit$naive.var))), ',\n',
    '    "robust_se": ', num(sqrt(diag(fit$var))), ',\n',
    '    "var": ', mat(fit$naive.var), ',\n',
    '    "robust_var": ', mat(fit$var), ',\n',
    '    "loglik": ', num(fit$loglik), ',\n',
    '    "n": ', fit$n, ', "nevent": ', fit$nevent, ', "iter": ', fit$iter, '\n  }'))
}
meta <- paste0('  "_meta": {"r_version": "', R.version.string, '", "survival": "',
               as.character(packageVersion("survival")), '"}')
writeLines(c("{", paste(c(meta, out), collapse = ",\n"), "}"), file.path(here, "r_values_coxph.json"))
cat("wrote", file.path(here, "r_values_coxph.json"), "\n")
