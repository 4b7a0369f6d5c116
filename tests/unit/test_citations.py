"""Every citation in the code and the docs resolves to a file and heading inside the repository.

Comments and docstrings point at the fact they rely on as ``docs/<page>.md#<heading>``; markdown pages link
each other relatively. A renamed heading or a moved page must fail here, not leave a dangling pointer, and
nothing may cite reference notes that are not part of the project.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP = {".git", ".venv", "node_modules", "cdk.out", "build", "sockless.egg-info", ".mypy_cache", ".ruff_cache"}
# Spelled in pieces so this file does not cite them itself.
OUTSIDE = [name + ".md" for name in ("PROTOCOL", "DESIGN", "STYLE", "TOOLING")]
CODE_CITATION = re.compile(r"\bdocs/([\w./-]+\.md)(#[\w-]+)?")
MD_LINK = re.compile(r"\]\(([^)\s]+\.md)(#[^)\s]+)?\)")


def _files(*suffixes: str) -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        if path.suffix in suffixes and not SKIP.intersection(path.relative_to(ROOT).parts) and path.is_file():
            found.append(path)
    return sorted(found)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {"#" + _slug(line.lstrip("#")) for line in page.read_text().splitlines() if re.match(r"#{1,6} ", line)}


def _citations() -> list[tuple[Path, Path, str | None]]:
    cited = []
    for path in _files(".py", ".md", ".mjs", ".js", ".sh"):
        text = path.read_text(errors="replace")
        if path.suffix == ".md":
            for target, anchor in MD_LINK.findall(text):
                if "://" not in target:
                    cited.append((path, (path.parent / target).resolve(), anchor or None))
        for target, anchor in CODE_CITATION.findall(text):
            cited.append((path, ROOT / "docs" / target, anchor or None))
    return cited


def _id(value: object) -> str:
    return str(value.relative_to(ROOT)) if isinstance(value, Path) and value.is_relative_to(ROOT) else str(value)


def test_the_slug_follows_githubs_rule() -> None:
    assert _slug("The journey of a frame on AWS (`$default`)") == "the-journey-of-a-frame-on-aws-default"
    assert _slug("Sign-in, server-to-user and watchlists") == "sign-in-server-to-user-and-watchlists"


def test_there_are_citations_to_check() -> None:
    assert len(_citations()) > 30


@pytest.mark.parametrize("citing, page, anchor", _citations(), ids=_id)
def test_a_citation_resolves_to_a_page_and_heading_in_the_repository(
    citing: Path, page: Path, anchor: str | None
) -> None:
    assert page.is_file(), f"{citing.relative_to(ROOT)} cites {page}, which is not in the repository"
    if anchor is not None:
        assert anchor in _anchors(page), f"{citing.relative_to(ROOT)} cites {anchor}, not a heading of {page.name}"


def test_nothing_cites_notes_that_are_not_part_of_the_project() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in _files(".py", ".md", ".mjs", ".js", ".sh", ".toml", ".json")
        for name in OUTSIDE
        if name in path.read_text(errors="replace") and path != Path(__file__).resolve()
    ]
    assert offenders == []
