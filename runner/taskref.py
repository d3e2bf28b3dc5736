"""Task references ``"module:function"``: checked statically by the orchestrator, imported by
the worker.

The orchestrator must not import the task module (the default task imports TensorFlow), so
:func:`check_task` validates a reference *without executing any code*:

1. the module is located with :class:`importlib.machinery.PathFinder` on the search path the
   worker will have (project root, current directory, ``PYTHONPATH``, then ``sys.path``),
   walking packages through their ``__path__`` locations without importing them;
2. its source is parsed with :mod:`ast`, and ``function`` must be bound at the top level (a
   ``def``, ``class``, assignment or ``import ... as function``).

Limits: a name created dynamically (``globals()[...] = ...``, ``from x import *``, a module
``__getattr__``) cannot be seen and is accepted with a warning; compiled or built-in modules are
accepted when they can be found; whether the bound object is callable is checked only at run
time by the worker (a top-level ``def``/``class`` is callable by construction; a name bound
to a literal such as ``run = 5`` or ``run = [...]`` is rejected).

A task must be a function taking one argument, the unit (``def run_unit(unit): ...``). A
function of a module built into the interpreter (``builtins:exec``) is refused by the static
check; the worker (:func:`import_task`) also refuses a built-in or C-level callable (``math:sqrt``)
and a callable that cannot be called with one positional argument, saying so, rather than letting
the call fail with the callee's own confusing error.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import inspect
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["parse_task", "check_task", "import_task", "worker_search_path", "project_root"]

log = logging.getLogger(__name__)

#: What every refusal of a non-task callable says.
TASK_CONTRACT = ("a task must be a function taking a unit (def run_unit(unit): ... returning or "
                 "yielding one dict per arm), defined at the top level of a Python module")

_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_NAME = re.compile(r"^[A-Za-z_]\w*$")


def project_root() -> Path:
    """The directory holding the ``runner`` package (prepended to the worker's PYTHONPATH)."""
    return Path(__file__).resolve().parent.parent


def worker_search_path(cwd: str | Path | None = None) -> list[str]:
    """The ``sys.path`` a worker started from ``cwd`` will search, as far as can be told."""
    cwd = str(Path(cwd or os.getcwd()).resolve())
    env = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    out: list[str] = []
    for p in [str(project_root()), cwd, *env, *sys.path[1:]]:
        p = p or cwd
        if p not in out:
            out.append(p)
    return out


def parse_task(ref: object) -> tuple[str, str]:
    """Split ``"module:function"``; ValueError with what is allowed otherwise."""
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise ValueError(f"must be a string 'module:function', got {ref!r}")
    module, func = ref.split(":")
    if not _DOTTED.match(module) or not _NAME.match(func):
        raise ValueError(f"must be 'module:function' with a dotted module path and a Python "
                         f"identifier, got {ref!r}")
    return module, func


def _find_spec(module: str, search: Sequence[str]):
    parts = module.split(".")
    spec = importlib.machinery.PathFinder.find_spec(parts[0], list(search))
    for i in range(1, len(parts)):
        if spec is None or not spec.submodule_search_locations:
            return None
        spec = importlib.machinery.PathFinder.find_spec(
            ".".join(parts[: i + 1]), list(spec.submodule_search_locations))
    return spec


_LITERALS = (ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.Set, ast.JoinedStr,
             ast.ListComp, ast.DictComp, ast.SetComp)


def _binds(tree: ast.Module, name: str) -> bool | str | None:
    """True if ``name`` is bound at the top level, ``"literal"`` if it is bound to a literal
    (not callable), None if it might be (star import or module ``__getattr__``), else False."""
    maybe = False
    for node in tree.body:
        stack = [node]
        while stack:  # look inside top-level if/try blocks too
            n = stack.pop()
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if n.name == name:
                    return True
                if n.name == "__getattr__":
                    maybe = True
            elif isinstance(n, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                for t in targets:
                    for sub in ast.walk(t):
                        if isinstance(sub, ast.Name) and sub.id == name:
                            return "literal" if isinstance(n.value, _LITERALS) else True
            elif isinstance(n, (ast.Import, ast.ImportFrom)):
                for alias in n.names:
                    if alias.name == "*":
                        maybe = True
                    bound = alias.asname or alias.name.split(".")[0]
                    if bound == name:
                        return True
            elif isinstance(n, (ast.If, ast.Try, ast.With)):
                for attr in ("body", "orelse", "finalbody", "handlers"):
                    stack.extend(getattr(n, attr, []) or [])
            elif isinstance(n, ast.ExceptHandler):
                stack.extend(n.body)
    return None if maybe else False


def check_task(ref: object, search: Sequence[str] | None = None) -> str | None:
    """Statically check a task reference. Returns None when fine, else what is wrong."""
    try:
        module, func = parse_task(ref)
    except ValueError as exc:
        return str(exc)
    if module.split(".")[0] in sys.builtin_module_names:
        return (f"{ref!r} is not a task: module {module!r} is built into the interpreter; "
                f"{TASK_CONTRACT}")
    search = list(search) if search is not None else worker_search_path()
    try:
        spec = _find_spec(module, search)
    except (ImportError, ValueError, OSError) as exc:
        return f"module {module!r} of {ref!r} cannot be located: {exc}"
    if spec is None:
        return (f"module {module!r} of {ref!r} not found (searched the project root, the "
                f"current directory, PYTHONPATH and sys.path)")
    origin = spec.origin
    if not origin or not origin.endswith(".py") or not os.path.isfile(origin):
        if spec.submodule_search_locations and origin in (None, "namespace"):
            return f"{module!r} of {ref!r} is a namespace package, not a module with code"
        return None  # compiled/frozen module: cannot parse, accept
    try:
        source = Path(origin).read_text(encoding="utf-8")
        tree = ast.parse(source, filename=origin)
    except SyntaxError as exc:
        return f"module {module!r} ({origin}) has a syntax error: line {exc.lineno}: {exc.msg}"
    except (OSError, UnicodeDecodeError) as exc:
        return f"module {module!r} ({origin}) cannot be read: {exc}"
    found = _binds(tree, func)
    if found is False:
        return f"module {module!r} ({origin}) defines no top-level {func!r}"
    if found == "literal":
        return f"{func!r} in module {module!r} ({origin}) is a literal value, not callable"
    if found is None:
        log.warning("cannot tell statically whether %s defines %r; the worker will check",
                    origin, func)
    return None


def import_task(ref: str) -> Callable:
    """Import and return the task function (worker side). Raises ImportError/TypeError."""
    module, func = parse_task(ref)
    mod = importlib.import_module(module)
    try:
        obj = getattr(mod, func)
    except AttributeError:
        raise ImportError(f"module {module!r} has no attribute {func!r}") from None
    if not callable(obj):
        raise TypeError(f"task {ref!r} is not callable (it is a {type(obj).__name__}); "
                        f"{TASK_CONTRACT}")
    problem = _not_a_task(obj)
    if problem:
        raise TypeError(f"task {ref!r} is {problem}; {TASK_CONTRACT}")
    return obj


def _not_a_task(obj: object) -> str | None:
    """Why the callable ``obj`` cannot be a task, or None."""
    if inspect.isbuiltin(obj) or inspect.ismethoddescriptor(obj) or type(obj).__name__ in (
            "method-wrapper", "wrapper_descriptor"):
        return f"the built-in function {getattr(obj, '__qualname__', obj)!s}, not a task"
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # no signature to check: let the call tell
        return None
    try:
        sig.bind(None)
    except TypeError:
        return f"a callable with signature {sig}, which cannot take a single unit"
    return None
