"""Statistical methods for the HAT vs matched OST registry evaluation.

Data flow is one way: an extract (see ``analysis.data.extract``) is derived into a
person-level cohort (``analysis.data.cohort``), a matched or weighted design
(``analysis.design.propensity``, ``analysis.design.matching``, ``analysis.design.weighting``,
``analysis.design.balance``) and effect estimates (``analysis.outcomes.cox``,
``analysis.outcomes.kaplan_meier``, ``analysis.outcomes.competing_risks``,
``analysis.outcomes.counts``, ``analysis.outcomes.sensitivity``), all returned as frozen typed
results (``analysis.results``). ``analysis`` never imports ``synthetic``.
"""

__version__ = "0.1.0"
