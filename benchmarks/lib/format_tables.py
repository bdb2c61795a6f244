"""The deployment-format benchmark's tables: one row per format, one per format and model, NCNN's precision options."""

from __future__ import annotations

from .formats import BY_ARG
from .report import table as markdown_table

REP, BASE = "yolov8n-efficientrep", "yolov8n"


def table(header: list[str], rows: list[list[str]], align: str = "---") -> str:
    """A markdown table whose cells may quote error messages: their pipes escaped."""
    return markdown_table(header, [[cell.replace("|", "\\|") for cell in row] for row in rows], align=align)


def _model(result: dict, name: str) -> dict:
    """One model's record of a format's result ({} if it has none)."""
    return next((m for m in result.get("models", []) if m["model"] == name), {})


def _ms(record: dict) -> str:
    """Median latency in ms (marked where a simulator ran, whose speed is not the target's), or a dash."""
    if "latency" not in record:
        return "-"
    return f"{record['latency']['median'] * 1e3:.1f}" + (" (simulator)" if "simulator" in record.get("runtime", "")
                                                          else "")


def _state(result: dict) -> tuple[str, str, str, str]:
    """Installed, exported, fused, runs cells of the plugin's model for one format."""
    fmt = BY_ARG[result["format"]]
    if not result.get("installed", False):
        return f"no: {', '.join(result.get('missing', []))} missing", "-", "-", "-"
    if "error" in result:
        return "yes", f"no: {result['error']}", "-", "-"
    rep = _model(result, REP)
    if not rep.get("exported"):
        return "yes", f"no: {rep.get('error', '?')}", "-", "-"
    check = "check passed" if "fused 19 blocks" in rep.get("fusion_check", "") else "no check line"
    graph = rep.get("graph")
    if graph is None:
        fused = f"{check}; graph not readable here"
    elif "error" in graph:
        fused = f"{check}; graph not read: {graph['error']}"
    else:
        fused = (f"{check}; {graph['convs']}/{rep['pytorch_convs']} convs, {graph['norms']} BN "
                 f"({'fused' if graph['fused'] else 'NOT fused'})")
    if fmt.blocked:
        runs = f"not here: {fmt.blocked}"
    elif rep.get("runs"):
        det = rep["detections"]
        runs = "yes, matches" if det["matches"] else (f"yes, differs ({det['unmatched']} unmatched of "
                                                       f"{det['boxes']})")
    else:
        runs = f"no: {rep.get('run_error', '?')}"
    return "yes", f"yes ({rep['megabytes']} MB)", fused, runs


def _difference(result: dict) -> str:
    """Max differences of the plugin's model: detections after NMS and raw outputs (relative)."""
    rep = _model(result, REP)
    if not rep.get("runs"):
        return "-"
    det, raw = rep["detections"], rep.get("raw")
    base = _model(result, BASE).get("raw")
    base_text = f"; yolov8n raw {max(base['box_rel'], base['score_rel']):.1e}" if base else ""
    raw_text = f"raw {max(raw['box_rel'], raw['score_rel']):.1e}" if raw else rep.get("raw_note", "no raw tensor")
    return (f"after NMS: {det['box_px']:.2g} px, score {det['score']:.1e}, 1-IoU {det['iou_distance']:.1e}; "
            f"{raw_text}{base_text}")


def _int8(result: dict, pytorch_map: dict) -> str:
    """INT8 mAP50-95 of both models beside PyTorch's, or why there is none."""
    rep, base = _model(result, REP).get("int8"), _model(result, BASE).get("int8")
    if rep is None:
        return "offered, not measured here" if BY_ARG[result["format"]].int8 else "not offered by Ultralytics"
    cells = []
    for name, record in ((REP, rep), (BASE, base)):
        if record and record.get("exported") and not record.get("validated", True):
            cells.append(f"{name} exported, mAP not measured (no runtime here)")
        elif record and record.get("exported"):
            cells.append(f"{name} {record['mAP50-95']:.3f} (PyTorch {pytorch_map[name]['mAP50-95']:.3f})")
        elif record:
            cells.append(f"{name} failed: {record['error']}")
    return "; ".join(cells)


