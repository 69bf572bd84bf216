# Frozen reference values for the difference in Aalen-Johansen cumulative incidence,
# HAT minus OST (analysis.outcomes.competing_risks.cumulative_incidence_difference).
#
# Run once from the repository root:
#
#     Rscript tests/reference/make_reference_cif.R
#
# Reads  tests/reference/reference_data.csv (written by tests/reference/make_data.py)
# Writes tests/reference/r_values_cif.json (tests read it; they never run R).
#
# Made with R 4.2.2, survival 3.5-3, cmprsk 2.2-11 (Debian packages).
#
# Cause 1 is the cause of interest, cause 2 competes (event_type 0 = censored).
# - cuminc: cmprsk::cuminc point estimates by treatment at the time points, unweighted,
#   and with integer frequency weights (each row repeated freq = 1 + id %% 3 times, as
#   cuminc has no weights argument); their differences (group 1 - group 0).
# - ij: survival::survfit multi-state fits (id = id) with the infinitesimal-jackknife
#   (influence) values. Unweighted: the SE of the difference is sqrt(se0^2 + se1^2) of
#   survfit's std.err. Weighted and clustered: each person's influence on their arm's
#   CIF times their weight, the arms' difference summed within matched sets, squared and
#   summed. survfit applies no small-sample factor; the tests multiply by G / (G - 1).

suppressPackageStartupMessages({
  library(survival)
  library(cmprsk)
})

here <- "tests/reference"
d <- read.csv(file.path(here, "reference_data.csv"))
times <- c(180, 365.25, 730)

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

out <- list()
out$meta <- list(
  R = R.version.string,
  survival = as.character(packageVersion("survival")),
  cmprsk = as.character(packageVersion("cmprsk")),
  times = arr(times),
  n_sets = length(unique(d$match_set)),
  frequency_weight = "1 + id mod 3"
)

# ---------------------------------------------------------------- cmprsk point estimates
cuminc_block <- function(data) {
  ci <- cuminc(data$time, data$event_type, data$treatment, cencode = 0)
  tp <- timepoints(ci, times)
  list(
    cif0 = arr(tp$est["0 1", ]), cif1 = arr(tp$est["1 1", ]),
    diff = arr(tp$est["1 1", ] - tp$est["0 1", ])
  )
}
out$cuminc_unweighted <- cuminc_block(d)
freq <- 1 + d$id %% 3
out$cuminc_frequency_weighted <- cuminc_block(d[rep(seq_len(nrow(d)), freq), ])

# ---------------------------------------------------------------- survfit IJ variances
d$state <- factor(d$event_type, levels = 0:2, labels = c("censor", "cause1", "cause2"))

# per group: CIF of cause 1 at the time points and the persons' influence values there
at_times <- function(fit, j) {
  rows <- rep(seq_along(fit$strata), fit$strata) == j
  tt <- fit$time[rows]
  col <- vapply(times, function(t) max(c(0, which(tt <= t))), numeric(1))
  pstate <- fit$pstate[rows, ]
  cif <- ifelse(col == 0, 0, pstate[pmax(col, 1), 2])
  infl <- fit$influence.pstate[[j]] # persons x (time 0, times) x states
  person <- match(as.integer(rownames(infl)), d$id)
  # column col + 1 (the first column is the starting time); col 0 = before any time
  i1 <- infl[, col + 1, 2, drop = FALSE][, , 1]
  list(cif = cif, infl = i1, person = person)
}

u <- survfit(Surv(time, state) ~ treatment, data = d, id = id)
su <- summary(u, times = times, extend = TRUE)
se_u <- lapply(0:1, function(lev) su$std.err[su$strata == paste0("treatment=", lev), 2])
cif_u <- lapply(0:1, function(lev) su$pstate[su$strata == paste0("treatment=", lev), 2])
out$ij_unweighted <- list(
  cif0 = arr(cif_u[[1]]), cif1 = arr(cif_u[[2]]), diff = arr(cif_u[[2]] - cif_u[[1]]),
  se0 = arr(se_u[[1]]), se1 = arr(se_u[[2]]),
  se_diff = arr(sqrt(se_u[[1]]^2 + se_u[[2]]^2))
)

wfit <- survfit(Surv(time, state) ~ treatment, data = d, id = id, weights = weight,
                influence = TRUE)
g0 <- at_times(wfit, 1)
g1 <- at_times(wfit, 2)
# multi-state influence values are per unit weight: times the person's weight
contrib <- matrix(0, nrow(d), length(times))
contrib[g1$person, ] <- d$weight[g1$person] * g1$infl
contrib[g0$person, ] <- contrib[g0$person, ] - d$weight[g0$person] * g0$infl
tot <- rowsum(contrib, d$match_set)
se_set <- function(g) {
  m <- matrix(0, nrow(d), length(times))
  m[g$person, ] <- d$weight[g$person] * g$infl
  sqrt(colSums(rowsum(m, d$match_set)^2))
}
out$ij_weighted_cluster <- list(
  cif0 = arr(g0$cif), cif1 = arr(g1$cif), diff = arr(g1$cif - g0$cif),
  se0 = arr(se_set(g0)), se1 = arr(se_set(g1)),
  se_diff = arr(sqrt(colSums(tot^2)))
)

writeLines(to_json(out), file.path(here, "r_values_cif.json"))
cat("wrote", file.path(here, "r_values_cif.json"), "\n")
