"""OUT/study.json, written by `mechhybrid study`: the analyses a study ran (what each does, its profile and its
measured time on the zoo) and every (model, analysis) it skipped because the analysis does not apply to that
model, with the reason. The front page lists both; a model page says what was not run on it and why.

Notes are advisory: a missing file means no notes; a damaged one is named in one line on the front page and
its notes are left out, never fatal. Every value is user data and is escaped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from reports.html import esc
from reports.numbers import readable

__all__ = ["StudyNotes", "read_study_notes", "study_html", "skipped_html", "STUDY_FILE"]

STUDY_FILE = "study.json"


@dataclass(frozen=True)
class StudyNotes:
    """What OUT/study.json says."""

    analyses: list[dict] = field(default_factory=list)
    """{name, summary, profile, zoo_seconds} per analysis the study ran, in the study's order."""
    skipped: list[dict] = field(default_factory=list)
    """{model, analysis, reason} per analysis skipped on a model."""
    zoo_measured: str | None = None
    """How the zoo times were measured."""
    problem: str | None = None
    """One line naming the file when it could not be read."""


def _valid(obj) -> bool:
    return (isinstance(obj, dict) and isinstance(obj.get("analyses", []), list)
            and isinstance(obj.get("skipped", []), list)
            and all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in obj.get("analyses", []))
            and all(isinstance(e, dict) and all(isinstance(e.get(k), str) for k in ("model", "analysis", "reason"))
                    for e in obj.get("skipped", [])))


def read_study_notes(out_dir) -> StudyNotes:
    """OUT/study.json as StudyNotes (empty notes when there is no such file)."""
    path = Path(out_dir) / STUDY_FILE
    if not path.is_file():
        return StudyNotes()
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return StudyNotes(problem=f"{path}: unreadable ({error.__class__.__name__}); the study's notes are left out")
    if not _valid(obj):
        return StudyNotes(problem=f"{path}: not the notes `mechhybrid study` writes (analyses: [{{name, ...}}], "
                                  "skipped: [{model, analysis, reason}]); the study's notes are left out")
    measured = obj.get("zoo_measured")
    return StudyNotes(obj.get("analyses", []), obj.get("skipped", []),
                      measured if isinstance(measured, str) else None)


def study_html(notes: StudyNotes) -> str:
    """The front page's account of the study: its analyses with their profile and zoo time, what it skipped
    on which model and why, and a line if the notes could not be read ('' without notes)."""
    parts = []
    if notes.problem:
        parts.append(f'<p class="problem">{esc(notes.problem)}</p>')
    if notes.analyses:
        rows = "".join(f"<tr><td>{esc(e['name'])}</td><td>{esc(e.get('summary', ''))}</td>"
                       f"<td>{esc(e.get('profile', ''))}</td>"
                       f"<td>{esc(readable(e.get('zoo_seconds', 'n/a')))}</td></tr>" for e in notes.analyses)
        head = "".join(f'<th scope="col">{c}</th>' for c in ("analysis", "what it does", "profile",
                                                               "seconds on the zoo"))
        measured = f"<p>Zoo seconds: {esc(notes.zoo_measured)}.</p>" if notes.zoo_measured else ""
        parts.append(f"<h3>The study's analyses</h3><table><tr>{head}</tr>{rows}</table>{measured}")
    if notes.skipped:
        items = "".join(f'<li><span class="model">{esc(e["model"])}</span>: <span class="label">'
                        f'{esc(e["analysis"])}</span> skipped: {esc(e["reason"])}</li>' for e in notes.skipped)
        parts.append(f"<h3>Skipped: analyses that do not apply to a model</h3><ul>{items}</ul>")
    return "".join(parts)


def skipped_html(notes: StudyNotes, model_name: str) -> str:
    """A model page's list of the analyses the study skipped on it, with the reasons ('' for none)."""
    mine = [e for e in notes.skipped if e["model"] == model_name]
    if not mine:
        return ""
    items = "".join(f'<li><span class="label">{esc(e["analysis"])}</span>: {esc(e["reason"])}</li>' for e in mine)
    return f"<h2>Not run on this model</h2><ul>{items}</ul>"
