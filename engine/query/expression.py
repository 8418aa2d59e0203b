"""`_filter` as a boolean expression (`(status=failed or status=running) and not name=DEMO`),
read into a filter tree by a recursive-descent parser; its comparisons take the values of
`engine.query.values`.
"""

from __future__ import annotations

import re

from procexec.engine.errors import EXCERPT_CHARS, BadRequest, excerpt
from procexec.engine.query.fields import check_document_field
from procexec.engine.query.tree import MAX_CONDITIONS, MAX_FILTER_DEPTH, And, Node, Not, Or
from procexec.engine.query.values import (
    FUNCTION_CALL,
    apply_function,
    check_closed_values,
    equals_condition,
    parse_condition,
)

#: the comparison operators of an expression, as the value function each stands for
_COMPARISONS = {"!=": "ne", ">=": "gte", "<=": "lte", ">": "gt", "<": "lt", "=": "eq"}
_KEYWORDS = ("and", "or", "not")
_FIELD_START = re.compile(r"[A-Za-z_]")
_FIELD_TEXT = re.compile(r"[A-Za-z0-9_.:#-]*")
_FUNCTION_NAME = re.compile(r"[A-Za-z]+\(")


class ExpressionParser:
    """A recursive-descent parser of `_filter` expressions.

    ```
    expression := disjunction
    disjunction := conjunction ("or" conjunction)*
    conjunction := negation ("and" negation)*
    negation := "not" negation | "(" expression ")" | condition
    condition := FIELD ("=" | "!=" | ">" | ">=" | "<" | "<=") VALUE
    VALUE := "quoted text" | 'quoted text' | function(…) | word
    ```
    Keywords are case-insensitive. A word runs to the next space or parenthesis; a function's
    arguments run to its matching parenthesis (`\\(` and `\\)` do not count). `=` takes the
    value functions as a filter parameter does; the other operators take a plain value.
    """

    def __init__(self, text: str, param: str) -> None:
        self.text = text
        self.param = param
        self.pos = 0
        self.conditions = 0

    def fail(self, message: str) -> BadRequest:
        return BadRequest(f"{self.param}: {message}")

    def peek(self) -> str:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def keyword(self, *names: str) -> str | None:
        """The keyword at the cursor (consumed), when it is one of `names`."""
        self.peek()
        for name in names:
            end = self.pos + len(name)
            if self.text[self.pos : end].lower() != name:
                continue
            after = self.text[end : end + 1]
            if after == "" or after.isspace() or after == "(":
                self.pos = end
                return name
        return None

    def found(self) -> str:
        rest = self.text[self.pos : self.pos + 2 * EXCERPT_CHARS].split(maxsplit=1)
        return f"'{excerpt(rest[0])}'" if rest else "the end"

    def parse(self) -> Node:
        if not self.text.strip():
            raise self.fail("empty expression (write conditions such as status=failed)")
        node = self.disjunction(0)
        if self.peek() == ")":
            raise self.fail(f"unbalanced parentheses: ')' at position {self.pos} closes nothing")
        if self.pos < len(self.text):
            raise self.fail(
                f"expected 'and', 'or' or the end at position {self.pos}, found {self.found()}"
            )
        return check_closed_values(node, self.param)

    def disjunction(self, depth: int) -> Node:
        items = [self.conjunction(depth)]
        while self.keyword("or"):
            items.append(self.conjunction(depth))
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conjunction(self, depth: int) -> Node:
        items = [self.negation(depth)]
        while self.keyword("and"):
            items.append(self.negation(depth))
        return items[0] if len(items) == 1 else And(tuple(items))

    def negation(self, depth: int) -> Node:
        if depth > MAX_FILTER_DEPTH:
            raise self.fail(f"nested too deeply (at most {MAX_FILTER_DEPTH} levels)")
        char = self.peek()
        start = self.pos
        if char == "(":
            self.pos += 1
            if self.peek() == ")":
                raise self.fail(f"empty parentheses at position {start}")
            node = self.disjunction(depth + 1)
            if self.peek() != ")":
                if self.pos >= len(self.text):
                    raise self.fail(
                        f"unbalanced parentheses: '(' at position {start} is never closed"
                    )
                raise self.fail(
                    f"expected 'and', 'or' or ')' at position {self.pos}, found {self.found()}"
                )
            self.pos += 1
            return node
        # `not` is a keyword unless it is a field's name (`not=1`)
        saved = self.pos
        if self.keyword("not"):
            if self.peek() not in ("=", "!", "<", ">"):
                return Not(self.negation(depth + 1))
            self.pos = saved
        return self.condition()

    def condition(self) -> Node:
        start = self.pos
        if not _FIELD_START.match(self.text, self.pos):
            if self.pos >= len(self.text):
                raise self.fail("expected a condition such as status=failed at the end")
            if self.text[self.pos] == ")":
                raise self.fail(
                    f"unbalanced parentheses: ')' at position {self.pos} closes nothing"
                )
            raise self.fail(
                f"expected a condition such as status=failed at position {self.pos}, "
                f"found {self.found()}"
            )
        match = _FIELD_TEXT.match(self.text, self.pos + 1)
        assert match is not None
        name = self.text[start : match.end()]
        self.pos = match.end()
        if name.lower() in _KEYWORDS:
            raise self.fail(
                f"expected a condition at position {start}, found the keyword '{excerpt(name)}'"
            )
        check_document_field(name, self.param)
        self.peek()
        operator = next((op for op in _COMPARISONS if self.text.startswith(op, self.pos)), None)
        if operator is None:
            raise self.fail(
                f"expected =, !=, >, >=, < or <= after '{excerpt(name)}' at position {self.pos}, "
                f"found {self.found()}"
            )
        self.pos += len(operator)
        self.peek()
        raw, quoted = self.value(name)
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise self.fail(f"too many conditions (at most {MAX_CONDITIONS})")
        try:
            function = _COMPARISONS[operator]
            if function == "eq":
                return equals_condition(name, raw) if quoted else parse_condition(name, raw)
            if not quoted and FUNCTION_CALL.match(raw):
                raise BadRequest(
                    f"{excerpt(name)}: '{excerpt(operator)}' takes a plain value, "
                    f"not '{excerpt(raw)}'"
                )
            return apply_function(name, function, [raw], raw)
        except BadRequest as exc:
            raise self.fail(str(exc)) from None

    def value(self, name: str) -> tuple[str, bool]:
        """The value after an operator, and whether it was quoted."""
        start = self.pos
        if start >= len(self.text) or self.text[start] == ")":
            raise self.fail(f"'{excerpt(name)}' has no value at position {start}")
        quote = self.text[start]
        if quote in "=<>":
            raise self.fail(
                f"unexpected '{quote}' at position {start}: after '{excerpt(name)}' and its "
                f"operator comes a value (one operator, such as {excerpt(name)}=x; quote a "
                f"value that "
                f"starts with '{quote}')"
            )
        if quote in "\"'":
            chars: list[str] = []
            index = start + 1
            while index < len(self.text):
                char = self.text[index]
                if char == "\\" and index + 1 < len(self.text):
                    chars.append(self.text[index + 1])
                    index += 2
                    continue
                if char == quote:
                    self.pos = index + 1
                    return "".join(chars), True
                chars.append(char)
                index += 1
            raise self.fail(f"unterminated quote: {quote} at position {start} is never closed")
        if _FUNCTION_NAME.match(self.text, start):
            index = self.text.index("(", start) + 1
            depth = 1
            while index < len(self.text) and depth:
                char = self.text[index]
                if char == "\\":
                    index += 2
                    continue
                depth += {"(": 1, ")": -1}.get(char, 0)
                index += 1
            if depth:
                opening = self.text.index("(", start)
                raise self.fail(
                    f"unbalanced parentheses: '(' at position {opening} is never closed"
                )
            self.pos = index
            return self.text[start:index], False
        index = start
        while index < len(self.text) and not (
            self.text[index].isspace() or self.text[index] in "()"
        ):
            index += 1
        self.pos = index
        return self.text[start:index], False
