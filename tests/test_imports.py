"""The package's import graph: no cycles, and the codec core apart from the studies.

Every ``import``/``from … import`` in every module of ``imgcodec`` counts, at the top of a module or
inside a function (a deferred import still closes a cycle when it runs).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import imgcodec

PACKAGE = Path(imgcodec.__file__).parent
CORE = ("imgcodec.format", "imgcodec.models", "imgcodec.codec")
NOT_CORE = ("imgcodec.eval", "imgcodec.studies", "imgcodec.train", "imgcodec.cli")


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("imgcodec",) + path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of the package that ``name`` imports explicitly (its parent packages excluded)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)  # `from pkg import submodule`
    return {m for m in found if m in known and m != name and not name.startswith(m + ".")}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_walk_sees_the_package():
    graph = _graph()
    assert {"imgcodec.codec.api", "imgcodec.models.store", "imgcodec.format.rans", "imgcodec.train.loop"} <= set(graph)
    assert "imgcodec.models.store" in graph["imgcodec.codec.api"]
    assert "imgcodec.codec.refine" in graph["imgcodec.codec.api"]  # a top-level `from .refine import`


def test_every_import_of_the_package_names_something_that_exists():
    """A name imported from the package (at the top or inside a function) exists: a deferred
    import of a moved module fails here, not when its function first runs."""
    mods = _modules()
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    module = ".".join(base[: len(base) - (node.level - 1)] + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                if not module.startswith("imgcodec"):
                    continue
                assert module in mods, f"{name} imports {module}"
                target = importlib.import_module(module)
                for alias in node.names:
                    assert f"{module}.{alias.name}" in mods or hasattr(target, alias.name), \
                        f"{name} imports {alias.name} from {module}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("imgcodec") or alias.name in mods, f"{name} imports {alias.name}"


def test_a_cycle_is_found():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    assert _cycle(_graph()) is None


def test_the_codec_core_imports_no_study_evaluation_or_training():
    graph = _graph()
    for name, deps in graph.items():
        if name.startswith(CORE):
            assert not {d for d in deps if d.startswith(NOT_CORE)}, name


# The packages whose modules hold no mutable state: what a runtime loads belongs to its caller.
STATELESS = ("imgcodec.light", "imgcodec.codec")
MUTABLE = (dict, list, set, bytearray)


def _mutable_attributes(module) -> list[str]:
    """The names of ``module``'s attributes, and of the class attributes of the classes it defines,
    that are mutable containers; dunder names (``__builtins__``, ``__annotations__``, ``__all__``:
    the interpreter's and the list of public names) aside."""
    found = []
    for attr, value in vars(module).items():
        if attr.startswith("__"):
            continue
        if isinstance(value, MUTABLE):
            found.append(attr)
        if isinstance(value, type) and value.__module__ == module.__name__:
            found += [f"{attr}.{k}" for k, v in vars(value).items()
                      if not k.startswith("__") and isinstance(v, MUTABLE)]
    return found


def test_the_runtimes_hold_no_module_level_mutable_state():
    """No module of ``imgcodec.light`` or ``imgcodec.codec`` (nor a class of one) holds a dict, list,
    set or bytearray: loaded weights, models and sessions belong to the caller that loads them (a
    ``Store.cached()`` or ``LightStore.cached()`` it holds), constants are tuples, frozensets or
    read-only mappings.  A module that needs torch is checked where torch is installed."""
    checked = []
    for name in sorted(_modules()):
        if not name.startswith(STATELESS):
            continue
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name in ("torch", "compressai", "torchvision"):
                continue
            raise
        assert not _mutable_attributes(module), f"{name}: {_mutable_attributes(module)}"
        checked.append(name)
    assert {"imgcodec.light.store", "imgcodec.light.models", "imgcodec.light.codec",
            "imgcodec.light.checkpoint", "imgcodec.codec.files"} <= set(checked)


def test_a_mutable_module_attribute_is_found():
    import types

    module = types.ModuleType("m")
    module.CACHE, module.NAMES, module.__all__ = {}, ("a",), ["a"]

    class Holder:
        sessions: list = []

    Holder.__module__ = "m"
    module.Holder = Holder
    assert _mutable_attributes(module) == ["CACHE", "Holder.sessions"]
