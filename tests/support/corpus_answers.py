"""A corpus of answers in the shapes the shipped free models really give when they ignore the
structured-output tool (issue 8, item 5): plan answers here, code answers in
``tests.support.corpus_answers_code``, verdicts in ``tests.support.corpus_answers_review``.

Each :class:`Answer` names the model family it imitates (Llama 3.x on Groq, Gemini Flash,
Qwen / DeepSeek thinking models on OpenRouter, small local models through Ollama) and a shape
class. Code and verdict answers are templates: ``{id1}``..``{id6}`` and ``{d1}``..``{d6}`` are
replaced by the ids and descriptions of the batch the answer is for (by position), so they fit
the request. ``tests/test_corpus_e2e.py`` runs every entry end to end (not collected itself).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Kind = Literal["plan", "code", "review"]

LLAMA = "llama-3.x@groq"
GEMINI = "gemini-flash"
QWEN = "qwen3@openrouter"
DEEPSEEK = "deepseek-r1@openrouter"
OLLAMA = "small-local@ollama"
FAMILIES = (LLAMA, GEMINI, QWEN, DEEPSEEK, OLLAMA)

GOAL = "write the numbers 1 to 10 to numbers.txt, add them up and put the sum in report.md"
# The plan a good model gives for GOAL (used when the answer under test is a code or verdict answer).
PLAN = (
    "write numbers.txt with the numbers 1 to 10",
    "sum the numbers in numbers.txt",
    "write report.md with the sum",
    "count the lines of numbers.txt",
    "list the files of the working directory",
    "print report.md",
)
_SLOTS = 6


@dataclass(frozen=True)
class Answer:
    """One corpus entry: what a model answered to the prompt of ``kind``."""

    id: str
    kind: Kind
    shape: str
    family: str
    text: str
    repair: str | None = None
    """The answer to the repair prompt; None: the model says the same again."""
    tasks: int = 3
    """plan: tasks the answer holds (after the cap of 5); code/review: tasks of the plan (3 to 5)."""
    languages: tuple[str, ...] = ()
    """code: the language each task of a batch must get, by position (empty: python for all)."""
    judged: int | None = None
    """review: verdicts the answer gives for the last batch (None: one per task)."""
    each: tuple[str, str, str] | None = None
    """(item, separator, tail): the answer is ``text`` + one item per task of the batch + tail, for
    answers that follow the batch's size; an item's ``{n}`` is its position, ``{id}`` / ``{d}`` its task."""

    def render(self, batch: Sequence[tuple[int, str]], *, repair: bool = False) -> str:
        """The answer for ``batch`` ((id, description) pairs, in order)."""
        text = self.repair if repair and self.repair is not None else self.text
        if self.each is not None and not (repair and self.repair is not None):
            item, separator, tail = self.each
            items = (item.replace("{n}", str(n)).replace("{id}", str(tid)).replace("{d}", desc)
                     for n, (tid, desc) in enumerate(batch, 1))
            text += separator.join(items) + tail
        for pos in range(_SLOTS, 0, -1):
            tid, desc = batch[pos - 1] if pos <= len(batch) else (90 + pos, f"extra step {pos}")
            text = text.replace(f"{{id{pos}}}", str(tid)).replace(f"{{d{pos}}}", desc)
        return text


def _plan(id: str, shape: str, family: str, text: str, tasks: int = 3, repair: str | None = None) -> Answer:
    return Answer(id, "plan", shape, family, text, repair=repair, tasks=tasks)


_JSON3 = (
    '{"tasks": ["Create numbers.txt containing the numbers 1 to 10, one per line", '
    '"Read numbers.txt and print the sum of the numbers", "Write the sum to report.md and print it"]}'
)

PLAN_ANSWERS: tuple[Answer, ...] = (
    _plan("plan-fenced-json", "fenced-json", LLAMA, f"```json\n{_JSON3}\n```"),
    _plan("plan-fenced-json-pretty", "fenced-json", GEMINI, """```json
{
  "tasks": [
    "Create a file named numbers.txt with the numbers 1 to 10, one per line",
    "Read numbers.txt and calculate the sum of the numbers",
    "Write the calculated sum to report.md",
    "Print the content of report.md to verify the result"
  ]
}
```""", tasks=4),
    _plan("plan-fenced-nolang", "fenced-json", OLLAMA, f"```\n{_JSON3}\n```"),
    _plan("plan-prose-json", "prose+json", LLAMA,
          f"Here is the plan broken into tasks:\n\n{_JSON3}\n\nEach task can be done with a short Python script."),
    _plan("plan-prose-fenced-explained", "prose+json", GEMINI, """\
Okay, here's a breakdown of the goal into executable tasks:

