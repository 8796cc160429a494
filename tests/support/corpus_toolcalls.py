"""A corpus of tool-call answers (issue 18): what free models send when they DO call the forced
structured-output tool, or try to, in the shapes that break a strict ``schema.model_validate``:
ids renumbered from 1 in a later batch, enum synonyms, wrapper keys, one call per task, arguments
double-encoded or written as Python literals, calls written into the text, and Groq's 400
``tool_use_failed`` whose ``failed_generation`` holds the call. ``tests/test_corpus_toolcalls.py``
runs every entry end to end (not collected itself).

Templates: ``{each}`` is replaced by ``item`` once per task of the batch (joined by ", "), in
which ``{n}`` is the task's position (from 1), ``{id}`` its id and ``{d}`` its description;
``per_task`` calls are sent once per task, filled the same way. A code item for a task always
prints (or echoes) its description, so the test can tell which task each code landed on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tests.fakes.provider_server import Reply
from tests.support.corpus_answers import DEEPSEEK, GEMINI, LLAMA, OLLAMA, PLAN, QWEN

Kind = Literal["plan", "code", "review"]
VLLM = "hermes@vllm"  # an OpenAI-compatible local server (vLLM with the hermes tool parser)
PLAN4 = PLAN[:4]
_TUF_MESSAGE = "Failed to call a function. Please adjust your prompt. See 'failed_generation' for more details."


@dataclass(frozen=True)
class ToolAnswer:
    """One corpus entry: the tool calls (and text) a model sent for the prompt of ``kind``."""

    id: str
    kind: Kind
    family: str
    calls: tuple[tuple[str, str], ...] = ()
    """(tool name, arguments as sent): a template, see the module docstring."""
    item: str = ""
    per_task: tuple[tuple[str, str], ...] = ()
    content: str = ""
    """text beside (or instead of) the calls; with ``tool_use_failed``, Groq's ``failed_generation``."""
    double: bool = False
    """arguments double-encoded: a JSON string holding the JSON (OpenAI wire only)."""
    tool_use_failed: bool = False
    language: str = "python"
    """code: the language every task must get."""
    split: int = 0
    """calls and content split the batch: the calls hold its first ``split`` tasks (``{each}``), the
    content ``rest`` once per remaining task (``{n}``, ``{id}``, ``{d}`` filled)."""
    rest: str = ""

    def _fill(self, text: str, batch: Sequence[tuple[int, str]]) -> str:
        def one(template: str, n: int, tid: int, desc: str) -> str:
            return template.replace("{n}", str(n)).replace("{id}", str(tid)).replace("{d}", desc)

        return text.replace("{each}", ", ".join(one(self.item, n, t, d) for n, (t, d) in enumerate(batch, 1)))

    def reply(self, batch: Sequence[tuple[int, str]]) -> Reply:
        """The provider's answer for ``batch`` ((id, description) pairs, in order)."""
        if self.split:
            rest = [self.rest.replace("{n}", str(n)).replace("{id}", str(tid)).replace("{d}", desc)
                    for n, (tid, desc) in enumerate(batch, 1) if n > self.split]
            calls = [(name, self._fill(args, batch[: self.split])) for name, args in self.calls]
            return Reply.tool_calls(calls, content=self.content + "\n\n".join(rest))
        calls = [(name, self._fill(args, batch)) for name, args in self.calls]
        for n, (tid, desc) in enumerate(batch, 1):
            calls += [(name, args.replace("{n}", str(n)).replace("{id}", str(tid)).replace("{d}", desc))
                      for name, args in self.per_task]
        if self.double:
            calls = [(name, json.dumps(args)) for name, args in calls]
        content = self._fill(self.content, batch)
        if self.tool_use_failed:
            body = {"error": {"message": _TUF_MESSAGE, "type": "invalid_request_error", "code": "tool_use_failed",
                              "failed_generation": content}}
            return Reply.error(400, body=body)
        return Reply.tool_calls(calls, content=content) if calls else Reply.text(content)


def _py(d: str = "{d}") -> str:
    return f"print('{d}: ok')"


_ITEM = '{"task_id": {id}, "language": "python", "code": "' + _py() + '"}'
_ITEM_FROM_1 = '{"task_id": {n}, "language": "python", "code": "' + _py() + '"}'
_BATCH = '{"items": [{each}]}'
_TASKS = json.dumps({"tasks": list(PLAN4)})


