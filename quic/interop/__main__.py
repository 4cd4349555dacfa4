"""``python -m quic.interop``: see :mod:`quic.interop`."""

import sys

from quic.interop import main

sys.exit(main())
