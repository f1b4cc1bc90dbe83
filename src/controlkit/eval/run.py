"""`controlkit eval` as a library call: ``evaluate(EvalConfig(...)) -> EvalReport``.

The steps: the checkpoints to compare and the base model (checked first), the CLIP model (if any), the
held-out samples, then the base model's cases once and each checkpoint's cases (each checkpoint's figures
saved as it finishes, so a rerun skips it), the pick, best/, eval.json and report.html. Under
``accelerate launch`` every process generates its share of each case; the main process writes.

Given a ``StopRequest`` (the CLI's ``graceful_stop``), a SIGTERM or Ctrl-C leaves the checkpoint in hand
after its current batch of images (unsaved), and ``Stopped`` says what was kept and how to continue; the
processes agree on it once per checkpoint.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from controlkit.console import say
from controlkit.errors import UserError
from controlkit.eval.checkpoints import Candidate, all_candidates, choose
from controlkit.eval.config import OFF_DOMAIN_PROMPTS, EvalConfig, read_prompts
from controlkit.eval.evaluator import CHECKPOINT_CASES, GRID_CASES, Evaluator, Item, Sampling
from controlkit.eval.figures import checkpoint_record, finite, summarize
from controlkit.eval.held_out import HeldOut, load_held_out
from controlkit.eval.pick import Pick, pick_checkpoint
from controlkit.eval.results import BASE, ResultStore, settings_digest
from controlkit.metadata import ControlNetInfo
from controlkit.stopping import Stopped, StopRequest

NO_CLIP_NOTE = (
    "Prompt fidelity and forgetting were not measured: no CLIP model was given (--clip), so the pick is by "
    "adherence alone."
)


@dataclass
class EvalReport:
    """What an evaluation measured and wrote: per-checkpoint records (oldest first), the base model's, the
    pick, and where best/, eval.json and report.html went."""

    out: Path
    checkpoints: list[dict[str, Any]]
    base: dict[str, Any]
    pick: Pick
    best: Path | None
    report: Path
    summary: dict[str, Any]


def _out_folder(config: EvalConfig) -> Path:
    if config.out is not None:
        return Path(config.out)
    if not Path(config.controlnet).is_dir():
        raise UserError(f"--out is needed: {config.controlnet} is not a local folder to write eval/ into")
    return Path(config.controlnet) / "eval"


def load_pipeline(base: str, candidate: Candidate, device: str):
    """The base model with ``candidate``'s ControlNet (no progress bars: eval has its own)."""
    from controlkit.devices import pick_dtype
    from controlkit.models.loading import controlnet_pipeline

    return controlnet_pipeline(base, str(candidate.path), pick_dtype(device), device, progress=False)


def _swap_controlnet(pipe, candidate: Candidate) -> None:
    from controlkit.models.loading import load_controlnet

    pipe.controlnet = load_controlnet(candidate.path, dtype=pipe.unet.dtype).to(pipe.device)


def _grid_images(items: list[Item], case: str, rows: int) -> list[Image.Image | None]:
    found = {item.index: item.image for item in items if item.case == case}
    return [found.get(i) for i in range(rows)]


def _grid_values(items: list[Item], case: str, rows: int, key: str | None) -> list[float | None]:
    found = {item.index: item.scores.get(key or "") for item in items if item.case == case}
    return [found.get(i) for i in range(rows)]


def _any_process(state, flag: bool) -> bool:
    """Whether any process has ``flag`` set (one small reduce under several processes)."""
    if state.num_processes == 1:
        return flag
    import torch
    from accelerate.utils import reduce

    return reduce(torch.tensor([float(flag)], device=state.device), reduction="sum").item() > 0


