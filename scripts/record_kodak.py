#!/usr/bin/env python
"""Record a model's Kodak figures in checkpoints/manifest.json, from its `imgcodec eval` result file.

    python scripts/record_kodak.py results/kodak/factorized-gdn.json

Only entries whose weights are the ones evaluated (same sha256) are updated.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from imgcodec import store


def main(path: str) -> None:
    res = json.loads(Path(path).read_text())
    if res.get("dataset", {}).get("name") != "kodak" or res["dataset"].get("images") != 24:
        sys.exit(f"{path}: not an evaluation on the 24 Kodak images")
    model = res["name"]
    means = res["results"]
    entries = store.read_manifest()
    for entry in entries:
        if entry["model"] != model or entry["quality"] not in means["quality"]:
            continue
        evaluated = res["settings"]["weights"].get(str(entry["quality"]), {}).get("sha256")
        if evaluated != entry["sha256"]:
            continue  # a result of other weights: leave the entry alone
        i = means["quality"].index(entry["quality"])
        entry["kodak"] = {"bpp": round(means["bpp"][i], 4), "psnr": round(means["psnr-rgb"][i], 3)}
    store.write_manifest(entries)


if __name__ == "__main__":
    main(sys.argv[1])