```json
{
  "tasks": [
    "Generate the numbers 1 to 10 and write them to numbers.txt",
    "Read the numbers from numbers.txt and compute their sum",
    "Write the sum to report.md"
  ]
}
```

**Explanation:**

*   **Task 1** creates the input file the other tasks need.
*   **Task 2** reads it back and prints the sum, so the result is visible.
*   **Task 3** stores the sum in the report."""),
    _plan("plan-prose-steps-objects", "prose+json", QWEN, """Sure! Here's a plan:

{"steps": [{"step": 1, "description": "Write the numbers 1 to 10 into numbers.txt"},
           {"step": 2, "description": "Read numbers.txt and sum the numbers"},
           {"step": 3, "description": "Save the sum into report.md and print it"}]}"""),
    _plan("plan-bare-array", "prose+json", GEMINI,
          '["Write the numbers 1 to 10 to numbers.txt", "Sum the numbers in numbers.txt", '
          '"Write the sum to report.md"]'),
    _plan("plan-prose-inline-array", "prose+json", LLAMA,
          'The tasks are: ["Create numbers.txt with 1 to 10", "Compute the sum of numbers.txt", '
          '"Store the sum in report.md"]. Let me know if you need the code.'),
    _plan("plan-think-fenced-json", "think", DEEPSEEK, f"""<think>
Okay, so the user wants me to write the numbers 1 to 10 to a file, add them up and put the sum in a
report. Let me break this down. First, I need to create numbers.txt. Then read it back and sum the
values, which should be 55. Finally write report.md. That's three tasks. I should answer in the JSON
format they asked for.
</think>

```json
{_JSON3}
```"""),
    _plan("plan-think-draft-list", "think", QWEN, """<think>
Okay, let's see. The goal is to write numbers 1-10 to a file, sum them and report. Possible steps:
1. Generate the numbers
2. Save them to numbers.txt
3. Read the file and sum
4. Write report.md

But generating and saving can be one task. So three tasks in the final answer.
</think>

1. Create numbers.txt containing the numbers 1 to 10, one per line
2. Read numbers.txt and print the sum of the numbers
3. Write the sum to report.md and print the report"""),
    _plan("plan-think-pipe", "think", DEEPSEEK, """<think>
The user wants a plan in the Task1 | Task2 format. The file must be created first, then summed, and the
report written last. Three short scripts will do it.
</think>
Task1: Create numbers.txt with the numbers 1 to 10 | Task2: Sum the numbers in numbers.txt and print the \
total | Task3: Write the total to report.md"""),
    _plan("plan-think-bold-list", "think", QWEN, """<think>
I need 3-5 tasks. Creating the file, summing, and writing the report are natural steps; a final check
that prints report.md makes the result visible.
</think>

**Plan:**

1. **Create the data file** - write the numbers 1 to 10 to numbers.txt
2. **Compute the sum** - read numbers.txt and print the sum
3. **Write the report** - save the sum to report.md
4. **Verify** - print the contents of report.md""", tasks=4),
    _plan("plan-numbered", "list", LLAMA, """Here are the tasks:

1. Create a file called numbers.txt and write the numbers 1 to 10 in it
2. Read the numbers from numbers.txt and calculate their sum
3. Write the sum to a file called report.md
4. Print the contents of report.md""", tasks=4),
    _plan("plan-numbered-parens", "list", OLLAMA, """1) Write numbers 1-10 to numbers.txt
2) Add up the numbers in numbers.txt
3) Put the sum in report.md"""),
    _plan("plan-bold-numbered", "list", GEMINI, """Here's a plan to achieve your goal:

1.  **Create the numbers file:** Write a Python script that writes the numbers 1 to 10 to `numbers.txt`.
2.  **Sum the numbers:** Read `numbers.txt`, convert each line to an integer and print the sum.
3.  **Write the report:** Write the sum to `report.md` and print it."""),
    _plan("plan-bold-labels", "list", GEMINI, """**Task 1:** Create numbers.txt with the numbers 1 to 10, one per line.
**Task 2:** Read numbers.txt and compute the sum of all numbers.
**Task 3:** Write the sum into report.md and print the file."""),
    _plan("plan-headings", "list", QWEN, """### Task 1: Create the input file
Write the numbers 1 to 10 to numbers.txt, one number per line.

### Task 2: Sum the numbers
Read numbers.txt and print the total.

### Task 3: Write the report
Save the total to report.md."""),
    _plan("plan-bullets", "list", OLLAMA, """- Create numbers.txt with numbers from 1 to 10
- Read numbers.txt and sum all numbers
- Write the sum to report.md"""),
    _plan("plan-nested-list", "list", GEMINI, """1. **Create numbers.txt**
   - Open numbers.txt for writing
   - Write the numbers 1 to 10 into it, one per line
