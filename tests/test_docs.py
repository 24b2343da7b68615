"""The README's commands and CI stay in step."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _quick_start_commands():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```\n(.+?)\n```", section)


def test_quick_start_has_exactly_two_commands():
    commands = _quick_start_commands()
    assert len(commands) == 2, commands
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert _quick_start_commands()[1] in ci


def test_readme_names_the_system_packages_ci_installs():
    ci = (ROOT / ".ci" / "run").read_text().replace("\\\n", " ")
    installed = re.search(r"apt-get install -y -qq --no-install-recommends ([^>\n]+?)\s*>", ci).group(1).split()
    readme = (ROOT / "README.md").read_text()
    named = re.search(r"`apt-get install ([^`]+)`", readme).group(1).split()
    assert named == installed, (named, installed)


def test_the_errors_the_readme_says_are_proposal_errors_are():
    import paxos_core

    readme = (ROOT / "README.md").read_text()
    listed = readme[readme.index("Errors are distinct classes"):readme.index("`ProposalError` is the base")]
    names = {name for name in re.findall(r"`(\w+)`", listed) if isinstance(getattr(paxos_core, name, None), type)}
    assert {"Timeout", "NotMaster", "Overloaded", "UnknownGroupError"} <= names, names
    for name in names:
        assert issubclass(getattr(paxos_core, name), paxos_core.ProposalError), name
