"""controlkit.json: two typed records, written and read back; a damaged or newer file is one clear line."""

from __future__ import annotations

import json

import pytest

from controlkit.errors import UserError
from controlkit.metadata import FORMAT_VERSION, METADATA_FILE, ControlNetInfo, DatasetInfo


def test_written_records_read_back_and_a_folder_without_one_has_the_defaults(tmp_path):
    ControlNetInfo(base_model="base", resolution=64).write(tmp_path / "model")
    info = ControlNetInfo.read(tmp_path / "model")
    assert info.base_model == "base" and info.resolution == 64 and info.format_version == FORMAT_VERSION
    DatasetInfo(condition="canny", caption_column="caption", resolution=256).write(tmp_path / "data")
    assert DatasetInfo.read(tmp_path / "data") == DatasetInfo(
        condition="canny", caption_column="caption", resolution=256
    )
    (tmp_path / "plain").mkdir()
    assert ControlNetInfo.read(tmp_path / "plain") == ControlNetInfo()
    assert DatasetInfo.read(tmp_path / "plain") == DatasetInfo()


def test_a_file_written_before_format_versions_reads_as_version_one(tmp_path):
    (tmp_path / METADATA_FILE).write_text(json.dumps({"base_model": "b", "condition": "face-landmarks"}))
    assert ControlNetInfo.read(tmp_path) == ControlNetInfo(base_model="b", condition="face-landmarks")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{broken", "is not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"format_version": 99}', "format version 99, newer than this controlkit reads"),
        ('{"resolution": "big"}', "'resolution' has a value of the wrong type"),
    ],
)
def test_a_damaged_or_newer_file_is_a_user_error_naming_it(tmp_path, text, message):
    (tmp_path / METADATA_FILE).write_text(text)
    with pytest.raises(UserError, match=f"controlkit.json.*{message}"):
        ControlNetInfo.read(tmp_path)


def test_a_name_that_is_neither_a_folder_nor_a_hub_id_is_a_user_error():
    with pytest.raises(UserError, match="neither a folder here nor a valid Hub id"):
        ControlNetInfo.read("my model/v1")
    with pytest.raises(UserError, match="dataset not found: ./nowhere"):
        DatasetInfo.read("./nowhere")


def test_only_the_metadata_module_reads_or_writes_controlkit_json():
    """Elsewhere the file's name may only stand in a list of files to upload, never beside a read or write."""
    import ast
    from pathlib import Path

    import controlkit

    root = Path(controlkit.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "metadata.py" and path.parent == root:
            continue
        tree = ast.parse(path.read_text())
        listed = {
            id(node)
            for display in ast.walk(tree)
            if isinstance(display, ast.List | ast.Tuple | ast.Set)
            for node in display.elts
        }
        for node in ast.walk(tree):
            named = (isinstance(node, ast.Constant) and node.value == METADATA_FILE) or (
                isinstance(node, ast.Name | ast.Attribute)
                and getattr(node, "id", getattr(node, "attr", None)) == "METADATA_FILE"
            )
            if named and id(node) not in listed:
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders == []
