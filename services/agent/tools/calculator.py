"""``calculator``: arithmetic evaluated by walking Python's AST, never by ``eval``.

Only numbers, + - * / // % ** and parentheses are allowed; names, calls, attribute
access, subscripts and strings are refused, and powers and results are bounded so
``9**9**9`` cannot hold a worker hostage.
"""

from __future__ import annotations

import ast
import math
import operator
from typing import Any

from pydantic import BaseModel, Field

from services.agent.tools.base import BaseTool, ToolContext, ToolError

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}

MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 100
MAX_MAGNITUDE = 1e100
MAX_DEPTH = 30


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression, or ToolError saying what is not allowed."""
    text = expression.strip().replace("×", "*").replace("÷", "/")
    if not text:
        raise ToolError("empty expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ToolError(f"not an arithmetic expression: {text!r}") from None
    return _eval(tree.body, 0)


def _eval(node: ast.AST, depth: int) -> int | float:
    if depth > MAX_DEPTH:
        raise ToolError("expression nested too deeply")
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ToolError(f"only numbers are allowed, not {type(node.value).__name__}")
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand, depth + 1))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left = _eval(node.left, depth + 1)
        right = _eval(node.right, depth + 1)
        if isinstance(node.op, ast.Pow) and (abs(right) > MAX_EXPONENT or abs(left) > MAX_MAGNITUDE):
            raise ToolError(f"exponent too large (at most {MAX_EXPONENT})")
        try:
            value = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise ToolError("division by zero") from None
        except OverflowError:
            raise ToolError("result too large") from None
        if isinstance(value, complex):
            raise ToolError("result is not a real number")
        if abs(value) > MAX_MAGNITUDE:
            raise ToolError("result too large")
        return value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitXor):
        raise ToolError("'^' is not a power here: write ** (2**8)")
    raise ToolError(f"{_describe(node)} is not allowed: only numbers, + - * / // % ** and parentheses")


def _describe(node: ast.AST) -> str:
    kinds: dict[type, str] = {
        ast.Name: "a name",
        ast.Call: "a function call",
        ast.Attribute: "attribute access",
        ast.Subscript: "indexing",
        ast.Compare: "a comparison",
        ast.BoolOp: "a boolean operator",
        ast.Lambda: "a lambda",
    }
    return kinds.get(type(node), type(node).__name__)


def format_number(value: Any) -> str:
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.10g}"
    return str(value)


class Calculator(BaseTool):
    name = "calculator"
    description = "Evaluate an arithmetic expression with + - * / // % ** and parentheses, e.g. (3 + 4) * 2."
    example = ("What is 12 * (3 + 4)?", {"expression": "12 * (3 + 4)"})

    class Input(BaseModel):
        model_config = {"extra": "forbid"}

        expression: str = Field(
            description="The arithmetic expression, e.g. 12 * (3 + 4).", min_length=1, max_length=500
        )

    async def run(self, args: Input, ctx: ToolContext) -> str:
        return format_number(evaluate(args.expression))
