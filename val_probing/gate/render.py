"""The check's outputs: the terminal table, the Markdown job summary and JUnit XML."""

from __future__ import annotations

from collections import defaultdict
from xml.etree import ElementTree

from val_probing.gate.baseline import (
    GateResult,
    MetricCheck,
    MetricKind,
    Status,
)


def _p(x: float | None) -> str:
    return "-" if x is None else (f"{x:.2g}" if x < 0.01 else f"{x:.3f}")


def _delta(c: MetricCheck) -> str:
    return f"{round(c.current - c.baseline, 1) + 0.0:+.1f}"  # + 0.0: no "-0.0"


def _ci(c: MetricCheck) -> str:
    return "" if c.ci is None else f"[{c.ci[0] + 0.0:+.1f}, {c.ci[1] + 0.0:+.1f}]"


def _rows(result: GateResult, only_interesting: bool) -> list[list[str]]:
    rows = []
    for c in result.checks:
        if only_interesting and c.kind is MetricKind.BUCKET and c.status != "fail" and c.change <= 0:
            continue
        rows.append([
            c.task, c.metric, f"{c.baseline:.1f}", f"{c.current:.1f}", _delta(c), _ci(c),
            f"{c.tolerance:.1f}", _p(c.p_adjusted), c.method,
            _STATUS_TEXT[c.status],
        ])  # fmt: skip
    return rows


_STATUS_TEXT: dict[Status, str] = {"pass": "ok", "fail": "FAIL", "low power": "low power", "info": "info"}


_HEAD = ["task", "metric", "baseline", "run", "delta", "95% CI", "margin", "p (Holm)", "method", "status"]
_RIGHT = (2, 3, 4, 6, 7)


def verdict(result: GateResult) -> str:
    gated = len(result.gated)
    if result.passed:
        return f"PASS: {result.model}, {gated} gated checks ({len(result.checks) - gated} informational)"
    names = ", ".join(f"{c.task}/{c.metric}" for c in result.failures)
    return f"REGRESSION: {result.model}, {len(result.failures)} of {gated} gated checks failed ({names})"


def format_table(result: GateResult) -> str:
    rows = [_HEAD, *_rows(result, only_interesting=False)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEAD))]
    lines = ["  ".join(cell.rjust(w) if i in _RIGHT else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(r, widths, strict=True))).rstrip()
             for r in rows]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([*lines, "", *result.notes, verdict(result)])


def format_markdown(result: GateResult) -> str:
    """A CI job summary: verdict, notes, and the table (buckets that did not get worse left out)."""
    icon = "✅" if result.passed else "❌"
    out = [f"### {icon} VAL probing gate — {verdict(result)}", ""]
    out += [f"> {note}" for note in result.notes]
    out += ["", "| " + " | ".join(_HEAD) + " |", "|" + "---|" * len(_HEAD)]
    out += ["| " + " | ".join(r) + " |" for r in _rows(result, only_interesting=True)]
    out += [
        "",
        "Scores x100; delta = run - baseline with its 95% paired interval; shape = the middle's "
        "dip below the edges; buckets that did not get worse are not listed.",
    ]
    return "\n".join(out) + "\n"


def junit_xml(result: GateResult) -> str:
    """JUnit XML: one testsuite per task, one testcase per metric (avg, gap, every bucket)."""
    root = ElementTree.Element(
        "testsuites", name="val-probing gate", tests=str(len(result.checks)),
        failures=str(len(result.failures)),
    )  # fmt: skip
    by_task: dict[str, list[MetricCheck]] = defaultdict(list)
    for c in result.checks:
        by_task[c.task].append(c)
    for task, checks in by_task.items():
        suite = ElementTree.SubElement(
            root, "testsuite", name=f"val_{task}", tests=str(len(checks)),
            failures=str(sum(c.status == "fail" for c in checks)),
        )  # fmt: skip
        for c in checks:
            low = c.status == "low power"
            ci = "" if c.ci is None else f", 95% CI of the delta [{c.ci[0]:.2f}, {c.ci[1]:.2f}]"
            case = ElementTree.SubElement(suite, "testcase", classname=f"val_probing.{task}", name=c.metric)
            detail = (
                f"baseline {c.baseline:.2f}, run {c.current:.2f}, worse by {c.change:.2f}{ci} (tolerance "
                f"{c.tolerance:.2f}); {c.method}"
                + (f", p={c.p_value:.3g}" if c.p_value is not None else "")
                + (f", Holm p={c.p_adjusted:.3g}" if c.p_adjusted is not None else "")
                + (f"; LOW POWER ({c.questions} questions): not tested" if low else "")
                + ("; informational, not gated" if c.status == "info" else "")
            )
            if c.status == "fail":
                ElementTree.SubElement(case, "failure", message=f"{task}/{c.metric} regressed").text = detail
            else:
                ElementTree.SubElement(case, "system-out").text = detail
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"
