"""Tables for benchmarks/plain_loop.py: plain_loop.json and the RESULTS.md section (issue 22)."""
from __future__ import annotations

import json
import os
import re
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
    "center_mom0.3": "offset sum abs(w - mu), adder BNs momentum 0.3",
    "center_mom0.5": "offset sum abs(w - mu), adder BNs momentum 0.5",
    "center_allmom0.5": "offset sum abs(w - mu), every BN momentum 0.5",
    "center_eta0.5": "offset sum abs(w - mu), eta 0.5 (official 0.2)",
    "center_eta1.0": "offset sum abs(w - mu), eta 1.0 (official 0.2)",
    "allmom0.5": "every BN momentum 0.5",
    "lib": "the library's defaults (centred, every BN momentum 0.5)",
    "-": "-",
}


def option_label(option: str) -> str:
    """The table's words for an option; an '_eta<v>' suffix adds 'eta v' to its base option's."""
    if option in OPTIONS:
        return OPTIONS[option]
    eta = re.fullmatch(r"(.+?)_eta([\d.]+)", option)
    if eta and eta.group(1) in OPTIONS:
        return f"{OPTIONS[eta.group(1)]}, eta {eta.group(2)} (official 0.2)"
    return option


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
           "variances, replaced by the true ones; then precise BN (both replaced) and train-mode BN (batch "
           "statistics), where measured. A BN option changes no weight: its rows share the precise-BN accuracy.", "",
           "| model | BN option | optimiser | accuracy e1 / e2 / e3 | train loss e3 | mean error (sd) | "
           "abs log var ratio | acc, true mean only | acc, true var only | acc, precise BN | acc, train-mode BN |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["model"], r["kind"], _option(r), r["opt"])):
        bn = r.get("bn") or {}
        cells = [MODELS.get(r["model"], r["model"]) + ("" if r["kind"] == "adder" else ", CNN"),
                 option_label(_option(r)), r["opt"],
                 _fmt(r["acc"]), f"{r['train_loss'][-1]:.3f}"]
        cells += ([f"{bn['mean_err_sd_median']:.3f}", f"{bn['abs_log_var_ratio_median']:.3f}",
                   f"{bn['acc_true_mean_only']:.1f}", f"{bn['acc_true_var_only']:.1f}"] if bn else ["", "", "", ""])
        cells += [f"{bn[k]:.1f}" if k in bn else "" for k in ("acc_precise_bn", "acc_train_mode_bn")]
        out.append("| " + " | ".join(cells) + " |")
    return out + epoch_diagnosis_tables(rows)


def _stage(name):
    return name.split(".")[0] if name.startswith("layer") else name


