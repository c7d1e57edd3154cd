"""Tables (console and markdown) and the plot for ``model_bench.bench_model`` results."""
from __future__ import annotations

KIND_NAME = {"conv": "CNN", "adder": "AdderNet"}


def num(n: float) -> str:
    """A count with 3 significant digits and a k/M/G suffix."""
    if n == 0:
        return "0"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.3g}"


def ratio(a, b) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.3g}"


def table(header: list[str], rows: list[list[str]], md: bool = False) -> str:
    if md:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])


def _shape(s) -> str:
    return "x".join(map(str, s[1:]))


def _ms(t: dict | None) -> str:
    if t is None:
        return "-"
    # With fewer than 4 samples there is no interquartile range to show.
    return f"{t['median_ms']:.3g}" + (f" ±{100 * t['spread']:.0f}%" if t["samples"] >= 4 else "")


def layer_table(res: dict, md: bool = False) -> str:
    kinds, names = res["kinds"], res["backends"]
    header = ["layer", "in -> out"]
    for k in kinds:
        header += [f"{KIND_NAME[k]} mults", f"{KIND_NAME[k]} adds"] + (["abs"] if k == "adder" else [])
    timed = any("latency" in r for r in res["layers"])
    cands = (["conv"] if "conv" in kinds else []) + (names if "adder" in kinds else [])
    if timed:
        header += [f"fwd ms {c}" for c in cands]
        if len(kinds) == 2:
            header += [f"{be}/conv {mode}" for be in names for mode in ("fwd", "train")]
    rows = []
    for r in res["layers"]:
        row = [r["name"], f"{_shape(r['in_shape'])} -> {_shape(r['out_shape'])}"]
        for k in kinds:
            row += [num(r[k]["mults"]), num(r[k]["adds"])] + ([num(r[k]["abs"])] if k == "adder" else [])
        if timed:
            lat = r.get("latency")
            row += [_ms(lat["fwd"][c]) if lat else "same" for c in cands]
            if len(kinds) == 2:
                for be in names:
                    for mode in ("fwd", "train"):
                        row.append(ratio(lat[mode][be]["median_ms"], lat[mode]["conv"]["median_ms"]) if lat else "same")
        rows.append(row)
    return table(header, rows, md)


def other_table(res: dict, md: bool = False) -> str:
    """Operations outside the weight layers, by module type."""
    header = ["ops outside weight layers"] + [f"{KIND_NAME[k]} {c}" for k in res["kinds"] for c in ("mults", "adds", "cmps")]
    types = [t for t in dict.fromkeys(t for k in res["kinds"] for t in res["counts"][k]["by_type"])
             if t not in ("conv", "adder", "linear")]
    rows = []
    for t in types:
        row = [t]
        for k in res["kinds"]:
            c = res["counts"][k]["by_type"].get(t, {"mults": 0, "adds": 0, "cmps": 0})
            row += [num(c["mults"]), num(c["adds"]), num(c["cmps"])]
        rows.append(row)
    return table(header, rows, md)


