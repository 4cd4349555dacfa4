"""``python -m h3 get URL`` / ``python -m h3 serve --root DIR``: see :mod:`h3.cli`."""

import sys

from h3.cli import main

sys.exit(main())
