import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return EXAMPLES


def cli_app():
    """The typer app with every plugin command registered."""
    from certifier import cli

    cli._load_plugins()
    return cli.app


# Internal failures (a rule or error model that raises) fail closed for users; under test
# they raise, so a bug shows its traceback instead of a silently unbounded (and vacuously
# "sound") bound. tests/test_failclosed.py turns it off to test the fail-closed path.
from certifier import failclosed  # noqa: E402

failclosed.STRICT = True
