import asyncio
import json

import pytest

from loraforge.chat.parsing import ParsedAnswer
from loraforge.evaluators import judge
from loraforge.evaluators.error_analysis import analyse, failure_row
from loraforge.evaluators.evaluate import Evaluation
from loraforge.evaluators.fidelity import NEAR_TIE_LOGITS, compare
from loraforge.evaluators.labels import label_grammar, label_metrics
from loraforge.evaluators.toolcall_eval import RowResult, decision_points, summarise


def test_label_metrics_by_hand():
    expected = ["a", "a", "b", "b", "c"]
    predicted = ["a", "b", "b", "b", None]
    m = label_metrics(expected, predicted)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["per_label"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert m["per_label"]["b"]["precision"] == pytest.approx(2 / 3) and m["per_label"]["b"]["recall"] == 1.0
    assert m["per_label"]["c"]["f1"] == 0.0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0.0) / 3)
    assert m["confusion"]["a"]["b"] == 1 and m["confusion"]["c"]["(other)"] == 1


def test_error_analysis_aggregates_and_patterns():
    rows = [
        failure_row("p1", [], [], "value_error", tool="t", param="x"),
        failure_row("p2", [], [], "value_error", tool="t", param="x"),
        failure_row("p3", [], [], "no_call", tool="u"),
        failure_row("p4", "a", "b", "wrong_label", label="a"),
    ]
    report = analyse(rows, total=10)
    assert report["failed"] == 4 and report["by_error"]["value_error"] == 2
    assert report["by_parameter"] == {"t.x": 2} and report["by_label"] == {"a": 1}
    top = report["patterns"][0]
    assert (top["error"], top["tool"], top["detail"], top["count"]) == ("value_error", "t", "x", 2)
    assert [e["prompt"] for e in top["examples"]] == ["p1", "p2"]


def test_decision_points_cover_every_assistant_turn():
    row = {
        "messages": [
            {"role": "user", "content": "weather then timer"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"type": "function", "function": {"name": "w", "arguments": {"c": "x"}}}],
            },
            {"role": "tool", "content": "{}"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"type": "function", "function": {"name": "t", "arguments": '{"m": 3}'}}],
            },
            {"role": "tool", "content": "{}"},
            {"role": "assistant", "content": "Done."},
        ]
    }
    points = decision_points(row)
    assert [len(p) for p, _ in points] == [1, 3, 5]
    assert [e for _, e in points] == [
        [{"name": "w", "arguments": {"c": "x"}}],
        [{"name": "t", "arguments": {"m": 3}}],
        [],
    ]
    eval_form = {"messages": row["messages"][:1], "tool_calls": [{"name": "w", "arguments": {"c": "x"}}]}
    assert decision_points(eval_form) == [(row["messages"][:1], [{"name": "w", "arguments": {"c": "x"}}])]
    assert decision_points({"messages": row["messages"][:1]}) == [(row["messages"][:1], None)]


def test_a_row_is_right_only_when_every_turn_is():
    from loraforge.evaluators.exact_match import check_example

    want = [[{"name": "w", "arguments": {}}], []]
    good = RowResult(0, [ParsedAnswer(calls=[{"name": "w", "arguments": {}}]), ParsedAnswer(text="ok")], want)
    good.checks = [check_example(a, e) for a, e in zip(good.answers, want)]
    bad = RowResult(
        1,
        [ParsedAnswer(calls=[{"name": "w", "arguments": {}}]), ParsedAnswer(calls=[{"name": "w", "arguments": {}}])],
        want,
    )
    bad.checks = [check_example(a, e) for a, e in zip(bad.answers, want)]
    rows = [{"messages": [], "meta": {"style": "chain"}}] * 2
    summary = summarise([good, bad], rows)
    assert summary["exact_match"] == 0.5 and summary["errors"] == {"spurious_call": 1}
    assert bad.record("x")["error"] == "spurious_call"


class ScriptedJudge:
    """Fault injection at the judge boundary: fixed answers per call, including an unreadable one."""

    def __init__(self, replies):
        self.replies = list(replies)

    async def chat(self, messages, **kwargs):
        from loraforge.runtime.client import ChatResult

        return ChatResult(content=self.replies.pop(0))


def test_pairwise_win_needs_both_orders():
    both = ScriptedJudge(['{"better": "B", "reason": ""}', '{"better": "A", "reason": ""}'])
    assert asyncio.run(judge.compare(both, "q", [], "base answer", "adapter answer")) == "adapter"
    position_bias = ScriptedJudge(['{"better": "A", "reason": ""}', '{"better": "A", "reason": ""}'])
    assert asyncio.run(judge.compare(position_bias, "q", [], "b", "a")) == "tie"


def test_absolute_score_and_unreadable_output():
    ok = ScriptedJudge(['{"score": 7, "reason": "fine"}'])
    assert asyncio.run(judge.score_answer(ok, "q", ["{}"], "answer")) == {"score": 7, "reason": "fine"}
    broken = ScriptedJudge(["not json"])
    assert asyncio.run(judge.score_answer(broken, "q", [], "answer"))["score"] is None


