"""The documentation's links hold: every relative link and image in README.md, docs/ and the benchmark
results resolves to a file of the repository, and every anchor to a heading of its page.

Links to the web (``http:``, ``https:``, ``mailto:``) are not followed: the tests run offline.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "benchmarks").glob("*.md"),
        *(ROOT / "benchmarks" / "results").glob("*.md"),
    ]
)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
"""An inline link or image, ``[text](target)`` / ``![alt](target "title")``; group 1 is the target."""
HTML_SOURCE = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code spans, where brackets are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


def links(page: Path) -> Iterator[Tuple[int, str]]:
    """(line number, target) of every link and image of a page."""
    prose = _prose(page.read_text())
    for number, line in enumerate(prose.splitlines(), start=1):
        for pattern in (LINK, HTML_SOURCE):
            for match in pattern.finditer(line):
                yield number, match.group(1)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, code marks and punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> Set[str]:
    """The anchors of a page's headings (a repeated heading gets -1, -2, ... as on GitHub)."""
    found: Set[str] = set()
    counts: dict = {}
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    for match in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.MULTILINE):
        base = slug(match.group(1))
        n = counts.get(base, 0)
        counts[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken_links(page: Path, root: Path = ROOT) -> List[str]:
    """One line per link of ``page`` that names no file (or no heading) inside ``root``."""
    problems = []
    for number, target in links(page):
        if EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        where = f"{page.relative_to(root)}:{number}: {target}"
        try:
            destination.relative_to(root.resolve())
        except ValueError:
            problems.append(f"{where} leads outside the repository")
            continue
        if not destination.exists():
            problems.append(f"{where} names no file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            problems.append(f"{where} names no heading of {destination.relative_to(root.resolve())}")
    return problems


def test_the_pages_are_found():
    names = {page.relative_to(ROOT).as_posix() for page in PAGES}
    assert {"README.md", "benchmarks/RESULTS.md"} <= names
    assert len([name for name in names if name.startswith("docs/")]) >= 8


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_and_image_resolves(page: Path):
    assert broken_links(page) == []


def test_the_readme_links_every_docs_page():
    readme_targets = {(ROOT / target.partition("#")[0]).resolve() for _, target in links(ROOT / "README.md")}
    missing = [page.name for page in (ROOT / "docs").glob("*.md") if page.resolve() not in readme_targets]
    assert missing == []


def test_the_checker_finds_a_broken_link_an_image_and_an_anchor(tmp_path: Path):
    (tmp_path / "there.md").write_text("# A heading: `with code`\n\ntext\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) [ok](there.md#a-heading-with-code) [web](https://example.com) [top](#title)\n"
        "![gone](missing.png) [bad](there.md#no-such) `[code](not-a-link.md)` [out](../elsewhere.md)\n"
        "```\n[fenced](also-not-a-link.md)\n```\n# Title\n"
    )
    assert broken_links(page, tmp_path) == [
        "page.md:2: missing.png names no file",
        "page.md:2: there.md#no-such names no heading of there.md",
        "page.md:2: ../elsewhere.md leads outside the repository",
    ]
