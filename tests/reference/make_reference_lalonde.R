# Reference values for the library on Lalonde's data (NSW treated + CPS-1 controls): the
# logit propensity score, 1:1 nearest-neighbour matching without replacement on its logit
# with a caliper of 0.2 pooled SDs (MatchIt), the matched and the IPTW (ATT) difference in
# mean 1978 earnings (weighted lm) with sandwich variances. See README_lalonde.md.
#
# Run once from the repository root (R 4.2.2, MatchIt 4.5.1, sandwich 3.0.2, jsonlite):
#   .venv/bin/python tests/reference/make_data_lalonde.py     # writes tests/reference/lalonde.csv
#   Rscript tests/reference/make_reference_lalonde.R          # writes r_values_lalonde.json
# Tests read the JSON only; they rebuild the data from causaldata and check its MD5 below.
suppressPackageStartupMessages({
  library(MatchIt)
  library(sandwich)
  library(jsonlite)
})
here <- "tests/reference"
csv <- file.path(here, "lalonde.csv")
d <- read.csv(csv)
rownames(d) <- d$unit
d$employed78 <- as.integer(d$re78 > 0)  # a binary outcome: any earnings in 1978
t <- d$treat == 1

# Debian's MatchIt 4.5.1 has a bug in its default nearest-neighbour routine (integer abs() of
# distances, fixed in 4.5.4): distances under 1 logit unit count as 0 and the caliper is
# ignored. Passing the score again as `mahvars` sends matching through the other routine
# (nn_matchC), which is correct; with one variable its Mahalanobis distance is |difference| / SD,
# so the nearest control is the same. The caliper is given on the logit scale
# (std.caliper = FALSE) as 0.2 x the pooled SD sqrt((s_t^2 + s_c^2) / 2) of Austin (2011), the
# package's definition; MatchIt's std.caliper = TRUE uses the SD over all units (also recorded).
one_design <- function(formula) {
  ps <- glm(formula, family = binomial, data = d)
  lp <- unname(predict(ps, type = "link"))
  p <- unname(fitted(ps))
  pooled_sd <- sqrt((var(lp[t]) + var(lp[!t])) / 2)
  width <- 0.2 * pooled_sd
  dd <- d
  dd$lp <- lp
  nearest <- function(caliper, std) {
    matchit(treat ~ lp, data = dd, method = "nearest", distance = lp, mahvars = ~lp,
            ratio = 1, replace = FALSE, m.order = "largest", caliper = caliper,
            std.caliper = std)
  }
  m <- nearest(width, FALSE)
  m_all_sd <- nearest(0.2, TRUE)
  mm <- m$match.matrix
  pairs <- data.frame(treated = as.integer(rownames(mm)), control = as.integer(mm[, 1]))
  pairs <- pairs[!is.na(pairs$control), ]
  pairs <- pairs[order(pairs$treated), ]
  same_sets <- identical(m$match.matrix, m_all_sd$match.matrix)

  md <- match.data(m)
  fit_m <- lm(re78 ~ treat, data = md, weights = weights)
  v_cl <- function(fit, cl, ...) unname(sqrt(vcovCL(fit, cluster = cl, ...)["treat", "treat"]))
  binary <- function(data, w, cl) {
    data$w <- w
    f_rd <- lm(employed78 ~ treat, data = data, weights = w)
    f_rr <- suppressWarnings(glm(employed78 ~ treat, family = binomial(link = "log"),
                                 data = data, weights = w))
    list(risk_difference = list(estimate = unname(coef(f_rd)["treat"]),
                                se = v_cl(f_rd, cl, type = "HC0", cadjust = TRUE)),
         risk_ratio = list(log_estimate = unname(coef(f_rr)["treat"]),
                           se_log = v_cl(f_rr, cl, type = "HC0", cadjust = TRUE)))
  }
  matched <- list(
    estimate = unname(coef(fit_m)["treat"]),
    se_vcovCL = v_cl(fit_m, ~subclass),
    se_vcovCL_HC0_cadjust = v_cl(fit_m, ~subclass, type = "HC0", cadjust = TRUE),
    n = nrow(md), n_clusters = length(unique(md$subclass)),
    mean_treated = mean(md$re78[md$treat == 1]), mean_control = mean(md$re78[md$treat == 0]),
    employed78 = binary(md, md$weights, ~subclass)
  )

  w <- ifelse(t, 1, p / (1 - p))
  fit_w <- lm(re78 ~ treat, data = d, weights = w)
  control_w <- w[!t] * sum(t) / sum(w[!t])  # rescaled to sum to the number treated
  probe <- d$unit[!t][seq(1, sum(!t), by = 500)]
  iptw <- list(
    estimate = unname(coef(fit_w)["treat"]),
    se_HC1 = unname(sqrt(vcovHC(fit_w, type = "HC1")["treat", "treat"])),
    se_HC0 = unname(sqrt(vcovHC(fit_w, type = "HC0")["treat", "treat"])),
    se_vcovCL_HC0_cadjust = v_cl(fit_w, ~unit, type = "HC0", cadjust = TRUE),
    n = nrow(d),
    employed78 = binary(d, w, ~unit),
    control_weights = list(
      sum_raw = sum(w[!t]), sum_squares_normalised = sum(control_w^2), max_normalised = max(control_w),
      ess = sum(control_w)^2 / sum(control_w^2),
      units = probe, normalised = control_w[match(probe, d$unit[!t])]
    )
  )
  list(
    formula = deparse1(formula),
    coefficients = as.list(coef(ps)),
    converged = ps$converged,
    pooled_sd_logit = pooled_sd, sd_logit_all = sd(lp), caliper_width = width,
    matching = list(
      call = paste("matchit(treat ~ lp, data, method = 'nearest', distance = lp, mahvars = ~lp,",
                   "ratio = 1, replace = FALSE, m.order = 'largest', caliper = 0.2 * pooled SD of lp,",
                   "std.caliper = FALSE)"),
      n_treated_matched = nrow(pairs), pairs_treated = pairs$treated, pairs_control = pairs$control,
      same_sets_with_std_caliper = same_sets
    ),
    matched = matched,
    iptw = iptw
  )
}

