"""Print, per corpus file and decoder, how many clips were checked, matched, refused, wrong.

The same check as ``test_decoding_corpus.py`` (every 4-frame clip at strides 1, 2, 3, 5
against a sequential decode), as a table:  ``python tests/helpers/corpus_report.py``.
"""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data"))
os.environ.setdefault("DSM_LIGHTNING_FRAME_INDEX", tempfile.mkdtemp())

from test_decoding_corpus import NAMES, SIZE, _clips, _mad, sequential_decode  # noqa: E402

from dsm_lightning.data import torchcodec_backend  # noqa: E402
from dsm_lightning.data.video_io import VideoDecodeError, decode_clip  # noqa: E402
from helpers.video_corpus import make_corpus  # noqa: E402


def report() -> list[str]:
    """Markdown rows: file, frames, decoder, clips checked / matched / refused / wrong."""
    corpus = {c.name: c for c in make_corpus(tempfile.mkdtemp())}
    decoders = ["pyav"] + ([] if torchcodec_backend.unavailable_reason() else ["torchcodec"])
    rows = ["| file | frames | decoder | clips checked | matched | refused (named) | wrong |",
            "|---|---|---|---|---|---|---|"]
    for name in NAMES:
        entry = corpus[name]
        for decoder in decoders:
            size = SIZE if decoder == "pyav" else None  # torchcodec: compared at native size
            reference = sequential_decode(entry.path, size)
            counts = {"checked": 0, "matched": 0, "refused": 0, "wrong": 0}
            for clip in _clips(entry.num_frames):
                counts["checked"] += 1
                try:
                    frames = decode_clip(entry.path, clip, frame_size=size, decoder=decoder)
                except VideoDecodeError:
                    counts["refused"] += 1
                    continue
                good = all(i in reference and _mad(f, reference[i]) <= 1.0
                           for f, i in zip(frames, clip))
                counts["matched" if good else "wrong"] += 1
            rows.append(f"| {name} | {entry.num_frames} | {decoder} | {counts['checked']} | "
                        f"{counts['matched']} | {counts['refused']} | {counts['wrong']} |")
    return rows


if __name__ == "__main__":
    print("\n".join(report()))
