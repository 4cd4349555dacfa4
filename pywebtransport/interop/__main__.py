"""``python -m pywebtransport.interop``: the quic-interop-runner WebTransport endpoint."""

import sys

from pywebtransport.interop.runner import main

sys.exit(main())
