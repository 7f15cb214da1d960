"""What a pipeline run says on its own page: the headline, the stages it ran (cache hit or built, how long,
where), and the report page, as one Markdown text. The flows publish it in the Prefect UI; the library only
writes the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from elm.artifacts import Artifact
from elm.report.page import md_table, md_text
from elm.report.stage import report_markdown, report_tables


@dataclass(frozen=True)
class StageRun:
    """One stage artifact a run resolved: built now, or a cache hit (the version existed)."""

    stage: str
    version: str
    built: bool
    seconds: float
    path: Path

    def line(self) -> str:
        what = "built" if self.built else "cache hit"
        return f"{self.stage}: {what}, version {self.version} ({self.seconds:.1f} s) at {self.path}"

    def record(self) -> dict:
        return {"stage": self.stage, "result": "built" if self.built else "cache hit", "seconds": round(self.seconds, 1),
                "version": self.version, "path": str(self.path)}


def page_for_ui(report_art: Artifact) -> str:
    """The report page as Markdown, each plot named by its path: a UI cannot reach the PNGs beside the page,
    and a broken image says less than a path."""
    return re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", lambda m: f"*{m[1]}: `{report_art.path / m[2]}`*",
                  report_markdown(report_art))


def _cell(x) -> str:
    return "–" if x is None else f"{x:.3f}" if isinstance(x, float) else md_text(x)


def stages_md(stages: list[StageRun]) -> str:
    rows = [[f"`{s.stage}`", "built" if s.built else "cache hit", f"{s.seconds:.1f}", f"`{s.version}`",
             f"`{md_text(s.path)}`"] for s in stages]
    return md_table(["stage", "result", "seconds", "version", "path"], rows, "llrll")


def headline_md(report_art: Artifact) -> str:
    """The headline as a Markdown table narrow enough for a 1280 px page beside the UI's side panel: measure,
    system, normalised with its 95% interval, raw value, n."""
    rows = [[md_text(r["measure"]), r["system"], f"{_cell(r['normalised'])} {r['normalised_95'] or ''}".strip(),
             _cell(r["value"]), str(r["n"])] for r in report_tables(report_art)["headline"]]
    return md_table(["measure", "system", "normalised [95%]", "value", "n"], rows, "llrrr")


def run_summary(stages: list[StageRun], report_art: Artifact, note: str | None = None) -> str:
    """The run's page: a note (e.g. "nothing new"), the headline, the stage table, then the report page itself."""
    built = sum(s.built for s in stages)
    parts = ["# ELM pipeline run"]
    if note:
        parts.append(f"**{md_text(note)}**")
    parts += [f"{built} of {len(stages)} stage artifacts built, {len(stages) - built} cache hits; "
              f"the report page is `{report_art.path / 'report.html'}`.",
              "## Headline (normalised: 0 = random, 1 = teacher)", headline_md(report_art),
              "## Stages", stages_md(stages),
              "---",
              # the page's own headings, one level down, so the run's headings stay on top
              re.sub(r"^(#+) ", r"#\1 ", page_for_ui(report_art), flags=re.M)]
    return "\n\n".join(parts) + "\n"
