import asyncio
import json

import pytest

from loraforge.errors import ConfigError
from loraforge.generators.labels import LabelGenerator, label_cycle, load_labeled, seeds_by_label
from loraforge.generators.plan import GenerationPlan
from loraforge.generators.runner import generate_to_file, load_partial, report_path
from loraforge.generators.stats import GenerationStats


def test_all_labeled_formats_load(tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [
        {"item": "card declined", "label": "billing"},
        {"instruction": "Classify the ticket.", "input": "app crashes", "output": "bug"},
        {"premise": "A man sleeps.", "hypothesis": "A man is awake.", "label": "contradiction"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = load_labeled(path)
    assert [r["label"] for r in loaded] == ["billing", "bug", "contradiction"]
    assert loaded[1]["item"] == "Classify the ticket.\n\napp crashes"
    assert loaded[2]["item"].startswith("Premise: A man sleeps.\nHypothesis:")


def test_unknown_row_names_file_line_and_formats(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"item": "x", "label": "a"}\n{"text": "y"}\n')
    with pytest.raises(ConfigError) as info:
        load_labeled(path)
    assert "bad.jsonl, line 2" in str(info.value) and '{"item", "label"}' in info.value.paragraph()


def test_one_label_is_not_enough():
    with pytest.raises(ConfigError, match="at least two labels"):
        seeds_by_label([{"item": "a", "label": "x"}])


def test_label_cycle_follows_weights():
    assert label_cycle(["a", "b"], {}).count("a") == label_cycle(["a", "b"], {}).count("b")
    assert label_cycle(["a", "b"], {"a": 2.0}).count("a") == 2 * label_cycle(["a", "b"], {"a": 2.0}).count("b")


class ScriptedTeacher:
    """Answers item prompts with numbered sentences and classifies with a fixed answer per call order.

    This is fault injection at the HTTP boundary: the teacher disagrees on every third item."""

    def __init__(self):
        self.count = 0

    async def complete(self, prompt, **kwargs):
        self.count += 1
        if kwargs.get("json_schema"):
            intended = prompt.split("Text: ")[-1]
            label = intended.split(" about ")[-1].split()[0]
            return json.dumps("wrong" if self.count % 3 == 0 else label)
        label = prompt.split("labeled '")[1].split("'")[0]
        return f" Ticket number {self.count} about {label} with unique words w{self.count}x w{self.count}y\n"


def test_label_generation_is_balanced_and_never_repeats_a_seed(tmp_path):
    seeds = {"a": ["alpha one", "alpha two"], "b": ["beta one", "beta two"], "c": ["gamma one", "gamma two"]}
    generator = LabelGenerator(seeds, ScriptedTeacher(), GenerationPlan(), seed=0)
    out = tmp_path / "labels.jsonl"
    report = asyncio.run(generate_to_file(generator, out, 12))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12 == report["kept_in_file"]
    counts = {label: sum(r["label"] == label for r in rows) for label in seeds}
    assert counts == {"a": 4, "b": 4, "c": 4}
    items = {r["item"] for r in rows}
    assert not items & {s for group in seeds.values() for s in group}
    assert report["rejected"]["label_disagrees"] > 0
    assert report_path(out).is_file()


class CountingGenerator:
    """Stands in for a generator to test the runner's bookkeeping (indices, resume, torn lines)."""

    def __init__(self, fail_every=0):
        self.stats = GenerationStats()
        self.seen = []
        self.fail_every = fail_every

    def remember(self, rows):
        self.remembered = [r["meta"]["index"] for r in rows]

    async def generate(self, indices, on_example=None):
        rows = []
        for index in indices:
            self.seen.append(index)
            if self.fail_every and index % self.fail_every == 0:
                continue
            row = {"messages": [], "meta": {"index": index, "style": "single"}}
            self.stats.accept(row)
            rows.append(row)
            on_example(row)
        return rows


def test_runner_resumes_without_duplicates_and_drops_a_torn_line(tmp_path):
    out = tmp_path / "d.jsonl"
    out.write_text(
        json.dumps({"messages": [], "meta": {"index": 0}})
        + "\n"
        + json.dumps({"messages": [], "meta": {"index": 2}})
        + "\n"
        + '{"messages": [], "me'
    )
    assert len(load_partial(out)) == 2
    generator = CountingGenerator()
    asyncio.run(generate_to_file(generator, out, 5))
    indices = [json.loads(line)["meta"]["index"] for line in out.read_text().splitlines()]
    assert sorted(indices) == [0, 1, 2, 3, 4] and len(set(indices)) == len(indices)
    assert generator.remembered == [0, 2] and 0 not in generator.seen and 2 not in generator.seen


def test_runner_tops_up_indices_that_gave_up(tmp_path):
    out = tmp_path / "d.jsonl"
    generator = CountingGenerator(fail_every=3)
    report = asyncio.run(generate_to_file(generator, out, 6))
    assert report["kept_in_file"] == 6 == len(out.read_text().splitlines())
    assert max(generator.seen) > 5
