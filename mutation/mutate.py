"""`make mutate`: mutmut over the web and model packages against the fast tests, and its report.

mutmut 3 names mutants after module paths and only knows a ``src/`` source root, while this project's
root is ``service/``. So the run happens in a staging folder (``.mutation/``, git-ignored) where ``src``,
``tests`` and ``models`` link back to the checkout; the mutmut settings are ``[tool.mutmut]`` in
pyproject.toml (which packages, which tests, pytest flags). Results are written between the markers
in docs/mutation.md: the score per file and every surviving mutant, with the reason from
``mutation/equivalent.toml`` when it is explained as equivalent.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "mutation.md"
EQUIVALENT = ROOT / "mutation" / "equivalent.toml"
BEGIN, END = "<!-- mutate:begin -->", "<!-- mutate:end -->"
DETECTED = {"killed", "timeout", "segfault"}  # a mutant the tests noticed, one way or another

# mutmut's exit-code -> status table (mutmut.stats.status_by_exit_code), read from its meta files.
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout"}
STATUS.update({-24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", -11: "segfault", -9: "segfault"})


def stage(stage_dir: Path, tests_rev: str | None, fresh: bool) -> None:
    """Lay out ``stage_dir`` as mutmut expects: src/ (the package root), tests/, models/, pyproject.toml."""
    if fresh and stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    for name, target in (("src", ROOT / "service"), ("models", ROOT / "models")):
        link = stage_dir / name
        if not link.exists():
            link.symlink_to(target)
    tests = stage_dir / "tests"
    if not tests.exists():
        if tests_rev:  # the tests of another commit against today's code (the "before" score)
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", tests_rev, "tests"], check=True, capture_output=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(stage_dir)], input=archive, check=True)
        else:
            tests.symlink_to(ROOT / "tests")
    shutil.copy2(ROOT / "pyproject.toml", stage_dir / "pyproject.toml")


def run_mutmut(stage_dir: Path, workers: int, names: list[str] | None = None) -> float:
    """Run mutmut in ``stage_dir`` (only ``names`` when given); return the wall time in seconds."""
    mutmut = Path(sys.executable).with_name("mutmut")
    started = time.monotonic()
    done = subprocess.run([str(mutmut), "run", "--max-children", str(workers), *(names or [])], cwd=stage_dir)
    if done.returncode != 0:
        raise SystemExit(f"mutmut run failed with exit code {done.returncode}")
    return time.monotonic() - started


def in_scope(source: str) -> bool:
    """Whether ``[tool.mutmut]`` in pyproject.toml mutates ``source`` (a path like ``src/reviewserve/...``)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    wanted = any(fnmatch(source, pattern) for pattern in config.get("only_mutate", ["*"]))
    return wanted and not any(fnmatch(source, pattern) for pattern in config.get("do_not_mutate", []))


def results(stage_dir: Path) -> dict[str, str]:
    """Mutant name -> status, from mutmut's per-file meta files (files out of scope now are left out)."""
    statuses: dict[str, str] = {}
    mutants = stage_dir / "mutants"
    for meta in sorted(mutants.rglob("*.py.meta")):
        if not in_scope(str(meta.relative_to(mutants)).removesuffix(".meta")):
            continue
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            statuses[name] = "not checked" if code is None else STATUS.get(code, "suspicious")
    return statuses


DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant
print(json.dumps({n: get_diff_for_mutant(n, path=find_mutant(n).path) for n in json.load(sys.stdin)}))
"""


def mutated_lines(stage_dir: Path, names: list[str]) -> dict[str, tuple[str, str]]:
    """Mutant name -> (original, mutated) lines, from mutmut's own diffs (one process for all)."""
    done = subprocess.run(
        [sys.executable, "-c", DIFFS], cwd=stage_dir, input=json.dumps(names), capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"reading mutant diffs failed:\n{done.stderr}")
    lines = {}
    for name, diff in json.loads(done.stdout).items():
        rows = diff.splitlines()
        removed = [r[1:].strip() for r in rows if r.startswith("-") and not r.startswith("---")]
        added = [r[1:].strip() for r in rows if r.startswith("+") and not r.startswith("+++")]
        lines[name] = (" / ".join(removed), " / ".join(added))
    return lines


