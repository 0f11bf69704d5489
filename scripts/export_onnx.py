"""Export the float transforms of the shipped models as ONNX graphs, and record them in the manifest.

    python scripts/export_onnx.py                       # every manifest entry
    python scripts/export_onnx.py checkerboard-gdn      # the entries of these models
    python scripts/export_onnx.py --subpixel [NAME …]   # transposed convolutions as phase convolutions

Run it whenever a model ships (its graphs must come from its weights: the light runtime refuses
graphs whose recorded checkpoint sha256 is not the entry's).  Needs torch (``imgcodec[train]``).
``--subpixel`` writes each transposed convolution as a phase convolution and a depth-to-space (the
same function); the shipped graphs are the plain export (docs/performance.md: the runtimes).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgcodec.light.export import export  # noqa: E402
from imgcodec.models.store import default_store  # noqa: E402

if __name__ == "__main__":
    args = sys.argv[1:]
    subpixel = "--subpixel" in args
    names = [a for a in args if a != "--subpixel"]
    done = export(default_store(), names or None, subpixel=subpixel)
    print(f"{len(done)} entries exported")
