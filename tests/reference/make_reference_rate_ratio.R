# Reference values for analysis.outcomes.counts.rate_ratio: the ratio of (weighted) marginal rates as a
# Poisson regression with treatment only and a log-exposure offset, with sandwich::vcovCL's
# cluster-robust variance (HC0 meat, G/(G-1) cluster adjustment: the package's convention).
# Run from this folder: Rscript make_reference_rate_ratio.R  (writes r_values_rate_ratio.json)
suppressMessages(library(sandwich))
d <- read.csv("reference_data.csv")
d <- d[d$exposure > 0, ]
fit_w <- suppressWarnings(glm(count ~ treatment + offset(log(exposure)), family = poisson,
                              data = d, weights = weight))
fit_u <- glm(count ~ treatment + offset(log(exposure)), family = poisson, data = d)
se <- function(fit, cl) sqrt(diag(vcovCL(fit, cluster = cl, type = "HC0", cadjust = TRUE)))["treatment"]
out <- list(
  weighted_cluster = list(log_irr = unname(coef(fit_w)["treatment"]),
                          se = unname(se(fit_w, ~match_set))),
  weighted_person = list(log_irr = unname(coef(fit_w)["treatment"]), se = unname(se(fit_w, ~id))),
  unweighted_person = list(log_irr = unname(coef(fit_u)["treatment"]), se = unname(se(fit_u, ~id)))
)
fmt <- function(x) formatC(x, digits = 17, format = "g")
lines <- sprintf('  "%s": {"log_irr": %s, "se": %s}', names(out),
                 sapply(out, function(v) fmt(v$log_irr)), sapply(out, function(v) fmt(v$se)))
writeLines(c("{", paste(lines, collapse = ",\n"), "}"), "r_values_rate_ratio.json")