def summary_table(res: dict, md: bool = False) -> str:
    kinds = res["kinds"]
    both = len(kinds) == 2
    header = ["per image" if res["latency"] is None else f"per image; latency/memory at batch {res['batch_size']}"]
    header += [KIND_NAME[k] for k in kinds] + (["AdderNet/CNN"] if both else [])
    rows = []

    def add(label, vals, fmt):
        rows.append([label] + [fmt(v) if v is not None else "-" for v in vals]
                    + ([ratio(vals[1], vals[0])] if both else []))

    c = {k: res["counts"][k] for k in kinds}
    for key, label in (("mults", "multiplications"), ("adds", "additions"), ("abs", "absolute values"),
                       ("cmps", "comparisons")):
        add(label, [c[k]["totals"][key] for k in kinds], num)
    add("mults in weight layers", [c[k]["weight_layers"]["mults"] for k in kinds], num)
    add("adds in weight layers", [c[k]["weight_layers"]["adds"] for k in kinds], num)
    add(f"energy µJ ({res['dtype']})", [c[k]["energy_uJ"] for k in kinds], lambda v: f"{v:.4g}")
    for tname, cost in res.get("costs", {}).items():
        for part, label in (("total", ""), ("weight_layers", ", weight layers")):
            add(f"{cost['unit']} ({tname}{label})", [cost["per_kind"][k][part] for k in kinds], num)
    if res["latency"] is not None:
        # One group of rows per adder backend, named in brackets; the CNN alone has no backend.
        for be in res["backends"] if "adder" in kinds else [None]:
            tag = f" [{be}]" if be else ""
            for mode, label in (("fwd", "inference ms"), ("train", "train step ms")):
                lat = res["latency"][mode]
                vals = [lat.get("conv") if k == "conv" else lat.get(be) for k in kinds]
                rows.append([f"{label}{tag}"] + [_ms(v) for v in vals]
                            + ([ratio(*(v and v["median_ms"] for v in vals[::-1]))] if both else []))
            for mode, label in (("fwd", "peak memory MiB, inference"), ("train", "peak memory MiB, train step")):
                mem = res["memory"][mode]
                add(f"{label}{tag}", [mem.get("conv") if k == "conv" else mem.get(be) for k in kinds],
                    lambda v: f"{v / 2**20:.3g}")
    return table(header, rows, md)


def header_lines(res: dict) -> list[str]:
    m = res["machine"]
    lines = [f"addernet bench: {res['model']}, input {'x'.join(map(str, res['input_shape']))}, counts per image"
             + (", BatchNorm folded" if res["fold_bn"] else "")]
    if res["latency"] is not None:
        s = res["latency_setup"]
        lines.append(f"latency: batch {res['batch_size']}, {res['device']}, float32, {res['threads']} threads, "
                     f"adder backends {', '.join(res['backends']) or 'none'}; median ± half-IQR of up to "
                     f"{s['repeats']} interleaved runs (per layer {2 * s['repeats']}) after {s['warmup']} warm-up ({s['timer']})")
        lines.append(f"peak memory: {s['memory_method']}")
    lines.append(f"machine: {m['cpu']} [{' '.join(m['simd'])}]" + (f", GPU {m['gpu']}" if m["gpu"] else "")
                 + f"; torch {m['torch']}, addernet {m['addernet']}")
    lines.append(f"energy table: {res['energy_citation']}; abs and comparisons priced as adds")
    for tname, cost in res.get("costs", {}).items():
        lines.append(f"cost table {tname}: {cost['citation']}")
    return lines


def console(res: dict) -> str:
    parts = ["\n".join(header_lines(res)), res["convention"],
             "Per weight layer (ratios: adder backend / conv, medians; 'same': the layer is a conv in both kinds):",
             layer_table(res), other_table(res), summary_table(res)]
    if "int8" in res:
        from .int8 import int8_table

        parts.append(int8_table(res))
    if res["notes"]:
        parts.append("notes:\n" + "\n".join(f"- {n}" for n in res["notes"]))
    return "\n\n".join(parts) + "\n"


def markdown(res: dict) -> str:
    parts = [f"## {res['model']}", "\n".join(f"- {line}" for line in header_lines(res)),
             "```\n" + res["convention"] + "\n```", "### Summary", summary_table(res, True),
             "### Per weight layer", layer_table(res, True), "### Outside the weight layers", other_table(res, True)]
    if res["notes"]:
        parts.append("\n".join(f"- {n}" for n in res["notes"]))
    return "\n\n".join(parts) + "\n"


def ratio_band(a: dict, b: dict) -> tuple[float, float, float]:
    """(ratio of medians a/b, how far below, how far above): the error bar of a latency ratio.
    Each timing's spread is half its interquartile range relative to its median; the two are added
    in quadrature (the usual propagation for a quotient) and applied as a factor, so the bar is
    symmetric on the log axis. No bar when either has fewer than 4 samples (no IQR)."""
    r = a["median_ms"] / b["median_ms"]
    if min(a.get("samples", 0), b.get("samples", 0)) < 4:
        return r, 0.0, 0.0
    f = 1.0 + (a["spread"] ** 2 + b["spread"] ** 2) ** 0.5
    return r, r - r / f, r * f - r


