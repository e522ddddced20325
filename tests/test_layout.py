"""The package's rooms: which module may import what (issue 11's layout, kept by a test)."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "pwdrst"

# Outside libraries, each with the only module (or package of modules) that may import it.
OWNERS = {
    "flask_mail": ("pwdrst.mail",),
    "ldap3": ("pwdrst.directory",),
    "itsdangerous": ("pwdrst.links",),
    "zxcvbn": ("pwdrst.matcher",),
    "zxcvbn_pl": ("pwdrst.matcher",),
    "marisa_trie": ("pwdrst.matcher",),
    "pyfusefilter": ("pwdrst.breach",),
    "aiosmtpd": ("pwdrst.sandbox",),
    "prometheus_client": ("pwdrst.metrics",),
}


def modules() -> dict[str, ast.Module]:
    """Return every module of the package, parsed, by its dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return found


def imported_names(tree: ast.Module, module: str) -> set[str]:
    """Return the dotted names a module imports, resolving `from pwdrst import x` to pwdrst.x."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                base = ".".join(module.split(".")[: -node.level] + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


def defines_blueprint(tree: ast.Module) -> bool:
    """Return whether a module creates a Blueprint object."""
    return any(
        isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Blueprint"
        for node in ast.walk(tree)
    )


MODULES = modules()
BLUEPRINTS = {name for name, tree in MODULES.items() if defines_blueprint(tree)}


def test_the_package_has_the_blueprints_it_serves():
    assert BLUEPRINTS == {
        "pwdrst.main",
        "pwdrst.api",
        "pwdrst.reset",
        "pwdrst.account",
        "pwdrst.helpdesk",
        "pwdrst.metrics",
    }


@pytest.mark.parametrize("blueprint", sorted(BLUEPRINTS))
def test_no_blueprint_imports_another_blueprint(blueprint):
    imported = imported_names(MODULES[blueprint], blueprint)
    assert not (imported & (BLUEPRINTS - {blueprint})), f"{blueprint} imports {imported & BLUEPRINTS}"


@pytest.mark.parametrize("library", sorted(OWNERS))
def test_each_outside_library_is_imported_by_its_own_module_only(library):
    importers = {
        name
        for name, tree in MODULES.items()
        if any(n == library or n.startswith(library + ".") for n in imported_names(tree, name))
    }
    strays = {name for name in importers if not name.startswith(OWNERS[library])}
    assert not strays, f"{library} is imported by {sorted(strays)}"
    assert importers, f"nothing imports {library}: is the table above out of date?"


def test_the_layout_check_sees_a_stray_import():
    # The check itself must be able to fail: a module that imports ldap3 outside the directory.
    tree = ast.parse("from ldap3 import Server\nfrom pwdrst import reset\n")
    names = imported_names(tree, "pwdrst.helpdesk")
    assert "ldap3" in names and "pwdrst.reset" in names
