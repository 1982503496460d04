"""From the interleaved wrk runs to the comparison: medians over rounds, ours ÷ TorchServe per round
(then the median), the issue's target at concurrency 8, and the markdown table. Pure: no servers.

A run is bench.http_load.wrk's dict (requests_per_s, latency_ms p50/p99, non_2xx_or_errors).
rounds: [{"ours": {"predict": {c: run}, "floor": {c: run}}, "torchserve": {...}}, ...], c a string.
"""
from __future__ import annotations

import json
import statistics

TARGET_RATIO_C8 = 1.5  # issue 16: at least 1.5x tuned TorchServe's requests/s at concurrency 8, p99 no worse
SERVERS = ("ours", "torchserve")


def _median(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 2) if xs else None


def _ratio(a, b):
    return a / b if a and b else None


def answered_digit(body: str) -> int:
    """The digit in a server's answer: ours is a JSON object with "digit", the handler's a bare number."""
    value = json.loads(body)
    return int(value["digit"] if isinstance(value, dict) else value)


def summarize(rounds: list[dict]) -> dict:
    """Per kind (predict, floor) and concurrency: each server's median req/s, p50, p99 and errors,
    and the median of the per-round ours ÷ TorchServe req/s ratios."""
    out = {}
    for kind in ("predict", "floor"):
        out[kind] = {}
        for c in rounds[0]["ours"][kind]:
            runs = {s: [r[s][kind][c] for r in rounds] for s in SERVERS}
            row = {s: {"requests_per_s": _median([x.get("requests_per_s") for x in runs[s]]),
                       "p50_ms": _median([x.get("latency_ms", {}).get("p50") for x in runs[s]]),
                       "p99_ms": _median([x.get("latency_ms", {}).get("p99") for x in runs[s]]),
                       "errors": sum(x.get("non_2xx_or_errors", 0) if "error" not in x else 1 for x in runs[s])}
                   for s in SERVERS}
            per_round = [_ratio(a.get("requests_per_s"), b.get("requests_per_s")) for a, b in zip(runs["ours"], runs["torchserve"])]
            row["ours_over_torchserve"] = _median(per_round)
            row["ours_over_torchserve_rounds"] = [round(x, 2) if x else None for x in per_round]
            out[kind][c] = row
    c8 = out["predict"].get("8")
    if c8:
        ratio, p99 = c8["ours_over_torchserve"], (c8["ours"]["p99_ms"], c8["torchserve"]["p99_ms"])
        out["target_c8"] = {"ratio": ratio, "ratio_target": TARGET_RATIO_C8, "p99_ms": {"ours": p99[0], "torchserve": p99[1]},
                            "met": bool(ratio and ratio >= TARGET_RATIO_C8 and None not in p99 and p99[0] <= p99[1])}
    return out


def _fmt(x, unit=""):
    return "–" if x is None else f"{x:,.0f}{unit}" if abs(x) >= 100 else f"{x:g}{unit}"


def _trained(prep: dict) -> str:
    if prep.get("reused"):
        return f"the archive {prep['mar']} from an earlier run"
    return f"the net trained here for one epoch of {prep['train_images']:,} images (test accuracy {prep['test_accuracy']})"


def _settings(settings) -> str:
    """How our server ran: the make serve defaults, or the settings given (e.g. FRONT=nginx,THREADS=1)."""
    if not settings:
        return "`make serve` defaults"
    return "`" + ",".join(f"{k}={v}" for k, v in settings.items()) + "`"


def markdown(result: dict) -> str:
    s, m = result["summary"], result["machine"]
    lines = [f"# TorchServe's MNIST example against this server ({result['started']})", "",
             f"CPU: {m['cpu']}, {m['cores']} cores; flags: {' '.join(m['cpu_flags'])}; "
             f"load average at start {m['load_avg'][0]:.1f}, at end {result['load_avg_end'][0]:.1f}.",
             f"Same {result['png_bytes']}-byte 28x28 PNG as an image/png body to both; {result['rounds']} interleaved rounds of "
             f"{result['duration_s']:g} s per setting, medians. TorchServe {result['torchserve']['version']}: "
             f"{result['torchserve']['workers']} workers, OMP_NUM_THREADS={result['torchserve']['omp_num_threads']}, "
             f"{_trained(result['prepare'])}. Ours: {_settings(result.get('ours_settings'))}, the committed model. "
             f"Digit answered: ours {result['answers']['ours']}, TorchServe {result['answers']['torchserve']}.", "",
             "| concurrency | ours req/s | TorchServe req/s | ours ÷ TorchServe | ours p50 / p99 | TorchServe p50 / p99 | errors ours / TS |",
             "|---|---|---|---|---|---|---|"]
    for c, row in s["predict"].items():
        o, t = row["ours"], row["torchserve"]
        lines.append(f"| {c} | {_fmt(o['requests_per_s'])} | {_fmt(t['requests_per_s'])} | **{_fmt(row['ours_over_torchserve'], '×')}** | "
                     f"{_fmt(o['p50_ms'])} / {_fmt(o['p99_ms'], ' ms')} | {_fmt(t['p50_ms'])} / {_fmt(t['p99_ms'], ' ms')} | "
                     f"{o['errors']} / {t['errors']} |")
    lines += ["", "HTTP floor (ours `/healthz`, TorchServe `/ping`):", "",
              "| concurrency | ours req/s | TorchServe req/s | ours ÷ TorchServe | ours p99 | TorchServe p99 |", "|---|---|---|---|---|---|"]
    for c, row in s["floor"].items():
        o, t = row["ours"], row["torchserve"]
        lines.append(f"| {c} | {_fmt(o['requests_per_s'])} | {_fmt(t['requests_per_s'])} | {_fmt(row['ours_over_torchserve'], '×')} | "
                     f"{_fmt(o['p99_ms'], ' ms')} | {_fmt(t['p99_ms'], ' ms')} |")
    tg = s.get("target_c8")
    if tg:
        lines += ["", f"Target at concurrency 8: ours ÷ TorchServe ≥ {tg['ratio_target']}× with p99 no worse — "
                      f"{'**met**' if tg['met'] else '**not met**'} ({_fmt(tg['ratio'], '×')}; p99 {_fmt(tg['p99_ms']['ours'], ' ms')} "
                      f"against {_fmt(tg['p99_ms']['torchserve'], ' ms')})."]
    return "\n".join(lines) + "\n"
