# Frozen reference values for the proportional-hazards tests of analysis/outcomes/ph_test.py (cox_zph)
# and analysis/outcomes/cox.py (cox_hazard_ratio's details["ph_test"]), from R's survival::cox.zph.
#
# Run from the repository root (after make_data_coxph.py has written coxph_matched.csv):
#   Rscript tests/reference/make_reference_zph.R
# Writes tests/reference/r_values_zph.json. Tests read that file and never run R.
#
# Every case fits
#   fit <- coxph(<formula>, data = d, ties = <ties>, [weights = <w>], [cluster = <cl>],
#                control = coxph.control(eps = 1e-14, iter.max = 100, toler.chol = 1e-15))
# and stores, for each transform, cox.zph(fit, transform = <tr>)$table (chisq, df, p per term
# and GLOBAL). cox.zph ignores cluster() and the robust variance of the fit.
#
# "robust" (cases with weights or a cluster): the same score tests with the sandwich variance
# of the score, computed here from R's own residuals of the model with the added terms
# x * g(t): the data are split at every event time (survSplit), the columns x * g(stop) added,
# and coxph(Surv(tstart, stop, event) ~ x + x*g, init = c(coef(fit), 0...), iter.max = 0)
# evaluated at the fitted coefficients and zero for the new terms. With U its score (zero in
# the x block), I = solve(naive.var) its information and D its weighted score residuals
# summed within cluster (or per person), V = A D'D A' with A = [-I_gb I_bb^-1, I], and the
# statistic of a term is U_g' V^-1 U_g on that term's columns (Lin & Wei 1989).
suppressPackageStartupMessages(library(survival))

here <- "tests/reference"
ctrl <- coxph.control(eps = 1e-14, iter.max = 100, toler.chol = 1e-15)
all_tr <- c("km", "rank", "identity", "log")

cases <- list(
  list(name = "unweighted_treatment", file = "coxph_matched.csv", rhs = "treatment", tr = all_tr),
  list(name = "unweighted_3cov", file = "coxph_matched.csv", rhs = "treatment + age + female",
       tr = all_tr),
  list(name = "matching_weights", file = "coxph_matched.csv", rhs = "treatment", w = "weight",
       tr = all_tr, robust = c("km", "rank")),
  list(name = "matching_weights_cluster", file = "coxph_matched.csv", rhs = "treatment", w = "weight",
       cl = "match_set", tr = c("km", "rank", "identity"), robust = c("km", "rank", "identity")),
  list(name = "matching_weights_cluster_3cov", file = "coxph_matched.csv",
       rhs = "treatment + age + female", w = "weight", cl = "match_set",
       tr = c("km", "identity", "log"), robust = c("km", "log")),
  list(name = "iptw_weights_robust", file = "coxph_matched.csv", rhs = "treatment + age",
       w = "iptw_weight", tr = c("km", "rank"), robust = c("km", "rank")),
  list(name = "breslow_weights", file = "coxph_matched.csv", rhs = "treatment + age + female",
       w = "weight", ties = "breslow", tr = c("km", "identity"), robust = "km"),
  list(name = "factor_term", file = "coxph_matched.csv", rhs = "treatment + factor(region) + age",
       w = "weight", cl = "match_set", tr = c("km", "rank"), robust = "km"),
  # heavy ties (whole months), non-integer weights, strata, 6 covariates
  list(name = "strata_weights_cluster", file = "coxph_data.csv",
       rhs = "treatment + age + male + x_cont + strata(stratum)", w = "weight", cl = "cluster",
       tr = c("km", "rank", "log"), robust = "km"),
  # the data of tests/test_survival.py (zero durations, events at time 0)
  list(name = "survival_unweighted", file = "reference_data.csv",
       rhs = "treatment + age + female", tr = c("km", "rank", "identity")),
  list(name = "survival_weights_cluster", file = "reference_data.csv",
       rhs = "treatment + age + female", w = "weight", cl = "match_set",
       tr = c("km", "rank", "identity"), robust = c("km", "rank")),
  list(name = "survival_weights_cluster_treatment", file = "reference_data.csv",
       rhs = "treatment", w = "weight", cl = "match_set", tr = c("km", "rank"),
       robust = c("km", "rank"))
)

num <- function(x) paste0("[", paste(sprintf("%.17g", as.vector(x)), collapse = ", "), "]")
str_arr <- function(x) paste0("[", paste0('"', x, '"', collapse = ", "), "]")
tab_json <- function(terms, chisq, df, p) {
  paste0('{"terms": ', str_arr(terms), ', "chisq": ', num(chisq), ', "df": ', num(df),
         ', "p": ', num(p), "}")
}

