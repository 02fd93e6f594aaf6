"""A JUnit XML file with one <testsuite> per board, written with junit-xml."""

from __future__ import annotations

import os
from pathlib import Path

from junit_xml import TestCase, TestSuite, to_xml_report_string

from .results import BoardResults


def write_junit(path: Path, boards: list[BoardResults]) -> None:
    suites = []
    for board in boards:
        cases = []
        for test in board.tests:
            case = TestCase(
                test.name,
                classname=test.classname,
                elapsed_sec=round(test.duration, 3),
                stdout=test.serial or None,
                file=test.path,
                line=test.line,
            )
            if test.outcome == "failed":
                case.add_failure_info(message=test.summary, output=test.details)
            elif test.outcome == "error":
                case.add_error_info(message=test.summary, output=test.details or test.message)
            elif test.outcome == "skipped":
                case.add_skipped_info(message=test.message)
            cases.append(case)
        properties = {"board": board.name, **board.info}
        suites.append(TestSuite(board.name, cases, properties=properties))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")  # a run killed while writing leaves the last whole file
    try:
        partial.write_text(to_xml_report_string(suites, encoding="utf-8"), encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
