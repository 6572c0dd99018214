"""The package's layers, read from the code: data flows one way, folder by folder."""

from __future__ import annotations

from pathlib import Path

from tests.kit.layers import cycles, upward_imports

ROOT = Path(__file__).resolve().parents[2]


def test_no_import_runs_back_up() -> None:
    assert [f"{e.importer} -> {e.imported}" for e in upward_imports(ROOT)] == []


def test_no_import_cycle() -> None:
    assert cycles(ROOT) == []


def test_an_upward_import_is_found(tmp_path: Path) -> None:
    for package in ("exporter", "exporter/cams", "exporter/publish", "exporter/web"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "exporter/publish/snapshot.py").write_text("X = 1\n")
    (tmp_path / "exporter/cams/client.py").write_text("from exporter.publish.snapshot import X\n")
    (tmp_path / "exporter/web/routes.py").write_text("import exporter.cams.client\n")
    found = [(e.importer, e.imported) for e in upward_imports(tmp_path)]
    assert found == [
        ("exporter.cams.client", "exporter.publish.snapshot"),
        ("exporter.web.routes", "exporter.cams.client"),
    ]


def test_a_cycle_is_found(tmp_path: Path) -> None:
    (tmp_path / "exporter/cams").mkdir(parents=True)
    (tmp_path / "exporter/__init__.py").write_text("")
    (tmp_path / "exporter/cams/__init__.py").write_text("")
    (tmp_path / "exporter/cams/a.py").write_text("import exporter.cams.b\n")
    (tmp_path / "exporter/cams/b.py").write_text("from exporter.cams import a\n")
    assert cycles(tmp_path) == [["exporter.cams.a", "exporter.cams.b"]]
