"""benchmarks/ holds scripts, results sit in benchmarks/results/, and what the docs point at exists.

A result file left beside the scripts, a link that leads nowhere, or a benchmarks/ path outside
results/ that does not exist (a result named where it used to sit) fails here rather than in a
reader's browser. RESULTS.md's section numbers follow its headings (## N., then ### N.1, N.2, ...).
"""
import itertools
import pathlib
import re

from helpers.paths import ROOT as _ROOT

ROOT = pathlib.Path(_ROOT)

BENCH = ROOT / "benchmarks"
PAGES = [ROOT / "README.md", ROOT / "methods" / "README.md", *sorted((ROOT / "docs").glob("*.md")),
         BENCH / "RESULTS.md", *sorted(BENCH.glob("README.md")), *sorted((BENCH / "results").rglob("*.md"))]
RESULT_SUFFIXES = {".json", ".png", ".log", ".md", ".csv", ".txt"}
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)  # code blocks: `a[i](x)` is no link
REPO_PATH = re.compile(r"(?<![\w/.])benchmarks/[\w./*{},-]*[\w*}/]")


def _expand(pattern: str) -> list[str]:
    """`a_{1,2}.json` -> a_1.json, a_2.json (the brace form RESULTS.md uses for runs)."""
    parts = re.split(r"\{([^}]*)\}", pattern)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def _exists(base, target: str) -> bool:
    return all(any(base.glob(t)) if "*" in t else (base / t).exists() for t in _expand(target))


def test_no_result_files_beside_the_scripts():
    stray = [p.relative_to(ROOT) for p in BENCH.rglob("*")
             if p.is_file() and p.suffix in RESULT_SUFFIXES and p.parent.name != "__pycache__"
             and not any(part.startswith(".") for part in p.relative_to(BENCH).parts)
             and (BENCH / "results") not in p.parents and p not in (BENCH / "RESULTS.md", BENCH / "README.md")]
    assert not stray, f"results belong in benchmarks/results/: {stray}"


def test_links_and_repo_paths_in_the_docs_exist():
    missing = []
    for page in PAGES:
        text = page.read_text()
        for m in LINK.finditer(FENCE.sub("", text)):
            target = m.group(1)
            if "://" in target or target.startswith("mailto:"):
                continue
            if not _exists(page.parent, target):
                missing.append(f"{page.relative_to(ROOT)}: link {target}")
        for m in REPO_PATH.finditer(text):
            # A pre-registered protocol may name results its run has yet to write: under results/ only.
            if not m.group(0).startswith("benchmarks/results/") and not _exists(ROOT, m.group(0)):
                missing.append(f"{page.relative_to(ROOT)}: path {m.group(0)}")
    assert not missing, "\n".join(missing)


def test_results_sections_are_numbered_in_order():
    heads = re.findall(r"^(##|###) (\d+)\.(\d*)", (BENCH / "RESULTS.md").read_text(), re.M)
    section, sub = 0, 0
    for level, major, minor in heads:
        major = int(major)
        if level == "##":
            assert major == section + 1 and not minor, f"## {major}.{minor} follows section {section}"
            section, sub = major, 0
        else:
            assert major == section and minor and int(minor) == sub + 1, \
                f"### {major}.{minor} under section {section} after {section}.{sub}"
            sub = int(minor)
    assert section >= 10
