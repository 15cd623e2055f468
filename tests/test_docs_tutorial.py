"""docs/tutorial-data-annotation.md and docs/tutorial-model-engineering.md show real output: their commands
run against a fresh devnet and must print what the page says (scripts/docs_tutorial.py holds the convention
and the normalising rule)."""

from __future__ import annotations

import pytest
from docs_scripts import load_script


@pytest.fixture(scope="module")
def tutorial():
    return load_script("docs_tutorial")


def test_the_page_convention_and_the_normalising_rule(tutorial):
    page = "text\n```console\n$ cat > a.yaml <<'EOF'\n> role: creator\n>\n> EOF\n$ echo hi\nhi\n```\n```sh\n$ not run\n```\n"
    first, second = tutorial.parse(page)
    assert first.command == "cat > a.yaml <<'EOF'\nrole: creator\n\nEOF" and first.expected == ""
    assert (second.command, second.expected, second.line) == ("echo hi", "hi\n", 7)
    assert tutorial.normalise("│ wall_s   │ 37.603 │  \n┏━━━━┓") == tutorial.normalise("│ wall_s │ 4.1 │\n┏━┓")
    assert tutorial.normalise("paid 1000") != tutorial.normalise("paid 1001")


def test_the_tutorial_prints_what_the_page_shows(tutorial):
    steps = tutorial.parse(tutorial.PAGE.read_text())
    assert len(steps) > 30
    failures = tutorial.run_page(steps)
    assert not failures, "\n".join(failures)
    differences = tutorial.differences(steps)
    assert not differences, "\n\n".join(differences) + f"\n\nregenerate the page with `{tutorial.COMMAND}`"


def test_the_model_engineering_tutorial_prints_what_the_page_shows(tutorial):
    """docs/tutorial-model-engineering.md, the same way (~30 s: a task published, taken and run)."""
    page = tutorial.PAGES[1]
    steps = tutorial.parse(page.read_text())
    assert len(steps) >= 6
    failures = tutorial.run_page(steps)
    assert not failures, "\n".join(failures)
    differences = tutorial.differences(steps)
    assert not differences, "\n\n".join(differences) + f"\n\nregenerate the page with `{tutorial.COMMAND} --page " \
                                                       f"{page.relative_to(tutorial.ROOT)}`"