def plot(res: dict, path: str) -> None:
    """Per layer: grouped bars of mults and adds per kind; below, the adder/conv latency ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    layers, kinds = res["layers"], res["kinds"]
    ratios = len(kinds) == 2 and any("latency" in r for r in layers)
    n = len(layers)
    fig, axes = plt.subplots(2 if ratios else 1, 1, figsize=(max(8.0, 0.32 * n + 3), 8 if ratios else 5),
                             sharex=True, squeeze=False, gridspec_kw={"height_ratios": [3, 2] if ratios else [1]})
    ax = axes[0, 0]
    bars = [(k, key) for k in kinds for key in ("mults", "adds")]
    colors = {("conv", "mults"): "#d62728", ("conv", "adds"): "#ff9896",
              ("adder", "mults"): "#1f77b4", ("adder", "adds"): "#aec7e8"}
    width = 0.8 / len(bars)
    for j, (k, key) in enumerate(bars):
        xs = [i + (j - (len(bars) - 1) / 2) * width for i in range(n)]
        ax.bar(xs, [r[k][key] / 1e6 for r in layers], width, label=f"{KIND_NAME[k]} {key}", color=colors[(k, key)])
    ax.set_ylabel("operations per image (millions)")
    ax.set_title(f"{res['model']}: multiplications and additions per layer "
                 f"(input {'x'.join(map(str, res['input_shape']))})")
    top = max(r[k][key] for r in layers for k, key in bars) / 1e6
    ax.set_ylim(0, top * 1.18)  # headroom so the legend sits above the bars
    ax.legend(ncol=len(bars), fontsize=8, loc="upper center")
    ax.grid(axis="y", alpha=0.3)
    if ratios:
        rx = axes[1, 0]
        marks = {"fwd": "o", "train": "s"}
        series = [(b, be, mode) for b, be in enumerate(res["backends"]) for mode in ("fwd", "train")]
        bands = []
        for j, (b, be, mode) in enumerate(series):
            shift = (j - (len(series) - 1) / 2) * 0.1  # side by side, so that the bars do not hide each other
            pts = [(i + shift, *ratio_band(r["latency"][mode][be], r["latency"][mode]["conv"]))
                   for i, r in enumerate(layers) if "latency" in r]
            xs, ys, lo, hi = zip(*pts)
            bands += [(y - d, y + u) for y, d, u in zip(ys, lo, hi)]
            rx.errorbar(xs, ys, yerr=[lo, hi], fmt=marks[mode], ls="none", color=f"C{b}", capsize=2, elinewidth=1,
                        mfc="none" if mode == "train" else None, ms=7,
                        label=f"{be} / conv, {'inference' if mode == 'fwd' else 'fwd+bwd'}")
        rx.axhline(1.0, color="gray", lw=1)
        rx.set_yscale("log")
        low, high = min(b[0] for b in bands), max(b[1] for b in bands)
        rx.set_ylim(min(0.25, low / 1.3), max(4.0, high * 1.3))  # the whole bars, and a few labelled ticks
        # Plain numbers (0.3, 0.5, 1, 2) read better than powers of ten for ratios near 1.
        rx.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
        rx.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        rx.yaxis.set_minor_formatter(ticker.NullFormatter())
        rx.set_ylabel("latency ratio adder / conv")
        rx.set_title(f"per-layer latency, batch {res['batch_size']}, {res['device']}, {res['threads']} threads "
                     "(bars: half-IQR spreads of both, combined; layers that are convs in both kinds: not shown)",
                     fontsize=8)
        rx.legend(fontsize=8)
        rx.grid(axis="y", which="both", alpha=0.3)
    bottom = axes[-1, 0]
    bottom.set_xticks(range(n))
    bottom.set_xticklabels([r["name"] for r in layers], rotation=90, fontsize=7)
    bottom.set_xlim(-0.6, n - 0.4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