def explanation(name: str, original: str, mutated: str, explained: list[dict[str, str]]) -> str | None:
    """The recorded reason a survivor is equivalent: matched by function and line text, not by number."""
    function = name.partition("__mutmut_")[0]
    for entry in explained:
        if (entry["function"], entry["mutated"], entry.get("original", original)) == (function, mutated, original):
            return entry["why"]
    return None


def report(stage_dir: Path, wall_seconds: float | None, label: str) -> str:
    """Markdown: score per file, then each survivor with its diff line and explanation."""
    statuses = results(stage_dir)
    explained = tomllib.loads(EQUIVALENT.read_text()).get("equivalent", []) if EQUIVALENT.exists() else []
    by_module: dict[str, Counter[str]] = {}
    for name, status in statuses.items():
        module = name.partition(".x")[0]
        by_module.setdefault(module, Counter())[status] += 1
    total = Counter(statuses.values())
    detected = sum(total[s] for s in DETECTED)
    score = detected / len(statuses) if statuses else 0.0
    lines = [
        f"**{label}**: {detected} of {len(statuses)} mutants detected, **{score:.1%}**"
        + (f" (wall time {wall_seconds / 60:.1f} min)" if wall_seconds is not None else ""),
        "",
        "| module | mutants | killed | timeout | survived | no tests | score |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for module, counts in sorted(by_module.items()):
        n = sum(counts.values())
        found = sum(counts[s] for s in DETECTED)
        lines.append(
            f"| `{module}` | {n} | {counts['killed']} | {counts['timeout']} | {counts['survived']} "
            f"| {counts['no tests']} | {found / n:.1%} |"
        )
    survivors = sorted(n for n, s in statuses.items() if s not in DETECTED and s != "not checked")
    if total["not checked"]:
        lines += ["", f"**Not checked yet: {total['not checked']} mutants** (the run was stopped before them)."]
    lines += ["", f"Surviving mutants ({len(survivors)}):", ""]
    if survivors:
        lines += ["| mutant | status | original | mutated | why it survives |", "|---|---|---|---|---|"]
    unexplained = 0
    diffs = mutated_lines(stage_dir, survivors)
    for name in survivors:
        original, mutated = diffs[name]
        why = explanation(name, original, mutated, explained)
        unexplained += why is None
        cell = (why or "**not explained: kill it with a test or explain it in mutation/equivalent.toml**").replace(
            "|", "\\|"
        )
        lines.append(
            f"| `{name}` | {statuses[name]} | `{original.replace('|', '/')}` | `{mutated.replace('|', '/')}` | {cell} |"
        )
    lines += ["", f"Unexplained survivors: {unexplained}."]
    return "\n".join(lines)


def write_doc(section: str) -> None:
    """Replace the generated part of docs/mutation.md."""
    text = DOC.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{BEGIN}\n{section}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", type=Path, default=ROOT / ".mutation", help="staging folder [.mutation]")
    parser.add_argument("--workers", type=int, default=2, help="mutants tested in parallel [2]")
    parser.add_argument("--tests-rev", help="take tests/ from this git revision (score of older tests)")
    parser.add_argument("--resume", action="store_true", help="keep earlier results in the staging folder")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the report from the last run")
    parser.add_argument(
        "--rerun-survivors", action="store_true", help="re-test only the last run's survivors (after adding tests)"
    )
    parser.add_argument("--no-doc", action="store_true", help="print the report instead of writing docs/mutation.md")
    parser.add_argument("--label", default="Last `make mutate`", help="heading of the score line")
    args = parser.parse_args()

    wall = None
    if args.rerun_survivors:
        stage(args.stage, args.tests_rev, fresh=False)
        statuses = results(args.stage)
        wall = run_mutmut(args.stage, args.workers, sorted(n for n, s in statuses.items() if s == "survived"))
    elif not args.report_only:
        stage(args.stage, args.tests_rev, fresh=not args.resume)
        wall = run_mutmut(args.stage, args.workers)
    section = report(args.stage, wall, args.label)
    if args.no_doc:
        print(section)
    else:
        write_doc(section)
        print(section.splitlines()[0])


if __name__ == "__main__":
    main()
