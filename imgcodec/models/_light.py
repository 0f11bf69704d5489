"""compressai without its package ``__init__``: the few modules the codec uses, and nothing else.

``import compressai`` runs ``compressai/__init__.py``, which imports every submodule — among them
its data sets (torch_geometric, torchvision) and, through ``compressai.registry``, the point-cloud
transforms; ``compressai.entropy_models`` imports ``scipy.stats`` for one function used only when
the CDF tables are rebuilt (training).  Together that is about two seconds and a few hundred MB per
process, for a codec that needs ``entropy_models``, ``layers``, ``ops``, ``ans`` and
``models.base``.

``load()`` registers ``compressai``, ``compressai.registry`` and ``compressai.models`` as *lazy
packages*: modules with the real ``__path__`` (so ``import compressai.X`` finds every submodule as
usual) whose ``__init__`` runs only when a name that is not a submodule is first asked for
(``compressai.zoo`` still imports the zoo; ``compressai.registry.TRANSFORMS`` runs the registry's
``__init__``).  ``scipy.stats`` is imported on its first use, through scipy's own lazy submodules.
Where compressai is already imported, ``load()`` changes nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import warnings


class _LazyPackage(types.ModuleType):
    """A package whose ``__init__`` has not run: submodules import as usual, other names run it."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return importlib.import_module(f"{self.__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{self.__name__}.{name}":
                raise
        init = self.__dict__.get("_init_source")
        if init is not None:  # run the package's own __init__, once
            del self.__dict__["_init_source"]
            exec(compile(init, self.__file__, "exec"), self.__dict__)
            if name in self.__dict__:
                return self.__dict__[name]
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


def _lazy_package(name: str, **attrs) -> types.ModuleType:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(f"{name} is not installed")
    mod = _LazyPackage(name)
    mod.__spec__ = spec
    mod.__path__ = list(spec.submodule_search_locations)
    mod.__file__ = spec.origin
    mod.__package__ = name
    mod.__loader__ = spec.loader
    with open(spec.origin, encoding="utf-8") as f:
        mod._init_source = f.read()
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, mod)
    return mod


def _entropy_coder_functions(mod: types.ModuleType) -> dict:
    """``compressai.get_entropy_coder`` and its two companions, as its ``__init__`` defines them."""
    mod._entropy_coder = "ans"
    mod._available_entropy_coders = ["ans"]

    def get_entropy_coder():
        return mod._entropy_coder

    def available_entropy_coders():
        return mod._available_entropy_coders

    def set_entropy_coder(entropy_coder):
        if entropy_coder not in mod._available_entropy_coders:
            raise ValueError(f'Invalid entropy coder "{entropy_coder}"')
        mod._entropy_coder = entropy_coder

    return {"get_entropy_coder": get_entropy_coder, "available_entropy_coders": available_entropy_coders,
            "set_entropy_coder": set_entropy_coder}


def load() -> None:
    """Make ``compressai.entropy_models``, ``.layers``, ``.models.base`` importable without the rest."""
    if "compressai" in sys.modules:
        return
    root = _lazy_package("compressai")
    root.__dict__.update(_entropy_coder_functions(root))
    registry = _lazy_package("compressai.registry")
    torch_registry = importlib.import_module("compressai.registry.torch")
    registry.__dict__.update({k: v for k, v in vars(torch_registry).items() if k.isupper() or k.startswith("register_")})
    _lazy_package("compressai.models")
    # ``import scipy.stats`` in entropy_models binds ``scipy``; the submodule loads on first use.
    stub = "scipy.stats" not in sys.modules
    if stub:
        sys.modules["scipy.stats"] = types.ModuleType("scipy.stats")
    try:
        with warnings.catch_warnings():  # compressai 1.2 scripts a helper with the deprecated torch.jit API
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated")
            importlib.import_module("compressai.entropy_models")
    finally:
        if stub:
            del sys.modules["scipy.stats"]
