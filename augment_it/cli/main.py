from __future__ import annotations

import typer

from augment_it.cli import daemon, plan, review, run

app = typer.Typer(help="Augment records with AI, review them, export them.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.command(name="run")(run.run)
app.command(name="plan")(plan.plan)
app.add_typer(review.app, name="review")
app.command(name="daemon")(daemon.daemon)

if __name__ == "__main__":
    app()
