"""Verdict (review) answers of the corpus (see ``tests.support.corpus_answers``): templates filled with the
batch's task ids (``{id1}``..) and descriptions (``{d1}``..) by position. Every task they judge
exited 0 and every verdict says it is done. Not collected as tests."""

from __future__ import annotations

from tests.support.corpus_answers import DEEPSEEK, GEMINI, LLAMA, OLLAMA, QWEN, Answer


def _review(
    id: str, shape: str, family: str, text: str, *, tasks: int = 3, judged: int | None = None,
    repair: str | None = None, each: tuple[str, str, str] | None = None,
) -> Answer:
    return Answer(id, "review", shape, family, text, repair=repair, tasks=tasks, judged=judged, each=each)


def _verdicts(ids: tuple[str, ...] = ("{id1}", "{id2}", "{id3}"), *, quote: str = '"', hint: str = '""') -> str:
    q = quote
    return ", ".join(f"{{{q}task_id{q}: {tid}, {q}verdict{q}: {q}done{q}, {q}hint{q}: {hint}}}" for tid in ids)


_REVIEW = '{"verdicts": [' + _verdicts() + '], "decision": "continue"}'

REVIEW_ANSWERS: tuple[Answer, ...] = (
    _review("review-fenced-json", "fenced-json", LLAMA, f"```json\n{_REVIEW}\n```"),
    _review("review-prose-json", "prose+json", GEMINI, f"""Here is my review of the results:

```json
{_REVIEW}
```

All outputs match what the tasks asked for."""),
    _review("review-think-json", "think", DEEPSEEK, f"""<think>
Let me check each task. Task {{id1}} printed that numbers.txt was written. Task {{id2}} printed the sum.
Task {{id3}} wrote report.md. No errors anywhere, exit status ok for all. So all done, continue.
</think>

{_REVIEW}"""),
    _review("review-think-list", "think", QWEN, """<think>
Okay, the three outputs look right and nothing failed.
</think>

Task {id1}: done
Task {id2}: done
Task {id3}: done

Decision: continue"""),
    _review("review-blanket", "blanket", LLAMA, "All tasks completed successfully."),
    _review("review-blanket-two-batches", "blanket", LLAMA, "All tasks completed successfully.", tasks=5),
    _review("review-blanket-ran", "blanket", GEMINI,
            "All three tasks ran successfully and the outputs confirm what each task asked for."),
    _review("review-blanket-everything", "blanket", OLLAMA,
            "Everything worked! The numbers were written, summed and the report was saved."),
    _review("review-blanket-every-task", "blanket", QWEN,
            "The outputs show that every task was completed as intended. Decision: continue"),
    _review("review-blanket-yes", "blanket", OLLAMA, "Yes, all tasks were completed successfully."),
    _review("review-emoji-ids", "emoji", GEMINI, """✅ Task {id1} — numbers.txt has the numbers 1 to 10
✅ Task {id2} — the sum (55) was printed
✅ Task {id3} — report.md was written"""),
    _review("review-emoji-order", "emoji", OLLAMA, "✅ {d1}\n✅ {d2}\n✅ {d3}"),
    _review("review-emoji-bullets", "emoji", GEMINI, """*   ✅ {d1}: Success
*   ✅ {d2}: Success
*   ✅ {d3}: Success

Continue with the plan."""),
    _review("review-emoji-after-ids", "emoji", LLAMA, "Task {id1}: ✅\nTask {id2}: ✅\nTask {id3}: ✅"),
    _review("review-check-marks-order", "emoji", OLLAMA, "1. ✔ done\n2. ✔ done\n3. ✔ done"),
    _review("review-check-bullets-order", "emoji", GEMINI, """- ✔️ numbers.txt created
- ✔️ sum printed (55)
- ✔️ report.md written

All good, continue."""),
    _review("review-yes-ids", "yes-no", OLLAMA, "Task {id1}: Yes\nTask {id2}: Yes\nTask {id3}: Yes"),
    _review("review-yes-order", "yes-no", LLAMA, """1. Yes - numbers.txt contains the numbers 1 to 10
2. Yes - the sum 55 was printed
3. Yes - report.md holds the sum"""),
    _review("review-achieved-yes", "yes-no", OLLAMA,
            "- Task {id1} achieved: yes\n- Task {id2} achieved: yes\n- Task {id3} achieved: yes"),
    _review("review-success-words", "success-words", GEMINI, """Task {id1}: Success
Task {id2}: Success
Task {id3}: Success

Next step: continue"""),
    _review("review-success-order", "success-words", QWEN, """1. Success - the file was created.
2. Success - the sum was computed.
3. Success - the report was written."""),
    _review("review-passed", "success-words", LLAMA, "Task {id1} - PASSED\nTask {id2} - PASSED\nTask {id3} - PASSED"),
    _review("review-table", "table", GEMINI, """| Task | Verdict | Hint |
|------|---------|------|
| {id1} | done | |
| {id2} | done | |
| {id3} | done | |

**Decision:** continue"""),
    _review("review-table-labels", "table", QWEN, """| Task | Status | Notes |
|---|---|---|
| Task {id1} | ✅ Done | numbers.txt written |
| Task {id2} | ✅ Done | sum is 55 |
| Task {id3} | ✅ Done | report.md written |"""),
    _review("review-bold", "list", GEMINI, """**Task {id1}:** ✅ Done
**Task {id2}:** ✅ Done
**Task {id3}:** ✅ Done

**Decision:** continue"""),
    _review("review-headings", "list", QWEN, """### Task {id1}
**Verdict:** done
**Hint:** none

### Task {id2}
**Verdict:** done
**Hint:** none

### Task {id3}
**Verdict:** done
**Hint:** none"""),
    _review("review-order-done", "list", OLLAMA, "1. done\n2. done\n3. done"),
    _review("review-pipe", "pipe", LLAMA, "Task{id1}: done | Task{id2}: done | Task{id3}: done | Decision: continue"),
    _review("review-py-repr", "py-repr", OLLAMA,
            "{'verdicts': [" + _verdicts(quote="'", hint="None") + "], 'decision': 'continue'}"),
    _review("review-trailing-comma", "trailing-comma", OLLAMA,
            '{"verdicts": [' + _verdicts() + ',], "decision": "continue",}'),
    _review("review-single-quotes-fenced", "single-quotes", QWEN,
            "```json\n{'verdicts': [" + _verdicts(quote="'", hint="''") + "], 'decision': 'continue'}\n```"),
    _review("review-json-mapping", "py-repr", GEMINI,
            '{"Task {id1}": "done", "Task {id2}": "done", "Task {id3}": "done"}'),
    _review("review-json-status-success", "py-repr", QWEN,
            '{"results": [{"task": {id1}, "status": "success"}, {"task": {id2}, "status": "success"}, '
            '{"task": {id3}, "status": "success"}], "next_action": "continue"}'),
    _review("review-truncated-decision", "truncated", LLAMA,
            '{"verdicts": [' + _verdicts() + '], "decision": "contin'),
    _review("review-truncated-third", "truncated", GEMINI,
            '```json\n{"verdicts": [' + _verdicts(("{id1}", "{id2}")) + ', {"task_id": {id3}, "verd',
            judged=2),
    _review("review-too-many", "wrong-count", GEMINI,
            '{"verdicts": [' + _verdicts(("{id1}", "{id2}", "{id3}", "{id4}")) + '], "decision": "continue"}'),
    _review("review-too-few", "wrong-count", OLLAMA,
            '{"verdicts": [' + _verdicts(("{id1}", "{id2}")) + '], "decision": "continue"}', judged=2),
    # 5 tasks: batches of 3 and 2, each judged with ids counted from 1
    _review("review-renumbered-lines", "renumbered", LLAMA, "", tasks=5, each=("Task {n}: done", "\n", "")),
    _review("review-renumbered-json", "renumbered", QWEN, '{"verdicts": [', tasks=5,
            each=('{"task_id": {n}, "verdict": "done", "hint": ""}', ", ", '], "decision": "continue"}')),
    _review("review-repair-refusal", "repair", LLAMA, "I cannot evaluate this without seeing the actual files.",
            repair=_REVIEW),
    # XML-ish tags (Qwen 3 and Claude-tuned distills)
    _review("review-xml-tags", "xml-tags", QWEN, """<verdict id="{id1}">done</verdict>
<verdict task_id="{id2}" status="done">the sum is printed</verdict>
<verdict id="{id3}">done - report.md written</verdict>
<decision>continue</decision>"""),
    # YAML verdicts (Gemini Flash)
    _review("review-yaml", "yaml", GEMINI, """```yaml
verdicts:
  - task_id: {id1}
    verdict: done
  - task_id: {id2}
    verdict: done
  - task_id: {id3}
    verdict: done
decision: continue
```"""),
    # DeepSeek-R1 distills through Ollama: only a closing </think>; the doubts before it are no verdicts
    _review("review-lone-think-close", "think", OLLAMA, """Let me look. Task {id1}: failed? No, it printed.
Task {id2}: failed - maybe the sum is wrong. Actually it is 55. Task {id3}: retry? It wrote the file.
</think>

Task {id1}: done
Task {id2}: done
Task {id3}: done"""),
)