f_full <- treat ~ age + educ + black + hisp + marr + nodegree + re74 + re75 + u74 + u75
f_short <- treat ~ age + educ + black + hisp + marr + nodegree + re74 + re75
out <- list(
  data = list(
    source = "causaldata 0.1.4: nsw_mixtape (treat == 1) then cps_mixtape; unit = row number",
    md5 = unname(tools::md5sum(csv)), rows = nrow(d), n_treated = sum(t), n_control = sum(!t)
  ),
  versions = list(R = as.character(getRversion()), MatchIt = as.character(packageVersion("MatchIt")),
                  sandwich = as.character(packageVersion("sandwich"))),
  calls = list(
    propensity = "glm(formula, family = binomial, data)",
    matched = "lm(re78 ~ treat, data = match.data(m), weights = weights); vcovCL(fit, cluster = ~subclass) [HC1 default]; vcovCL(..., type = 'HC0', cadjust = TRUE)",
    iptw = "lm(re78 ~ treat, data, weights = ifelse(treat == 1, 1, ps / (1 - ps))); vcovHC(fit, type = 'HC1'); vcovHC(fit, type = 'HC0'); vcovCL(fit, cluster = ~unit, type = 'HC0', cadjust = TRUE)"
  ),
  full = one_design(f_full),
  short = one_design(f_short)
)
write_json(out, file.path(here, "r_values_lalonde.json"), auto_unbox = TRUE, digits = NA,
           pretty = TRUE)
cat("wrote", file.path(here, "r_values_lalonde.json"), "\n")
