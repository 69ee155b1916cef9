"""Hello World's logic: prefix every line of a text."""

PREFIX = "Hello World: "


def greet_lines(text: str, prefix: str = PREFIX) -> str:
    """Prefix each line, keeping the input's line endings (a final newline stays final)."""
    return "".join(prefix + line for line in text.splitlines(keepends=True))