2. **Sum the numbers in numbers.txt**
   - Read numbers.txt
   - Add up the numbers and print the total
3. **Write the sum to report.md**
   - Print the report afterwards"""),
    _plan("plan-numbered-paragraphs", "list", LLAMA, """\
To achieve this goal, I'll break it down into the following tasks:

1. Create numbers.txt with the numbers 1 to 10.

   This can be done with a simple loop that writes each number on its own line.

2. Calculate the sum of the numbers in numbers.txt.

   The script reads the file, converts each line to an integer and prints the sum.

3. Write the sum to report.md.

   The report contains a single line with the sum."""),
    _plan("plan-step-lines", "list", OLLAMA, """Step 1: Create numbers.txt with the numbers 1 to 10
Step 2: Read numbers.txt and add up the numbers
Step 3: Write the result to report.md"""),
    _plan("plan-yaml-ish", "list", OLLAMA, """tasks:
  - Create numbers.txt containing the numbers 1 to 10
  - Sum the numbers in numbers.txt
  - Write the sum to report.md"""),
    # YAML objects (Gemini Flash asked for "structured" output in prose)
    _plan("plan-yaml-objects", "yaml", GEMINI, """```yaml
tasks:
  - id: 1
    description: Create numbers.txt containing the numbers 1 to 10
  - id: 2
    description: Sum the numbers in numbers.txt
  - id: 3
    description: Write the sum to report.md
```"""),
    _plan("plan-yaml-steps", "yaml", OLLAMA, """Here is the plan.

steps:
  - step: Create numbers.txt containing the numbers 1 to 10
  - step: Sum the numbers in numbers.txt
  - step: Write the sum to report.md
  - step: Print report.md""", tasks=4),
    # XML-ish tags (Qwen 3 and Claude-tuned distills)
    _plan("plan-xml-tags", "xml-tags", QWEN, """<plan>
<task id="1">Create numbers.txt containing the numbers 1 to 10</task>
<task id="2">Sum the numbers in numbers.txt</task>
<task id="3">Write the sum to report.md</task>
</plan>"""),
    _plan("plan-xml-steps", "xml-tags", DEEPSEEK, """<think>Three steps will do.</think>
<steps><step>Create numbers.txt containing the numbers 1 to 10</step><step>Sum the numbers in numbers.txt</step>
<step>Write the sum to report.md</step></steps>"""),
    _plan("plan-fenced-list", "list", OLLAMA, """```
1. Write the numbers 1 to 10 to numbers.txt
2. Sum the numbers from numbers.txt
3. Save the sum to report.md
```"""),
    _plan("plan-pipe", "pipe", LLAMA,
          "Task1: Create numbers.txt with the numbers 1 to 10 | Task2: Read numbers.txt and print the sum | "
          "Task3: Write the sum to report.md"),
    _plan("plan-pipe-spaced", "pipe", GEMINI,
          "Task 1: Write numbers 1-10 to numbers.txt | Task 2: Read numbers.txt and sum the numbers | "
          "Task 3: Write the sum to report.md | Task 4: Print report.md", tasks=4),
    _plan("plan-pipe-multiline", "pipe", LLAMA, """Task1: Create numbers.txt containing 1 to 10 |
