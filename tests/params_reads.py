"""Which params keys a stage's code reads, found by reading the code (ast), for tests/test_stages.py.

From a stage's command (its function in seppo/cli.py), follow every call (and callback) into package functions and
classes, tracking which values are params sections: a parameter annotated with a config class
(``cfg: TrainConfig``, ``params: Params``), a name assigned from one (``tr = params.train``,
``sampling = cfg.ref_sampling``), ``self.cfg`` set from one, and arguments passed to a callee.
A read is ``<section value>.<field>`` (e.g. ``cfg.lr`` -> ``train.lr``). ``model_dump()`` of a
whole section is reported separately (records and hashes, not inputs), as ``section.*``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pydantic import BaseModel

from seppo import config as C
from seppo.planning.code_deps import _base, modules

CONFIG_CLASSES = {n: c for n, c in vars(C).items()
                  if isinstance(c, type) and issubclass(c, BaseModel) and c.__module__ == C.__name__}
# config functions that derive a stage's settings from params (followed; the rest of config is validation)
FOLLOWED_IN_CONFIG = {"video_train_config"}
SECTION_OF = {f.annotation: name for name, f in C.Params.model_fields.items()}


@dataclass
class Module:
    name: str
    tree: ast.Module
    defs: dict = field(default_factory=dict)      # name -> FunctionDef | ClassDef
    imports: dict = field(default_factory=dict)   # local name -> (module, attr or None)


def _imports_of(mod: str, nodes, mods) -> dict:
    out = {}
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = _base(mod, node.level, node.module, mods)
            for a in node.names:
                sub = f"{base}.{a.name}"
                out[a.asname or a.name] = (sub, None) if sub in mods else (base, a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("seppo"):
                    out[a.asname or a.name.split(".")[0]] = (a.name if a.asname else a.name.split(".")[0], None)
    return out


class Reads:
    def __init__(self, src=None):
        self.mods = modules(src) if src else modules()
        self.index: dict[str, Module] = {}

    def module(self, name: str) -> Module:
        if name not in self.index:
            tree = ast.parse(self.mods[name].read_text())
            m = Module(name, tree)
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    m.defs[node.name] = node
            m.imports = _imports_of(name, [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))],
                                    self.mods)
            self.index[name] = m
        return self.index[name]

    def lookup(self, mod: str, name: str, local: dict, depth: int = 0):
        """(module, def node) that ``name`` means in ``mod`` (following re-exports), or None."""
        if depth > 10 or mod not in self.mods:
            return None
        m = self.module(mod)
        if name in local:
            target, attr = local[name]
        elif name in m.defs:
            return (mod, m.defs[name])
        elif name in m.imports:
            target, attr = m.imports[name]
        else:
            return None
        if attr is None:
            return ("module", target)
        return self.lookup(target, attr, {}, depth + 1)

    def analyse(self, entry: str) -> set[str]:
        """Params keys (``section.key``; ``section.*`` for a whole-section dump) read from ``entry``
        ("package.module:function")."""
        mod, fn = entry.split(":")
        node = self.module(mod).defs[fn]
        reads: set[str] = set()
        seen: set = set()
        self.by_name: dict = {}  # a name annotated with one config class in the reached code (cfg -> TrainConfig)
        class_attrs: dict = {}  # (module, class) -> {attr: config class}
        todo = [(mod, node, {}, None)]
        while todo:
            mod, fnode, bound, owner = todo.pop(0)
            key = (mod, id(fnode), tuple(sorted((k, v.__name__) for k, v in bound.items())))
            if key in seen:
                continue
            seen.add(key)
            if isinstance(fnode, ast.ClassDef):
                for n in fnode.body:  # dataclass-style fields: `cfg: TrainConfig`
                    if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
                        ann = getattr(n.annotation, "id", getattr(n.annotation, "value", None))
                        if ann in CONFIG_CLASSES:
                            class_attrs.setdefault((mod, fnode.name), {})[n.target.id] = CONFIG_CLASSES[ann]
                            self._name(n.target.id, CONFIG_CLASSES[ann])
                methods = [n for n in fnode.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
                methods.sort(key=lambda n: n.name != "__init__")  # __init__ first: it sets self.cfg
                for meth in methods:
                    todo.append((mod, meth, bound if meth.name == "__init__" else {}, (mod, fnode.name)))
                continue
            self._function(mod, fnode, bound, owner, class_attrs, reads, todo)
        return reads

    def _function(self, mod, fnode, bound, owner, class_attrs, reads, todo):
        env = dict(bound)
        args = fnode.args.posonlyargs + fnode.args.args + fnode.args.kwonlyargs
        for a in args:
            ann = getattr(a.annotation, "id", getattr(a.annotation, "value", None))
            if ann in CONFIG_CLASSES:
                env.setdefault(a.arg, CONFIG_CLASSES[ann])
                self._name(a.arg, CONFIG_CLASSES[ann])
        local = _imports_of(mod, [n for n in ast.walk(fnode) if isinstance(n, (ast.Import, ast.ImportFrom))],
                            self.mods)
        attrs = class_attrs.setdefault(owner, {}) if owner else {}

        def typeof(e):
            if isinstance(e, ast.Name):
                return env.get(e.id) or self.by_name.get(e.id)
            if isinstance(e, ast.Attribute):
                if isinstance(e.value, ast.Name) and e.value.id == "self" and e.attr in attrs:
                    return attrs[e.attr]
                base = typeof(e.value)
                if base is not None and e.attr in base.model_fields:
                    ann = base.model_fields[e.attr].annotation
                    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
                if base is None:  # `state.cfg.lr`: an untracked object's attribute named like a config
                    return self.by_name.get(e.attr)
            if isinstance(e, ast.Call):  # a package function annotated to return a config
                res = None
                if isinstance(e.func, ast.Name):
                    res = self.lookup(mod, e.func.id, local)
                if res and res[0] != "module" and isinstance(res[1], ast.FunctionDef):
                    r = res[1].returns
                    name = r.id if isinstance(r, ast.Name) else getattr(r, "value", None)
                    return CONFIG_CLASSES.get(name)
            return None

        for _ in range(2):  # assignments, twice so that chains settle
            for n in ast.walk(fnode):
                if isinstance(n, ast.Assign) and len(n.targets) == 1:
                    t, typ = n.targets[0], typeof(n.value)
                    if typ is None:
                        continue
                    if isinstance(t, ast.Name):
                        env[t.id] = typ
                    elif isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                        attrs[t.attr] = typ
        for n in ast.walk(fnode):
            if isinstance(n, ast.Attribute):
                base = typeof(n.value)
                if base in SECTION_OF and n.attr in base.model_fields:
                    reads.add(f"{SECTION_OF[base]}.{n.attr}")
                if base in SECTION_OF and n.attr in ("model_dump", "model_dump_json"):
                    reads.add(f"{SECTION_OF[base]}.*")
            target, towner = None, None
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
                target = self.lookup(mod, n.id, local)
            elif isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name):
                if n.value.id == "self" and owner:
                    cls = self.module(owner[0]).defs.get(owner[1])
                    meth = next((m for m in cls.body if isinstance(m, ast.FunctionDef) and m.name == n.attr), None)
                    target, towner = ((owner[0], meth), owner) if meth else (None, None)
                else:
                    res = self.lookup(mod, n.value.id, local)
                    if res and res[0] == "module":
                        target = self.lookup(res[1], n.attr, {})
            if not target or target[0] == "module":
                continue
            if target[0] == C.__name__ and target[1].name not in FOLLOWED_IN_CONFIG:  # its validators read every key
                continue
            tmod, tnode = target
            callee_env = {}
            call = next((c for c in ast.walk(fnode) if isinstance(c, ast.Call) and c.func is n), None)
            if call is not None:
                params = self._params_of(tnode)
                for i, a in enumerate(call.args):
                    typ = typeof(a)
                    if typ is not None and i < len(params):
                        callee_env[params[i]] = typ
                for kw in call.keywords:
                    typ = typeof(kw.value)
                    if typ is not None and kw.arg:
                        callee_env[kw.arg] = typ
            todo.append((tmod, tnode, callee_env, towner))

    def _name(self, name: str, cls) -> None:
        """Remember that ``name`` holds ``cls`` in the reached code; ambiguous names hold nothing."""
        if name in ("self", "params", "p"):
            return
        self.by_name[name] = cls if self.by_name.get(name, cls) is cls else None

    @staticmethod
    def _params_of(node) -> list[str]:
        if isinstance(node, ast.ClassDef):
            init = next((m for m in node.body if isinstance(m, ast.FunctionDef) and m.name == "__init__"), None)
            return [a.arg for a in init.args.args[1:]] if init else []
        return [a.arg for a in node.args.posonlyargs + node.args.args]


def reads(entry: str, src=None) -> set[str]:
    return Reads(src).analyse(entry)


if __name__ == "__main__":  # print what each stage reads
    import sys

    for e in sys.argv[1:]:
        print(e, sorted(reads(e)))