# g(t) of cox.zph, one value per row of d (as inside cox.zph)
transform_times <- function(tr, y) {
  times <- y[, 1]
  switch(tr, identity = times, rank = rank(times), log = log(times),
         km = {
           temp <- survfit(Surv(times, y[, 2]) ~ 1, se.fit = FALSE)
           indx <- findInterval(times, temp$time, left.open = TRUE)
           1 - c(1, temp$surv)[indx + 1]
         })
}

robust_zph <- function(fit, d, cs, tr) {
  y <- fit$y
  X <- model.matrix(fit)
  p <- ncol(X)
  asgn <- fit$assign
  ttimes <- transform_times(tr, y)
  gtime <- ttimes - mean(ttimes[y[, 2] == 1])
  etimes <- sort(unique(y[y[, 2] == 1, 1]))
  base <- data.frame(time = y[, 1], event = y[, 2], id = seq_len(nrow(d)), X)
  names(base)[-(1:3)] <- paste0("x", 1:p)
  base$w <- if (is.null(cs$w)) 1 else d[[cs$w]]
  base$cl <- if (is.null(cs$cl)) base$id else d[[cs$cl]]
  base$st <- if (grepl("strata", cs$rhs)) d$stratum else 1
  sp <- survSplit(Surv(time, event) ~ ., data = base, cut = etimes, start = "tstart",
                  zero = min(y[, 1]) - 1)
  g <- gtime[match(sp$time, y[, 1])]  # g at the end of each interval (an event time)
  g[!(sp$time %in% etimes)] <- 0  # intervals without an event time: never used
  for (j in 1:p) sp[[paste0("g", j)]] <- sp[[paste0("x", j)]] * g
  form <- as.formula(paste("Surv(tstart, time, event) ~",
                           paste(c(paste0("x", 1:p), paste0("g", 1:p)), collapse = " + "),
                           "+ strata(st)"))
  fa <- coxph(form, data = sp, weights = w, ties = fit$method, init = c(coef(fit), rep(0, p)),
              control = coxph.control(iter.max = 0))
  imat <- solve(fa$naive.var)
  D <- residuals(fa, type = "score", weighted = TRUE, collapse = sp$cl)
  u <- colSums(D)[p + 1:p]
  b <- 1:p
  gg <- p + 1:p
  A <- cbind(-imat[gg, b] %*% solve(imat[b, b]), diag(p))
  V <- A %*% crossprod(D) %*% t(A)
  stat <- sapply(asgn, function(j) drop(u[j] %*% solve(V[j, j, drop = FALSE], u[j])))
  stat <- c(stat, drop(u %*% solve(V, u)))
  df <- c(sapply(asgn, length), p)
  tab_json(c(names(asgn), "GLOBAL"), stat, df, pchisq(stat, df, lower.tail = FALSE))
}

out <- character(0)
for (cs in cases) {
  d <- read.csv(file.path(here, cs$file))
  ties <- if (is.null(cs$ties)) "efron" else cs$ties
  call_txt <- paste0("coxph(Surv(time, event) ~ ", cs$rhs, ", data = d, ties = '", ties, "'",
                     if (!is.null(cs$w)) paste0(", weights = ", cs$w) else "",
                     if (!is.null(cs$cl)) paste0(", cluster = ", cs$cl) else "",
                     ", control = ctrl)")
  fit <- eval(parse(text = call_txt))
  zph <- character(0)
  for (tr in cs$tr) {
    z <- cox.zph(fit, transform = tr)
    zph <- c(zph, paste0('      "', tr, '": ', tab_json(rownames(z$table), z$table[, "chisq"],
                                                        z$table[, "df"], z$table[, "p"])))
  }
  rob <- character(0)
  for (tr in cs$robust) rob <- c(rob, paste0('      "', tr, '": ', robust_zph(fit, d, cs, tr)))
  out <- c(out, paste0(
    '  "', cs$name, '": {\n',
    '    "file": "', cs$file, '", "rhs": "', cs$rhs, '", "ties": "', ties, '",\n',
    '    "weights": ', if (is.null(cs$w)) "null" else paste0('"', cs$w, '"'),
    ', "cluster": ', if (is.null(cs$cl)) "null" else paste0('"', cs$cl, '"'), ',\n',
    '    "r_call": "', gsub('"', "'", call_txt), '",\n',
    '    "columns": ', str_arr(colnames(model.matrix(fit))), ',\n',
    '    "coef": ', num(coef(fit)), ',\n',
    '    "cox_zph": {\n', paste(zph, collapse = ",\n"), "\n    },\n",
    '    "robust": {', if (length(rob)) paste0("\n", paste(rob, collapse = ",\n"), "\n    ")
    else "", "}\n  }"))
}
meta <- paste0('  "_meta": {"r_version": "', R.version.string, '", "survival": "',
               as.character(packageVersion("survival")), '"}')
writeLines(c("{", paste(c(meta, out), collapse = ",\n"), "}"), file.path(here, "r_values_zph.json"))
cat("wrote", file.path(here, "r_values_zph.json"), "\n")
