"""The bench result as markdown tables, and the serving targets checked against it."""
from __future__ import annotations

TARGETS = {
    "efficiency": 0.5,  # /predict requests/s at least half of /healthz's, at concurrency 8
    "p99_ms_c8": 20.0,  # /predict p99 latency at concurrency 8
    "batch_images_per_s": 5000.0,  # images/s with batches of 64
    "rss_growth_mib": 2.0,  # worker RSS growth over the second half of the soak
    "slow_clients_p99_ms": 100.0,  # /predict p99 at concurrency 8 with 64 trickling clients open, no failures
    "v2_over_predict": 0.9,  # /v2 infer with image_bytes: requests/s within 10% of /predict's, at concurrency 8
}


def _servers(result: dict) -> list[dict]:
    http = result.get("sections", {}).get("http", {})
    return [s for s in http.get("servers", []) if "error" not in s]


def targets(result: dict) -> list[dict]:
    """One row per target and server setting: measured value and whether it is met."""
    rows = []
    for s in _servers(result):
        c8 = s.get("predict", {}).get("8", {})
        batch = [r.get("images_per_s") for r in s.get("predict_batch", {}).get("by_concurrency", {}).values() if r.get("images_per_s")]
        growth = list(s.get("memory", {}).get("rss_growth_second_half_mib", {}).values())
        checks = [
            ("/predict ÷ /healthz requests/s at c=8", s.get("efficiency", {}).get("8"), f">= {TARGETS['efficiency']}",
             lambda v: v >= TARGETS["efficiency"]),
            ("/predict p99 at c=8 (ms)", c8.get("latency_ms", {}).get("p99"), f"<= {TARGETS['p99_ms_c8']}",
             lambda v: v <= TARGETS["p99_ms_c8"]),
            (f"images/s, batches of {s.get('predict_batch', {}).get('batch')}", max(batch) if batch else None,
             f">= {TARGETS['batch_images_per_s']:.0f}", lambda v: v >= TARGETS["batch_images_per_s"]),
            (f"/predict p99 at c=8, {s.get('slow_clients', {}).get('slow_clients')} trickling clients open (ms)",
             s.get("slow_clients", {}).get("latency_ms", {}).get("p99"), f"<= {TARGETS['slow_clients_p99_ms']:.0f}, no errors",
             lambda v: v <= TARGETS["slow_clients_p99_ms"] and not s["slow_clients"].get("non_2xx_or_errors")),
            ("/v2 image_bytes ÷ /predict requests/s at c=8", s.get("v2_over_predict", {}).get("8"),
             f">= {TARGETS['v2_over_predict']}", lambda v: v >= TARGETS["v2_over_predict"]),
            ("/v2 image_bytes ÷ /predict images/s, batches", max(s.get("v2_batch", {}).get("v2_over_predict", {}).values(), default=None),
             f">= {TARGETS['v2_over_predict']}", lambda v: v >= TARGETS["v2_over_predict"]),
            ("worker RSS growth, 2nd half of soak (MiB)", max(growth) if growth else None,
             f"<= {TARGETS['rss_growth_mib']}", lambda v: v <= TARGETS["rss_growth_mib"] and s["memory"].get("workers_unchanged", False)),
        ]
        for name, value, want, ok in checks:
            rows.append({"server": s["label"], "target": name, "want": want, "measured": value,
                         "met": bool(ok(value)) if value is not None else None})
    return rows


