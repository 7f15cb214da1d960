"""One logging setup for the CLI and scripts: ``elm.*`` at INFO through rich, third parties quiet."""

from __future__ import annotations

import logging


def setup(verbose: bool = False) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False, log_time_format="[%X]")
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    if not any(isinstance(h, RichHandler) for h in root.handlers):
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("elm").setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("great_expectations", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
