"""Hub publishing, offline: the access check before training, the model card, and exactly what is uploaded."""

from __future__ import annotations

from types import SimpleNamespace

import huggingface_hub
import pytest
from huggingface_hub import HfApi, ModelCard

from controlkit.errors import UserError
from controlkit.metadata import ControlNetInfo
from controlkit.train import hub
from controlkit.train.card import write_model_card
from controlkit.train.config import RunSettings, TrainConfig, effective_config

UPLOADED = [
    "README.md",
    "config.json",
    "controlkit.json",
    "diffusion_pytorch_model.safetensors",
    "validation/step-100.png",
    "validation/step-20.png",
]
NOT_UPLOADED = [
    "checkpoint-100/controlnet/diffusion_pytorch_model.safetensors",
    "checkpoint-100/controlnet/config.json",
    "checkpoint-100/optimizer.bin",
    "checkpoint-100/random_states_0.pkl",
    ".checkpoint-200.tmp/model.safetensors",
    "logs/train_controlnet/events.out.tfevents.1.host",
    "optimizer.bin",
    "scheduler.bin",
    "train_config.yaml",
    "metrics.jsonl",
    "validation/notes.txt",
    "validation/old/step-1.png",
]


def make_config(tmp_path, **overrides):
    fields = dict(
        output_dir=str(tmp_path / "my-controlnet"),
        pretrained_model_name_or_path="stabilityai/stable-diffusion-2-1-base",
        dataset_name="multimodalart/facesyntheticsspigacaptioned",
        train_data_dir=None,
        resolution=512,
        learning_rate=1e-5,
        validation_prompt=["Girl smiling, professional dslr photograph"],
        hub_model_id=None,
        hub_token=None,
        report_to="tensorboard",
        push_to_hub=True,
    )
    fields.update(overrides)
    return TrainConfig(**fields)


@pytest.fixture
def output_dir(tmp_path):
    root = tmp_path / "my-controlnet"
    for name in UPLOADED + NOT_UPLOADED:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    return root


def test_upload_list_is_the_final_controlnet_card_metadata_and_grids(output_dir):
    assert hub.upload_file_list(output_dir) == UPLOADED


def test_push_is_one_commit_of_exactly_the_upload_list(output_dir, monkeypatch):
    commits = []
    monkeypatch.setattr(
        HfApi, "create_commit", lambda self, repo_id, operations, **kw: commits.append((repo_id, operations))
    )
    hub.push_to_hub(output_dir, "me/my-controlnet", token="hf_test")
    [(repo_id, operations)] = commits
    assert repo_id == "me/my-controlnet"
    assert sorted(op.path_in_repo for op in operations) == UPLOADED
    assert all(str(op.path_or_fileobj).startswith(str(output_dir)) for op in operations)


def test_model_card_has_front_matter_usage_flags_and_grids_but_no_token(output_dir, tmp_path):
    config = make_config(tmp_path, hub_token="hf_secret_value", hub_model_id="me/faces")
    info = ControlNetInfo(
        base_model="stabilityai/stable-diffusion-2-1-base",
        condition="face-landmarks",
        resolution=512,
        dataset="multimodalart/facesyntheticsspigacaptioned",
        controlkit_version="0.1.0",
    )
    flags = effective_config(config, RunSettings(seed=0, resolution=512))
    path = write_model_card(output_dir, info, flags, hub.repo_name(config))
    assert path == output_dir / "README.md"
    text = path.read_text()
    card = ModelCard.load(path)
    assert card.data.base_model == "stabilityai/stable-diffusion-2-1-base"
    assert card.data.datasets == ["multimodalart/facesyntheticsspigacaptioned"]
    assert card.data.license == "openrail++" and card.data.library_name == "diffusers"
    assert {"controlnet", "diffusers", "stable-diffusion", "controlkit", "face-landmarks"} <= set(
        card.data.tags
    )
    assert "](validation/step-100.png)" in text and "[step-20](validation/step-20.png)" in text
    assert 'ControlNetModel.from_pretrained("me/faces"' in text
    assert "controlkit generate --controlnet me/faces --image" in text
    assert "learning_rate: 1.0e-05" in text and "resolution: 512" in text
    assert "hf_secret_value" not in text and "hub_token" not in text


def test_model_card_for_local_base_and_data_reads_the_base_license(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "README.md").write_text("---\nlicense: mit\n---\n# a base\n")
    out = tmp_path / "out"
    out.mkdir()
    config = make_config(tmp_path, output_dir=str(out), pretrained_model_name_or_path=str(base))
    config.dataset_name, config.train_data_dir = None, str(tmp_path)
    info = ControlNetInfo(base_model=str(base), dataset=str(tmp_path))
    card = ModelCard.load(write_model_card(out, info, config.public_dict(), hub.repo_name(config)))
    assert card.data.license == "mit"
    assert card.data.base_model is None and card.data.datasets is None
    assert "Condition: none" in card.text and "## Validation" not in card.text


@pytest.fixture
def no_saved_login(tmp_path, monkeypatch):
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))


def test_missing_token_is_one_line_before_any_network(tmp_path, no_saved_login, monkeypatch):
    monkeypatch.setattr(HfApi, "whoami", lambda self: pytest.fail("no network call without a token"))
    with pytest.raises(UserError, match="needs a Hugging Face token") as error:
        hub.check_push_access(make_config(tmp_path))
    assert "\n" not in str(error.value)


def fake_hub(monkeypatch, user=None, whoami_error=None):
    created = []

    def whoami(self):
        if whoami_error:
            raise whoami_error
        return user

    def create_repo(self, repo_id, exist_ok=False, **kw):
        created.append((repo_id, exist_ok, self.token))
        name = repo_id if "/" in repo_id else f"{user['name']}/{repo_id}"
        return SimpleNamespace(repo_id=name)

    monkeypatch.setattr(HfApi, "whoami", whoami)
    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    return created


WRITER = {"name": "me", "orgs": [{"name": "my-lab"}], "auth": {"accessToken": {"role": "write"}}}


def test_access_check_creates_the_repo_with_the_saved_login(tmp_path, no_saved_login, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_saved")
    created = fake_hub(monkeypatch, WRITER)
    assert hub.check_push_access(make_config(tmp_path)) == "me/my-controlnet"
    assert hub.check_push_access(make_config(tmp_path, hub_model_id="my-lab/faces", hub_token="hf_flag")) == (
        "my-lab/faces"
    )
    assert created == [("my-controlnet", True, "hf_saved"), ("my-lab/faces", True, "hf_flag")]


@pytest.mark.parametrize(
    ("user", "error", "repo", "message"),
    [
        ({**WRITER, "auth": {"accessToken": {"role": "read"}}}, None, None, "read-only"),
        (WRITER, None, "someone-else/faces", "cannot write to someone-else/"),
        (None, OSError("401 Client Error: Unauthorized\nmore detail"), None, "rejected the token"),
    ],
)
def test_unusable_token_or_repo_is_one_line(
    tmp_path, no_saved_login, monkeypatch, user, error, repo, message
):
    created = fake_hub(monkeypatch, user, error)
    with pytest.raises(UserError, match=message) as raised:
        hub.check_push_access(make_config(tmp_path, hub_token="hf_x", hub_model_id=repo))
    assert "\n" not in str(raised.value) and not created
