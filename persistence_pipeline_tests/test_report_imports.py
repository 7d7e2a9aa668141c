"""`python -m persistence_pipeline report` prints what the warehouse holds and trains nothing, so
what it imports must not bring in the modelling and plotting libraries (sklearn and scipy take
several times the CPU of the report's own query; issue 26). Checked in a fresh interpreter, where
no other test has imported them."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.core

HEAVY = ("sklearn", "scipy", "shap", "matplotlib")


def test_the_report_command_imports_no_modelling_or_plotting_library():
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, persistence_pipeline.__main__, persistence_pipeline.storage.latest_run, "
            "persistence_pipeline.core.report; "
            f"print(' '.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert loaded == []