class _Session:
    """One evaluation under way: what it measures with, and the files it writes as it goes."""

    def __init__(
        self,
        config: EvalConfig,
        held: HeldOut,
        evaluator: Evaluator,
        store: ResultStore,
        state,
        stop: StopRequest | None = None,
    ):
        self.config, self.held, self.evaluator, self.store, self.state = config, held, evaluator, store, state
        self.rows = min(config.grid_rows, len(held.samples))
        self.base_images: list[Image.Image | None] = []
        self.base_values: list[float | None] = []
        self.key: str | None = held.condition.adherence_score
        self.stop, self.measured = stop, 0

    def _requested(self) -> bool:
        return self.stop is not None and self.stop.requested

    def _measure(self, pipe, cases, progress) -> list:
        """The items of ``cases``; asked to stop, the run ends here, keeping what was saved before."""
        items = self.evaluator.run(pipe, cases, progress=progress, state=self.state, stop=self._requested)
        if self.stop is not None and _any_process(self.state, self._requested()):
            raise Stopped(
                f"{self.measured} checkpoint(s) measured and kept in {self.store.folder}, the one in hand "
                "left; run the same command again to continue (finished checkpoints are not redone)"
            )
        return items

    def base(self, pipe, progress) -> dict[str, Any]:
        """The base model's record: measured now, or the one an earlier run saved (with its grid column);
        ``pipe`` makes the pipeline when it is needed."""
        record = self.store.get(BASE)
        if record is None:
            items = self._measure(pipe(), self.evaluator.base_cases, progress)
            record = summarize(items)
            self.key = self._key(record)
            record["off_grid_values"] = _grid_values(items, "off", self.rows, self.key)
            self.base_images = _grid_images(items, "off", self.rows)
            if self.state.is_main_process:
                for i, image in enumerate(self.base_images):
                    image.save(self.store.path(f"{BASE}-off-{i}", ".png"))
                self.store.put(BASE, record)
        else:
            self.key = self._key(record)
            self.base_images = [
                Image.open(self.store.path(f"{BASE}-off-{i}", ".png")) for i in range(self.rows)
            ]
        self.base_values = record.get("off_grid_values", [None] * self.rows)
        return record

    def _key(self, base: dict[str, Any]) -> str | None:
        """The condition's adherence key, else the first key its scores have."""
        return self.held.condition.adherence_score or next(iter(base["adherence"].get("off", {})), None)

    def checkpoint(self, pipe, candidate: Candidate, base: dict, progress) -> dict[str, Any]:
        """Measure one checkpoint; the main process saves its grid and then its record."""
        items = self._measure(pipe, CHECKPOINT_CASES, progress)
        record = checkpoint_record(candidate.name, candidate.step, items, base)
        if self.state.is_main_process:
            from controlkit.eval.report import checkpoint_grid

            images = {case: _grid_images(items, case, self.rows) for case in CHECKPOINT_CASES}
            values = {case: _grid_values(items, case, self.rows, self.key) for case in CHECKPOINT_CASES}
            images["off"], values["off"] = self.base_images, self.base_values
            probes = self.evaluator.case("off_domain")[0]
            if self.rows:
                grid = checkpoint_grid(self.held.samples, {c: images[c] for c in GRID_CASES}, values, probes)
                grid.save(self.store.path(candidate.name, ".png"))
            self.store.put(candidate.name, record)
        self.measured += 1
        return record


def _progress(state, total: int):
    from tqdm.auto import tqdm

    share = math.ceil(total / state.num_processes)
    return tqdm(total=share, desc="eval images", unit="image", disable=not state.is_local_main_process)


@dataclass
class _Inputs:
    """What fails in seconds, checked before any model loads."""

    info: ControlNetInfo
    candidates: list[Candidate]
    base: str
    prompts: list[str] | None
    probes: list[str]
    out: Path


def _prepare(config: EvalConfig) -> _Inputs:
    """The ControlNet's record, its checkpoints, the base model, the prompt files, the output folder."""
    info = ControlNetInfo.read(config.controlnet)
    candidates = choose(all_candidates(config.controlnet), config.checkpoints)
    base = config.base or info.base_model
    if not base:
        raise UserError(f"{config.controlnet} records no base model (controlkit.json); pass --base MODEL")
    prompts = read_prompts(config.prompts, "--prompts")
    probes = read_prompts(config.off_domain_prompts, "--off-domain-prompts") or list(OFF_DOMAIN_PROMPTS)
    return _Inputs(info, candidates, str(base), prompts, probes, _out_folder(config))


