"""`hpipe remote`: the named remotes results and data are shared through (hpipe.yaml)."""

import json
from pathlib import Path
from typing import Annotated

import typer

from hangar_pipe.cli.app import app
from hangar_pipe.cli.console import out, print_table
from hangar_pipe.pipeline import find_pipeline

remote_app = typer.Typer(help="Named remotes for `hpipe push`/`pull` (kept in hpipe.yaml).", no_args_is_help=True)
app.add_typer(remote_app, name="remote")

Name = Annotated[str, typer.Argument(help="The remote's name, e.g. origin.")]
Local = Annotated[bool, typer.Option("--local", help="Write to hpipe.local.yaml (this machine only,"
                                                    " git-ignored) instead of hpipe.yaml.")]


def _root() -> Path:
    return find_pipeline().parent


@remote_app.command("add")
def remote_add(
    name: Name,
    url: Annotated[str, typer.Argument(help="A folder path, file://..., s3://bucket/prefix, or any fsspec URL.")],
    default: Annotated[bool, typer.Option("--default", "-d", help="Make it the default remote.")] = False,
    local: Local = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace a remote of that name.")] = False,
) -> None:
    """Name a remote. Example: `hpipe remote add origin s3://team-bucket/hpipe --default`."""
    from hangar_pipe.remote import config

    written = config.add(_root(), name, url, default=default, local=local, force=force)
    out(f"added remote '{name}' ({url}) to {written.name}" + (", the default" if default else ""))


@remote_app.command("modify")
def remote_modify(
    name: Name,
    key: Annotated[str, typer.Argument(help="A setting: url, endpoint_url, region, profile,"
                                            " access_key_id, secret_access_key, ...")],
    value: Annotated[str | None, typer.Argument(help="Its value (omit with --unset).")] = None,
    unset: Annotated[bool, typer.Option("--unset", help="Remove the setting.")] = False,
    local: Local = False,
) -> None:
    """Set one setting of a remote. Credentials always go to hpipe.local.yaml, never hpipe.yaml.

    Example: `hpipe remote modify origin secret_access_key XXXX`.
    """
    from hangar_pipe.errors import UserError
    from hangar_pipe.remote import config

    if (value is None) != unset:
        raise UserError("give a VALUE, or --unset")
    written = config.modify(_root(), name, key, value, local=local)
    out(f"unset {name}.{key}" if unset else f"set {name}.{key} in {written.name}")


@remote_app.command("default")
def remote_default(name: Name, local: Local = False) -> None:
    """Make a remote the one push and pull use when no --remote is given.

    Example: `hpipe remote default origin`.
    """
    from hangar_pipe.remote import config

    config.set_default(_root(), name, local=local)
    out(f"'{name}' is the default remote")


@remote_app.command("list")
def remote_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The remotes this project knows, the default marked `*`; secrets are not shown.

    Example: `hpipe remote list`.
    """
    from hangar_pipe.remote import config

    remotes, default = config.load_remotes(_root())
    shown = {name: {"url": r.url, "default": name == default,
                    **{k: ("***" if k in config.CREDENTIAL_KEYS else v) for k, v in r.options.items()}}
             for name, r in sorted(remotes.items())}
    if as_json:
        out(json.dumps(shown, indent=2))
    elif not shown:
        out("no remotes; add one with `hpipe remote add NAME URL --default`")
    else:
        rows = [[("* " if s["default"] else "  ") + name, str(s["url"]),
                 ", ".join(f"{k}={v}" for k, v in s.items() if k not in ("url", "default"))]
                for name, s in shown.items()]
        print_table("", ["name", "url", "settings"], rows, md=False)


@remote_app.command("remove")
def remote_remove(name: Name) -> None:
    """Forget a remote (in both files); what is stored on it is left alone.

    Example: `hpipe remote remove origin`.
    """
    from hangar_pipe.remote import config

    config.remove(_root(), name)
    out(f"removed remote '{name}'")
