"""Does a SQL statement name one organization for every organization-scoped table it touches?

`problems(sql, org_tables)` parses `sql` with PostgreSQL's own parser (pglast, libpg_query) and
returns what it finds wrong, in words (empty: nothing). A statement passes when every reference to a
table of `org_tables`:

- in a FROM, JOIN, UPDATE, DELETE or USING, at any level (CTEs, subqueries, EXISTS, UNION arms), is
  tied by a top-level `AND` conjunct of its own level's WHERE or JOIN ... ON to one value:
  `t.organization_id = <parameter or literal>` (a cast of one counts), or
  `t.organization_id = u.organization_id` where `u` is so tied, at that level or an enclosing one;
- as an INSERT target, or a COPY ... FROM target, lists `organization_id` among its columns (each row
  then carries its organization: Citus routes a row by it);
- is not in a LOCK TABLE or any other statement that names a table without rows to route.

That is what Citus's router planner needs to send a statement to the one shard of its organization
when every such table is distributed by `organization_id` and colocated (docs/scaling.md). An `OR`,
an `IN (...)` or a range on organization_id does not count: they can span shards.

Placeholders: psycopg's `%(name)s` / `%s` become `$n` before parsing (and `%%` becomes `%`), as psycopg
itself does when values are bound; a statement sent without values is parsed as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pglast
from pglast import ast
from pglast.enums import A_Expr_Kind, BoolExprType

ORG = "organization_id"

_PLACEHOLDER = re.compile(r"%\((?P<name>[^)]+)\)[sbt]|%[sbt]|%%")
# The nodes that are a query level of their own: their FROM/WHERE are checked together.
_LEVELS = (ast.SelectStmt, ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt)


def to_postgres_placeholders(sql: str) -> str:
    """psycopg's placeholders as PostgreSQL's ($1, $2...; one number per name)."""
    numbers: dict[str, int] = {}

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "%%":
            return "%"
        name = match.group("name") or f"#{len(numbers)}"
        return f"${numbers.setdefault(name, len(numbers) + 1)}"

    return _PLACEHOLDER.sub(replace, sql)


def problems(sql: str, org_tables: Iterable[str], bound: bool = True) -> list[str]:
    """What keeps `sql` from naming one organization for each table of `org_tables` it touches."""
    tables = frozenset(org_tables)
    text = to_postgres_placeholders(sql) if bound else sql
    found: list[str] = []
    for raw in pglast.parse_sql(text):
        ctes = {c.ctename for c in _walk(raw.stmt) if isinstance(c, ast.CommonTableExpr)}
        _Checker(tables, frozenset(ctes), found).statement(raw.stmt)
    return found


def tables_named(sql: str, bound: bool = True) -> set[str]:
    """Every table name `sql` names (CTE names included)."""
    text = to_postgres_placeholders(sql) if bound else sql
    return {
        n.relname for raw in pglast.parse_sql(text) for n in _walk(raw.stmt) if isinstance(n, ast.RangeVar)
    }


@dataclass
class _Checker:
    tables: frozenset[str]
    ctes: frozenset[str]
    found: list[str] = field(default_factory=list)

    def statement(self, node: ast.Node) -> None:
        if isinstance(node, _LEVELS):
            self.level(node, frozenset())
        elif isinstance(node, ast.ExplainStmt):
            self.statement(node.query)
        elif isinstance(node, ast.CopyStmt):
            self.target(node.relation, node.attlist, "COPY")
            if node.query is not None:
                self.level(node.query, frozenset())
        else:
            # LOCK TABLE, TRUNCATE, ALTER...: a table named with no row to route by.
            for rv in _walk(node):
                if isinstance(rv, ast.RangeVar) and self._is_org_table(rv):
                    self.found.append(f"{type(node).__name__} names {rv.relname} without an organization")
            for sub in _walk(node):
                if isinstance(sub, _LEVELS):
                    self.level(sub, frozenset())

    def level(self, node: ast.Node, outer: frozenset[str]) -> None:
        """Check one query level, then the levels nested in it (with this level's tied names)."""
        refs: list[ast.RangeVar] = []
        quals: list[ast.Node] = []
        if isinstance(node, ast.SelectStmt):
            _from_items(node.fromClause, refs, quals)
            quals.append(node.whereClause)
        elif isinstance(node, ast.UpdateStmt):
            refs.append(node.relation)
            _from_items(node.fromClause, refs, quals)
            quals.append(node.whereClause)
        elif isinstance(node, ast.DeleteStmt):
            refs.append(node.relation)
            _from_items(node.usingClause, refs, quals)
            quals.append(node.whereClause)
        elif isinstance(node, ast.InsertStmt):
            self.target(node.relation, node.cols, "INSERT")
        tied = self._tied([r for r in refs if self._is_org_table(r)], quals, outer)
        for sub in _children_levels(node):
            self.level(sub, frozenset(tied))

    def target(self, relation: ast.RangeVar, columns: Iterable[ast.Node] | None, verb: str) -> None:
        if not self._is_org_table(relation):
            return
        names = {c.name for c in columns or () if isinstance(c, ast.ResTarget)}
        names |= {c.sval for c in columns or () if isinstance(c, ast.String)}
        if ORG not in names:
            self.found.append(f"{verb} into {relation.relname} does not set {ORG}")

    def _tied(self, refs: list[ast.RangeVar], quals: list[ast.Node], outer: frozenset[str]) -> set[str]:
        """The names (alias or table) of `refs` tied to one organization; each untied one is a problem."""
        names = {_name(r): r.relname for r in refs}
        only = next(iter(names)) if len(names) == 1 else None
        # Names tied by an enclosing level (correlated subqueries), unless a table here shadows them.
        inherited = outer - set(names)
        tied: set[str] = set(inherited)
        links: list[tuple[str, str]] = []
        for left, right in _equalities(quals):
            lname, rname = _org_column(left, only), _org_column(right, only)
            if lname is not None and _is_value(right):
                tied.add(lname)
            elif rname is not None and _is_value(left):
                tied.add(rname)
            elif lname is not None and rname is not None:
                links.append((lname, rname))
        changed = True
        while changed:  # a join on organization_id carries the tie across
            changed = False
            for a, b in links:
                if (a in tied) != (b in tied):
                    tied |= {a, b}
                    changed = True
        for name, table in names.items():
            if name not in tied:
                self.found.append(f"{table}{'' if name == table else f' AS {name}'}: no {ORG} = <value>")
        return (tied & set(names)) | inherited

    def _is_org_table(self, rv: ast.RangeVar | None) -> bool:
        if rv is None or rv.relname not in self.tables:
            return False
        return rv.schemaname is not None or rv.relname not in self.ctes


def _walk(node: object) -> Iterator[ast.Node]:
    """Every node below `node`, depth first."""
    if isinstance(node, ast.Node):
        yield node
        for attr in node.__slots__:
            yield from _walk(getattr(node, attr))
    elif isinstance(node, list | tuple):
        for item in node:
            yield from _walk(item)


def _children_levels(node: ast.Node) -> Iterator[ast.Node]:
    """The query levels directly nested in `node` (not inside another level)."""
    for attr in node.__slots__:
        yield from _levels_below(getattr(node, attr))


def _levels_below(value: object) -> Iterator[ast.Node]:
    if isinstance(value, _LEVELS):
        yield value
    elif isinstance(value, ast.Node):
        yield from _children_levels(value)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _levels_below(item)


def _from_items(items: Iterable[ast.Node] | None, refs: list[ast.RangeVar], quals: list[ast.Node]) -> None:
    """Table references of a FROM list (through joins) into `refs`, join conditions into `quals`."""
    for item in items or ():
        if isinstance(item, ast.RangeVar):
            refs.append(item)
        elif isinstance(item, ast.JoinExpr):
            _from_items([item.larg, item.rarg], refs, quals)
            quals.append(item.quals)
        # RangeSubselect, RangeFunction...: a level of their own, or no table at all.


def _conjuncts(node: ast.Node | None) -> Iterator[ast.Node]:
    if isinstance(node, ast.BoolExpr) and node.boolop == BoolExprType.AND_EXPR:
        for arg in node.args:
            yield from _conjuncts(arg)
    elif node is not None:
        yield node


def _equalities(quals: Iterable[ast.Node | None]) -> Iterator[tuple[ast.Node, ast.Node]]:
    for qual in quals:
        for c in _conjuncts(qual):
            if (
                isinstance(c, ast.A_Expr)
                and c.kind == A_Expr_Kind.AEXPR_OP
                and [n.sval for n in c.name] == ["="]
            ):
                yield c.lexpr, c.rexpr


def _name(rv: ast.RangeVar) -> str:
    return rv.alias.aliasname if rv.alias is not None else rv.relname


def _org_column(node: ast.Node, only: str | None) -> str | None:
    """The range name whose organization_id `node` is (`only` for an unqualified one), else None."""
    if not isinstance(node, ast.ColumnRef):
        return None
    parts = [f.sval for f in node.fields if isinstance(f, ast.String)]
    if not parts or parts[-1] != ORG:
        return None
    return parts[-2] if len(parts) >= 2 else only


def _is_value(node: ast.Node) -> bool:
    """A bound parameter or a literal (a cast of one included): one value for the whole statement."""
    while isinstance(node, ast.TypeCast):
        node = node.arg
    return isinstance(node, ast.ParamRef | ast.A_Const)
