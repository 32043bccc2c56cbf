"""Execute the notebooks at their own settings and export a readable copy with outputs.

``python notebooks/render.py [NAME ...]`` (``make notebooks``) runs each notebook from the
``notebooks/`` folder (its outputs go to ``notebooks/outputs/``, not versioned) and writes
``notebooks/rendered/<name>.md``: the markdown cells, the code cells, their printed output
(stdout; long outputs keep their last lines; stderr, i.e. warnings and Lightning's info
lines, is left out) and their images as files under
``notebooks/rendered/<name>_files/``, kept small: PNG for plots, JPEG for photographic
images (when PNG would be large), GIFs at most ``MAX_GIF_WIDTH`` wide with
``GIF_COLOURS`` colours. The executed notebook is kept as
``notebooks/outputs/<name>.executed.ipynb`` (not versioned); ``--export-only`` re-exports
from it without running. The committed ``.ipynb`` files stay without outputs;
tests/project/test_notebooks.py checks that every rendered copy shows the current cells. Needs the
``notebooks`` extra (nbclient).
"""

from __future__ import annotations

import base64
import io
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from PIL import Image, ImageSequence

HERE = Path(__file__).resolve().parent
RENDERED = HERE / "rendered"
MAX_WIDTH = 640          # pixels of an exported image
MAX_GIF_WIDTH = 200      # pixels of an exported animation
GIF_COLOURS = 32         # palette of an exported animation (no dithering: smaller files)
MAX_PNG_BYTES = 60_000   # larger PNGs (photographic content) are written as JPEG
JPEG_QUALITY = 80
MAX_TEXT_LINES = 40      # lines kept of one text output (the last ones)
CELL_TIMEOUT_S = 3600


def _shrink(data: bytes, kind: str) -> tuple[bytes, str]:
    """The image re-encoded small; returns (bytes, file extension)."""
    image = Image.open(io.BytesIO(data))
    width = MAX_GIF_WIDTH if kind == "gif" else MAX_WIDTH
    scale = min(1.0, width / image.width)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    out = io.BytesIO()
    if kind == "gif":
        frames = [f.convert("RGB").resize(size).quantize(GIF_COLOURS, dither=Image.Dither.NONE)
                  for f in ImageSequence.Iterator(image)]
        frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], loop=0,
                       duration=image.info.get("duration", 100), optimize=True)
        return out.getvalue(), "gif"
    image = image.convert("RGB").resize(size)
    image.save(out, format="PNG", optimize=True)
    if out.tell() <= MAX_PNG_BYTES:
        return out.getvalue(), "png"
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue(), "jpg"


def _text(text: str) -> str:
    lines = text.rstrip("\n").splitlines()
    if len(lines) > MAX_TEXT_LINES:
        lines = [f"... ({len(lines) - MAX_TEXT_LINES} lines above)", *lines[-MAX_TEXT_LINES:]]
    return "```text\n" + "\n".join(lines) + "\n```\n"


def to_markdown(nb: nbformat.NotebookNode, name: str) -> str:
    """The executed notebook as Markdown; its images are written next to it."""
    files = RENDERED / f"{name}_files"
    files.mkdir(parents=True, exist_ok=True)
    parts, count = [], 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            parts.append(cell.source.strip() + "\n")
            continue
        parts.append("```python\n" + cell.source.strip() + "\n```\n")
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                if output.name == "stdout":  # stderr: warnings, Lightning's info lines
                    parts.append(_text(output.text))
                continue
            if output.output_type == "error":
                raise RuntimeError(f"{name}: {output.ename}: {output.evalue}")
            data = output.get("data", {})
            kind = next((k for k in ("gif", "png") if f"image/{k}" in data), None)
            if kind is not None:
                count += 1
                payload, ext = _shrink(base64.b64decode(data[f"image/{kind}"]), kind)
                image = files / f"{count:02d}.{ext}"
                image.write_bytes(payload)
                parts.append(f"![output {count}]({files.name}/{image.name})\n")
            elif "text/markdown" in data:
                parts.append(data["text/markdown"].strip() + "\n")
            elif "text/plain" in data:
                parts.append(_text(data["text/plain"]))
    header = (f"<!-- {name}.ipynb executed by notebooks/render.py at the notebook's own "
              "settings (stderr left out); regenerate with `make notebooks` -->\n")
    return header + "\n".join(parts)


def render(name: str, export_only: bool = False) -> Path:
    """Execute ``notebooks/<name>.ipynb`` (unless ``export_only``), write ``rendered/<name>.md``."""
    executed = HERE / "outputs" / f"{name}.executed.ipynb"
    start = time.perf_counter()
    if export_only:
        nb = nbformat.read(executed, as_version=4)
    else:
        nb = nbformat.read(HERE / f"{name}.ipynb", as_version=4)
        NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                       resources={"metadata": {"path": str(HERE)}}).execute()
        executed.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, executed)
    for old in (RENDERED / f"{name}_files").glob("*"):
        old.unlink()
    page = RENDERED / f"{name}.md"
    page.write_text(to_markdown(nb, name))
    print(f"{page} ({time.perf_counter() - start:.0f} s)", flush=True)
    return page


if __name__ == "__main__":
    export = "--export-only" in sys.argv[1:]
    names = [a for a in sys.argv[1:] if not a.startswith("--")]
    for notebook in names or sorted(p.stem for p in HERE.glob("*.ipynb")):
        render(notebook, export_only=export)
