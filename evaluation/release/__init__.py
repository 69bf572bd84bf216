"""Statistical disclosure control: the outputs that may leave the secure research environment.

``python -m evaluation.release RESULTS_DIR`` (and every ``python -m evaluation.run``)
writes ``RESULTS_DIR/release/``: the results folder's outputs that pass the checks,
after suppression, rounding and coarsening, with the record an output checker needs.

``release/`` holds

- ``results.json``, ``manifest.json``, ``tables/*.csv``, ``figures/*.png``: the same
  layout and schema as the results folder, so the report can be built from it; a
  suppressed value is ``null`` (an empty CSV cell), and the mapping that held it gets
  ``suppressed: {key: {"shown": "<10", "reason": ...}}`` (``disclosure.json`` lists the
  suppressed cells of the tables). Figures are drawn only from the released tables.
- ``disclosure.json``: every output, its status, the rules applied, every cell
  suppressed and every table coarsened, and why; the configuration; the checksums of
  all files.
- ``acro/``: the same record in ACRO's output format (``results.json``, one CSV per
  table, the figures, ``config.json``, ``checksums/``), which output checkers open in
  SACRO-Viewer.

The rules are ACRO's (Semi-Automatic Checking of Research Outputs, SACRO project), with
its configuration keys and defaults (:class:`evaluation.config.DisclosureConfig`), and
ACRO's own checks are run on every table of counts and sums (minimum threshold,
presence of zeros, N-K and p-ratio dominance) from the evidence the run computed on
the person-level data (:mod:`evaluation.disclosure`):

1. **Minimum frequency.** A count of persons below ``safe_threshold`` (and a zero, when
   ``zeros_are_disclosive``) is suppressed, and so is every number computed from it (a
   percentage, a rate, a standardised difference of a binary covariate, whose
   complement is checked too). Released counts are rounded to ``safe_round_base``, so
   that a small count cannot be recovered as the difference of two released counts.
2. **Dominance** of sums (charges): N-K (the ``safe_nk_n`` largest contributors hold at
   least ``safe_nk_k`` of the sum) and p-ratio (the sum less its two largest
   contributions is below ``safe_pratio_p`` of the largest); a failing sum, and the
   rate made from it, is suppressed.
3. **Survival curves** (Kaplan-Meier, cumulative incidence) are released on a coarse
   grid of multiples of ``time_grid_days``: each step holds at least
   ``survival_safe_threshold`` events and starts with at least that many persons at
   risk (ACRO's survival rule); the curve ends where that no longer holds. Numbers at
   risk are rounded; event counts per step are rounded.
4. **Histograms** (propensity-score overlap): adjacent bins are merged until each holds
   at least ``safe_threshold`` persons in each group and sample; the outer edges are
   widened to half logit units, so no person's extreme score is shown.
5. **Model estimates** are released when each arm has at least ``safe_threshold``
   persons and ``safe_threshold`` persons with the event (for charges, the sums also
   pass the dominance rules); otherwise the estimate, its interval, p-value, the tests
   and E-values made from it are withheld with a note.
6. **No person-level output**: the evidence tables, individual maxima (longest
   follow-up) and free-text counts below the threshold never enter ``release/``.

Modules
-------
``record`` (names, :class:`ReleaseError`, the record of one output), ``acro`` (ACRO's import,
its table model and output folder), ``rules`` (:class:`Rules`: thresholds, rounding, text;
cell suppression), ``tables`` (flow, exclusions, Table 1, balance, rates, histogram),
``curves`` (the survival rule), ``estimates`` (model estimates and ``results.json``),
``make`` (:func:`make_release`), ``write`` (:func:`write_release`), ``cli`` (the command).
"""

from evaluation.release.cli import main, summary_lines
from evaluation.release.make import Release, disclosure_config, make_release
from evaluation.release.record import (
    ACRO_FOLDER,
    RECORD,
    RELEASE,
    Output,
    ReleaseError,
)
from evaluation.release.rules import Rules
from evaluation.release.write import release_files, write_release, write_release_into

__all__ = [
    "ACRO_FOLDER",
    "RECORD",
    "RELEASE",
    "Output",
    "Release",
    "ReleaseError",
    "Rules",
    "disclosure_config",
    "main",
    "make_release",
    "release_files",
    "summary_lines",
    "write_release",
    "write_release_into",
]
