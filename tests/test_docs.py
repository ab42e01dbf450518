"""The front door holds: a short README whose commands run, links that resolve, and the
results tables of the docs and the README equal to what the records generate."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from fashionseg.reporting.results_table import generated_blocks
from fashionseg.reporting.tables import generated_files

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
# Hydra command lines (checked with --cfg job) and argparse ones (checked with --help)
HYDRA_CLIS = ("fashionseg.train", "fashionseg.evaluate", "fashionseg.predict")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def relative_links(path: Path) -> list[str]:
    """The relative link targets of a Markdown file (code blocks and spans left out)."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = [m.group(1) for m in LINK.finditer(text)]
    return [t for t in targets if not re.match(r"[a-z]+:|#", t)]


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def readme_commands() -> list[str]:
    """Every command line of the README's ``bash`` blocks, comments stripped."""
    commands = []
    for block in code_blocks(README.read_text(), "bash"):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def test_readme_is_under_200_lines() -> None:
    assert len(README.read_text().splitlines()) < 200


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.name)
def test_every_relative_link_resolves(path: Path) -> None:
    missing = [
        target
        for target in relative_links(path)
        if not (path.parent / target.split("#")[0]).exists()
    ]
    assert missing == [], f"{path.relative_to(REPO)}: links to nothing: {missing}"


def test_the_link_finder_finds_links(tmp_path: Path) -> None:
    page = tmp_path / "a.md"
    page.write_text("[x](b.md) ![p](img/c.png) [w](https://x.org) [s](#top) `[n](no.md)`\n")
    assert relative_links(page) == ["b.md", "img/c.png"]


def test_generated_tables_match_the_records() -> None:
    """``python -m fashionseg.report --tables`` would change nothing."""
    files = generated_files(REPO, generated_blocks(REPO / "results" / "records"))
    assert set(files) == {README, DOCS / "results.md"}
    stale = [str(p.relative_to(REPO)) for p, (old, new) in files.items() if old != new]
    assert stale == [], "run: python -m fashionseg.report --tables"


def test_every_nav_page_of_the_site_exists() -> None:
    """mkdocs.yml's navigation names only pages that exist (the strict build checks the
    rest); every page of docs/ is in the navigation."""
    nav = re.findall(r"^\s+- [^:]+: (\S+\.md)\s*$", (REPO / "mkdocs.yml").read_text(), re.M)
    assert nav and all((DOCS / page).is_file() for page in nav), nav
    assert {p.name for p in DOCS.glob("*.md")} <= set(nav)


def test_the_python_example_names_real_api() -> None:
    from fashionseg import Segmenter

    examples = code_blocks(README.read_text(), "python")
    for example in examples:
        compile(example, "README.md", "exec")
    assert any("Segmenter.from_checkpoint(" in e for e in examples)
    assert callable(Segmenter.from_checkpoint)
    from fashionseg.runtime import OnnxModel

    assert any("OnnxModel(" in e for e in examples) and callable(OnnxModel)


def as_check(command: str) -> list[str] | None:
    """The README command made runnable here: Hydra CLIs with ``--cfg job`` (the config is
    composed and printed, nothing runs), argparse CLIs with ``--help`` after the arguments
    as written, ``make`` as a dry run; None for commands that are not ours."""
    args = shlex.split(command)
    if args[:2] == ["python", "-m"] and args[2].startswith("fashionseg."):
        extra = ["--cfg", "job"] if args[2] in HYDRA_CLIS else ["--help"]
        if "--cfg" in args or "--help" in args:
            extra = []
        return [sys.executable, *args[1:], *extra]
    if args[0] == "make":
        return ["make", "--dry-run", *args[1:]]
    return None


def test_readme_commands_are_all_checked() -> None:
    commands = readme_commands()
    assert any("fashionseg.train" in c for c in commands)
    unchecked = [c for c in commands if as_check(c) is None]
    assert unchecked == ["tensorboard --logdir logs"]  # TensorBoard's own command


@pytest.mark.slow  # each command starts Python and composes its config: seconds each
@pytest.mark.parametrize("command", [c for c in readme_commands() if as_check(c)])
def test_readme_command_runs_as_written(command: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        as_check(command), cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
