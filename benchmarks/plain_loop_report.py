"""Tables for benchmarks/plain_loop.py: plain_loop.json and the RESULTS.md section (issue 22)."""
from __future__ import annotations

import json
import os
import statistics
from collections import defaultdict

SECTION = "## 11. Plain-loop training: eval mode and optimisers (issue 22)"
MODELS = {"lenet": "LeNet-5-BN (all adder)", "resnet20": "ResNet-20 (1x32x32)", "usercnn": "user CNN via convert"}
OPTS = {"sgd": "SGD 0.05 constant", "step": "SGD 0.05 StepLR", "adam": "Adam 1e-3", "adamw": "AdamW 1e-3"}
OPTIONS = {
    "none": "none (the code before)",
    "center_absw": "offset sum abs(w)",
    "center": "offset sum abs(w - mu) (chosen)",
    "center_inmean": "offset sum abs(w - mu) (prototype hooks)",
    "mom0.5": "BN momentum 0.5",
    "precise": "precise-BN each epoch (20 batches)",
}


def _option(row) -> str:
    # Rows written before the library's centring used sum|w - mu| (no "centering" field) had
    # 'center' = sum|w| and 'center_inmean' = the hook prototype of sum|w - mu|.
    if row["option"] == "center" and "centering" not in row:
        return "center_absw"
    return row["option"]


def _fmt(xs) -> str:
    return " / ".join(f"{x:.1f}" for x in xs)


def study_tables(rows) -> list[str]:
    out = ["### 11.1 Study: validation split (3000 train / 1000 held-out training images), seed 0", "",
           "Eval-mode validation accuracy after epochs 1 / 2 / 3. BN columns (adder models, after the "
           "last epoch, against a precise-BN pass over 20 training batches): median over layers of the "
           "per-layer median |running mean - true mean| in true standard deviations, and of |log(running "
           "var / true var)|; then the accuracy with only the running means, or only the running "
           "variances, replaced by the true ones.", "",
           "| model | BN option | optimiser | accuracy e1 / e2 / e3 | train loss e3 | mean error (sd) | "
           "abs log var ratio | acc, true mean only | acc, true var only |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["model"], r["kind"], _option(r), r["opt"])):
        bn = r.get("bn") or {}
        cells = [MODELS.get(r["model"], r["model"]) + ("" if r["kind"] == "adder" else ", CNN"),
                 OPTIONS.get(_option(r), _option(r)) if r["kind"] == "adder" else "-", r["opt"],
                 _fmt(r["acc"]), f"{r['train_loss'][-1]:.3f}"]
        cells += ([f"{bn['mean_err_sd_median']:.3f}", f"{bn['abs_log_var_ratio_median']:.3f}",
                   f"{bn['acc_true_mean_only']:.1f}", f"{bn['acc_true_var_only']:.1f}"] if bn else ["", "", "", ""])
        out.append("| " + " | ".join(cells) + " |")
    return out


def final_tables(rows):
    by = defaultdict(dict)
    for r in rows:
        by[(r["model"], r["opt"], r["kind"])][r["seed"]] = r
    out = ["### 11.2 Final: mnist5k test set (1000 images), seeds 0 / 1 / 2", "",
           "Eval-mode test accuracy after the last epoch; pass = adder mean >= CNN mean - 2 and every adder "
           "seed >= CNN mean - 4 (pre-registered in docs/training.md).", "",
           "| model | optimiser | adder per seed | adder mean | CNN per seed | CNN mean | adder - CNN | verdict |",
           "|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for model in MODELS:
        for opt in OPTS:
            a, c = by.get((model, opt, "adder"), {}), by.get((model, opt, "conv"), {})
            acc_a = [a[s]["acc"][-1] for s in sorted(a)]
            acc_c = [c[s]["acc"][-1] for s in sorted(c)]
            ma = statistics.mean(acc_a) if acc_a else None
            mc = statistics.mean(acc_c) if acc_c else None
            if ma is None or mc is None:
                verdict = f"not run (adder {len(acc_a)}/3, CNN {len(acc_c)}/3 seeds)"
            else:
                ok = ma >= mc - 2 and all(x >= mc - 4 for x in acc_a)
                verdict = ("pass" if ok else "MISS") if len(acc_a) == 3 and len(acc_c) == 3 else (
                    f"incomplete (adder {len(acc_a)}/3, CNN {len(acc_c)}/3 seeds): {'within' if ok else 'outside'} so far")
            verdicts.append({"model": model, "opt": opt, "adder": acc_a, "cnn": acc_c, "adder_mean": ma,
                             "cnn_mean": mc, "verdict": verdict})
            out.append(f"| {MODELS[model]} | {OPTS[opt]} | {_fmt(acc_a)} | {'' if ma is None else f'{ma:.1f}'} | "
                       f"{_fmt(acc_c)} | {'' if mc is None else f'{mc:.1f}'} | "
                       f"{'' if ma is None or mc is None else f'{ma - mc:+.1f}'} | {verdict} |")
    out += ["", "Per epoch (eval-mode test accuracy after epochs 1 / 2 / 3, each seed):", "",
            "| model | optimiser | kind | seed | e1 / e2 / e3 | train loss e1 / e2 / e3 | seconds |", "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (list(MODELS).index(r["model"]), list(OPTS).index(r["opt"]), r["kind"], r["seed"])):
        out.append(f"| {MODELS[r['model']]} | {OPTS[r['opt']]} | {r['kind']} | {r['seed']} | {_fmt(r['acc'])} | "
                   f"{' / '.join(f'{x:.3f}' for x in r['train_loss'])} | {r['seconds']:.0f} |")
    return out, verdicts


def write_report(study, final, out_dir, results_md, machine):
    final_lines, verdicts = final_tables(final)
    with open(os.path.join(out_dir, "plain_loop.json"), "w") as f:
        json.dump({"machine": machine, "study": study, "final": final, "verdicts": verdicts}, f, indent=1)
    body = [SECTION, "",
            f"`benchmarks/plain_loop.py` (protocol: docs/training.md, pre-registered). Machine: {machine}, "
            "a 2-core box shared by 8 sessions, load average 25-32 during the runs (the seconds column is "
            "wall time under that load, not comparable). Raw rows: "
            "`benchmarks/results/plain_loop_{study,final}.jsonl`, `plain_loop.json`.", "",
            *study_tables(study), "", *final_lines, ""]
    text = open(results_md).read() if os.path.exists(results_md) else "# Results\n"
    start = text.find(SECTION)
    if start >= 0:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + "\n".join(body) + (text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(body)
    with open(results_md, "w") as f:
        f.write(text)
