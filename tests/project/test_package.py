"""Packaging: the public names, a lazy and offline import, and a wheel that installs and runs."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

import dsm_lightning

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, cwd=ROOT, **kw)


def test_import_is_lazy_and_offline():
    """`import dsm_lightning` pulls in neither torch nor Lightning and opens no socket."""
    res = _run("""
        import socket, sys
        def refuse(*a, **k):
            raise RuntimeError("network access during import")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        import dsm_lightning
        heavy = [m for m in ("torch", "pytorch_lightning", "lightning", "wandb") if m in sys.modules]
        print("HEAVY", heavy)
        for name in dsm_lightning.__all__:
            getattr(dsm_lightning, name)
        print("OK")
    """)
    assert res.returncode == 0, res.stderr
    assert "HEAVY []" in res.stdout
    assert res.stdout.strip().endswith("OK")


def test_public_names_resolve_to_classes():
    from pytorch_lightning import LightningDataModule, LightningModule

    for name in ("DSMLightningModule", "FinetuneModule", "RetrievalModule"):
        assert issubclass(getattr(dsm_lightning, name), LightningModule), name
    assert issubclass(dsm_lightning.VideoDataModule, LightningDataModule)
    assert set(dsm_lightning.__all__) >= {
        "DSMLightningModule", "VideoDataModule", "FinetuneModule", "RetrievalModule"}
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        dsm_lightning.Nope  # noqa: B018


@pytest.mark.slow
def test_wheel_installs_and_runs_cli(tmp_path: Path):
    """Build the wheel, install it into a fresh venv that reuses this torch, run `dsm --help`."""
    wheel_dir = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(wheel_dir)], check=True)
    wheels = list(wheel_dir.glob("dsm_lightning-*.whl"))
    assert len(wheels) == 1
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    vpy = venv / "bin" / "python"
    # Reuse the already installed dependencies (torch, Lightning, ...) through a .pth file; the
    # editable install of this checkout is not activated there (its finder is a site .pth).
    site = subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "reuse_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(vpy), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheels[0])], check=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(vpy), "-c", "import dsm_lightning; print(dsm_lightning.__file__)"],
                           check=True, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert str(venv) in where.stdout, where.stdout
    res = subprocess.run([str(venv / "bin" / "dsm"), "--help"], capture_output=True, text=True,
                         cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "fit" in res.stdout and "validate" in res.stdout
    res = subprocess.run([str(venv / "bin" / "dsm"), "fit", "--help"], capture_output=True,
                         text=True, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "--model" in res.stdout and "--data" in res.stdout


def test_version_matches_pyproject_and_changelog():
    """``__version__``, pyproject's version and the newest CHANGELOG heading agree."""
    import re

    declared = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    newest = re.search(r"^## \[(\d+\.\d+\.\d+)\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert dsm_lightning.__version__ == declared.group(1) == newest.group(1)