def _fmt(v):
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 10 else f"{v:,.0f}" if abs(v) >= 1000 else f"{v:,.1f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return out + [""]


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"# Bench {result['started']}{' (quick: smoke run, numbers not meaningful)' if result['quick'] else ''}", "",
             f"{m['cpu']} ({m['cpu_vendor']}), {m['cores']} cores, {m['memory_gb']} GB; "
             f"flags: {' '.join(m.get('cpu_flags', [])) or 'unknown'}; load average at start "
             f"{', '.join(f'{x:.2f}' for x in m['load_avg'])}, at end {', '.join(f'{x:.2f}' for x in result.get('load_avg_end', []))}. "
             f"git {result['git'].get('commit')}{' (dirty)' if result['git'].get('dirty') else ''}; "
             + ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v), ""]
    sec = result["sections"]

    if "train" in sec and "models" in sec["train"]:
        t = sec["train"]
        lines += [f"## Training throughput (batch {t['batch_size']}, images/s, median of {t['rounds']} interleaved rounds)", ""]
        rows = []
        for model, data in t["models"].items():
            for name, r in data["configs"].items():
                label = f"{name} ({r['framework']})" if r.get("framework") else name
                rows.append([model, label, r["images_per_s_median"], ", ".join(f"{x:.0f}" for x in r["rounds"])])
            rows.append([model, "**after ÷ before** (per round)", f"**{data['after_over_before']}×**" if data["after_over_before"] else "–",
                         ", ".join(f"{x}" for x in data.get("after_over_before_rounds", []))])
            if data.get("best_paddle_over_best_torch") is not None:
                rows.append([model, "**best Paddle ÷ best PyTorch**, no augmentation (per round)",
                             f"**{data['best_paddle_over_best_torch']}×**",
                             ", ".join(f"{x}" for x in data.get("best_paddle_over_best_torch_rounds", []))])
        lines += _table(["model", "setting", "images/s", "rounds"], rows)
        for tt in t.get("time_to_99", []):
            if tt.get("reached"):
                lines += [f"Time to ≥ 99% validation accuracy: **{tt['wall_s']:.0f} s** (epoch {tt['epoch']}, wall clock since the "
                          f"trainer started: data, non-digits and validations included) in `{tt['run']}`.", ""]
            else:
                lines += [f"Time to ≥ 99% validation accuracy: {tt.get('skipped') or 'not reached in ' + tt.get('run', '?')}.", ""]

    if "model" in sec and "runs" in sec["model"]:
        lines += ["## Model only (one process per row; images/s; latency over single-image calls after warm-up)", ""]
        rows = []
        batches = sorted({b for r in sec["model"]["runs"] for b in r.get("throughput", {})}, key=int)
        for r in sec["model"]["runs"]:
            if "error" in r:
                rows.append([r.get("engine", "?"), "–", "–", "error", "", *["" for _ in batches], ""])
                continue
            name = {"inference": "Paddle Inference", "dygraph": "Paddle dygraph", "onnxruntime": "ONNX Runtime"}[r["engine"]]
            if r["engine"] == "inference":
                name += f", oneDNN {r['onednn']}" + (", IR optimisation off" if r.get("ir_optim") == "off" else "")
            lat = r["latency_batch1"]
            rows.append([name, r["threads"], lat.get("median_ms"), lat.get("p99_ms"),
                         *[r["throughput"].get(b, {}).get("images_per_s") for b in batches], r.get("python_share")])
        lines += _table(["engine", "threads", "batch 1 median ms", "batch 1 p99 ms", *[f"batch {b} img/s" for b in batches],
                         "Python beside it"], rows)
        lines += ["Python beside it: a pure-Python loop's speed while another thread runs the engine at batch 64, over "
                  "its speed alone (1: the engine releases the GIL; 0.5: shares it like Python; less: holds it). "
                  "In a threaded worker, what request threads get while the batcher runs the model.", ""]
        ratios = sec["model"].get("paddle_over_onnxruntime", {})
        if ratios:
            lines += [f"Paddle Inference (oneDNN on, the serving default) ÷ ONNX Runtime, medians of per-round ratios "
                      f"over {sec['model'].get('rounds')} interleaved rounds (target <= 1.25):", ""]
            lines += _table(["threads", "batch 1 latency", "batch 64 time per image"],
                            [[t, r["batch 1 latency"], r["batch 64 time per image"]] for t, r in ratios.items()])

    if "preprocess" in sec and "error" not in sec["preprocess"]:
        lines += ["## Preprocessing per image (decode + serve/preprocess.py, one core)", ""]
        rows = []
        for kind, r in sec["preprocess"].items():
            if not isinstance(r, dict) or "total" not in r:
                continue
            st = r["stages_median_ms"]
            rows.append([kind, r["pixels_median"], r["bytes_median"], r["total"]["median_ms"], r["total"]["p99_ms"],
                         st["decode"], st["to_gray"], st["preprocess"], r["images_per_s_one_core"]])
        lines += _table(["upload", "pixels", "bytes", "median ms", "p99 ms", "decode ms", "to_gray ms", "preprocess ms", "images/s"], rows)

    if "app" in sec and "error" not in sec["app"]:
        lines += ["## One request's CPU time, in-process (Flask test client, one core, medians in ms)", ""]
        kinds = [k for k, v in sec["app"].items() if isinstance(v, dict) and "steps_ms" in v]
        step_names = list(sec["app"][kinds[0]]["steps_ms"]) if kinds else []
        rows = [["GET /healthz (whole request)", *[sec["app"][k]["healthz_ms"] for k in kinds]],
                ["POST /predict, one image (whole request)", *[sec["app"][k]["predict_ms"] for k in kinds]],
                *[[f"– {n}", *[sec["app"][k]["steps_ms"][n] for k in kinds]] for n in step_names],
                ["– Flask, logging, metrics, test client (the rest)", *[sec["app"][k]["framework_and_rest_ms"] for k in kinds]],
                ["/predict ÷ /healthz cost", *[sec["app"][k]["predict_over_healthz_cost"] for k in kinds]],
                ["batch of 64: images/s on one core", *[sec["app"][k]["batch_64_images_per_s_one_core"] for k in kinds]]]
        lines += _table(["", *[f"{k} ({sec['app'][k]['png_bytes']} bytes)" for k in kinds]], rows)

    if "http" in sec:
        lines += ["## HTTP (gunicorn on 127.0.0.1, wrk with 1 thread on the same cores)", ""]
        if sec["http"].get("skipped"):
            lines += [f"Skipped: {sec['http']['skipped']}", ""]
        for s in sec["http"].get("servers", []):
            lines += [f"### Server: {s.get('label', s.get('server'))}", ""]
            if "error" in s:
                lines += [f"Error: {s['error']}", ""]
                continue
            rows = []
            for c in s["predict"]:
                h, pr = s["healthz"].get(c, {}), s["predict"][c]
                rows.append([int(c), h.get("requests_per_s"), h.get("latency_ms", {}).get("p99"), pr.get("requests_per_s"),
                             pr.get("latency_ms", {}).get("p50"), pr.get("latency_ms", {}).get("p99"), f"{s['efficiency'].get(c, 0):.3f}",
                             pr.get("non_2xx_or_errors", 0) + h.get("non_2xx_or_errors", 0)])
            lines += [f"{s['workers']} workers; one {s['image']} of {s['png_bytes']} bytes per /predict.", ""]
            lines += _table(["concurrency", "/healthz req/s", "/healthz p99 ms", "/predict req/s", "/predict p50 ms", "/predict p99 ms",
                             "/predict ÷ /healthz", "errors"], rows)
            if s.get("v2"):
                lines += _table(["concurrency", "/v2 image_bytes req/s", "p50 ms", "p99 ms", "÷ /predict req/s", "errors"],
                                [[int(c), r.get("requests_per_s"), r.get("latency_ms", {}).get("p50"), r.get("latency_ms", {}).get("p99"),
                                  s.get("v2_over_predict", {}).get(c), r.get("non_2xx_or_errors")] for c, r in s["v2"].items()])
            pb = s["predict_batch"]
            lines += _table([f"batch of {pb['batch']}: concurrency", "requests/s", "images/s", "p50 ms", "p99 ms", "errors"],
                            [[int(c), r.get("requests_per_s"), r.get("images_per_s"), r.get("latency_ms", {}).get("p50"),
                              r.get("latency_ms", {}).get("p99"), r.get("non_2xx_or_errors")] for c, r in pb["by_concurrency"].items()])
            vb = s.get("v2_batch")
            if vb:
                lines += _table([f"/v2 batch of {vb['batch']}: concurrency", "requests/s", "images/s", "÷ /predict", "p99 ms", "errors"],
                                [[int(c), r.get("requests_per_s"), r.get("images_per_s"), vb["v2_over_predict"].get(c),
                                  r.get("latency_ms", {}).get("p99"), r.get("non_2xx_or_errors")] for c, r in vb["by_concurrency"].items()])
            sc = s.get("slow_clients")
            if sc:
                lines += [f"With {sc.get('slow_clients')} slow clients trickling their bodies: /predict at concurrency 8 "
                          f"{_fmt(sc.get('requests_per_s'))} req/s, p99 {_fmt(sc.get('latency_ms', {}).get('p99'))} ms, "
                          f"{sc.get('non_2xx_or_errors')} errors or timeouts.", ""]
            mem = s["memory"]
            rows = [[pid, mem["after_warmup"][pid].get("rss_mib"), mem["after_half_soak"][pid].get("rss_mib"),
                     mem["after_soak"][pid].get("rss_mib"), mem["after_soak"][pid].get("pss_mib")] for pid in mem["after_soak"]]
            lines += [f"Memory: {mem['soak_requests']:,} /predict requests after warm-up ({mem['soak_errors']} errors); "
                      f"workers {'unchanged' if mem['workers_unchanged'] else 'REPLACED during the soak'}.", ""]
            lines += _table(["worker pid", "RSS MiB after warm-up", f"after {mem['soak_requests'] // 2:,}", f"after {mem['soak_requests']:,}",
                             "PSS MiB at end"], rows)

    comparison = sec.get("http", {}).get("comparison", {})
    if comparison.get("after_over_before"):
        lines += [f"### After ÷ before (before: {comparison['before']}; same run)", ""]
        keys = list(next(iter(comparison["after_over_before"].values())))
        lines += _table(["server", *[k.replace("_", " ") for k in keys]],
                        [[label, *[r[k] for k in keys]] for label, r in comparison["after_over_before"].items()])

    if result.get("targets"):
        lines += ["## Targets", ""]
        lines += _table(["server", "target", "want", "measured", "met"],
                        [[r["server"], r["target"], r["want"], r["measured"], {True: "yes", False: "**no**", None: "–"}[r["met"]]]
                         for r in result["targets"]])
    errors = [f"{k}: {v['error']}" for k, v in sec.items() if isinstance(v, dict) and "error" in v]
    if errors:
        lines += ["## Errors", "", *[f"- {e}" for e in errors], ""]
    return "\n".join(lines)
