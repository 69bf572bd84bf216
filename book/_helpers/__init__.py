"""Loading and formatting a results folder for the pages of the report.

Pages only read a results folder (``results.json``, ``manifest.json``,
``tables/*.csv``, ``figures/*.png``; see ``docs/results-folder.md``) and format
it. The folder is the environment variable ``HAT_RESULTS`` (absolute path) or
``results/`` at the repository root. Every number in the text comes from here.

Missing optional pieces (a table, a design, the truth, the manifest) give
``None`` from the loaders, and the pages print a sentence instead.

A page starts with ``from _helpers import *``, which gives it every public name of
the modules below (and ``pd``):

- ``loading``: the results folder, its release record, estimates, designs, configuration;
- ``formatting``: numbers, intervals, p-values, estimates with their notes;
- ``labels``: readable names of designs, models, covariates, measures and outcomes;
- ``display``: Markdown, tables, figures, the banners and notes shared by the pages;
- ``absolute``: the hazard ratio beside the absolute measures;
- ``trial``: the emulated target trial of a version-2 (history) extract (estimands,
  intention-to-treat beside per-protocol estimates, the sensitivity comparisons);
- ``trial_text``: its words read against the TARGET guideline (data source, estimands,
  identifying assumptions, follow-up, limitations of the emulation).
"""

import pandas as pd  # noqa: F401  (the pages use it)

from .absolute import *  # noqa: F403
from .display import *  # noqa: F403
from .formatting import *  # noqa: F403
from .labels import *  # noqa: F403
from .loading import *  # noqa: F403
from .trial import *  # noqa: F403
from .trial_text import *  # noqa: F403

__all__ = [name for name in dir() if not name.startswith("_")]
