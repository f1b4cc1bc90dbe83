"""controlkit.json: written and read back; a damaged file is one clear line, not a traceback."""

from __future__ import annotations

import pytest

from controlkit.errors import UserError
from controlkit.metadata import METADATA_FILE, read_metadata, write_metadata


def test_written_metadata_reads_back_and_a_folder_without_it_is_empty(tmp_path):
    write_metadata(tmp_path / "model", {"base_model": "base", "resolution": 64})
    assert read_metadata(tmp_path / "model") == {"base_model": "base", "resolution": 64}
    (tmp_path / "plain").mkdir()
    assert read_metadata(tmp_path / "plain") == {}


@pytest.mark.parametrize(("text", "message"), [("{broken", "is not valid JSON"), ("[1, 2]", "JSON object")])
def test_a_damaged_file_is_a_user_error_naming_it(tmp_path, text, message):
    (tmp_path / METADATA_FILE).write_text(text)
    with pytest.raises(UserError, match=f"controlkit.json.*{message}"):
        read_metadata(tmp_path)


def test_a_name_that_is_neither_a_folder_nor_a_hub_id_is_a_user_error():
    with pytest.raises(UserError, match="neither a folder here nor a valid Hub id"):
        read_metadata("my model/v1")
