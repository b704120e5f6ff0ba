"""``camloc methods``: the map methods camloc offers, their family, cost and what they need."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``methods`` command to ``app``."""

    @app.command("methods")
    def methods_cmd(
        as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    ) -> None:
        """List the map methods (for --method): family, cost, whether they need a GAP head.

        Only exact 'cam' needs a GAP -> linear head; every other method runs on any layer of any
        model. Costs are per call: k = classes per image, K = channels of the target layer.
        """
        import json

        from camloc.cams.catalog import CATALOG  # torch-free

        if as_json:
            typer.echo(json.dumps([m.to_dict() for m in CATALOG.values()], indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title="camloc map methods (camloc explain/evaluate --method NAME)")
        for col in ("method", "family", "GAP head", "gradients", "cost per call"):
            table.add_column(col, overflow="fold")
        for m in CATALOG.values():
            table.add_row(m.name, m.family, "needed" if m.needs_head else "-",
                          "yes" if m.needs_grad else "-", m.cost)
        Console().print(table)
        typer.echo("k: classes per image; K: channels of the target layer. Formulas and papers: "
                   "docs/methods.md; `camloc methods --json` for the full metadata.")
