"""The pick follows the rule it states, on given figures (no model runs)."""

from __future__ import annotations

import math

from controlkit.eval.pick import pick_checkpoint


def record(name, step, nme, fidelity=None):
    figures = {
        "name": name,
        "step": step,
        "adherence": {"matched": {"landmark_nme": nme, "detection_rate": 1.0}},
    }
    if fidelity is not None:
        figures["off_domain_fidelity"] = fidelity
    return figures


def test_the_best_adherence_among_checkpoints_that_keep_the_fidelity_floor():
    records = [
        record("checkpoint-200", 200, 0.30, fidelity=1.00),
        record("checkpoint-400", 400, 0.22, fidelity=0.95),
        record("checkpoint-600", 600, 0.15, fidelity=0.70),  # follows best, but forgot the prompts
    ]
    pick = pick_checkpoint(records, "landmark_nme", higher_is_better=False, floor=0.9)
    assert (pick.name, pick.step) == ("checkpoint-400", 400)
    assert "90%" in pick.rule and "lowest matched landmark_nme" in pick.rule
    assert "0.220" in pick.reason and "0.95" in pick.reason


def test_when_every_checkpoint_forgot_the_one_that_forgot_least():
    records = [record("a", 1, 0.1, fidelity=0.5), record("b", 2, 0.3, fidelity=0.8), record("c", 3, 0.2, 0.6)]
    pick = pick_checkpoint(records, "landmark_nme", higher_is_better=False, floor=0.9)
    assert pick.name == "b" and "forgets least" in pick.reason


def test_without_clip_adherence_alone_and_the_rule_says_so():
    records = [record("a", 1, 0.3), record("b", 2, 0.2), record("c", 3, 0.2), record("d", 4, 0.25)]
    pick = pick_checkpoint(records, "landmark_nme", higher_is_better=False, floor=0.9)
    assert pick.name == "b"  # a tie goes to the earlier step
    assert "not measured" in pick.rule and "forgetting is not checked" in pick.rule


def test_higher_is_better_for_a_score_such_as_an_f1():
    records = [
        {"name": "a", "step": 1, "adherence": {"matched": {"edge_f1": 0.4}}},
        {"name": "b", "step": 2, "adherence": {"matched": {"edge_f1": 0.7}}},
    ]
    pick = pick_checkpoint(records, "edge_f1", higher_is_better=True, floor=0.9)
    assert pick.name == "b" and "highest matched edge_f1" in pick.rule


def test_missing_figures_are_passed_over_and_none_at_all_picks_nothing():
    records = [record("a", 1, None), record("b", 2, math.nan), record("c", 3, 0.4)]
    assert pick_checkpoint(records, "landmark_nme", False, 0.9).name == "c"
    nothing = pick_checkpoint(records[:2], "landmark_nme", False, 0.9)
    assert nothing.name is None and nothing.step is None


def test_the_first_score_key_stands_in_when_the_condition_names_none():
    records = [record("a", 1, 0.5), record("b", 2, 0.4)]
    pick = pick_checkpoint(records, None, higher_is_better=False, floor=0.9)
    assert pick.name == "b" and "landmark_nme" in pick.rule
