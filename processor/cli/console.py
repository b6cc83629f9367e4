"""``incentives console``: the analysts' web console, and ``console add-user`` for its users file."""
from __future__ import annotations

import sys

import click

from processor.config import ConfigError, Settings, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as e:
        raise click.UsageError(str(e)) from None


@click.group("console", invoke_without_command=True)
@click.option("--host", default=None, help="Bind address (default INCENTIVES_CONSOLE_HOST, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port (default INCENTIVES_CONSOLE_PORT, 8088).")
@click.pass_context
def console(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the analysts' web console: the live alert queue, alerts, partners, dismiss / confirm.

    Sign-in is required; analysts are listed in INCENTIVES_CONSOLE_USERS (default
    deploy/console-users.yaml), added with `incentives console add-user NAME`. Every decision is
    an AlertResolved event whose analyst is the signed-in user. `incentives dev up` starts it too.

    \b
    Examples:
      incentives console add-user alice
      incentives console                       # http://127.0.0.1:8088
      INCENTIVES_CONSOLE_PORT=9000 incentives console
    """
    if ctx.invoked_subcommand is not None:
        return
    from processor.console.app import run

    settings = _settings()
    settings = settings.replace(console_host=host or settings.console_host,
                                console_port=port or settings.console_port)
    run(settings)


@console.command("add-user")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.option("--replace", is_flag=True, help="Set a new password for an existing user.")
def add_user(name: str, password_stdin: bool, replace: bool) -> None:
    """Add an analyst to the console's users file (a salted scrypt hash, never the password).

    Prompts for the password twice, or reads it from stdin with --password-stdin. Exits 2 if the
    name is taken (without --replace), invalid, or the password is shorter than 10 characters.

    \b
    Examples:
      incentives console add-user alice
      printf '%s\\n' "$PASSWORD" | incentives console add-user bob --password-stdin
    """
    from processor.console import users

    path = _settings().console_users
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        users.add_user(path, name, password, replace=replace)
    except users.UsersError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    click.echo(f"{'updated' if replace else 'added'} {name} in {path}")
