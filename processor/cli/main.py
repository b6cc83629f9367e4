"""The ``incentives`` command line."""

from __future__ import annotations

import click

from processor.cli.dev import dev
from processor.cli.emit import close_period, emit
from processor.cli.replay import replay
from processor.cli.simulate import simulate

main = click.Group(
    "incentives",
    help=(
        "Partner incentive processor: an event-sourced, streaming loyalty engine on Kafka, Faust "
        "and ClickHouse.\n\nConfiguration comes from INCENTIVES_* environment variables "
        "(documented in processor/config.py). Every command has --help."
    ),
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Command groups. Add the others here the same way, e.g.
#   from processor.cli.simulate import simulate; main.add_command(simulate)
main.add_command(dev)
main.add_command(emit)
main.add_command(close_period)
main.add_command(replay)
from processor.cli.bench import bench; main.add_command(bench)  # noqa: E402,E702,I001
main.add_command(simulate)
from processor.cli.console import console; main.add_command(console)  # noqa: E402,E702,I001
from processor.cli.alerts import alerts; main.add_command(alerts)  # noqa: E402,E702,I001
from processor.cli.report import report_command; main.add_command(report_command)  # noqa: E402,E702,I001
from processor.cli.whatif import whatif; main.add_command(whatif)  # noqa: E402,E702,I001
from processor.cli.verify import verify; main.add_command(verify)  # noqa: E402,E702,I001
from processor.cli.chaos import chaos; main.add_command(chaos)  # noqa: E402,E702,I001
from processor.cli.sink import sink; main.add_command(sink)  # noqa: E402,E702,I001


if __name__ == "__main__":
    main(prog_name="incentives")
