"""The README's Python snippets run as written (in a scratch directory)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_has_the_two_commands_and_python_snippets():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")
    assert len(_python_blocks()) >= 2


@pytest.mark.slow
def test_readme_code_snippets_run(tmp_path: Path):
    code = "\n".join(_python_blocks())
    code += "\nassert (Path('runs/readme/encoder.pt')).is_file()\n"
    code += "assert probe.hparams.num_classes == 8 and retrieval is not None\n"
    env = dict(os.environ, DSM_LIGHTNING_CACHE=str(tmp_path / "cache"))
    res = subprocess.run([sys.executable, "-c", "from pathlib import Path\n" + code],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "runs" / "readme" / "metrics.csv").is_file()