def format_table(results: list[dict], pytorch_map: dict) -> str:
    """One row per format: the table docs/deployment.md quotes."""
    rows = []
    for result in results:
        fmt = BY_ARG[result["format"]]
        installed, exported, fused, runs = _state(result)
        ms = f"{_ms(_model(result, REP))} / {_ms(_model(result, BASE))}"
        rows.append([f"{fmt.title} (`{fmt.arg}`)", installed, exported, fused, runs, _difference(result), ms,
                     _int8(result, pytorch_map), fmt.install])
    return table(["format", "installs here", "exported", "fused (plugin check; graph)", "runs here",
                  "max difference vs PyTorch (EfficientRep-n)", "ms EfficientRep-n / yolov8n", "INT8 mAP50-95",
                  "to install"], rows, align="---")


def detail_table(results: list[dict]) -> str:
    """One row per format and model: export time and size, graph, raw and detection differences, latency."""
    rows = []
    for result in results:
        for record in result.get("models", []):
            if not record.get("exported"):
                rows.append([result["format"], record["model"], f"export failed: {record.get('error', '?')}",
                             *["-"] * 5])
                continue
            graph = record.get("graph") or {}
            raw, det = record.get("raw"), record.get("detections")
            rows.append([
                result["format"], record["model"], f"{record['seconds']} s, {record['megabytes']} MB",
                f"{graph['convs']} convs, {graph['norms']} BN (PyTorch {record['pytorch_convs']})"
                if "convs" in graph else graph.get("error", "not readable"),
                f"boxes {raw['box_abs']:.2g} px ({raw['box_rel']:.1e}), scores {raw['score_abs']:.1e} "
                f"({raw['score_rel']:.1e})" if raw else record.get("raw_note", record.get("run_error", "-")),
                f"{det['boxes']} boxes, {det['unmatched']} unmatched, {det['box_px']:.2g} px, score "
                f"{det['score']:.1e}" if det else "-",
                _ms(record),
                record.get("fusion_check", "") or "-",
            ])
    return table(["format", "model", "export", "graph", "raw difference (relative)", "detections after NMS",
                  "ms", "plugin's fusion check"], rows, align="---")


def ncnn_table(results: list[dict]) -> str:
    """Raw relative difference of each NCNN precision option per model, and the models' ranges."""
    study = next((r.get("ncnn_precision") for r in results if r["format"] == "ncnn"), None)
    if not study:
        return "NCNN was not run."
    names = list(study)
    variants = list(study[names[0]]["variants"])
    rows = []
    for variant in variants:
        cells = []
        for name in names:
            v = study[name]["variants"][variant]
            cells.append(f"boxes {v['box_rel']:.1e}, scores {v['score_rel']:.1e} ({v['score_abs']:.1e} abs)")
        rows.append([variant, *cells])
    for key in study[names[0]]["ranges"]:
        rows.append([f"fused model's {key}", *(f"{study[n]['ranges'][key]:.3g}" for n in names)])
    return table(["NCNN option", *names], rows, align="---")


def versions_table(results: list[dict]) -> str:
    """The packages each format ran with, and the Python environment it ran in."""
    rows = [[BY_ARG[r["format"]].title, ", ".join(f"{k} {v}" for k, v in r.get("versions", {}).items()) or "-",
             r.get("python", "-")] for r in results]
    return table(["format", "packages", "Python"], rows)


def one_line(result: dict) -> str:
    """A progress line: the format's state for both models."""
    if not result.get("installed", False):
        return f"not installed ({', '.join(result.get('missing', []))})"
    if "error" in result:
        return result["error"]
    parts = []
    for record in result.get("models", []):
        if not record.get("exported"):
            parts.append(f"{record['model']} export failed: {record.get('error')}")
        else:
            raw, ran = record.get("raw"), record.get("runs")
            parts.append(f"{record['model']} exported, raw {max(raw['box_rel'], raw['score_rel']):.1e}, "
                         f"{_ms(record)} ms" if raw else f"{record['model']} exported, "
                         f"{'ran, ' + _ms(record) + ' ms' if ran else 'not run'}")
    return "; ".join(parts)
