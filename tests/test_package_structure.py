"""The package's shape: modules import each other without cycles, and no module outgrows a read.

The import graph counts every `import` of a module of the package, at the top of a file or
inside a function: an import deferred into a function still ties the two modules together, and a
cycle among them is a knot a reader (and a refactoring) has to untie.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("avs_jax", "tfds_batvision")
MAX_LINES = 400  # a module a reader takes in at one sitting


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports (the deepest known module of each import)."""
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):  # a package's own __init__
                out.add(t)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_cycle_finder_finds_a_cycle_and_accepts_a_dag():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    # The walk sees the imports that matter (a broken walk would find no edges, and no cycle).
    assert "avs_jax.models.resnet" in graph["avs_jax.models.depthnet"]
    assert "avs_jax.models.lite_depthnet" in graph["avs_jax.models.relative_model"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_no_module_of_avs_jax_is_over_400_lines():
    long = {
        name: n
        for name, path in _modules().items()
        if name.startswith("avs_jax")
        and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, long


def test_both_stages_and_the_toy_implement_the_task_protocol():
    import train_toy

    from avs_jax.config_files import load_config
    from avs_jax.train.tasks import Task, make_task

    for name, arg in (("avsnet", "tiny"), ("monodepth2", "tiny"), ("litemono", "tiny")):
        assert isinstance(make_task(load_config(name, arg)), Task), name
    assert isinstance(train_toy.ToyTask(), Task)
    assert not isinstance(object(), Task)  # the check looks at the methods


def test_requirements_txt_and_pyproject_list_the_same_dependencies():
    """requirements.txt (the README's install, CI) and pyproject.toml (pip install -e .) agree."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = {
        r
        for r in (
            line.split("#")[0].strip()
            for line in (ROOT / "requirements.txt").read_text().splitlines()
        )
        if r
    }
    declared = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    assert listed == declared, listed ^ declared
    assert not any(re.match(r"(tensorflow|torch)([<>=!~;\[ ]|$)", r) for r in listed)


# What the repository's own files may refer to; the team's notes outside it never.
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt"}
SKIP_DIRS = {".venv", ".git", "runs", "data", "__pycache__", ".pytest_cache"}
# The team's notes beside the repository, which a clone does not have (spelt in parts, so that
# this file does not cite them itself).
TEAM_NOTES = tuple(stem + ".md" for stem in ("DESIGN", "REFERENCE", "STYLE"))


def _text_files() -> list[Path]:
    return [
        p
        for p in ROOT.rglob("*")
        if p.is_file()
        and p.suffix in TEXT_SUFFIXES
        and not SKIP_DIRS & set(p.relative_to(ROOT).parts)
    ]


def _headings(path: Path) -> set[str]:
    return {
        line.lstrip("#").strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    import re

    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_anchor_follows_githubs_rule():
    assert (
        _anchor("Why the median lines need not hold here")
        == "why-the-median-lines-need-not-hold-here"
    )
    assert _anchor("Camera intrinsics and poses") == "camera-intrinsics-and-poses"
    assert _anchor("Held-out rooms") == "held-out-rooms"
    assert _anchor("XLA:CPU") == "xlacpu"
    assert _anchor("The quickstart's settings: what was measured") == (
        "the-quickstarts-settings-what-was-measured"
    )


def test_every_document_a_file_refers_to_exists():
    """Paths of .md files, markdown links (with their #section), and `docs/<file>, "Section"`
    citations resolve inside the repository; nothing sends a reader to the team's notes outside
    it."""
    import re

    missing = []
    for path in _text_files():
        where = path.relative_to(ROOT)
        text = path.read_text(encoding="utf-8")
        # A citation may wrap: fold line breaks and comment markers into spaces.
        flat = re.sub(r"\s*\n\s*(#\s*)?", " ", text)
        for name in TEAM_NOTES:
            if name in text:
                missing.append(f"{where}: cites the team's {name}")
        for ref in re.findall(r"\b((?:docs|bench|tests|tools)/[\w./-]+\.md)\b", text):
            if not (ROOT / ref).exists():
                missing.append(f"{where}: {ref}")
        for doc, section in re.findall(r"\b(docs/[\w-]+\.md),? \"([^\"]+)\"", flat):
            if (ROOT / doc).exists() and section not in _headings(ROOT / doc):
                missing.append(f"{where}: {doc}, section {section!r}")
        if path.suffix == ".md":
            for link, anchor in re.findall(r"\]\(([^)#:\s]*)(?:#([^)]*))?\)", text):
                target = path.parent / link if link else path
                if not target.exists():
                    missing.append(f"{where}: link {link}")
                elif anchor and target.suffix == ".md":
                    if anchor not in {_anchor(h) for h in _headings(target)}:
                        missing.append(f"{where}: link {link}#{anchor}")
    assert not missing, "\n".join(missing)
