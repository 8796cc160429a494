"""Code answers of the corpus (see ``tests.support.corpus_answers``): templates filled with the batch's
task ids (``{id1}``..) and descriptions (``{d1}``..) by position. The code of position N always
prints ``{dN}``, so the test can tell which task each block landed on. Not collected as tests."""

from __future__ import annotations

from tests.support.corpus_answers import DEEPSEEK, GEMINI, LLAMA, OLLAMA, QWEN, Answer


def _code(
    id: str, shape: str, family: str, text: str, *, tasks: int = 3, languages: tuple[str, ...] = (),
    repair: str | None = None, each: tuple[str, str, str] | None = None,
) -> Answer:
    return Answer(id, "code", shape, family, text, repair=repair, tasks=tasks, languages=languages, each=each)


def _sections(heading: str, fence: str = "python", ids: tuple[str, ...] = ("{id1}", "{id2}", "{id3}")) -> str:
    """``heading`` (with ``{id}``) + a fenced block per task; shell fences echo, others print."""
    blocks = []
    for pos, tid in enumerate(ids, 1):
        body = f'echo "{{d{pos}}}: ok"' if fence in _SHELLS else f'print("{{d{pos}}}: ok")'
        blocks.append(f"{heading.replace('{id}', tid)}\n```{fence}\n{body}\n```")
    return "\n\n".join(blocks)


def _items(ids: tuple[str, ...] = ("{id1}", "{id2}", "{id3}"), *, quote: str = '"') -> str:
    q = quote
    inner = "'" if q == '"' else '"'
    return ", ".join(
        f"{{{q}task_id{q}: {tid}, {q}language{q}: {q}python{q}, {q}code{q}: {q}print({inner}{{d{pos}}}: ok{inner}){q}}}"
        for pos, tid in enumerate(ids, 1)
    )


_SHELLS = ("bash", "sh", "shell", "zsh")
_SHELL3 = ("shell", "shell", "shell")
_ITEMS = '{"items": [' + _items() + "]}"
_PY = ("python", "python", "python")

_MULTILINE_JSON = """```json
{
  "items": [
    {
      "task_id": {id1},
      "language": "python",
      "code": "with open('numbers.txt', 'w') as f:\\n    f.write(str(list(range(1, 11))))\\nprint('{d1}: ok')"
    },
    {
      "task_id": {id2},
      "language": "python",
      "code": "total = sum(range(1, 11))\\nprint('{d2}: ok', total)"
    },
    {
      "task_id": {id3},
      "language": "python",
      "code": "with open('report.md', 'w') as f:\\n    f.write('sum: 55')\\nprint('{d3}: ok')"
    }
  ]
}
```"""

