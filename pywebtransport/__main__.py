"""``python -m pywebtransport serve``: the interop server (see :mod:`pywebtransport.cli`)."""

import sys

from pywebtransport.cli import main

sys.exit(main())
