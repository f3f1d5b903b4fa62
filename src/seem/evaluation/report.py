"""Reports of whole-data-set runs: the plain-text table ``seem eval`` prints, the strict JSON file it writes,
and whether anything was scored at all.

A report is the dictionary :func:`seem.evaluation.runner.run_interactive`, ``run_referring``, ``run_generic``
or :func:`seem.evaluation.video_runner.run_video` returns, optionally with ``model`` / ``device`` added.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path


def format_value(v) -> str:
    """A table cell: floats with two decimals (``nan`` as such), anything else as ``str``."""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.2f}"
    return str(v)


def _table(lines: list[str], title: str, rows: Sequence[tuple[str, dict]], keys: Sequence[str]) -> None:
    keys = [k for k in keys if any(k in d for _, d in rows)]
    head = ["", *keys]
    body = [[name, *(format_value(d.get(k, "")) for k in keys)] for name, d in rows]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines += ["", title]
    for r in [head, *body]:
        lines.append("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))))


def format_video(report: dict) -> list[str]:
    """Table lines of a ``run_video`` report: one row per mode (percent; fps in frames per second)."""
    lines: list[str] = []
    rows = [(m, d | {"objects": d.get("num_objects")}) for m, d in report["video"].items()]
    _table(lines, "video object segmentation, first-frame masks given (DAVIS 2017 protocol; %, decay in points)",
           rows, ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay", "objects", "fps"])
    return lines


def format_table(report: dict) -> str:
    """A readable, aligned plain-text table of a ``run_interactive`` / ``run_referring`` / ``run_generic`` /
    ``run_video`` report (model, data set, protocol, metrics, errors, time)."""
    ds = dict(report.get("dataset", {}))
    unit = "sequences" if "num_sequences" in report else "images"
    total = ds.pop(f"num_{unit}", "?")
    lines = [f"model {report.get('model', '?')} on {report.get('device', '?')}; dataset "
             + ", ".join(f"{k} {v}" for k, v in ds.items()), f"{unit} evaluated: {report.get(f'num_{unit}')} of {total}"]
    if "interactive" in report:
        m = report.get("protocol", {}).get("max_clicks", 20)
        keys = list(dict.fromkeys(["num_instances", "NoC@85", "NoC@90", "NoC@95", "NoF@85", "NoF@90", "mIoU@1", "mIoU@5",
                                   f"mIoU@{m}", "ms/click"]))
        rows = [(p, d | {"ms/click": 1000.0 * d.get("seconds_per_click", float("nan"))})
                for p, d in report["interactive"].items()]
        _table(lines, f"interactive, first prompt per row, max {m} clicks (NoC: clicks, lower is better; mIoU: %)",
               rows, keys)
        if report.get("skipped_objects"):
            lines.append(f"{report['skipped_objects']} empty objects skipped, first: {report['skipped'][:3]}")
    if "referring" in report:
        _table(lines, "referring (%)", [("all", report["referring"])],
               ["num", "cIoU", "mIoU", "precision@0.5", "precision@0.7", "precision@0.9"])
    if "panoptic" in report:
        p = report["panoptic"]
        rows = [(name, {"PQ": p.get(f"PQ{s}"), "SQ": p.get(f"SQ{s}"), "RQ": p.get(f"RQ{s}"), "classes": p.get(f"num_classes{s}")})
                for name, s in (("all", ""), ("things", "_th"), ("stuff", "_st"))]
        _table(lines, "panoptic (%)", rows, ["PQ", "SQ", "RQ", "classes"])
    if "semantic" in report:
        title = "semantic, names also grounded (%)" if report.get("text_grounding") else "semantic (%)"
        _table(lines, title, [("all", report["semantic"])], ["mIoU", "fwIoU", "mACC", "pACC"])
    if "instance" in report:
        _table(lines, "instance mask AP (%, thing classes)", [("all", report["instance"])],
               ["AP", "AP50", "AP75", "APs", "APm", "APl", "num_gt", "num_pred"])
    if "video" in report:
        lines += format_video(report)
    for task, why in report.get("skipped_tasks", {}).items():
        lines.append(f"{task} skipped: {why}")
    if report.get("errors"):
        lines += ["", f"{len(report['errors'])} samples rejected by the predictor (left out), first: {report['errors'][0]}"]
    if "seconds" in report:
        lines += ["", f"{report['seconds']:.1f} s"]
    return "\n".join(lines)


def nothing_evaluated(report: dict) -> str | None:
    """Why no sample was scored (every one rejected, or none usable), or None when something was."""
    counts = []
    for task, key in (("interactive", "num_instances"), ("referring", "num"), ("video", "num_objects")):
        section = report.get(task)
        if isinstance(section, dict):
            rows = section.values() if task != "referring" else [section]
            counts += [row.get(key, 0) for row in rows if isinstance(row, dict)]
    if "panoptic" in report or "semantic" in report:
        counts.append(report.get("num_images", 0) - len(report.get("errors", [])))
    if counts and not any(c and c > 0 for c in counts):
        errors = report.get("errors") or []
        return f"{len(errors)} samples rejected" if errors else "no usable sample"
    return None


def strict_json(x):
    """NaN / infinite floats -> None, recursively: the report stays strict JSON (undefined metrics are null)."""
    if isinstance(x, dict):
        return {k: strict_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [strict_json(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_report(report: dict, path: str | Path) -> Path:
    """``report`` as strict, indented JSON at ``path`` (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(strict_json(report), indent=1, allow_nan=False), encoding="utf-8")
    return path
