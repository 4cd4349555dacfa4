"""Helpers to drive headless Firefox ESR against a local WebTransport server (test-only).

Theory of operation
-------------------
Firefox is the second browser our WebTransport server must work with (it speaks
draft-02 only). It runs as a separate process, as ``/work/shared/PEERS.md`` prescribes:

* ``firefox-esr --headless -no-remote -profile <new dir> URL`` (plus ``MOZ_HEADLESS=1``),
  with a throw-away profile whose ``user.js`` (:data:`PREFS`) enables WebTransport and
  HTTP/3, silences first-run pages, telemetry, updates, safe browsing and speculative
  network traffic, and copies the page's ``console.log`` to stdout (shown in failure
  messages via :meth:`FirefoxProcess.output`);
* the page talks to the server with ``serverCertificateHashes`` (ECDSA, at most 14 days),
  so no CA has to be imported into the profile;
* the browser is started in a new session (its process group id is its PID) with
  ``die_with_parent`` (SIGKILL if the test run itself dies) and a TMPDIR of its own.
  :meth:`FirefoxProcess.stop` sends SIGTERM to the PID, then SIGKILL to the group, then
  SIGKILL to every remaining process whose environment carries that TMPDIR (Firefox's
  crash helper detaches into a session of its own), and removes the profile and the
  TMPDIR. :meth:`FirefoxProcess.leftovers` lists such processes, so a test can show that
  none outlives the browser.

Nothing here imports the library: Firefox talks to the server over real UDP sockets.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

from tests.interop.chromium import end_process_group
from tests.support.children import die_with_parent

FIREFOX_NAMES = ("firefox-esr", "firefox")
PREFS: dict[str, bool | int | str] = {
    # What the tests need.
    "network.webtransport.enabled": True,
    "network.http.http3.enable": True,
    "devtools.console.stdout.content": True,  # the page's console.log on stdout
    "browser.dom.window.dump.enabled": True,
    # No first-run, default-browser or session-restore pages.
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "startup.homepage_welcome_url": "",
    "startup.homepage_welcome_url.additional": "",
    "browser.aboutwelcome.enabled": False,
    "browser.sessionstore.resume_from_crash": False,
    "toolkit.startup.max_resumed_crashes": -1,
    "termsofuse.bypassNotification": True,
    "datareporting.policy.dataSubmissionPolicyBypassNotification": True,
    # No updates, telemetry or other background traffic.
    "app.update.disabledForTesting": True,
    "app.update.auto": False,
    "extensions.update.enabled": False,
    "extensions.systemAddon.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "browser.search.update": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.usage.uploadEnabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.prefetch-next": False,
    "network.dns.disablePrefetch": True,
    "network.predictor.enabled": False,
    "network.http.speculative-parallel-limit": 0,
    "dom.push.connection.enabled": False,
    "browser.ml.enable": False,
    "browser.newtabpage.enabled": False,
    "browser.newtabpage.activity-stream.feeds.topsites": False,
    "browser.newtabpage.activity-stream.feeds.system.topsites": False,
    "browser.topsites.contile.enabled": False,
    "app.normandy.enabled": False,
    "app.normandy.api_url": "",
    "app.shield.optoutstudies.enabled": False,
    "messaging-system.rsexperimentloader.enabled": False,
    "services.settings.server": "http://127.0.0.1:9/remote-settings-disabled",
    "browser.translations.enable": False,
}


def find_firefox() -> str | None:
    """Path of an installed Firefox ESR (or Firefox) binary, or None."""
    for name in FIREFOX_NAMES:
        path = shutil.which(name)
        if path is not None:
            return path
    return None


def user_js(prefs: Mapping[str, bool | int | str]) -> str:
    """The text of a ``user.js`` setting ``prefs``."""
    lines = []
    for name, value in prefs.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        else:
            text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines.append(f'user_pref("{name}", {text});')
    return "\n".join(lines) + "\n"


def processes_with_env(name: str, value: str) -> list[int]:
    """PIDs of our user's processes whose environment has ``name=value``."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
    return found


class FirefoxProcess:
    """Headless Firefox showing ``url`` until :meth:`stop` (use as a context manager)."""

    def __init__(
        self,
        url: str,
        prefs: Mapping[str, bool | int | str] | None = None,
        binary: str | None = None,
    ) -> None:
        found = binary or find_firefox()
        if found is None:
            raise FileNotFoundError("firefox-esr not installed")
        self.binary = found
        self.url = url
        self.prefs = dict(PREFS if prefs is None else prefs)
        self.profile: Path | None = None
        self.tmpdir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> FirefoxProcess:
        self.profile = Path(tempfile.mkdtemp(prefix="firefox-profile-"))
        self.tmpdir = Path(tempfile.mkdtemp(prefix="firefox-tmp-"))
        (self.profile / "user.js").write_text(user_js(self.prefs), encoding="utf-8")
        env = dict(os.environ)
        env.update(MOZ_HEADLESS="1", MOZ_CRASHREPORTER_DISABLE="1", TMPDIR=str(self.tmpdir))
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in __exit__
        self.process = subprocess.Popen(
            [self.binary, "--headless", "-no-remote", "-profile", str(self.profile), self.url],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        return self

    def output(self) -> str:
        """What the browser printed so far (stdout and stderr, the page's console.log)."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def leftovers(self) -> list[int]:
        """PIDs of processes still running with this browser's TMPDIR."""
        if self.tmpdir is None:
            return []
        return processes_with_env("TMPDIR", str(self.tmpdir))

    def stop(self, grace: float = 5.0) -> None:
        if self.process is not None:
            end_process_group(self.process, grace)
        deadline = time.monotonic() + grace
        while (pids := self.leftovers()) and time.monotonic() < deadline:
            for pid in pids:  # detached helpers: by PID, found by our TMPDIR
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        if self.profile is not None:
            shutil.rmtree(self.profile, ignore_errors=True)
            self.profile = None
        if self.tmpdir is not None and not self.leftovers():
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self) -> FirefoxProcess:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None