def epoch_diagnosis_tables(rows) -> list[str]:
    """For rows run with --diagnose epoch: after every epoch, eval-mode accuracy against train-mode-BN
    and precise-BN accuracy at the same weights, and the per-stage worst running-vs-true errors."""
    rows = [r for r in rows if r.get("bn_epochs")]
    if not rows:
        return []
    out = ["", "Eval mode against the same weights' own statistics, after every epoch (`--diagnose epoch`): "
           "eval mode (running statistics); train-mode BN (batch statistics, batches of 64); precise BN "
           "(running statistics replaced by a 20-batch average at the final weights, `input_mean` held); "
           "true mean only / true var only (one of the two replaced).", "",
           "| model | kind | optimiser | epoch | train loss | eval mode | train-mode BN | precise BN | true mean only | true var only |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["model"], r["opt"], r["kind"], r["option"])):
        for e, d in enumerate(r["bn_epochs"]):
            out.append(f"| {MODELS.get(r['model'], r['model'])} | {r['kind'] + ('' if r['option'] == '-' else ', ' + option_label(_option(r)))} | "
                       f"{r['opt']} | {e + 1} | {r['train_loss'][e]:.3f} | {r['acc'][e]:.1f} | {d['acc_train_mode_bn']:.1f} | "
                       f"{d['acc_precise_bn']:.1f} | {d['acc_true_mean_only']:.1f} | {d['acc_true_var_only']:.1f} |")
    out += ["", "Where in the depth (same rows): per stage, the largest per-layer median |running - true mean| in "
            "true standard deviations, then the largest per-layer median |log(running var / true var)|, after "
            "epochs 1 / 2 / 3; and after the last epoch the accuracy with both statistics replaced in that stage only (bn1, the stem, and bn2, the head after the 1x1 classifier, are restored together).", "",
            "| model | kind | optimiser | stage | mean error (sd) e1 / e2 / e3 | abs log var ratio e1 / e2 / e3 | acc, true stats in this stage only |",
            "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["model"], r["opt"], r["kind"], r["option"])):
        stages = list(dict.fromkeys(_stage(layer["name"]) for layer in r["bn_epochs"][0]["layers"]))
        for st in stages:
            worst = [[max(abs(layer[k]) for layer in d["layers"] if _stage(layer["name"]) == st) for d in r["bn_epochs"]]
                     for k in ("mean_err_sd", "log_var_ratio")]
            key = "stem/head" if not st.startswith("layer") else st
            acc = r["bn_epochs"][-1].get(f"acc_true_stats_in_{key}")
            out.append(f"| {MODELS.get(r['model'], r['model'])} | {r['kind']} | {r['opt']} | {st} | "
                       f"{' / '.join(f'{x:.2f}' for x in worst[0])} | {' / '.join(f'{x:.2f}' for x in worst[1])} | "
                       f"{'' if acc is None else f'{acc:.1f}'} |")
    return out


def final_tables(rows):
    by = defaultdict(dict)
    for r in rows:
        by[(r["model"], r["opt"], r["kind"], r["option"])][r["seed"]] = r
    out = ["### 11.2 Final: mnist5k test set (1000 images), seeds 0 / 1 / 2", "",
           "Eval-mode test accuracy after the last epoch; pass = adder mean >= CNN mean - 2 and every adder "
           "seed >= CNN mean - 4 (pre-registered in docs/training.md).", "",
           "| model | optimiser | adder per seed | adder mean | CNN per seed | CNN mean | adder - CNN | verdict |",
           "|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for model, option in [(m, o) for m in MODELS
                          for o in sorted({r["option"] for r in rows if r["model"] == m and r["kind"] == "adder"} or {"center"})]:
        # one line per BN option the adder ran with, each against the same (unchanged) CNN twin
        label = MODELS[model] + ("" if option == "center" else f", {option_label(option)}")
        for opt in OPTS:
            a, c = by.get((model, opt, "adder", option), {}), by.get((model, opt, "conv", "-"), {})
            if not a and option != "center":  # an option run for some optimisers only ('lib_eta1.0': SGD)
                continue
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
            verdicts.append({"model": model, "option": option, "opt": opt, "adder": acc_a, "cnn": acc_c,
                             "adder_mean": ma, "cnn_mean": mc, "verdict": verdict})
            out.append(f"| {label} | {OPTS[opt]} | {_fmt(acc_a)} | {'' if ma is None else f'{ma:.1f}'} | "
                       f"{_fmt(acc_c)} | {'' if mc is None else f'{mc:.1f}'} | "
                       f"{'' if ma is None or mc is None else f'{ma - mc:+.1f}'} | {verdict} |")
    out += ["", "Per epoch (eval-mode test accuracy after epochs 1 / 2 / 3, each seed):", "",
            "| model | optimiser | kind | seed | e1 / e2 / e3 | train loss e1 / e2 / e3 | seconds |", "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (list(MODELS).index(r["model"]), list(OPTS).index(r["opt"]), r["kind"], r["option"], r["seed"])):
        kind = r["kind"] if r["option"] in ("-", "center") else f"{r['kind']}, {option_label(r['option'])}"
        if r["kind"] == "conv" and r["option"] == "lib":
            kind = "conv, rerun beside the 'lib' rows (PyTorch's BN momentum 0.1)"
        out.append(f"| {MODELS[r['model']]} | {OPTS[r['opt']]} | {kind} | {r['seed']} | {_fmt(r['acc'])} | "
                   f"{' / '.join(f'{x:.3f}' for x in r['train_loss'])} | {r['seconds']:.0f} |")
    return out, verdicts


def library_table(verdicts, final_rows) -> list[str]:
    """The final's 'lib' rows in one table: what a user gets from the library as it ships. The
    verdict is against the registered CNN rows; the CNN twins rerun on the same box as the 'lib'
    rows (kind conv, option 'lib': the same models) stand beside them as a check."""
    rows = [v for v in verdicts if v["option"].startswith("lib")]
    if not rows:
        return []
    rerun = defaultdict(list)
    for r in final_rows:
        if r["kind"] == "conv" and r["option"] == "lib":
            rerun[(r["model"], r["opt"])].append(r["acc"][-1])
    out = ["### 11.3 The library as it ships (the final's 'lib' rows)", "",
           "`get_model`/`convert` with their defaults (every adder layer centred, every BN at momentum 0.5); "
           "'eta 1.0' = `eta=1.0` given to them, the documented setting for SGD; Adam/AdamW over "
           "`adder_param_groups(model, 1e-3)` at its default adder lr scale, 300 (study S2). Every one of these "
           "rows ran on the AMD EPYC box (AVX2), the registered CNN rows on the Intel Xeon; 'CNN here' is the "
           "CNN twins rerun on the AMD box (a check beside the verdict, not part of it).", "",
           "| model | optimiser | built with | adder mean | CNN mean | adder - CNN | verdict | CNN here (seeds) | adder - CNN here |",
           "|---|---|---|---|---|---|---|---|---|"]
    for v in sorted(rows, key=lambda v: (list(MODELS).index(v["model"]), list(OPTS).index(v["opt"]))):
        eta = re.fullmatch(r"lib_eta([\d.]+)", v["option"])
        built = f"defaults, eta {eta.group(1)}" if eta else "defaults"
        ma, mc = v["adder_mean"], v["cnn_mean"]
        out.append(f"| {MODELS[v['model']]} | {OPTS[v['opt']]} | {built} | {'' if ma is None else f'{ma:.1f}'} | "
                   f"{'' if mc is None else f'{mc:.1f}'} | {'' if ma is None or mc is None else f'{ma - mc:+.1f}'} | "
                   f"{v['verdict']} | {_here(rerun[(v['model'], v['opt'])], ma)} |")
    return out


def _here(accs, adder_mean) -> str:
    if not accs:
        return "not run | "
    m = statistics.mean(accs)
    return f"{m:.1f} ({len(accs)}) | {'' if adder_mean is None else f'{adder_mean - m:+.1f}'}"


# The rows written before rows named their machine all ran on the earlier sessions' box.
EARLIER_MACHINE = "Intel Xeon (family 6, model 167; AVX-512 with VNNI and AMX), 2 cores"


def machines(rows) -> str:
    counts = defaultdict(int)
    for r in rows:
        counts[r.get("machine", EARLIER_MACHINE)] += 1
    return "; ".join(f"{m} ({n} rows)" for m, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def write_report(study, final, out_dir, results_md, machine):
    final_lines, verdicts = final_tables(final)
    final_lines += ["", *library_table(verdicts, final)]
    with open(os.path.join(out_dir, "plain_loop.json"), "w") as f:
        json.dump({"machine": machine, "study": study, "final": final, "verdicts": verdicts}, f, indent=1)
    body = [SECTION, "",
            f"`benchmarks/plain_loop.py` (protocol: docs/training.md, pre-registered), {machine}. Machines: "
            f"{machines(study + final)}. The first runs shared their box at load average 25-32, the later ones at "
            "about 2-8: the seconds column is wall time under that load, not comparable. Raw rows: "
            "`benchmarks/results/plain_loop_{study,final}.jsonl` (each row after 2026-12-07 18:20 UTC names its "
            "machine), `plain_loop.json`.", "",
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
