"""JUnit XML from a (merged) JSON report, for CI test-report views: one testcase per check, as pytest's `--junitxml` names it.

Each testcase carries the properties one run's `--junitxml` does (`bertprobe.model`, `bertprobe.check`,
`bertprobe.metrics`), a failure its message and whole text, a skip its reason.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from typing import Any

from pytest_bertprobe.report.properties import CHECK_PROPERTY, METRICS_PROPERTY, MODEL_PROPERTY


def build_junit(report: dict[str, Any]) -> str:
    """The report's checks as one `<testsuite name="bertprobe">`."""
    checks = report["checks"]
    counts = {outcome: sum(check["outcome"] == outcome for check in checks) for outcome in ("failed", "error", "skipped")}
    suites = ElementTree.Element("testsuites")
    suite = ElementTree.SubElement(suites, "testsuite", {
        "name": "bertprobe", "tests": str(len(checks)), "failures": str(counts["failed"]), "errors": str(counts["error"]),
        "skipped": str(counts["skipped"]), "timestamp": str(report.get("created") or ""),
    })  # fmt: skip
    for check in checks:
        module, _, name = str(check["nodeid"]).partition("::")
        case = ElementTree.SubElement(suite, "testcase", {"classname": module.removesuffix(".py").replace("/", "."), "name": name})
        properties = ElementTree.SubElement(case, "properties")
        for key, value in ((MODEL_PROPERTY, check["model"]), (CHECK_PROPERTY, check["check"]),
                           (METRICS_PROPERTY, json.dumps(check.get("metrics") or {}, default=str, ensure_ascii=False))):  # fmt: skip
            ElementTree.SubElement(properties, "property", {"name": key, "value": str(value)})
        metrics = check.get("metrics") or {}
        if check["outcome"] in ("failed", "error"):
            tag = "failure" if check["outcome"] == "failed" else "error"
            element = ElementTree.SubElement(case, tag, {"message": str(metrics.get("message", check["outcome"])).split("\n", 1)[0]})
            element.text = check.get("text") or str(metrics.get("message", ""))
        elif check["outcome"] == "skipped":
            ElementTree.SubElement(case, "skipped", {"type": "pytest.skip", "message": str(metrics.get("reason", ""))})
    ElementTree.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(suites, encoding="unicode") + "\n"
