"""Structured-output schemas the nodes ask the LLM for.

Every schema has a tolerant text parser in ``nodes/parsing.py`` for models that
answer in prose instead of calling the structured-output tool.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from free_llm_agent.graph.state import Decision, Language, VerdictWord


class Plan(BaseModel):
    """A goal broken into concrete, executable tasks."""

    tasks: list[str] = Field(description="3-5 concrete tasks, each doable by one short script")


class CodeItem(BaseModel):
    """Code for one task."""

    task_id: int = Field(description="id of the task this code is for")
    language: Language = Field(default="python")
    code: str = Field(description="the complete code to run")


class CodeBatch(BaseModel):
    """Code for every task of a batch."""

    items: list[CodeItem]


class Verdict(BaseModel):
    """The judgement of one task's result."""

    task_id: int
    verdict: VerdictWord
    hint: str = Field(default="", description="for retry: what to change")


class Review(BaseModel):
    """Verdicts on a batch plus what the run should do next."""

    verdicts: list[Verdict]
    decision: Decision = "continue"
