"""docs/bench/time-per-page.png from docs/bench/report.json (vinscan-bench's report, format 5):
median seconds per page against the number of images the encoder sees, for vinscan and each peer."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def median(xs):
    xs = sorted(x for x in xs if x == x)
    n = len(xs)
    return float("nan") if n == 0 else (xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2)


def main():
    report, out = json.load(open(sys.argv[1])), sys.argv[2]
    if report.get("format") != 5:
        sys.exit(f"{sys.argv[1]}: report format {report.get('format')}, this plot reads format 5")
    settings = report["settings"]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    real, free = settings["real_tokens"], settings["tokens"]
    pts = {f"vinscan (warm), schema, ≤{real} tokens": [],
           f"llama-mtmd-cli compute, schema, ≤{real} tokens": [],
           f"llama-mtmd-cli wall (with load), schema": [],
           f"vinscan, free string, {free} tokens": [],
           f"llama-mtmd-cli compute, free string, {free} tokens": [],
           f"transformers, {free} tokens": [],
           "Tesseract (OCR only)": []}
    keys = list(pts)
    by_name = {}
    for p in report["per_page"]:
        n = p["unit"]["images"]
        by_name[p["unit"]["name"]] = n
        pts[keys[0]].append((n, median([r["total"] for r in p["vinscan"]]) / 1e3))
        pts[keys[1]].append((n, median([r["compute"] for r in p["mtmd"]]) / 1e3))
        pts[keys[2]].append((n, median([r["wall"] for r in p["mtmd"]]) / 1e3))
    for p in report["parity"]:
        n = p["unit"]["images"]
        pts[keys[3]].append((n, median([r["total"] for r in p["vinscan"]]) / 1e3))
        pts[keys[4]].append((n, median([r["compute"] for r in p["mtmd"]]) / 1e3))
    for t in (report["transformers"] or {}).get("pages", []):
        pts[keys[5]].append((by_name[t["page"]], t["result"]["total_ms"] / 1e3))
    for t in report["tesseract"] or []:
        pts[keys[6]].append((by_name[t["page"]], t["ms"] / 1e3))
    markers = ["o", "s", "^", "v", "<", "D", "x"]
    for (label, xy), m in zip(pts.items(), markers):
        if xy:
            xy.sort()
            ax.plot([x for x, _ in xy], [y for _, y in xy], marker=m, linestyle="-" if len(xy) > 1 else "", label=label)
    ax.set_xlabel("images per page (tiles + thumbnail)")
    ax.set_ylabel("seconds per page")
    projector = report["files"]["mmproj_type"]
    ax.set_title(
        f"Time per page, {report['machine']['cores']} cores, {settings['threads']} threads per peer\n"
        f"q8_0 LLM, {projector} projector"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    main()