CODE_ANSWERS: tuple[Answer, ...] = (
    _code("code-fenced-json", "fenced-json", LLAMA, f"```json\n{_ITEMS}\n```"),
    _code("code-prose-json-multiline", "prose+json", GEMINI,
          f"Here is the code for each task:\n\n{_MULTILINE_JSON}\n\nEach script prints what it did."),
    _code("code-bare-array", "prose+json", QWEN, f"[{_items()}]"),
    _code("code-prose-inline-json", "prose+json", LLAMA,
          f"Sure, here is the code: {_ITEMS} All three scripts use only the standard library."),
    _code("code-think-json", "think", DEEPSEEK, f"""<think>
Alright, three tasks. The first writes the file, the second sums the numbers, the third writes the
report. Each should print something so the result is visible. I'll answer with the JSON format.
</think>

```json
{_ITEMS}
```"""),
    _code("code-think-sections", "think", QWEN,
          "<think>\nI need code for three tasks. Keep each script short and print the result.\n</think>\n\n"
          + _sections("### Task {id}")),
    _code("code-think-unlabeled", "think", DEEPSEEK,
          "<think>\nOkay: one block per task, in order, python only.\n</think>\n\n" + _sections("", "python")),
    _code("code-sections", "list", GEMINI, _sections("### Task {id}")),
    _code("code-bold-labels", "list", LLAMA, _sections("**Task {id}:**")),
    _code("code-numbered-labels", "list", OLLAMA, _sections("{id}. Task {id}:")),
    _code("code-unlabeled-fences", "unlabeled-fences", LLAMA, "Here is the code:\n\n" + _sections("", "python")),
    _code("code-unlabeled-nolang", "unlabeled-fences", OLLAMA, _sections("", "")),
    _code("code-unlabeled-prose", "unlabeled-fences", GEMINI, """First, let's create the file:

```python
with open("numbers.txt", "w") as f:
    f.write(" ".join(str(n) for n in range(1, 11)))
print("{d1}: ok")
```

Next, we sum the numbers:

```python
total = sum(int(n) for n in open("numbers.txt").read().split())
print("{d2}: ok", total)
```

Finally, we write the report:

```python
open("report.md", "w").write("sum: 55")
print("{d3}: ok")
```"""),
    _code("code-unlabeled-numbered", "unlabeled-fences", GEMINI, """1.  **Create the file**

    ```python
    print("{d1}: ok")
    ```

2.  **Sum the numbers**

    ```python
    print("{d2}: ok")
    ```

3.  **Write the report**

    ```python
    print("{d3}: ok")
    ```"""),
    _code("code-unlabeled-bash", "unlabeled-fences", GEMINI, _sections("", "bash"), languages=_SHELL3),
    # 5 tasks: batches of 3 and 2, each answered with ids counted from 1
    _code("code-renumbered-sections", "renumbered", LLAMA, "", tasks=5,
          each=('### Task {n}\n```python\nprint("{d}: ok")\n```', "\n\n", "")),
    _code("code-renumbered-json", "renumbered", QWEN, '```json\n{"items": [', tasks=5,
          each=('{"task_id": {n}, "language": "python", "code": "print(\'{d}: ok\')"}', ", ", "]}\n```")),
    _code("code-renumbered-comments", "renumbered", OLLAMA, "", tasks=5,
          each=('```python\n# Task {n}\nprint("{d}: ok")\n```', "\n\n", "")),
    _code("code-fence-py", "fence-lang", GEMINI, _sections("### Task {id}", "py"), languages=_PY),
    _code("code-fence-python3", "fence-lang", OLLAMA, _sections("Task {id}:", "python3"), languages=_PY),
    _code("code-fence-bash", "fence-lang", LLAMA, _sections("### Task {id}", "bash"), languages=_SHELL3),
    _code("code-fence-sh", "fence-lang", QWEN, _sections("**Task {id}**", "sh"), languages=_SHELL3),
    _code("code-fence-shell", "fence-lang", GEMINI, _sections("### Task {id}", "shell"), languages=_SHELL3),
    _code("code-fence-zsh", "fence-lang", OLLAMA, _sections("Task {id}:", "zsh"), languages=_SHELL3),
    _code("code-fence-mixed", "fence-lang", LLAMA, """### Task {id1}
```python
print("{d1}: ok")
```

### Task {id2}
```bash
echo "{d2}: ok"
```

### Task {id3}
```sh
echo "{d3}: ok"
```""", languages=("python", "shell", "shell")),
    _code("code-json-language-field", "fence-lang", QWEN,
          '{"items": [{"task_id": {id1}, "language": "bash", "code": "echo \\"{d1}: ok\\""}, '
          '{"task_id": {id2}, "language": "sh", "code": "echo \\"{d2}: ok\\""}, '
          '{"task_id": {id3}, "language": "Python", "code": "print(\'{d3}: ok\')"}]}',
          languages=("shell", "shell", "python")),
    _code("code-trailing-comma", "trailing-comma", OLLAMA,
          '{"items": [' + ", ".join(
              f'{{"task_id": {{id{p}}}, "language": "python", "code": "print(\'{{d{p}}}: ok\')",}}' for p in (1, 2, 3)
          ) + ",],}"),
    _code("code-py-repr", "py-repr", OLLAMA, "{'items': [" + _items(quote="'") + "]}"),
    _code("code-single-quotes-fenced", "single-quotes", QWEN, "```json\n{'items': [" + _items(quote="'") + "]}\n```"),
    _code("code-truncated-notes", "truncated", LLAMA,
          '{"items": [' + _items() + '], "notes": "All scripts only use the standard lib'),
    _code("code-truncated-extra-item", "truncated", QWEN,
          '```json\n{"items": [' + _items() + ', {"task_id": 4, "language": "python", "code": "print(\'bon'),
    _code("code-truncated-last-fence", "truncated", GEMINI,
          _sections("### Task {id}").removesuffix("\n```") + "\n# then write the rep"),
    _code("code-too-many-items", "wrong-count", LLAMA,
          '{"items": [' + _items() + ', {"task_id": 4, "language": "python", "code": "print(\'verify\')"}]}'),
    _code("code-too-many-sections", "wrong-count", GEMINI,
          _sections("### Task {id}") + '\n\n### Task 4 (optional): verify\n```python\nprint("verified")\n```'),
    _code("code-duplicate-item", "wrong-count", OLLAMA,
          '{"items": [' + _items() + ', {"task_id": {id2}, "language": "python", "code": "print(\'again\')"}]}'),
    _code("code-json-id-script-keys", "py-repr", LLAMA,
          '{"tasks": [{"id": {id1}, "script": "print(\'{d1}: ok\')"}, {"id": {id2}, "script": "print(\'{d2}: ok\')"}, '
          '{"id": {id3}, "script": "print(\'{d3}: ok\')"}]}'),
    _code("code-string-ids", "fenced-json", QWEN, '```json\n{"items": [' + _items(
        ('"Task {id1}"', '"Task {id2}"', '"Task {id3}"')) + "]}\n```"),
    _code("code-repair-no-code", "repair", LLAMA,
          "Sure! For these tasks I would write a short Python script that writes the file, sums the values and "
          "writes the report. Let me know if you want the code.", repair=_ITEMS),
    _code("code-repair-cut-early", "repair", OLLAMA,
          '```json\n{"items": [{"task_id": {id1}, "language": "py', repair=_ITEMS),
    # Issue 18: one fence holding every task's code, divided by marker comments (Llama 3.x on Groq)
    _code("code-one-fence-markers", "one-fence", LLAMA, """Here is the complete script:

```python
import os

# Task {id1}
print("{d1}: ok")

# --- Task {id2} ---
print("{d2}: ok", os.sep)

// Task {id3}:
print("{d3}: ok")
```"""),
    # the same from a small local model, ids counted from 1 in every batch (5 tasks: batches of 3 and 2)
    _code("code-one-fence-markers-renumbered", "one-fence", OLLAMA, "```python\n", tasks=5,
          each=('## Task {n}\nprint("{d}: ok")', "\n\n", "\n```")),
    # YAML instead of JSON (Gemini Flash when asked for "structured" output in prose)
    _code("code-yaml", "yaml", GEMINI, """```yaml
items:
  - task_id: {id1}
    language: python
    code: |
      print("{d1}: ok")
  - task_id: {id2}
    language: python
    code: |
      total = sum(range(1, 11))
      print("{d2}: ok", total)
  - task_id: {id3}
    language: python
    code: |
      print("{d3}: ok")
```"""),
    _code("code-yaml-bare", "yaml", QWEN, """items:
  - task_id: {id1}
    language: python
    code: |
      print("{d1}: ok")
  - task_id: {id2}
    language: bash
    code: 'echo "{d2}: ok"'
  - task_id: {id3}
    language: python
    code: >-
      print("{d3}: ok")
""", languages=("python", "shell", "python")),
    # XML-ish tags (Qwen 3 and Claude-tuned distills): <task id="N"> and <code task="N">
    _code("code-xml-tags", "xml-tags", QWEN, """<task id="{id1}">
print("{d1}: ok")
</task>
<task id="{id2}">
```python
print("{d2}: ok", 1 &lt; 2)
```
</task>
<code task="{id3}" language="python">
print("{d3}: ok")
</code>"""),
    # DeepSeek-R1 distills through Ollama: the reasoning has no opening <think>, only the closing tag
    _code("code-lone-think-close", "think", OLLAMA, """Okay, three tasks. For Task {id1} a first draft:

### Task {id1}
```python
print("draft, not the answer")
```

Hmm, better print what each task did.
</think>

### Task {id1}
```python
print("{d1}: ok")
```

### Task {id2}
```python
print("{d2}: ok")
```

### Task {id3}
```python
print("{d3}: ok")
```"""),
)
