"""The demo's page in headless Firefox ESR (draft-02, the only draft it speaks).

The same run and checks as ``test_demo_chromium.py``: the demo as a child process, the
page's tour with ``#close=CODE,REASON``, its ``BROWSER`` report and the demo's
``SESSION-CLOSED`` line (``tests/interop/firefox.py`` drives the browser).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.interop.firefox import FirefoxProcess, find_firefox
from tests.interop.test_demo_chromium import check_page, demo, run_page
from tests.interop.test_wt_aioquic import LineProcess

__all__ = ["demo"]  # the fixture

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(150),
    pytest.mark.skipif(find_firefox() is None, reason="firefox-esr is not installed"),
]


def test_demo_page_in_firefox(demo: LineProcess) -> None:
    def browser(url: str) -> Any:
        return FirefoxProcess(url)

    result, why = run_page(demo, browser)
    check_page(demo, result, "draft02", why)
