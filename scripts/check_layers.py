#!/usr/bin/env python3
"""Fail when the modules of a Rust library crate import each other in a cycle.

    scripts/check_layers.py [SRC ...]      (default: the library crates,
                                            tools/cellweave/src and tools/cellweave-models/src)

The module tree is read from the files (`lib.rs`, `a.rs`, `a/mod.rs`, `a/b.rs`). Every path
that starts with `crate::` or `super::` (in `use` declarations and in expressions) is
resolved to the deepest module it names. A reference from module `a::x::...` to module
`a::y::...` is an edge `x -> y` among the children of `a`, at every level of the tree (so
`io::formats -> io::table` is an edge of `io`'s children, `preprocess -> io` one of the
crate's). References to a module's own ancestors (a child using its parent's items) are not
edges. Comments and `#[cfg(test)]` modules are skipped: tests may use any layer.

Prints each level's modules in groups, each group using only the groups before it, and
exits 1 naming the modules of each cycle when there is one.
"""

import re
import sys
from collections import defaultdict
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def module_files(src):
    """{module path tuple: file} for the crate rooted at src/lib.rs."""
    mods = {(): src / "lib.rs"}
    for f in sorted(src.rglob("*.rs")):
        rel = f.relative_to(src).with_suffix("")
        parts = rel.parts
        if parts == ("lib",) or parts == ("main",):
            continue
        if parts[-1] == "mod":
            parts = parts[:-1]
        mods[tuple(parts)] = f
    return mods


def strip_comments(text):
    """Remove // and /* */ comments (string literals are kept; they rarely hold `crate::`)."""
    out, i, n = [], 0, len(text)
    while i < n:
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif text[i] == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def strip_test_modules(text):
    """Remove `#[cfg(test)] mod name { ... }` blocks (brace-matched)."""
    pat = re.compile(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+" + IDENT + r"\s*\{")
    while True:
        m = pat.search(text)
        if not m:
            return text
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        text = text[: m.start()] + text[i:]


def use_paths(tree):
    """Expand a use tree such as `crate::{a::{self, b}, c}` into full paths."""
    tree = re.sub(r"\s+", "", tree)
    tree = re.sub(r"\bas" + IDENT, "", tree)

    def expand(s):
        depth = 0
        for i, c in enumerate(s):
            if c == "{":
                if depth == 0:
                    prefix, inner = s[:i], s[i + 1 : s.rindex("}")]
                    out = []
                    for part in split_top(inner):
                        for p in expand(part):
                            out.append(prefix.rstrip(":") if p == "self" else prefix + p)
                    return out
                depth += 1
            elif c == "}":
                depth -= 1
        return [s]

    def split_top(s):
        parts, depth, cur = [], 0, ""
        for c in s:
            if c == "," and depth == 0:
                parts.append(cur)
                cur = ""
                continue
            depth += c == "{"
            depth -= c == "}"
            cur += c
        if cur:
            parts.append(cur)
        return parts

    return expand(tree)


def references(text):
    """The `crate::`/`super::` paths a source text uses, as lists of segments."""
    refs = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        for p in use_paths(m.group(1)):
            refs.append(p.split("::"))
    body = re.sub(r"\buse\s+[^;]+;", "", text)
    for m in re.finditer(r"(?<![\w$])((?:crate|super)(?:\s*::\s*" + IDENT + r")+)", body):
        refs.append(re.sub(r"\s+", "", m.group(1)).split("::"))
    return refs


def resolve(segments, here, modules):
    """The deepest module a path names, or None for paths outside the crate."""
    if segments[0] == "crate":
        base, rest = (), segments[1:]
    elif segments[0] in ("super", "self"):
        base, rest = here, segments
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
    else:
        return None
    target = base
    for s in rest:
        if target + (s,) in modules:
            target = target + (s,)
        else:
            break
    return target


def edges_of(src):
    """{parent module: {child: {child it uses: example 'file: path'}}}."""
    modules = module_files(src)
    edges = defaultdict(lambda: defaultdict(dict))
    for here, f in modules.items():
        text = strip_test_modules(strip_comments(f.read_text()))
        for segs in references(text):
            to = resolve(segs, here, modules)
            if to is None:
                continue
            k = 0
            while k < len(here) and k < len(to) and here[k] == to[k]:
                k += 1
            if k == len(here) or k == len(to):
                continue  # an ancestor or a descendant: not between siblings
            parent = here[:k]
            edges[parent][here[k]].setdefault(to[k], f"{f.relative_to(src)}: {'::'.join(segs)}")
    children = defaultdict(set)
    for m in modules:
        if m:
            children[m[:-1]].add(m[-1])
    return edges, children


def cycles(nodes, edges):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, {})):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def layers(nodes, edges):
    """Nodes grouped by depth (for an acyclic graph): each uses only the groups before it."""
    depth = {}

    def visit(v):
        if v not in depth:
            depth[v] = 1 + max((visit(w) for w in edges.get(v, {})), default=-1)
        return depth[v]

    for v in nodes:
        visit(v)
    groups = defaultdict(list)
    for v, d in depth.items():
        groups[d].append(v)
    return [sorted(groups[d]) for d in sorted(groups)]


def check(src):
    edges, children = edges_of(src)
    failed = False
    for parent in sorted(children):
        nodes = children[parent]
        if len(nodes) < 2:
            continue
        name = "::".join(("crate",) + parent)
        found = cycles(nodes, edges[parent])
        for comp in found:
            failed = True
            print(f"{src}: import cycle among the modules of {name}: {' <-> '.join(comp)}")
            for a in comp:
                for b, where in sorted(edges[parent][a].items()):
                    if b in comp:
                        print(f"    {a} -> {b}  ({where})")
        if not found:
            print(f"{name}: {' < '.join(' '.join(g) for g in layers(nodes, edges[parent]))}")
    return not failed


LIBRARIES = ["tools/cellweave/src", "tools/cellweave-models/src"]


def main(argv):
    root = Path(__file__).resolve().parent.parent
    srcs = [Path(a) for a in argv] or [root / lib for lib in LIBRARIES]
    ok = True
    for src in srcs:
        if not (src / "lib.rs").is_file():
            print(f"{src}: no lib.rs (expected the src folder of a library crate)")
            return 2
        if len(srcs) > 1:
            print(f"== {src}")
        ok &= check(src)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
