"""The JUnit XML report (``--junit FILE``): one testcase per flow. Pure.

CI systems (GitLab, Jenkins, GitHub test reporters) read JUnit: each check is a testsuite, each
flow a testcase named by its id, description and node pair; a mismatch is a ``failure``, a probe
error an ``error``, a skipped check one ``skipped`` testcase. Messages are the same reason the
table shows.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any


def to_junit(result: Mapping[str, Any]) -> str:
    """The VerifyResult JSON document as JUnit XML."""
    flows = {f["id"]: f for f in result["flows"]}
    root = ET.Element("testsuites", name="netiso verify",
                      tests=str(len(flows)), time=str(result.get("seconds", 0)))
    failures = errors = skipped = 0
    for check in result["checks"]:
        suite = ET.SubElement(root, "testsuite", name=check["name"])
        s_fail = s_err = s_skip = 0
        if check["status"] == "skipped":
            case = ET.SubElement(suite, "testcase", classname=f"netiso.verify.{check['name']}",
                                 name=check["description"])
            ET.SubElement(case, "skipped", message=check["message"])
            s_skip += 1
        for fid in check["flows"]:
            f = flows[fid]
            to = f["to"]
            name = (f"{fid} {f['description']}: {f['from']['pod']} -> {to['target']} "
                    f"({f['from']['node']}->{to['node'] or '-'})")
            case = ET.SubElement(suite, "testcase", classname=f"netiso.verify.{check['name']}",
                                 name=name)
            text = (f"expected {f['expected']}, intended {f['intended']}, observed "
                    f"{f['observed']} after {f['attempts']} attempt(s); decided by "
                    f"{', '.join(f['decidedBy']) or 'no policy'}")
            if f["observed"] == "probe-error":
                ET.SubElement(case, "error", message=f["reason"]).text = text
                s_err += 1
            elif not f["ok"]:
                ET.SubElement(case, "failure", message=f["reason"]).text = text
                s_fail += 1
            else:
                ET.SubElement(case, "system-out").text = text
        suite.set("tests", str(len(check["flows"]) + (1 if check["status"] == "skipped"
                                                       else 0)))
        suite.set("failures", str(s_fail))
        suite.set("errors", str(s_err))
        suite.set("skipped", str(s_skip))
        failures += s_fail
        errors += s_err
        skipped += s_skip
    root.set("failures", str(failures))
    root.set("errors", str(errors))
    root.set("skipped", str(skipped))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") \
        + "\n"
