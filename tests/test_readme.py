"""The README's two commands are the project's contract: CI must run exactly the test command it prints."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S)
    return text, [b.strip() for b in blocks]


def test_ci_runs_the_readme_test_command_verbatim():
    text, blocks = readme_commands()
    tests = [b for b in blocks if "pytest" in b]
    assert tests, "README has no test command"
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests[0] in ci, f"CI does not run the README's test command {tests[0]!r}"


def test_readme_main_job_builds_the_course():
    _, blocks = readme_commands()
    assert "helpers.course build" in blocks[0], "the README's first command must be the course build"
    assert "requirements.txt" in blocks[0]
