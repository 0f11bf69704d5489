"""``metrics.csv`` in the run folder: a row every ``--log-every`` steps and at the end of the run,
with the means of the loss, bpp, MSE and auxiliary loss since the previous row, and the validation
figures where validation ran (every ``--val-every`` steps)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch

from ..errors import CodecError

METRICS_FILE = "metrics.csv"
METRIC_FIELDS = ["step", "seconds", "lr", "loss", "bpp", "mse", "psnr", "aux", "val_bpp", "val_psnr"]


class Metrics:
    """The running sums of one process since the last row, and the file rank 0 writes.

    The sums stay on the device: reading them back every step would stall a GPU on each step.
    """

    def __init__(self, path: Path | None, step: int, device: torch.device):
        """``path``: the file (None on the ranks that write none), kept up to ``step``: rows
        written after the state a run resumes from are dropped."""
        self.path = path
        self.sums, self.count = torch.zeros(4, device=device), 0
        if path is not None:
            rows = []
            if path.exists():
                with open(path, newline="") as f:
                    rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
                w.writeheader()
                w.writerows(rows)

    def add(self, values: torch.Tensor) -> None:
        """One step's ``[loss, bpp, mse, aux]``."""
        self.sums += values
        self.count += 1

    def means(self, step: int) -> list[float]:
        """``[loss, bpp, mse, aux]`` averaged since the last row; a diverged run stops here, so that
        it is never logged or saved."""
        means = (self.sums / max(self.count, 1)).tolist()
        if not math.isfinite(means[0]):
            raise CodecError(f"training diverged by step {step} (loss {means[0]}); lower --lr")
        return means

    def row(self, step: int, seconds: float, lr: float) -> dict:
        """The row of ``step``; the sums start again."""
        loss, bpp, mse, aux = self.means(step)
        self.sums.zero_()
        self.count = 0
        return {"step": step, "seconds": round(seconds, 2), "lr": lr, "loss": loss, "bpp": bpp, "mse": mse,
                "psnr": 10 * math.log10(1 / max(mse, 1e-10)), "aux": aux}

    def write(self, row: dict) -> None:
        if self.path is not None:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=METRIC_FIELDS).writerow(row)