def test_judge_agreement_with_exact_match():
    assert judge.agreement([8, 2, 9, None], [True, False, False, True]) == pytest.approx(2 / 3)
    assert judge.agreement([None], [True]) is None


def test_fidelity_comparison():
    refs = [[5, 6, 2], [7, 8]]
    report = compare(refs, [[5, 6, 2], [7, 9]], [[5, 6], [7, 9]], eos=2)
    assert report["positions"] == 5 and report["top1_agreement"] == pytest.approx(4 / 5)
    assert report["greedy_match"] == 0.5 and not report["passed"]
    assert compare(refs, refs, refs, eos=2)["passed"]


def test_fidelity_counts_only_near_ties_as_noise():
    refs = [[5, 6, 2], [7, 8]]
    forced = [[5, 9, 2], [7, 9]]
    # PyTorch barely prefers its token at the first flip (quantisation noise), clearly at the second.
    margins = [[0.0, NEAR_TIE_LOGITS / 2, 0.0], [0.0, NEAR_TIE_LOGITS * 4]]
    report = compare(refs, forced, refs, eos=2, margins=margins)
    assert report["top1_agreement"] == pytest.approx(3 / 5)
    assert report["top1_agreement_near_ties"] == pytest.approx(4 / 5) and not report["passed"]
    assert [(t["prompt"], t["position"]) for t in report["near_ties"]] == [(0, 1)]
    margins[1][1] = NEAR_TIE_LOGITS
    assert compare(refs, forced, refs, eos=2, margins=margins)["passed"]


def test_forced_predictions_need_one_request_per_disagreement():
    import asyncio

    from loraforge.evaluators.fidelity import forced_predictions

    reference = [1, 2, 3, 4, 5]
    truth = {0: 1, 1: 9, 2: 3, 3: 4, 4: 7}  # llama.cpp's top-1 after the reference's first k tokens

    class Greedy:
        requests = 0

        async def next_tokens_with_logprobs(self, prompt, count, *, adapter=None, top=5):
            self.requests += 1
            k = len(prompt) - 2
            out = []
            for position in range(k, k + count):
                out.append((truth[position], {truth[position]: -0.1 * position}))
                if truth[position] != reference[position]:
                    break  # a real greedy run would continue from its own token; the caller stops there
            return out

    client = Greedy()
    predicted, candidates = asyncio.run(forced_predictions(client, [100, 101], reference, adapter=0))
    assert predicted == [1, 9, 3, 4, 7]
    assert [next(iter(c.values())) for c in candidates] == pytest.approx([0, -0.1, -0.2, -0.3, -0.4])
    assert client.requests == 2  # one per disagreement before the last position, plus one


def test_fidelity_logprob_error_is_measured_against_the_base_noise():
    import torch

    from loraforge.evaluators.fidelity import NOISE_FACTOR, logprob_error

    torch_logprobs = torch.log_softmax(torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]]), -1)
    exact = [{0: float(torch_logprobs[0, 0]), 1: float(torch_logprobs[0, 1])}, {1: float(torch_logprobs[1, 1])}]
    assert logprob_error(exact, torch_logprobs) == pytest.approx([0.0, 0.0], abs=1e-6)
    off = [{t: lp + 0.3 for t, lp in c.items()} for c in exact]
    assert logprob_error(off, torch_logprobs) == pytest.approx([0.3, 0.3])
    refs = [[0, 1]]
    noisy = compare(refs, refs, refs, eos=9, margins=[[0, 0]], errors=[0.3, 0.3], base_errors=[0.1, 0.1])
    assert noisy["logprob_error_limit"] == pytest.approx(NOISE_FACTOR * 0.1) and not noisy["passed"]
    assert compare(refs, refs, refs, eos=9, margins=[[0, 0]], errors=[0.15, 0.15], base_errors=[0.1, 0.1])["passed"]


def test_label_grammar_lists_every_label():
    assert label_grammar(["bug", 'say "hi"']) == 'root ::= "bug" | "say \\"hi\\""'


def test_eval_table_shows_the_base_alone_when_there_is_no_adapter():
    from loraforge.cli import metrics_table

    base_only = {"data": "d.jsonl", "base_model": "m.gguf", "adapter": None, "base": {"exact_match": 0.25, "n": 4}}
    table = metrics_table(base_only)
    assert "base" in table and "adapter" not in table and "0.25" in table
    both = {**base_only, "adapter": {"exact_match": 0.5, "n": 4}}
    assert "adapter" in metrics_table(both) and "0.5" in metrics_table(both)
    assert metrics_table({"adapter": None, "base": {"n": 0}}) is None


