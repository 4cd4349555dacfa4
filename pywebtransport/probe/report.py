"""The probe's results: one :class:`CheckResult` per check, a table or JSON, an exit status.

Theory of operation
-------------------
Every check ends in exactly one :class:`CheckResult`: ``pass``, ``fail`` or ``n/a``
(not applicable: the server does not offer what the check needs, with the reason in
``detail``), the spec section it is held to and a one-line detail. A
:class:`ProbeReport` collects them in the order they ran; :meth:`ProbeReport.table`
is the text printed on stdout, :meth:`ProbeReport.to_json` the ``--json`` document
(schema version :data:`SCHEMA_VERSION`; fields listed in ``docs/probe.md``), and
:meth:`ProbeReport.exit_status` is 0 unless a check failed (``n/a`` is not a failure).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "SCHEMA_VERSION",
    "CheckResult",
    "Outcome",
    "ProbeReport",
    "failed",
    "not_applicable",
    "passed",
]

SCHEMA_VERSION = 1
EXIT_OK = 0
EXIT_FAILED = 1
_DETAIL_MAX = 300


class Outcome(Enum):
    PASS = "pass"
    FAIL = "fail"
    NA = "n/a"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check."""

    check: str  # stable identifier, e.g. "h3.settings"
    outcome: Outcome
    section: str  # e.g. "RFC 9114 §7.2.4"
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "check": self.check,
            "result": self.outcome.value,
            "section": self.section,
            "detail": self.detail,
        }


def passed(check: str, section: str, detail: str = "") -> CheckResult:
    return CheckResult(check, Outcome.PASS, section, _one_line(detail))


def failed(check: str, section: str, detail: str) -> CheckResult:
    return CheckResult(check, Outcome.FAIL, section, _one_line(detail))


def not_applicable(check: str, section: str, reason: str) -> CheckResult:
    return CheckResult(check, Outcome.NA, section, _one_line(reason))


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _DETAIL_MAX else line[: _DETAIL_MAX - 3] + "..."


@dataclass(slots=True)
class ProbeReport:
    """All results of one probe run."""

    url: str
    results: list[CheckResult] = field(default_factory=list)
    #: facts learned on the way (drafts offered, settings as sent, ...), JSON-ready
    info: dict[str, Any] = field(default_factory=dict)

    def add(self, result: CheckResult) -> None:
        self.results.append(result)

    def extend(self, results: list[CheckResult]) -> None:
        self.results.extend(results)

    def result(self, check: str) -> CheckResult | None:
        return next((r for r in self.results if r.check == check), None)

    def counts(self) -> dict[str, int]:
        counts = {outcome.value: 0 for outcome in Outcome}
        for result in self.results:
            counts[result.outcome.value] += 1
        return counts

    @property
    def ok(self) -> bool:
        return all(r.outcome is not Outcome.FAIL for r in self.results)

    def exit_status(self) -> int:
        return EXIT_OK if self.ok else EXIT_FAILED

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "url": self.url,
            "ok": self.ok,
            "summary": self.counts(),
            "info": self.info,
            "results": [r.to_dict() for r in self.results],
        }

    def json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False)

    def table(self) -> str:
        rows = [("CHECK", "RESULT", "SECTION", "DETAIL")]
        rows += [(r.check, r.outcome.value, r.section, r.detail) for r in self.results]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = [
            f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}"
            for row in rows
        ]
        counts = self.counts()
        verdict = "OK" if self.ok else "FAILED"
        lines.append(
            f"probe {self.url}: {verdict} — {counts['pass']} pass, {counts['fail']} fail, "
            f"{counts['n/a']} n/a"
        )
        return "\n".join(lines)
