"""The newcomer's walk machinery (tests/project/test_walk.py): Markdown code blocks, printed
output reports, a checkout copy, and the driver the walk runs in a subprocess
(``python tests/helpers/walk.py SPEC.json`` or ``--examples NAME ...``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.py") if not p.stem.startswith("_"))
CONFIGS = sorted((ROOT / "examples").rglob("*.yaml"))
#: what a checkout copy leaves out (version control, the installed package, the tests, runs)
NOT_COPIED = (".git", ".venv", "src", "tests", "outputs", "runs", "lightning_logs", "build",
              "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache",
              ".ipynb_checkpoints")
SKIP = re.compile(r"^<!--\s*not run:\s*(?P<reason>\S.*?)\s*-->$")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
RUN_LANGS = ("python", "bash")
BLOCK_MARK, FAIL_MARK = "[walk] block", "[walk] FAILED"
TIMEOUT_S = 600


@dataclass(frozen=True)
class Block:
    """A fenced code block of a document: language, code, 1-based line of its fence, and the
    reason given by a ``<!-- not run: ... -->`` line before it (None: it runs)."""

    lang: str
    code: str
    line: int
    skip: str | None


def doc_blocks(text: str) -> list[Block]:
    """The ``python`` / ``bash`` blocks of a Markdown text, with their not-run reasons.

    Raises:
        ValueError: a fence is never closed, or a ``not run`` comment gives no reason.
    """
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            if lines[i].strip().startswith("<!-- not run") and not SKIP.match(lines[i].strip()):
                raise ValueError(f"line {i + 1}: write `<!-- not run: <reason> -->`")
            i += 1
            continue
        start, indent = i, len(match.group("indent"))
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"line {start + 1}: the ``` fence is never closed")
        before = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()),
                      "")
        skip = SKIP.match(before)
        if match.group("lang") in RUN_LANGS:
            code = "\n".join(line[indent:] for line in lines[start + 1:end])
            blocks.append(Block(match.group("lang"), code + "\n", start + 1,
                                skip.group("reason") if skip else None))
        i = end + 1
    return blocks


def printed_outputs(text: str) -> list[tuple[str, str]]:
    """``(label, path)`` of every line under a ``[...] ... outputs:`` header in ``text``."""
    found, inside = [], False
    for line in text.splitlines():
        if re.match(r"^\[\w+\][\w ]*outputs:$", line.strip()):
            inside = True
            continue
        match = re.match(r"^  (\S.*?)\s{2,}(\S.*)$", line) if inside else None
        if match is None:
            inside = False
            continue
        found.append((match.group(1), match.group(2)))
    return found


def assert_outputs_exist(text: str, cwd: Path) -> list[tuple[str, str]]:
    """Every printed output exists and lies inside ``cwd`` (relative paths: from ``cwd``)."""
    outputs = printed_outputs(text)
    for label, path in outputs:
        full = (cwd / path).resolve()
        assert full.exists(), f"printed {label} {path} does not exist (cwd {cwd})"
        assert full.is_relative_to(cwd.resolve()), f"{label} {path} is outside the cwd {cwd}"
    return outputs


# ---------------------------------------------------------------------------- the driver
def run_blocks(spec_file: str) -> int:
    """Run a document's blocks in order in the working directory (the walk's subprocess).

    Python blocks are executed in one namespace; bash blocks go to ``bash``.
    """
    spec = json.loads(Path(spec_file).read_text())
    namespace: dict = {"__name__": "__main__"}
    for block in spec["blocks"]:
        where = f"{spec['doc']}:{block['line']}"
        print(f"{BLOCK_MARK} {where} ({block['lang']})", flush=True)
        if block["lang"] == "python":
            try:
                # blank lines first: a traceback names the document's own line numbers
                code = "\n" * block["line"] + block["code"]
                exec(compile(code, spec["doc"], "exec"), namespace)  # noqa: S102
            except BaseException:  # noqa: BLE001 - report any failure of the block
                traceback.print_exc()
                print(f"{FAIL_MARK} {where}", flush=True)
                return 1
            sys.stdout.flush()
            continue
        script = ("set -e -o pipefail\n"  # 3 lines before the block's first (its fence + 1)
                  f"trap 'echo \"{FAIL_MARK} {where}: line $((LINENO - 3 + {block['line']})): "
                  "$BASH_COMMAND\"' ERR\nset -v\n" + block["code"])
        if subprocess.run(["bash", "-c", script]).returncode:
            return 1
    return 0


def package_dir() -> str:
    """The directory holding the ``dsm_lightning`` under test (src/ of this checkout)."""
    import dsm_lightning

    return str(Path(dsm_lightning.__file__).resolve().parents[2])


def checkout_copy(target: Path) -> Path:
    """A user's clone of the repository without what ``NOT_COPIED`` names, at ``target``."""
    ignore = shutil.ignore_patterns(*NOT_COPIED)
    target.mkdir(parents=True)
    for entry in ROOT.iterdir():
        if ignore(str(ROOT), [entry.name]):
            continue
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name, ignore=ignore)
        else:
            shutil.copy2(entry, target / entry.name)
    return target


def run_examples(names: list[str]) -> int:
    """Run ``examples/<name>.py`` as ``__main__`` with no argument, one after the other, in
    this interpreter (the walk's subprocess: one start-up instead of one per script)."""
    import runpy

    for name in names:
        print(f"{BLOCK_MARK} examples/{name}.py", flush=True)
        sys.argv = [f"examples/{name}.py"]
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
        except BaseException:  # noqa: BLE001 - report it, run the next script
            traceback.print_exc()
            print(f"{FAIL_MARK} examples/{name}.py", flush=True)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":  # the walk's driver (see run_blocks, run_examples)
    sys.exit(run_examples(sys.argv[2:]) if sys.argv[1] == "--examples" else run_blocks(sys.argv[1]))