def test_tool_name_accuracy_ignores_the_order_of_parallel_calls():
    from loraforge.evaluators.exact_match import check_example

    want = [[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}]]
    swapped = RowResult(0, [ParsedAnswer(calls=[{"name": "b", "arguments": {}}, {"name": "a", "arguments": {}}])], want)
    twice = RowResult(1, [ParsedAnswer(calls=[{"name": "a", "arguments": {}}, {"name": "a", "arguments": {}}])], want)
    for result in (swapped, twice):
        result.checks = [check_example(a, e) for a, e in zip(result.answers, want)]
    summary = summarise([swapped, twice], [{"messages": []}] * 2)
    assert summary["tool_name_accuracy"] == 0.5 and summary["exact_match"] == 0.5


def test_the_loop_and_eval_share_one_label_path_and_both_end_an_alora_prompt_with_its_invocation():
    from loraforge.agent.tasks import LabelTask
    from loraforge.chat.format import ChatFormat, builtin_template

    class Recorder:
        def __init__(self):
            self.prompts = []

        async def complete(self, prompt, **_):
            self.prompts.append(prompt)
            return "spam"

    rows = [{"item": "win a prize", "label": "spam"}, {"item": "lunch at 1?", "label": "ham"}]
    task = LabelTask(rows)
    fmt = ChatFormat(builtin_template())
    client = Recorder()
    kwargs = dict(adapter=0, max_tokens=8, on_done=None, fmt=fmt)
    evaluation = asyncio.run(task.evaluate(client, rows, invocation="<|check|>", **kwargs))
    assert all(p.endswith("<|check|>") for p in client.prompts)
    assert evaluation.correct == [True, False] and evaluation.summary["accuracy"] == 0.5
    assert [r["id"] for r in evaluation.records] == [0, 1] and evaluation.failures[0]["id"] == 1
    client.prompts.clear()
    asyncio.run(task.evaluate(client, rows, **kwargs))
    assert not any(p.endswith("<|check|>") for p in client.prompts)


def test_the_judge_scores_only_rows_that_end_in_an_answer_and_compares_in_both_orders():
    rows = [
        {"messages": [{"role": "user", "content": "weather?"}]},  # no final answer: not judged
        {
            "messages": [
                {"role": "user", "content": "weather in Oslo?"},
                {"role": "assistant", "tool_calls": [{"name": "w", "arguments": {}}]},
                {"role": "tool", "content": '{"t": 3}'},
                {"role": "assistant", "content": "3 degrees."},
            ]
        },
    ]
    replies = ['{"score": 3, "reason": ""}', '{"score": 8, "reason": ""}']  # base, then adapter
    replies += ['{"better": "B", "reason": ""}', '{"better": "A", "reason": ""}']  # adapter wins both orders
    done = []
    summary = asyncio.run(
        judge.judge_final_answers(
            ScriptedJudge(replies),
            rows,
            {
                "base": Evaluation({}, [], [{"turns": []}, {"turns": [{"text": "no idea"}]}], [None, False]),
                "adapter": Evaluation({}, [], [{"turns": []}, {"turns": [{"text": "It is 3 degrees."}]}], [None, True]),
            },
            on_done=lambda: done.append(1),
        )
    )
    assert judge.judged_cases(rows) == [1] and done == [1]
    assert summary["agreement_with_exact_match"] == {"base": 1.0, "adapter": 1.0}
    assert summary["mean_score"] == {"base": 3, "adapter": 8} and summary["pairwise"]["adapter"] == 1


def test_heldout_prompts_skip_rows_loraforge_did_not_write(tmp_path):
    """An outside adapter's folder sits beside someone else's heldout.jsonl: rows without roles are skipped."""
    from loraforge.evaluators.prompts_for import GENERIC, heldout_prompts

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    rows = [
        {"messages": [{"content": "no role"}]},
        {"item": 5},
        {"text": "other format"},
        {"messages": [{"role": "user", "content": "weather in Oslo?"}, {"role": "assistant", "content": "x"}]},
    ]
    (tmp_path / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompts = heldout_prompts(adapter, 3)
    assert prompts[0] == ([{"role": "user", "content": "weather in Oslo?"}], None)
    assert [p[0][0]["content"] for p in prompts[1:]] == GENERIC[:2]


def test_eval_says_so_when_the_adapters_base_model_is_gone(tmp_path):
    from loraforge.errors import ConfigError
    from loraforge.evaluators.eval_cmd import run_eval

    class Recording:
        def __init__(self):
            self.warnings = []

        def warn(self, message):
            self.warnings.append(message)

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter.gguf").write_bytes(b"GGUF")
    (adapter / "loraforge.json").write_text(json.dumps({"base_model": str(tmp_path / "gone.gguf")}))
    (tmp_path / "empty.jsonl").write_text("")
    ui = Recording()
    with pytest.raises(ConfigError):  # stops at the empty data file, before any server starts
        run_eval(
            tmp_path / "empty.jsonl",
            adapter=adapter,
            tools_file=None,
            labels_file=None,
            model=None,
            out=tmp_path / "out",
            max_tokens=8,
            ui=ui,
        )
    assert len(ui.warnings) == 1 and "gone.gguf" in ui.warnings[0] and "--model" in ui.warnings[0]