def _settings(config: EvalConfig, held: HeldOut, inputs: _Inputs) -> dict:
    """What the figures depend on (a rerun with other values does not reuse them)."""
    return {
        "base": inputs.base,
        "dataset": held.dataset,
        "rows": [s.row for s in held.samples],
        "prompts": [s.prompt for s in held.samples],
        "condition": held.condition.name,
        "condition_options": config.condition_options,
        "resolution": inputs.info.resolution,
        "steps": config.steps,
        "guidance": config.guidance,
        "seed": config.seed,
        "clip": config.clip,
        "off_domain_prompts": inputs.probes,
        "grid_rows": config.grid_rows,
    }


def _summary(
    config: EvalConfig, session: _Session, base_record: dict, records: list[dict], pick: Pick, settings: dict
) -> dict[str, Any]:
    held = session.held
    return finite(
        {
            "controlnet": str(config.controlnet),
            "dataset": held.dataset,
            "held_out": held.how,
            "condition": held.condition.name,
            "adherence_key": session.key,
            "higher_is_better": held.condition.adherence_higher_is_better,
            "clip": config.clip,
            "fidelity_floor": config.fidelity_floor,
            "settings": {**settings, "batch_size": config.batch_size},
            "base": base_record,
            "checkpoints": records,
            "pick": asdict(pick),
            "best": "best" if pick.name else None,
            "notes": [] if config.clip else [NO_CLIP_NOTE],
        }
    )


def evaluate(config: EvalConfig, stop: StopRequest | None = None) -> EvalReport:
    """Measure every chosen checkpoint on held-out samples, pick one, write best/, eval.json, report.html.

    With ``stop`` (from ``controlkit.stopping.graceful_stop``), a stop request keeps the checkpoints
    finished so far and raises ``Stopped``."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    from controlkit.devices import pick_device
    from controlkit.eval.best import write_best
    from controlkit.eval.fidelity import ClipScorer
    from controlkit.eval.report import EVAL_FILE, write_report

    inputs = _prepare(config)
    candidates, out = inputs.candidates, inputs.out
    # Under `accelerate launch --cpu` (ACCELERATE_USE_CPU) or --device cpu, several processes share CPUs.
    state = PartialState(cpu=config.device == "cpu" or parse_flag_from_env("ACCELERATE_USE_CPU"))
    device = str(state.device) if state.num_processes > 1 else pick_device(config.device)
    clip = ClipScorer(config.clip, device) if config.clip else None
    held = load_held_out(config, inputs.info, inputs.prompts)
    sampling = Sampling(config.steps, config.guidance, config.seed, config.batch_size)
    evaluator = Evaluator(held.samples, held.condition, sampling, inputs.probes, clip, config.grid_rows)
    settings = _settings(config, held, inputs)
    with state.main_process_first():
        store = ResultStore(out, settings_digest(settings), config.overwrite and state.is_main_process)
    records = {c.name: store.get(c.name) for c in candidates}
    todo = [c for c in candidates if records[c.name] is None or records[c.name]["step"] != c.step]
    if len(todo) < len(candidates):
        say(f"reusing {len(candidates) - len(todo)} finished checkpoint(s) in {store.folder}")
    base_done = store.get(BASE) is not None
    total = evaluator.count(CHECKPOINT_CASES) * len(todo) + (
        0 if base_done else evaluator.count(evaluator.base_cases)
    )
    session = _Session(config, held, evaluator, store, state, stop)
    pipe = None

    def pipeline():
        nonlocal pipe
        if pipe is None:
            pipe = load_pipeline(inputs.base, (todo or candidates)[0], device)
        return pipe

    with _progress(state, total) as bar:
        base_record = session.base(pipeline, bar.update)
        for candidate in todo:
            pipe = pipeline()
            if candidate is not todo[0]:
                _swap_controlnet(pipe, candidate)
            records[candidate.name] = session.checkpoint(pipe, candidate, base_record, bar.update)
    ordered = [finite(records[c.name]) for c in candidates]
    condition = held.condition
    pick = pick_checkpoint(ordered, session.key, condition.adherence_higher_is_better, config.fidelity_floor)
    summary = _summary(config, session, base_record, ordered, pick, settings)
    best = report = None
    if state.is_main_process:
        chosen = next((c for c in candidates if c.name == pick.name), None)
        best = write_best(chosen, inputs.info, out) if chosen is not None else None
        (out / EVAL_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        report = write_report(out)
    state.wait_for_everyone()
    return EvalReport(out, ordered, summary["base"], pick, best, report or out / "report.html", summary)
