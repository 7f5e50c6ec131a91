"""The README's transcripts are a real run: regenerated and compared, so they cannot drift."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT


def test_the_readme_examples_match_a_fresh_run():
    result = subprocess.run(
        [sys.executable, "scripts/readme_examples.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
