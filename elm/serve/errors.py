"""The one error the inference API raises for input it cannot use."""


class DescribeError(ValueError):
    """Input the Describer cannot use; the message says what and where (slot, space, table, file)."""
