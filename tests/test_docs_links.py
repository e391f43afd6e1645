"""The README and docs/ as a reader follows them: every relative link (and its #anchor) lands somewhere, the
quick start is the two commands, and the code map names only paths that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```.*?^```[ \t]*$", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
REFERENCE = re.compile(r"^\[[^\]]+\]:\s*(\S+)", re.M)  # [name]: target


def prose(text: str) -> str:
    """The page without its fenced code blocks (a `# comment` in bash is no heading, a link in code no link)."""
    return FENCE.sub("", text)


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: markup dropped, lower case, punctuation removed, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = re.sub(r"[`*]", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for line in prose(page.read_text()).splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            base = github_anchor(match.group(1))
            slug, n = base, 0
            while slug in found:  # GitHub numbers repeated headings: x, x-1, x-2
                n += 1
                slug = f"{base}-{n}"
            found.add(slug)
    return found


def relative_links(page: Path) -> list[str]:
    text = prose(page.read_text())
    targets = LINK.findall(text) + REFERENCE.findall(text)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def broken_links(page: Path) -> list[str]:
    """Each relative link of the page whose file is missing, or whose #anchor names no heading of that file."""
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_exists(page: Path):
    broken = broken_links(page)
    assert not broken, f"{page.relative_to(REPO)}: broken links (fix the link or the heading):\n" + "\n".join(broken)


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## `make run` as shipped (2026-11-27 14:31)\n")
    (tmp_path / "README.md").write_text(
        "[ok](docs/a.md#make-run-as-shipped-2026-11-27-1431) [here](#top) ![pic](docs/a.md)\n"
        "[gone](docs/b.md) [no heading](docs/a.md#nothing) [web](https://example.com/x.md) [ref][r]\n\n"
        "[r]: docs/c.md\n\n# Top\n\n```bash\n# not a heading: [not a link](docs/d.md)\n```\n")
    assert broken_links(tmp_path / "README.md") == [
        "docs/b.md: no such file", "docs/a.md#nothing: no heading #nothing in a.md", "docs/c.md: no such file"]


def test_the_link_check_reads_the_real_pages():
    """It finds the README's links to docs/ and GitHub's ids for RESULTS.md's headings."""
    assert any(t.startswith("docs/") for t in relative_links(REPO / "README.md"))
    assert "inception-on-cpu-benchmarksbench_inceptionpy-issue-15" in anchors(REPO / "benchmarks" / "RESULTS.md")


def quick_start_commands() -> list[str]:
    section = (REPO / "README.md").read_text().split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


def test_the_quick_start_is_make_run_and_make_test():
    assert quick_start_commands() == ["make run", "make test"]


def test_the_code_map_names_only_paths_that_exist():
    section = (REPO / "README.md").read_text().split("\n## Map of the code\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```\n", 1)[1].split("```", 1)[0]
    paths = [line.split()[0] for line in block.splitlines() if line.strip() and not line.startswith(" ")]
    assert len(paths) >= 10, "the code map lists one path (folder/ or module) at the start of each line"
    missing = [p for p in paths if not (REPO / p).exists()]
    assert not missing, f"README.md 'Map of the code' names paths the tree lacks: {missing}"
    packages = [f"productgan/{i.parent.name}/" for i in sorted((REPO / "productgan").glob("*/__init__.py"))]
    unnamed = [p for p in [*packages, "components/", "pipelines/", "benchmarks/", "tests/"] if p not in paths]
    assert not unnamed, f"README.md 'Map of the code' leaves out these folders: {unnamed}"
