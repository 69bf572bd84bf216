# Reference values for the library on the Rossi recidivism data (tests/reference/rossi.csv, the
# copy bundled with lifelines), with its own column names and `id` = row number: the logit
# propensity score of financial aid (`fin`, randomised), 1:1 nearest-neighbour matching on its
# logit without replacement, caliper 0.2 pooled SD (MatchIt, through the `mahvars` routine: see
# make_reference_lalonde.R for Debian's MatchIt bug), and on the matched sample the difference
# in mean `week`, the risk difference and risk ratio of `arrest`, and a clustered Cox model;
# on the full data the unweighted and ATT-weighted versions. Variances: sandwich::vcovCL with
# type = "HC0", cadjust = TRUE (the package's G/(G-1) convention); coxph's robust variance has
# no G/(G-1) factor (multiply its variance by G/(G-1) to compare).
#
# Run from the repository root:  Rscript tests/reference/make_reference_library_rossi.R
suppressPackageStartupMessages({
  library(MatchIt)
  library(sandwich)
  library(survival)
  library(jsonlite)
})
here <- "tests/reference"
d <- read.csv(file.path(here, "rossi.csv"))
d$id <- seq_len(nrow(d))
rownames(d) <- d$id
t <- d$fin == 1

ps <- glm(fin ~ age + race + wexp + mar + paro + prio, family = binomial, data = d)
d$lp <- unname(predict(ps, type = "link"))
d$ps <- unname(fitted(ps))
width <- 0.2 * sqrt((var(d$lp[t]) + var(d$lp[!t])) / 2)
m <- matchit(fin ~ lp, data = d, method = "nearest", distance = d$lp, mahvars = ~lp, ratio = 1,
             replace = FALSE, m.order = "largest", caliper = width, std.caliper = FALSE)
mm <- m$match.matrix
pairs <- data.frame(treated = as.integer(rownames(mm)), control = as.integer(mm[, 1]))
pairs <- pairs[!is.na(pairs$control), ]
pairs <- pairs[order(pairs$treated), ]
md <- match.data(m)

se_cl <- function(fit, cl, term) {
  unname(sqrt(vcovCL(fit, cluster = cl, type = "HC0", cadjust = TRUE)[term, term]))
}
effects <- function(data, w, cl) {
  data$w <- w
  f_week <- lm(week ~ fin, data = data, weights = w)
  f_rd <- lm(arrest ~ fin, data = data, weights = w)
  f_rr <- suppressWarnings(glm(arrest ~ fin, family = binomial(link = "log"), data = data,
                               weights = w))
  list(
    mean_difference_week = list(estimate = unname(coef(f_week)["fin"]), se = se_cl(f_week, cl, "fin")),
    risk_difference_arrest = list(estimate = unname(coef(f_rd)["fin"]), se = se_cl(f_rd, cl, "fin")),
    risk_ratio_arrest = list(log_estimate = unname(coef(f_rr)["fin"]), se_log = se_cl(f_rr, cl, "fin"))
  )
}
w_att <- ifelse(t, 1, d$ps / (1 - d$ps))
cox_m <- coxph(Surv(week, arrest) ~ fin, data = md, weights = weights, cluster = subclass,
               ties = "efron")
G <- length(unique(md$subclass))
out <- list(
  data = list(file = "rossi.csv", md5 = unname(tools::md5sum(file.path(here, "rossi.csv"))),
              rows = nrow(d)),
  propensity = list(formula = "fin ~ age + race + wexp + mar + paro + prio",
                    coefficients = as.list(coef(ps)), caliper_width = width),
  matching = list(n_treated_matched = nrow(pairs), pairs_treated = pairs$treated,
                  pairs_control = pairs$control),
  matched = c(effects(md, md$weights, ~subclass),
              list(cox = list(log_hr = unname(coef(cox_m)["fin"]),
                              se_robust = unname(sqrt(vcov(cox_m)["fin", "fin"])),
                              n_clusters = G))),
  unweighted = effects(d, rep(1, nrow(d)), ~id),
  iptw = effects(d, w_att, ~id)
)
write_json(out, file.path(here, "r_values_library_rossi.json"), auto_unbox = TRUE, digits = NA,
           pretty = TRUE)
cat("wrote", file.path(here, "r_values_library_rossi.json"), "\n")
