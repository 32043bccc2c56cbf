"""The README's promises a newcomer relies on (the walk, tests/project/test_walk.py, runs its blocks):
two set-up commands, CPU-only configs that follow the CPU-only advice, the notebooks' extra
and command, and the sections the measured tables go into."""

from __future__ import annotations

import re
from pathlib import Path

from helpers.walk import doc_blocks

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    """The text under a heading, up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(title)}.*?$", README, flags=re.M)
    assert match, f"README has no section {title!r}"
    level = len(match.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(README, match.end())
    return README[match.end():end.start() if end else len(README)]


def test_a_fresh_machine_needs_exactly_two_commands():
    (setup,) = [b for b in doc_blocks(_section("Set up: two commands")) if b.lang == "bash"]
    commands = [line.split("#")[0].strip() for line in setup.code.splitlines()]
    assert [c for c in commands if c] == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: ", makefile, re.M) and re.search(r"^test: ", makefile, re.M)
    assert "dsm study --config examples/configs/study_synthetic.yaml" in makefile
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")


def test_cpu_only_configs_decode_in_the_main_process():
    """The synthetic configs (the ones a CPU-only machine runs) parse to ``num_workers: 0``, as
    the README's snippets and FAQ advise (measured: loader workers take the model's cores).
    The README blocks themselves run as written in the walk (tests/project/test_walk.py), and
    ``dsm test`` refusing a classifier that was never fitted is tests/test_cli.py's."""
    from dsm_lightning.cli import parse_config

    for name in ("synthetic_dsm_intra", "finetune_synthetic", "retrieval_synthetic"):
        cfg = parse_config(["--config", str(ROOT / "examples" / "configs" / f"{name}.yaml")])
        assert cfg.data.init_args.num_workers == 0, name
        assert cfg.trainer.accelerator == "cpu", name


def test_notebooks_section_names_the_extra_and_the_command():
    (block,) = [b for b in doc_blocks(_section("4. Notebooks")) if b.lang == "bash"]
    assert block.code.split() == ["pip", "install", "-e", '".[notebooks]"', "jupyter", "lab",
                                  "notebooks/"]
    pyproject = (ROOT / "pyproject.toml").read_text()  # (tomllib needs Python 3.11)
    extra = re.search(r"^notebooks = \[(.*?)\]", pyproject, flags=re.S | re.M).group(1)
    names = {re.split(r"[<>=\[ ]", item)[0] for item in re.findall(r'"([^"]+)"', extra)}
    assert {"jupyterlab", "nbconvert", "scikit-video"} <= names
    assert "notebooks/rendered/" in _section("4. Notebooks")


def test_every_section_the_lead_fills_is_there_and_marked():
    for title in ("The demo", "Reproducing the paper", "Performance", "Which remedy"):
        assert "<!-- lead: table -->" in _section(title), title


def test_every_run_command_says_where_its_output_goes():
    where = _section("Where did it go?")
    for command in ("`dsm fit` (pretraining)", "`dsm test` (fine-tuning)", "`dsm test` (retrieval)",
                    "`dsm study`", "`python examples/<name>.py`", "notebooks"):
        assert command in where, command
    for block in doc_blocks(README):
        for line in block.code.replace("\\\n", " ").splitlines():
            if re.match(r"^(dsm (fit|study)|python -m dsm_lightning.cli fit)", line):
                assert "# ->" in line or "--print_config" in line, line
