"""What the commands that read derived/ without rebuilding it say when it is out of date."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from replay.stamp import is_stale


class StaleNotice:
    """Says on stderr that derived/ was not built from the dataset's current traces: stale
    derived tables would otherwise pass for the truth. Checked under the lock each read holds
    (what was checked is what the read sees), said once, and again only if derived/ was
    rebuilt and went out of date once more meanwhile (a long `pinscope sql` prompt)."""

    def __init__(self, err: Console | None = None, advice: str | None = None) -> None:
        self.err = err or Console(stderr=True, highlight=False, soft_wrap=True)
        self.advice = advice
        self.said = False

    def check(self, dataset: Path) -> bool:
        """Whether derived/ is stale now; says so if it was not said already."""
        stale = is_stale(dataset)
        if stale and not self.said:
            where = escape(str(dataset))
            advice = self.advice or f"`pinscope replay {where}` rebuilds them"
            self.err.print(
                f"[bold yellow]pinscope: warning:[/] {where}/derived was not built from the "
                "dataset's current traces (a trace was ingested since, the replay was cut "
                "short, or another pinscope version built it): page_events, intervals, "
                f"findings and the rule views show the old replay; {advice}"
            )
        self.said = stale
        return stale
