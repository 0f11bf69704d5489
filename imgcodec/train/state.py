"""A run's resumable state: ``state.safetensors`` in the run folder.

Weights, the moving average, both optimizers' state and the RNG, as tensors; the step, the seconds
spent and the options as JSON metadata (safetensors only: nothing is unpickled).  It is written
atomically, so ``--resume`` after ``kill -9`` loses at most one interval and continues bit-exactly:
every tensor comes back with its values and its memory order.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..atomic import write_bytes_atomic

STATE_FILE = "state.safetensors"


def _flatten_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    """An optimizer's state as tensors (``PREFIX.IDX.KEY``) and JSON; a list of tensors (SOAP's
    preconditioner bases, one per dimension) as a nested JSON structure whose tensors are stored
    under ``PREFIX-list.IDX.KEY.PATH``."""
    sd = opt.state_dict()
    scalars, lists = {}, {}

    def nested(v, key: str):
        if torch.is_tensor(v):
            # stored in its memory order and permuted back on load: an eigenbasis comes out
            # column-major, and a matmul over other strides rounds differently (resume is exact)
            order = sorted(range(v.dim()), key=lambda d: -v.stride(d))
            tensors[key] = v.detach().cpu().permute(order).contiguous()
            return {"tensor": key, "order": order}
        if isinstance(v, (list, tuple)):
            return [nested(x, f"{key}.{j}") for j, x in enumerate(v)]
        return {"value": v}

    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}.{idx}.{k}"] = v.detach().cpu().contiguous()
            elif isinstance(v, (list, tuple)):
                lists[f"{idx}.{k}"] = nested(v, f"{prefix}-list.{idx}.{k}")
            else:
                scalars[f"{idx}.{k}"] = v
    meta[prefix] = json.dumps({"param_groups": sd["param_groups"], "scalars": scalars, "lists": lists})


def _unflatten_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    info = json.loads(meta[prefix])
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith(prefix + "."):
            idx, k = key[len(prefix) + 1 :].split(".", 1)
            state.setdefault(int(idx), {})[k] = v
    for key, v in info["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v

    def restored(node):
        if isinstance(node, list):
            return [restored(x) for x in node]
        if "tensor" not in node:
            return node["value"]
        order = node["order"]
        return tensors[node["tensor"]].permute([order.index(d) for d in range(len(order))])

    for key, node in info.get("lists", {}).items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = restored(node)
    for group in info["param_groups"]:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})


def save_state(path: Path, model, opt, aux_opt, step: int, seconds: float, options: dict,
               ema: dict[str, torch.Tensor] | None = None) -> None:
    """Write the state of a run at ``step`` (after ``seconds`` of training) atomically."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for k, v in (ema or {}).items():
        tensors[f"ema.{k}"] = v.detach().cpu().contiguous()
    meta = {"step": str(step), "seconds": repr(seconds), "options": json.dumps(options)}
    _flatten_optimizer("opt", opt, tensors, meta)
    _flatten_optimizer("aux", aux_opt, tensors, meta)
    tensors["rng.torch"] = torch.get_rng_state()  # the quantization noise continues exactly
    write_bytes_atomic(path, st_save(tensors, metadata=meta), force=True)


def state_step(path: Path) -> int:
    """The step a run's state file holds, read from its metadata alone."""
    with safe_open(str(path), framework="pt") as f:
        return int(f.metadata()["step"])


def load_state(path: Path, model, opt, aux_opt, ema: dict[str, torch.Tensor] | None = None) -> tuple[int, float]:
    """Put the state in ``path`` into the model, both optimizers, the average and the RNG; returns
    ``(step, seconds)``."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    # All tensors as safetensors.torch.load gives them, in the file's order: a SOAP run resumes
    # bit-exactly from these, and not from safe_open's tensors (in the order of their names).
    tensors = st_load(Path(path).read_bytes())
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(weights)
    if ema is not None:
        saved = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
        if saved.keys() != ema.keys():  # a run that had no average: it starts from the weights
            saved = {k: v.detach().clone() for k, v in model.named_parameters() if k in ema}
        for k, v in saved.items():
            ema[k].copy_(v)
    _unflatten_optimizer("opt", opt, tensors, meta)
    _unflatten_optimizer("aux", aux_opt, tensors, meta)
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    return int(meta["step"]), float(meta["seconds"])


def weights_digest(model) -> str:
    """sha256 over the parameters and buffers, less the coder's tables (derived by ``update()``):
    equal digests mean bit-identical replicas."""
    h = hashlib.sha256()
    derived = ("_quantized_cdf", "_offset", "_cdf_length")
    for name, t in sorted(model.state_dict().items()):
        if name.endswith(derived):
            continue
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
