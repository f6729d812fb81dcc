"""Exceptions for bad input, shared across modules."""


class InputError(ValueError):
    """An input tensor, chunk or tile size does not fit the tokenizer (wrong type, shape, count or range)."""
