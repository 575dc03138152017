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
