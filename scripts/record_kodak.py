#!/usr/bin/env python
"""Record a model's Kodak figures in checkpoints/manifest.json, from its `imgcodec eval` result file.

    python scripts/record_kodak.py results/kodak/factorized-gdn.json

Only entries whose weights are the ones evaluated (same sha256) are updated; a continuous model's one
checkpoint gets its figures per quality ({"1": {"bpp": …, "psnr": …}, …}).  The manifest numbers
qualities as positions on the model's λ ladder (its entries' "quality" and these keys), the result
file on the common scale (ModelConfig.stored converts).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from imgcodec.models import store


def main(path: str) -> None:
    res = json.loads(Path(path).read_text())
    if res.get("dataset", {}).get("name") != "kodak" or res["dataset"].get("images") != 24:
        sys.exit(f"{path}: not an evaluation on the 24 Kodak images")
    model = res["name"]
    means = res["results"]
    home = store.default_store()
    entries = home.read_manifest()
    weights = res["settings"]["weights"]
    config = home.load_config(res["settings"]["model"])

    def figures(i: int) -> dict:
        return {"bpp": round(means["bpp"][i], 4), "psnr": round(means["psnr-rgb"][i], 3)}

    for entry in entries:
        if entry["model"] != model:
            continue
        if entry["quality"] == store.EVERY_QUALITY:  # a continuous model: one checkpoint, every quality
            mine = [i for i, q in enumerate(means["quality"]) if weights.get(str(q), {}).get("sha256") == entry["sha256"]]
            if mine:
                entry["kodak"] = {str(config.stored(means["quality"][i])): figures(i) for i in mine}
            continue
        quality = config.from_stored(entry["quality"])
        if quality not in means["quality"]:
            continue
        if weights.get(str(quality), {}).get("sha256") != entry["sha256"]:
            continue  # a result of other weights: leave the entry alone
        entry["kodak"] = figures(means["quality"].index(quality))
    home.write_manifest(entries)


if __name__ == "__main__":
    main(sys.argv[1])
