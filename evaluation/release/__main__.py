"""``python -m evaluation.release RESULTS_DIR``: see :func:`evaluation.release.cli.main`."""

import contextlib
import sys

from evaluation.release.cli import main

with contextlib.suppress(BrokenPipeError):
    sys.exit(main())