Task2: Compute the sum of the numbers in numbers.txt |
Task3: Write the sum to report.md"""),
    _plan("plan-prose-pipe", "pipe", OLLAMA,
          "Sure! Here is the plan: Task1: Write 1 to 10 into numbers.txt | Task2: Sum the numbers in numbers.txt | "
          "Task3: Save the sum to report.md"),
    _plan("plan-trailing-comma", "trailing-comma", OLLAMA,
          '{"tasks": ["Create numbers.txt with 1 to 10", "Sum the numbers in numbers.txt", '
          '"Write the sum to report.md",],}'),
    _plan("plan-trailing-comma-fenced", "trailing-comma", GEMINI, """```json
{
  "tasks": [
    "Create numbers.txt with the numbers 1 to 10",
    "Read numbers.txt and sum the numbers",
    "Write the sum to report.md",
    "Print report.md",
  ],
}
```""", tasks=4),
    _plan("plan-json-comments", "trailing-comma", QWEN, """```jsonc
{
  // three short scripts
  "tasks": [
    "Create numbers.txt with the numbers 1 to 10", // the input
    "Sum the numbers in numbers.txt",
    "Write the sum to report.md" /* the output */
  ]
}
```"""),
    _plan("plan-single-quotes", "single-quotes", OLLAMA,
          "{'tasks': ['Create numbers.txt with the numbers 1 to 10', 'Sum the numbers in numbers.txt', "
          "'Write the sum to report.md']}"),
    _plan("plan-smart-quotes", "single-quotes", GEMINI,
          "{“tasks”: [“Create numbers.txt with the numbers 1 to 10”, “Sum the numbers in numbers.txt”, "
          "“Write the sum to report.md”]}"),
    _plan("plan-py-repr-objects", "py-repr", QWEN,
          "[{'id': 1, 'task': 'Create numbers.txt with the numbers 1 to 10', 'done': False}, "
          "{'id': 2, 'task': 'Sum the numbers in numbers.txt', 'done': False}, "
          "{'id': 3, 'task': 'Write the sum to report.md', 'done': False}]"),
    _plan("plan-py-repr-dict", "py-repr", OLLAMA,
          "{'tasks': [{'description': 'Create numbers.txt with the numbers 1 to 10', 'depends_on': None}, "
          "{'description': 'Sum the numbers in numbers.txt', 'depends_on': 1}, "
          "{'description': 'Write the sum to report.md', 'depends_on': 2}], 'parallel': False}"),
    _plan("plan-task-keys", "py-repr", LLAMA,
          '{"Task1": "Create numbers.txt with the numbers 1 to 10", "Task2": "Sum the numbers in numbers.txt", '
          '"Task3": "Write the sum to report.md"}'),
    _plan("plan-truncated", "truncated", LLAMA,
          '{"tasks": ["Create numbers.txt containing the numbers 1 to 10", "Read numbers.txt and compute the sum", '
          '"Write the sum to report.md", "Print the contents of rep'),
    _plan("plan-truncated-fenced", "truncated", GEMINI, """```json
{
  "tasks": [
    "Create a file numbers.txt with the numbers 1 to 10",
    "Read numbers.txt and calculate the sum",
    "Write the sum to report.md",
    "Print the"""),
    _plan("plan-truncated-objects", "truncated", QWEN,
          '{"tasks": [{"id": 1, "description": "Create numbers.txt with 1 to 10"}, '
          '{"id": 2, "description": "Sum the numbers in numbers.txt"}, '
          '{"id": 3, "description": "Write the sum to report.md"}, {"id": 4, "descr'),
    _plan("plan-truncated-after-list", "truncated", DEEPSEEK,
          '{"tasks": ["Create numbers.txt with 1 to 10", "Sum the numbers in numbers.txt", '
          '"Write the sum to report.md"], "notes": "Each script prints its resu'),
    _plan("plan-table", "table", GEMINI, """| # | Task |
|---|------|
| 1 | Create numbers.txt with the numbers 1 to 10 |
| 2 | Read numbers.txt and sum the numbers |
| 3 | Write the sum to report.md |"""),
    _plan("plan-table-columns", "table", QWEN, """Here is the plan:

| Step | Description | Output |
|------|-------------|--------|
| 1 | Create numbers.txt with the numbers 1 to 10 | numbers.txt |
| 2 | Read numbers.txt and sum the numbers | the sum, printed |
| 3 | Write the sum to report.md | report.md |"""),
    _plan("plan-table-task-labels", "table", LLAMA, """| Task | Description |
| --- | --- |
| Task 1 | Create numbers.txt with the numbers 1 to 10 |
| Task 2 | Sum the numbers in numbers.txt |
| Task 3 | Write the sum to report.md |"""),
    _plan("plan-too-many-numbered", "wrong-count", LLAMA, """1. Create an empty file numbers.txt
2. Write the numbers 1 to 10 to numbers.txt
3. Read numbers.txt
4. Convert each line to an integer
5. Sum the integers
6. Write the sum to report.md
7. Print report.md""", tasks=5),
    _plan("plan-too-many-json", "wrong-count", GEMINI,
          '{"tasks": ["Create numbers.txt", "Write 1 to 10 into numbers.txt", "Read numbers.txt", '
          '"Sum the numbers", "Write the sum to report.md", "Print report.md"]}', tasks=5),
    _plan("plan-too-few", "wrong-count", OLLAMA, """1. Write the numbers 1 to 10 to numbers.txt and print their sum
2. Save the sum in report.md""", tasks=2),
    _plan("plan-single-task", "wrong-count", LLAMA,
          "Task1: Write 1 to 10 to numbers.txt, sum them and write the sum to report.md in one script", tasks=1),
    _plan("plan-repair-question", "repair", LLAMA,
          "I'd be happy to help! Before I start: should the numbers be separated by commas or by newlines?",
          repair=_JSON3),
    _plan("plan-repair-cut-early", "repair", GEMINI, '```json\n{\n  "tasks": [\n', repair=_JSON3),
)
