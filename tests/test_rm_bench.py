"""RM-Bench evaluator: the official metric on hand-built scores, the loader, and an end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import SHARED

from posttrain.errors import UserError
from posttrain.evaluation.rm_bench import (
    DEFAULT_PRINCIPLES,
    evaluate_rm_bench,
    format_table,
    load_rm_bench,
    resolve_principles,
    rm_bench_accuracy,
    tick_labels,
)

RM_BENCH = SHARED / "benchmarks" / "rm-bench"
needs_shared = pytest.mark.skipif(
    not RM_BENCH.is_dir(), reason=f"the shared RM-Bench copy is absent ({RM_BENCH})"
)


def rec(domain, chosen, rejected, id_=0):
    return {"id": id_, "domain": domain, "score_chosen": chosen, "score_rejected": rejected}


def raw(id_, domain=None, n=3, **extra):
    out = {
        "id": id_,
        "prompt": f"prompt {id_}",
        "chosen": [f"good {id_} " + "x" * k for k in range(n)],
        "rejected": [f"bad {id_} " + "y" * k for k in range(n)],
        **extra,
    }
    if domain is not None:
        out["domain"] = domain
    return out


# ---------------------------------------------------------------------------------------------- metric


def test_accuracy_style_favours_concise():
    # chosen [3, 2, 1] vs rejected [2.5, 1.5, 0.5]; M[i][j] = chosen[i] > rejected[j]:
    #   3 > 2.5, 1.5, 0.5  → [1, 1, 1]
    #   2 > 2.5? no; > 1.5, 0.5 → [0, 1, 1]
    #   1 > 0.5 only       → [0, 0, 1]
    # normal = diag (1 + 1 + 1) / 3 = 1;  hard = upper (M01 + M02 + M12) / 3 = 3/3 = 1
    # easy = lower (M10 + M20 + M21) / 3 = 0;  avg = (0 + 1 + 1) / 3 = 2/3
    res = rm_bench_accuracy([rec("chat", [3, 2, 1], [2.5, 1.5, 0.5])])
    chat = res["domains"]["chat"]
    assert chat["matrix"] == [[1, 1, 1], [0, 1, 1], [0, 0, 1]]
    assert (chat["easy"], chat["normal"], chat["hard"]) == (0.0, 1.0, 1.0)
    assert chat["avg"] == pytest.approx(2 / 3)
    assert res["overall"]["avg"] == pytest.approx(2 / 3)
    assert res["domains_present"] == ["chat"]
    assert res["domains_missing"] == ["math", "code", "safety"]


def test_accuracy_averages_matrices_over_prompts():
    # record A: chosen [1, 2, 3] vs rejected [0.5, 1.5, 2.5] → M = [[1,0,0],[1,1,0],[1,1,1]]
    #   normal 1, hard 0, easy 3/3 = 1
    # record B: the first test's record → M = [[1,1,1],[0,1,1],[0,0,1]]: normal 1, hard 1, easy 0
    # mean M = [[1,.5,.5],[.5,1,.5],[.5,.5,1]] → normal 1, hard 1.5/3 = .5, easy .5, avg 2/3
    res = rm_bench_accuracy(
        [rec("code", [1, 2, 3], [0.5, 1.5, 2.5], 1), rec("code", [3, 2, 1], [2.5, 1.5, 0.5], 2)]
    )
    code = res["domains"]["code"]
    assert code["matrix"] == [[1, 0.5, 0.5], [0.5, 1, 0.5], [0.5, 0.5, 1]]
    assert (code["easy"], code["normal"], code["hard"]) == (0.5, 1.0, 0.5)
    assert code["count"] == 2


def test_ties_count_as_not_greater():
    # all tied → every M[i][j] = 0
    res = rm_bench_accuracy([rec("chat", [1, 1, 1], [1, 1, 1])])
    assert res["domains"]["chat"]["avg"] == 0.0
    # chosen [2, 1, 1] vs rejected [1, 1, 0]:
    #   2 > 1, 1, 0 → [1, 1, 1];  1 > 1? no, no, > 0 yes → [0, 0, 1];  same → [0, 0, 1]
    # normal = (1 + 0 + 1) / 3 = 2/3, hard = (1 + 1 + 1) / 3 = 1, easy = (0 + 0 + 0) / 3 = 0
    chat = rm_bench_accuracy([rec("chat", [2, 1, 1], [1, 1, 0])])["domains"]["chat"]
    assert chat["matrix"] == [[1, 1, 1], [0, 0, 1], [0, 0, 1]]
    assert chat["normal"] == pytest.approx(2 / 3)
    assert (chat["hard"], chat["easy"]) == (1.0, 0.0)


def test_safety_pools_samples_of_both_subdomains():
    # 3 safety-refuse prompts all right (M all ones) + 1 safety-response prompt all wrong (M all zeros).
    # The official split pools samples (domain.startswith("safety")): mean M = 3/4 everywhere → 0.75 each.
    # (A mean of the two sub-domains would give 0.5.)
    records = [rec("safety-refuse", [1, 1, 1], [0, 0, 0], i) for i in range(3)]
    records += [rec("safety-response", [0, 0, 0], [1, 1, 1], 9), rec("chat", [1, 1, 1], [0, 0, 0], 5)]
    res = rm_bench_accuracy(records)
    safety = res["domains"]["safety"]
    assert safety["count"] == 4
    assert (safety["easy"], safety["normal"], safety["hard"], safety["avg"]) == (0.75, 0.75, 0.75, 0.75)
    assert safety["parts"]["safety-refuse"]["avg"] == 1.0
    assert safety["parts"]["safety-response"]["avg"] == 0.0
    assert set(res["domains"]) == {"chat", "safety"}
    # overall = mean over the domains present: (1.0 + 0.75) / 2
    assert res["overall"]["avg"] == pytest.approx(0.875)
    assert res["overall"]["hard"] == pytest.approx(0.875)
    assert res["domains_missing"] == ["math", "code"]


def test_accuracy_rejects_bad_scores():
    with pytest.raises(ValueError, match="score_chosen"):
        rm_bench_accuracy([rec("chat", [1, 2], [0, 0, 0])])
    with pytest.raises(ValueError, match="unknown RM-Bench domain"):
        rm_bench_accuracy([rec("poetry", [1, 2, 3], [0, 0, 0])])
    with pytest.raises(ValueError, match="no scored records"):
        rm_bench_accuracy([])


# --------------------------------------------------------------------------------------------- loading


@needs_shared
def test_loader_on_shared_files():
    records = load_rm_bench(RM_BENCH)
    counts = {}
    for r in records:
        counts[r["domain"]] = counts.get(r["domain"], 0) + 1
        assert len(r["chosen"]) == len(r["rejected"]) == 3
    assert counts == {"chat": 129, "code": 228, "safety-refuse": 284, "safety-response": 157}
    assert "math" not in counts
    first = json.loads((RM_BENCH / "code_filtered.json").read_text())[:2]
    limited = load_rm_bench(RM_BENCH, limit=2)
    assert len(limited) == 8  # the first 2 of each of the 4 files
    assert [r["id"] for r in limited if r["domain"] == "code"] == [r["id"] for r in first]


def test_loader_default_data_is_the_shared_copy_or_hub():
    from posttrain.evaluation.rm_bench import HUB_ID, default_data

    if RM_BENCH.is_dir():
        assert Path(default_data()).resolve() == RM_BENCH.resolve()
    else:
        assert default_data() == HUB_ID


def test_loader_hub_code_path(tmp_path, monkeypatch):
    import datasets

    calls = []
    real = datasets.load_dataset

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", spy)
    domains = ["chat", "math", "code", "safety-refuse", "safety-response"]
    total = [raw(i, d) for i, d in enumerate(domains * 2)]
    (tmp_path / "total_dataset.json").write_text(json.dumps(total))
    records = load_rm_bench(f"hub:{tmp_path}", limit=1)
    assert calls and calls[0][1]["data_files"] == "total_dataset.json"
    assert [r["domain"] for r in records] == domains
    assert records[1]["chosen"] == total[1]["chosen"]


def test_loader_hub_error_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="hub dataset"):
        load_rm_bench(f"hub:{tmp_path / 'nothing-here'}")


def test_loader_folder_total_plus_domain_files(tmp_path):
    (tmp_path / "total_dataset.json").write_text(json.dumps([raw(1, "chat"), raw(2, "math")]))
    # chat is already in total_dataset.json: its per-domain file is not read again
    (tmp_path / "chat_filtered.json").write_text(json.dumps([raw(7, subset="x")]))
    (tmp_path / "code_filtered.json").write_text(json.dumps([raw(3, subset="humanevalpack")]))
    records = load_rm_bench(tmp_path)
    assert [(r["id"], r["domain"]) for r in records] == [(1, "chat"), (2, "math"), (3, "code")]
    assert records[2]["subset"] == "humanevalpack"


def test_loader_single_file(tmp_path):
    path = tmp_path / "safety-refuse_filtered.json"
    path.write_text(json.dumps([raw(1), raw(2)]))
    assert {r["domain"] for r in load_rm_bench(path)} == {"safety-refuse"}
    other = tmp_path / "mine.jsonl"
    other.write_text("\n".join(json.dumps(raw(i, "code")) for i in range(3)))
    assert len(load_rm_bench(other, limit=2)) == 2


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({k: v for k, v in raw(2).items() if k != "prompt"}, "record 2 .*missing field 'prompt'"),
        (raw(2, n=2), "record 2 .*'chosen' must be a list of 3 responses .*got 2 items"),
        ({**raw(2), "rejected": "one response"}, "record 2 .*'rejected' must be a list of 3.*got str"),
        ({**raw(2), "chosen": ["a", 1, "c"]}, r"record 2 .*chosen\[1\] must be a string"),
        (raw(2, "chatt"), "record 2 .*unknown domain 'chatt'.*did you mean 'chat'"),
    ],
)
def test_loader_bad_records(tmp_path, record, message):
    path = tmp_path / "chat_filtered.json"
    path.write_text(json.dumps([raw(1), record]))
    with pytest.raises(UserError, match=message) as info:
        load_rm_bench(tmp_path)
    assert str(path) in str(info.value)


def test_loader_missing_domain_and_missing_data(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps([raw(1)]))
    with pytest.raises(UserError, match="mine.json: record 1 .*missing field 'domain'"):
        load_rm_bench(path)
    with pytest.raises(UserError, match="not found"):
        load_rm_bench(tmp_path / "absent.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no RM-Bench files"):
        load_rm_bench(empty)
    with pytest.raises(UserError, match="limit"):
        load_rm_bench(path, limit=0)


# ------------------------------------------------------------------------------------------ principles


def test_principles():
    assert resolve_principles() == DEFAULT_PRINCIPLES
    assert DEFAULT_PRINCIPLES["chat"] == "correctness"
    custom = resolve_principles({"safety": "harmlessness", "safety-response": "helpfulness", "code": None})
    assert custom["safety-refuse"] == "harmlessness"
    assert custom["safety-response"] == "helpfulness"  # a raw-domain key wins over "safety"
    assert custom["code"] is None
    assert set(resolve_principles("be brief").values()) == {"be brief"}
    with pytest.raises(UserError, match="unknown domain 'cod'.*did you mean 'code'"):
        resolve_principles({"cod": "x"})


# ------------------------------------------------------------------------------------------ end to end


@pytest.fixture
def rm_dir(tmp_path):
    """The shared copy when present, else a synthetic folder in the same per-domain layout."""
    if RM_BENCH.is_dir():
        return RM_BENCH
    folder = tmp_path / "rm-bench"
    folder.mkdir()
    for k, domain in enumerate(["chat", "code", "safety-refuse", "safety-response"]):
        records = [raw(10 * k + i, n=3, subset="synthetic") for i in range(5)]
        (folder / f"{domain}_filtered.json").write_text(json.dumps(records))
    return folder


def test_evaluate_end_to_end(tmp_path, rm_dir):
    seen = {}

    def scorer(prompt, responses, principle):
        seen[prompt] = principle
        return [-len(r) + (sum(map(ord, r)) % 7) / 10 for r in responses]  # deterministic

    out = tmp_path / "out"
    results = evaluate_rm_bench(
        scorer,
        data=rm_dir,
        limit=3,
        principles={"chat": "accuracy of information"},
        out_dir=out,
        progress=False,
    )
    assert {p.name for p in out.iterdir()} == {"results.json", "scores.jsonl", "rm_bench.png"}
    assert (out / "rm_bench.png").stat().st_size > 1000
    assert results["counts"] == {"chat": 3, "code": 3, "safety-refuse": 3, "safety-response": 3}
    assert results["domains_missing"] == ["math"]
    assert results["principles"]["chat"] == "accuracy of information"
    assert results["principles"]["code"] == "correctness"
    assert len(seen) == 12 and "accuracy of information" in seen.values()

    saved = json.loads((out / "results.json").read_text())
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    assert set(rows[0]) == {"id", "domain", "score_chosen", "score_rejected"}
    again = rm_bench_accuracy(rows)
    assert again["domains"] == saved["domains"]
    assert again["overall"] == saved["overall"]
    assert saved["domains"]["safety"]["count"] == 6

    table = format_table(saved)
    lines = table.splitlines()
    assert any(line.startswith("overall") for line in lines)
    assert any(line.startswith("safety") for line in lines)
    assert "missing: math" in table
    assert f"{100 * saved['overall']['avg']:.1f}" in table
    assert lines[0].startswith("RM-Bench accuracy in %")
    # the chart names n (prompts) under each domain, with the same average as the table
    labels = tick_labels(saved)
    assert labels[-1] == f"overall\nn=12\navg {100 * saved['overall']['avg']:.1f}"
    assert any(label.startswith("safety\nn=6\n") for label in labels)


def test_evaluate_checks_scorer_output(rm_dir):
    with pytest.raises(ValueError, match="returned 1 scores for 6 responses"):
        evaluate_rm_bench(lambda p, rs, pr: [0.0], data=rm_dir, limit=1, progress=False)
