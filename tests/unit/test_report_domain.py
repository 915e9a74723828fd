"""The domain-adaptation view: shifts found across pairs, roles, seed-paired gains, gap closed."""

from __future__ import annotations

from harness.report.aggregate import aggregate
from harness.report.domain import ADAPTED, CONTROL, REFERENCE, SOURCE_ONLY, role, shifts
from harness.report.markdown import render
from tests.factories import make_record

GAP = {"proxy_a_distance": 1.42, "domain_error": 0.145, "rows_per_domain": 900, "C": 0.1}


def rec(pair, label, strategy, seed, acc, train="original", evaluated="shifted", unlabeled=None, gap=None,
        shots=None):
    # the fields run/execute.data_summary writes (a contrastive run with shots: no unlabeled_domain)
    return make_record(
        label, seed, acc, pair=pair, suite="domain", strategy=strategy, cost={"wall_s": 1.0},
        data={"fingerprint": f"{pair}-{train}", "train_domain": train, "eval_domain": evaluated,
              "unlabeled_domain": unlabeled, "target_shots": shots, "target_shots_domain": "shifted" if shots else None,
              "domain_gap": gap,
              "source": "packaged/efficientnet_lite0", "dataset": "sklearn/digits"})


def suite_records():
    recs = []
    for s in range(3):
        recs += [rec("shift", "source_only", "full_finetune", s, [0.30, 0.32, 0.34][s]),
                 rec("shift", "linear_probe", "linear_probe", s, 0.60, gap=GAP),
                 rec("shift", "dann", "dann", s, [0.50, 0.52, 0.60][s], unlabeled="shifted"),
                 rec("shift-3shot", "contrastive", "contrastive", s, 0.70, shots=3),
                 rec("ref", "target_supervised", "full_finetune", s, [0.90, 0.92, 0.94][s], train="shifted"),
                 # another pair of the suite, scored in its own domain: not part of the view
                 rec("plain", "full_finetune", "full_finetune", s, 0.95, evaluated="original")]
    return recs


def test_a_shift_gathers_its_rows_across_pairs_by_source_dataset_and_evaluated_domain():
    rows = aggregate(suite_records())
    groups = shifts(rows)
    assert list(groups) == [("packaged/efficientnet_lite0", "sklearn/digits (shifted)")]
    roles = {(r.pair, r.label): role(r) for r in groups[next(iter(groups))]}
    assert roles == {("shift", "source_only"): SOURCE_ONLY, ("shift", "linear_probe"): SOURCE_ONLY,
                     ("shift", "dann"): ADAPTED, ("shift-3shot", "contrastive"): ADAPTED,
                     ("ref", "target_supervised"): REFERENCE}


def test_the_view_shows_the_gap_the_paired_gain_and_the_share_of_the_gap_closed():
    text = render(aggregate(suite_records()))
    section = text.split("## Domain adaptation", 1)[1].split("## Per pair", 1)[0]
    assert "proxy A-distance **1.42**" in section and "errs 14.5 % on held-out rows" in section
    dann = next(line for line in section.splitlines() if "`dann`" in line)
    # dann − source only per seed: +0.20, +0.20, +0.26 → +22 points, CI ± 4.303 · 0.0346 / √3
    assert "+22.00 [+13.39, +30.61]" in dann
    # (0.54 − 0.32) / (0.92 − 0.32) = 36.7 % of the way to the reference
    assert "| 37 % |" in dann
    shots = next(line for line in section.splitlines() if "`contrastive`" in line)
    assert "sklearn/digits + 3 labelled/class of shifted" in shots
    assert "`plain`" not in section
    # source only first, the reference last
    order = [line.split("|")[3].strip() for line in section.splitlines() if line.startswith("| `")]
    assert order == [SOURCE_ONLY, SOURCE_ONLY, ADAPTED, ADAPTED, REFERENCE]


def test_a_suite_without_a_shift_has_no_view():
    recs = [r for r in suite_records() if r.pair == "plain"]
    assert "## Domain adaptation" not in render(aggregate(recs))


def test_rows_of_records_older_than_the_dataset_fields_join_their_pairs_shift():
    recs = suite_records()
    old = [r.model_copy(update={"data": {k: v for k, v in r.data.items() if k not in ("dataset", "source")}})
           if r.label == "dann" else r for r in recs]
    groups = shifts(aggregate(old))
    rows = next(iter(groups.values()))
    assert ("shift", "dann") in {(r.pair, r.label) for r in rows}
    assert {role(r) for r in rows if r.label == "dann"} == {ADAPTED}


