"""Statistical methods for the HAT vs matched OST registry evaluation.

Data flow is one way: an extract (see ``analysis.extract``) is derived into a
person-level cohort (``analysis.cohort``), a matched or weighted design
(``analysis.propensity``, ``analysis.matching``, ``analysis.weighting``,
``analysis.balance``) and effect estimates (``analysis.survival``,
``analysis.counts``, ``analysis.sensitivity``), all returned as frozen typed
results (``analysis.results``). ``analysis`` never imports ``synthetic``.
"""

__version__ = "0.1.0"