def _code(id: str, family: str, **kw: object) -> ToolAnswer:
    return ToolAnswer(id, "code", family, **kw)  # type: ignore[arg-type]


def _plan(id: str, family: str, **kw: object) -> ToolAnswer:
    return ToolAnswer(id, "plan", family, **kw)  # type: ignore[arg-type]


def _review(id: str, family: str, **kw: object) -> ToolAnswer:
    return ToolAnswer(id, "review", family, **kw)  # type: ignore[arg-type]


def _verdict(word: str, id: str = "{id}") -> str:
    return '{"task_id": ' + id + ', "verdict": "' + word + '", "hint": ""}'


TOOLCALL_ANSWERS: tuple[ToolAnswer, ...] = (
    # ------------------------------------------------------------------------------------ plans
    # groq llama-3.3-70b: the plan's tasks as objects with ids (it mirrors the code schema)
    _plan("plan-task-objects", LLAMA, calls=(("Plan", json.dumps(
        {"tasks": [{"id": i, "description": d} for i, d in enumerate(PLAN4, 1)]})),)),
    # gemini 2.5 flash: the arguments wrapped in the schema's name
    _plan("plan-wrapped-in-name", GEMINI, calls=(("Plan", json.dumps({"Plan": {"tasks": list(PLAN4)}})),)),
    # gemini 2.0 flash: the JSON schema echoed, the values under "properties"
    _plan("plan-under-properties", GEMINI, calls=(("Plan", json.dumps(
        {"type": "object", "properties": {"tasks": list(PLAN4)}})),)),
    # openrouter qwen3: tasks under "steps" with step numbers
    _plan("plan-steps", QWEN, calls=(("Plan", json.dumps(
        {"steps": [{"step": i, "task": d} for i, d in enumerate(PLAN4, 1)]})),)),
    # groq llama-3.1-8b-instant: the tasks as one numbered string
    _plan("plan-as-string", LLAMA, calls=(("Plan", json.dumps(
        {"tasks": "\n".join(f"{i}. {d}" for i, d in enumerate(PLAN4, 1))})),)),
    # openrouter deepseek-chat: the arguments double-encoded (a JSON string holding the object)
    _plan("plan-double-encoded", DEEPSEEK, calls=(("Plan", _TASKS),), double=True),
    # vLLM hermes parser: Python-literal arguments (single quotes) land in invalid_tool_calls
    _plan("plan-python-literal", VLLM, calls=(("Plan", repr({"tasks": list(PLAN4)})),)),
    # ollama llama3.2:3b: one call per task
    _plan("plan-one-call-per-task", OLLAMA, calls=tuple(("Plan", json.dumps({"tasks": [d]})) for d in PLAN4)),
    # openrouter mistral-small: the list itself double-encoded inside the object
    _plan("plan-list-as-string", QWEN, calls=(("Plan", json.dumps({"tasks": json.dumps(list(PLAN4))})),)),
    # ollama qwen2.5:7b: the call written into the content, {"name", "arguments"}
    _plan("plan-call-in-content", OLLAMA, content=json.dumps({"name": "Plan", "arguments": {"tasks": list(PLAN4)}})),
    # groq llama-3.3: Groq refuses the call (400 tool_use_failed), the call in failed_generation
    _plan("plan-tool-use-failed", LLAMA, tool_use_failed=True, content=f"<function=Plan>{_TASKS}</function>"),
    # vLLM hermes: <tool_call> tags in the content with a trailing comma
    _plan("plan-hermes-tags", VLLM, content='<tool_call>\n{"name": "Plan", "arguments": {"tasks": '
          + json.dumps(list(PLAN4))[:-1] + ",]}}\n</tool_call>"),
    # openrouter deepseek-r1: thinking text in the content, a ```json fenced call after it
    _plan("plan-think-fenced-call", DEEPSEEK, content="<think>Four steps: write, sum, report, count.</think>\n"
          "```json\n" + json.dumps({"name": "Plan", "parameters": {"tasks": list(PLAN4)}}, indent=2) + "\n```"),
    # openai-compatible (together llama-3.1): {"function": {"name", "arguments": "<string>"}} in the text
    _plan("plan-openai-envelope-in-text", VLLM, content=json.dumps(
        {"type": "function", "function": {"name": "Plan", "arguments": _TASKS}})),
    # ------------------------------------------------------------------------------------- code
    # groq llama-3.3-70b: a later batch numbers its items from 1 (groq community / langchain reports)
    _code("code-ids-from-1", LLAMA, calls=(("CodeBatch", _BATCH),), item=_ITEM_FROM_1),
    # gemini 2.5 flash: {"CodeBatch": {...}} around the arguments
    _code("code-wrapped-in-name", GEMINI, calls=(("CodeBatch", '{"CodeBatch": ' + _BATCH + "}"),), item=_ITEM),
    # gemini 2.0 flash: the values under "properties"
    _code("code-under-properties", GEMINI, calls=(("CodeBatch", '{"properties": ' + _BATCH + "}"),), item=_ITEM),
    # groq llama-3.1-8b: one CodeBatch call per task, each with one item
    _code("code-one-batch-per-task", LLAMA, per_task=(("CodeBatch", '{"items": [' + _ITEM + "]}"),)),
    # openrouter qwen3: one call per task with a bare CodeItem
    _code("code-bare-items", QWEN, per_task=(("CodeItem", _ITEM),)),
    # openrouter deepseek-chat: double-encoded arguments
    _code("code-double-encoded", DEEPSEEK, calls=(("CodeBatch", _BATCH),), item=_ITEM, double=True),
    # vLLM hermes parser: Python-literal arguments
    _code("code-python-literal", VLLM, calls=(("CodeBatch", "{'items': [{each}]}"),),
          item="{'task_id': {id}, 'language': 'python', 'code': \"" + _py() + "\"}"),
    # groq llama-3.3: language "Python" (capitalised) and string ids, Groq's schema check refuses it
    _code("code-tool-use-failed-enum", LLAMA, tool_use_failed=True, item=_ITEM.replace(
        '"task_id": {id}, "language": "python"', '"task_id": "{id}", "language": "Python"'),
        content="<function=CodeBatch>" + _BATCH + "</function>"),
    # groq llama-4-scout: tool_use_failed, failed_generation a list of {"name", "parameters"} calls
    _code("code-tool-use-failed-list", LLAMA, tool_use_failed=True, item=_ITEM,
          content='[{"name": "CodeBatch", "parameters": ' + _BATCH + "}]"),
    # ollama qwen2.5-coder: the call in the content, "parameters", ids renumbered from 1
    _code("code-call-in-content", OLLAMA, item=_ITEM_FROM_1,
          content='{"name": "CodeBatch", "parameters": ' + _BATCH + "}"),
    # ollama llama3.1: <function=CodeBatch> written as text (no tool call)
    _code("code-function-tag-in-content", OLLAMA, item=_ITEM, content="<function=CodeBatch>" + _BATCH + "</function>"),
    # vLLM hermes: one <tool_call> per task in the content, bare CodeItem arguments
    _code("code-hermes-tag-per-task", VLLM, item='<tool_call>{"name": "CodeItem", "arguments": ' + _ITEM
          + "}</tool_call>", content="{each}"),
    # groq llama-3.3: shell code, language "bash"
    _code("code-language-bash", LLAMA, language="shell", calls=(("CodeBatch", _BATCH),),
          item='{"task_id": {id}, "language": "bash", "code": "echo \'{d}: ok\'"}'),
    # gemini 2.5 flash-lite: language "sh", ids as "Task N"
    _code("code-language-sh-task-ids", GEMINI, language="shell", calls=(("CodeBatch", _BATCH),),
          item='{"task_id": "Task {id}", "language": "sh", "code": "echo \'{d}: ok\'"}'),
    # openrouter qwen3-coder: language "python3", the items list double-encoded inside the object
    _code("code-items-as-string", QWEN, calls=(("CodeBatch", '{"items": "[{each}]"}'),),
          item=_ITEM.replace('"', '\\"').replace("python", "python3", 1)),
    # openrouter deepseek-v3: arguments {"arguments": {...}} (the envelope nested once more)
    _code("code-arguments-wrapper", DEEPSEEK, calls=(("CodeBatch", '{"arguments": ' + _BATCH + "}"),), item=_ITEM),
    # groq llama-3.1-8b: arguments cut off by max_tokens (the last item complete), ids from 1
    _code("code-truncated-args", LLAMA, calls=(("CodeBatch", '{"items": [{each}, {"task_id": 9'),),
          item=_ITEM_FROM_1),
    # ollama llama3.1:8b: one call for the first task, the others' code written as prose beside it
    _code("code-split-call-and-text", OLLAMA, calls=(("CodeBatch", _BATCH),), item=_ITEM, split=1,
          content="The other tasks:\n\n", rest="### Task {id}\n```python\n" + _py() + "\n```"),
    # ------------------------------------------------------------------------------------- review
    # openrouter qwen3: the call judges the first task, the text the rest
    _review("review-split-call-and-text", QWEN, calls=(("Review", '{"verdicts": [{each}]}'),), item=_verdict("done"),
            split=1, rest="Task {id}: done - it printed what was asked."),
    # groq llama-3.3: verdict "success", ids from 1 in the second batch
    _review("review-success-ids-from-1", LLAMA, calls=(("Review", '{"verdicts": [{each}], "decision": "continue"}'),),
            item=_verdict("success", "{n}")),
    # gemini 2.5 flash: {"Review": {...}}, verdict "DONE"
    _review("review-wrapped-done-caps", GEMINI, calls=(("Review", '{"Review": {"verdicts": [{each}]}}'),),
            item=_verdict("DONE")),
    # gemini 2.0 flash: under "properties", verdict "passed", decision "proceed"
    _review("review-under-properties", GEMINI, item=_verdict("passed"), calls=(
        ("Review", '{"properties": {"verdicts": [{each}], "decision": "proceed"}}'),)),
    # groq llama-3.1-8b: one Verdict call per task, then one call with the decision
    _review("review-one-verdict-per-call", LLAMA, per_task=(("Verdict", _verdict("completed")),),
            calls=(("Review", '{"decision": "continue"}'),)),
    # openrouter qwen3: one Review call per task, verdict "ok"
    _review("review-one-review-per-task", QWEN, per_task=(("Review", '{"verdicts": [' + _verdict("ok") + "]}"),)),
    # openrouter deepseek-chat: double-encoded, verdict "pass"
    _review("review-double-encoded", DEEPSEEK, calls=(("Review", '{"verdicts": [{each}]}'),), item=_verdict("pass"),
            double=True),
    # vLLM hermes: Python literal, verdict "Success", decision None
    _review("review-python-literal", VLLM, calls=(("Review", "{'verdicts': [{each}], 'decision': None}"),),
            item="{'task_id': {id}, 'verdict': 'Success', 'hint': None}"),
    # groq llama-3.3: tool_use_failed, status instead of verdict, string ids
    _review("review-tool-use-failed", LLAMA, tool_use_failed=True, item='{"task_id": "{id}", "status": "done"}',
            content='<function=Review>{"verdicts": [{each}], "decision": "continue"}</function>'),
    # ollama qwen2.5: the call in the content with "arguments", verdict "completed"
    _review("review-call-in-content", OLLAMA, item=_verdict("completed"),
            content='{"name": "Review", "arguments": {"verdicts": [{each}], "decision": "continue"}}'),
    # ollama llama3.2: ```json fenced call, ids from 1
    _review("review-fenced-call", OLLAMA, item=_verdict("done", "{n}"),
            content='```json\n{"name": "Review", "parameters": {"verdicts": [{each}]}}\n```'),
    # openrouter deepseek-r1: <think> then bare Verdict objects one per line
    _review("review-think-bare-verdicts", DEEPSEEK, item=_verdict("successful"),
            content="<think>All of them printed what was asked.</think>\n{each}"),
    # vLLM hermes: the verdicts list double-encoded inside the object
    _review("review-verdicts-as-string", VLLM, calls=(("Review", '{"verdicts": "[{each}]", "decision": "next"}'),),
            item=_verdict("done").replace('"', '\\"')),
    # gemini 2.5 flash: verdict as a mapping {"1": "done"} from 1 in every batch
    _review("review-mapping-by-id", GEMINI, calls=(("Review", '{"verdicts": {{each}}}'),), item='"{n}": "done"'),
    # groq llama-3.3: the arguments as a list of Verdicts (LangChain cannot build the message)
    _review("review-args-a-list", LLAMA, calls=(("Review", "[{each}]"),), item=_verdict("done")),
)