def test_controls_sit_between_source_only_and_the_methods_with_each_methods_gain_over_adabn():
    recs = suite_records()
    for s in range(3):
        recs.append(rec("shift", "adabn", "adabn", s, [0.40, 0.41, 0.45][s], unlabeled="shifted"))
        recs.append(rec("shift", "dann_w0", "dann", s, 0.45, unlabeled="shifted"))
    recs = [r.model_copy(update={"data": {**r.data, "control": "adabn" if r.label == "adabn" else
                                          "weight 0" if r.label == "dann_w0" else None,
                                          "bn_statistics": "target" if r.label == "adabn" else "labelled"}})
            for r in recs]
    rows = aggregate(recs)
    assert {role(r) for r in rows if r.label in ("adabn", "dann_w0")} == {CONTROL}
    section = render(rows).split("## Domain adaptation", 1)[1].split("## Per pair", 1)[0]
    head = next(line for line in section.splitlines() if line.startswith("| pair"))
    assert "gain vs adabn" in head and "BN statistics" in head
    dann = next(line for line in section.splitlines() if "| `dann` |" in line)
    # dann − adabn per seed: +0.10, +0.11, +0.15 → +12.00 points
    assert "| +12.00 [" in dann
    assert "| target |" in next(line for line in section.splitlines() if "| `adabn` |" in line)
    order = [line.split("|")[3].strip() for line in section.splitlines() if line.startswith("| `")]
    assert order == [SOURCE_ONLY, SOURCE_ONLY, CONTROL, CONTROL, ADAPTED, ADAPTED, REFERENCE]


def searched(r, trials):
    summary = {"space": {"lr": [0.001, 0.01, 0.1]}, "selection_seeds": [0], "chosen": {"lr": 0.1}, "trials": trials}
    return r.model_copy(update={"search": summary, "budget": {"epochs": 3, "batch_size": 32, "steps": 90},
                                "data": {**r.data, "resolution": 48}})


def point(i, lr, test, **scores):
    return {"index": i, "point": {"lr": lr}, "status": "ok", "test": test, "validators": scores}


def test_each_searched_row_shows_the_point_each_validator_chooses_and_the_oracles_advantage():
    trials = [point(0, 0.001, 0.40, oracle=0.45, source_val=0.99, dev=-0.2, entropy=-0.1, snd=2.0),
              point(1, 0.01, 0.50, oracle=0.55, source_val=0.95, dev=-0.1, entropy=-0.3, snd=3.0),
              point(2, 0.1, 0.60, oracle=0.65, source_val=0.90, dev=-0.4, entropy=-0.5, snd=1.0)]
    recs = [searched(r, trials) if r.label == "dann" else r for r in suite_records()]
    section = render(aggregate(recs)).split("## Domain adaptation", 1)[1].split("## Per pair", 1)[0]
    head = next(line for line in section.splitlines() if line.startswith("| pair | strategy | role | oracle"))
    assert "oracle's advantage" in head
    row = next(line for line in section.splitlines() if line.startswith("| `shift` | `dann` | adapted | 60.00"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    # oracle: lr=0.1 (60 %); source_val: lr=0.001 (40); dev: lr=0.01 (50); entropy: lr=0.001 (40); snd: lr=0.01 (50)
    assert cells[3:] == ["60.00 (lr=0.1)", "40.00 (lr=0.001)", "50.00 (lr=0.01)", "40.00 (lr=0.001)",
                         "50.00 (lr=0.01)", "+15.00"]  # 60 − mean(40, 50, 40, 50)


def test_the_header_says_what_every_row_shares_and_which_rows_are_references_and_controls():
    recs = [searched(r, []) if r.label in ("dann", "source_only") else r for r in suite_records()]
    section = render(aggregate(recs)).split("## Domain adaptation", 1)[1].split("## Per pair", 1)[0]
    line = next(line for line in section.splitlines() if line.startswith("Every row here shares"))
    assert "input 48 px;" in line  # the same for every row that says: no list of rows
    assert "budget (rows that train in the loop) 3 epochs × batch 32;" in line and "lr ∈ [0.001, 0.01, 0.1] chosen by oracle" in line
    assert "references (target labels, an upper bound): target_supervised" in line
    assert "controls: none" in line
