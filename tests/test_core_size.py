"""The core reads in one sitting: no function in matrix_core reaches 60 lines."""
import ast
from pathlib import Path

import matrix_core

LIMIT = 60


def test_every_core_function_is_under_60_lines():
    root = Path(matrix_core.__file__).parent
    long = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length >= LIMIT:
                    long.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, "functions of 60 lines or more: " + ", ".join(long)
