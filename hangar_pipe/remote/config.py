"""The named remotes: `hpipe.yaml` (committed, so a fresh clone knows them) and `hpipe.local.yaml`
(this machine's overrides and credentials; git-ignored, never committed).

    remotes:
      origin: {url: "s3://team-bucket/hpipe", endpoint_url: "http://minio:9000"}
    default_remote: origin

The local file has the same shape and wins key by key. Credentials (`CREDENTIAL_KEYS`) are only
ever written to the local file, whatever the command says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hangar_pipe.core import layout
from hangar_pipe.core.atomic import atomic_write
from hangar_pipe.core.yamlfile import dump, load_yaml
from hangar_pipe.errors import UserError, did_you_mean

CREDENTIAL_KEYS = frozenset({"access_key_id", "secret_access_key", "session_token", "password"})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)\Z", re.S)
_HEADER = {
    layout.CONFIG_FILE: "# hpipe's project settings: the named remotes (commit this file; `hpipe remote` edits it)\n",
    layout.LOCAL_CONFIG_FILE: "# this machine's remote settings and credentials: never commit this file\n",
}


@dataclass(frozen=True)
class RemoteConfig:
    """One named remote: its URL and every other setting (endpoint, region, credentials...)."""

    name: str
    url: str
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class ConfigFile:
    """One of the two settings files, as data: {name: {key: value}} and the default's name."""

    path: Path
    remotes: dict[str, dict[str, str]] = field(default_factory=dict)
    default: str | None = None

    @classmethod
    def read(cls, path: Path) -> ConfigFile:
        if not path.exists():
            return cls(path)
        doc = load_yaml(path, path.name, keep=False)  # credentials: never copied to .hpipe/parsed
        data = doc.data if doc.data is not None else {}
        if not isinstance(data, dict):
            raise doc.error((), "expected a mapping with 'remotes' and 'default_remote'")
        unknown = sorted(set(data) - {"remotes", "default_remote"})
        if unknown:
            raise doc.error((unknown[0],), "unknown key" + did_you_mean(unknown[0], ["remotes", "default_remote"]))
        remotes = data.get("remotes") or {}
        if not isinstance(remotes, dict):
            raise doc.error(("remotes",), "expected a mapping of remote names to settings")
        for name, body in remotes.items():
            _check_remote(doc, str(name), body)
        default = data.get("default_remote")
        if default is not None and not isinstance(default, str):
            raise doc.error(("default_remote",), "expected a remote's name")
        return cls(path, {str(n): {str(k): str(v) for k, v in (b or {}).items()} for n, b in remotes.items()},
                   default)

    def write(self) -> None:
        data: dict[str, Any] = {}
        if self.remotes:
            data["remotes"] = self.remotes
        if self.default is not None:
            data["default_remote"] = self.default
        atomic_write(self.path, (_HEADER[self.path.name] + (dump(data) if data else "")).encode())


def _check_remote(doc: Any, name: str, body: Any) -> None:
    if not _NAME.match(name):
        raise doc.error(("remotes", name), "a remote's name is letters, digits, '_', '.' and '-'")
    if body is not None and not isinstance(body, dict):
        raise doc.error(("remotes", name), "expected a mapping such as {url: s3://bucket/path}")
    for key, value in (body or {}).items():
        if not isinstance(value, (str, int, float, bool)):
            raise doc.error(("remotes", name, key), "expected a plain value")
    if body and "url" in body:
        try:
            check_url(str(body["url"]))
        except UserError as exc:
            raise doc.error(("remotes", name, "url"), exc.message) from None


def check_url(url: str) -> str:
    """The URL's protocol (`file` for a plain path); a UserError for a malformed one."""
    if not url.strip():
        raise UserError("a remote's URL is empty")
    match = _SCHEME.match(url)
    if match is None:
        if "://" in url or re.match(r"[A-Za-z][A-Za-z0-9+.-]*:/?[^/]", url) and not re.match(r"[A-Za-z]:[\\/]", url):
            raise UserError(f"malformed remote URL '{url}' (expected a folder path or PROTOCOL://...)")
        return "file"
    protocol, rest = match.group(1).lower(), match.group(2)
    if protocol != "file" and not rest.strip("/"):
        raise UserError(f"malformed remote URL '{url}': nothing after '{protocol}://'")
    return protocol


def _files(root: Path) -> tuple[ConfigFile, ConfigFile]:
    return (ConfigFile.read(root / layout.CONFIG_FILE), ConfigFile.read(root / layout.LOCAL_CONFIG_FILE))


def load_remotes(root: Path) -> tuple[dict[str, RemoteConfig], str | None]:
    """Every named remote (the local file's keys over the committed ones) and the default's name."""
    shared, local = _files(root)
    merged: dict[str, dict[str, str]] = {}
    for cfg in (shared, local):
        for name, body in cfg.remotes.items():
            merged.setdefault(name, {}).update(body)
    remotes: dict[str, RemoteConfig] = {}
    for name, body in merged.items():
        if "url" not in body:
            where = layout.LOCAL_CONFIG_FILE if name in local.remotes else layout.CONFIG_FILE
            raise UserError("a remote needs a 'url'", file=where, key=f"remotes.{name}")
        remotes[name] = RemoteConfig(name, body["url"], {k: v for k, v in body.items() if k != "url"})
    default = local.default or shared.default
    return remotes, default


def resolve(root: Path, name: str | None) -> RemoteConfig:
    """The named remote, or the default one; a UserError when there is none such."""
    remotes, default = load_remotes(root)
    if name is None:
        if default is None:
            if len(remotes) == 1:
                return next(iter(remotes.values()))
            hint = "pass --remote NAME or set one with `hpipe remote add NAME URL --default`"
            raise UserError(("no default remote; " + hint) if remotes else
                            "no remote is configured: add one with `hpipe remote add NAME URL --default`")
        name = default
    if name not in remotes:
        known = ", ".join(sorted(remotes)) or "none"
        raise UserError(f"unknown remote '{name}'{did_you_mean(name, remotes)} (configured: {known})")
    return remotes[name]


def add(root: Path, name: str, url: str, *, default: bool = False, local: bool = False,
        force: bool = False) -> Path:
    """Name a remote (in the committed file, or the local one); the file written."""
    if not _NAME.match(name):
        raise UserError(f"bad remote name '{name}': use letters, digits, '_', '.' and '-'")
    check_url(url)
    remotes, _ = load_remotes(root)
    if name in remotes and not force:
        raise UserError(f"remote '{name}' exists (url {remotes[name].url}); use --force to replace it")
    shared, local_file = _files(root)
    target = local_file if local else shared
    for cfg in (shared, local_file):  # a replaced remote keeps no stale url in the other file
        if name in cfg.remotes and cfg is not target:
            cfg.remotes[name].pop("url", None)
    target.remotes[name] = {**target.remotes.get(name, {}), "url": url}
    if default:
        target.default = name
    _save(root, shared, local_file)
    return target.path


def modify(root: Path, name: str, key: str, value: str | None, *, local: bool = False) -> Path:
    """Set (or with value None, unset) one setting of a remote; credentials go to the local file."""
    remotes, _ = load_remotes(root)
    if name not in remotes:
        resolve(root, name)  # the unknown-remote error
    if key == "url" and value is not None:
        check_url(value)
    shared, local_file = _files(root)
    target = local_file if local or key in CREDENTIAL_KEYS else shared
    if value is None:
        for cfg in (shared, local_file):
            cfg.remotes.get(name, {}).pop(key, None)
    else:
        target.remotes.setdefault(name, {})[key] = value
    _save(root, shared, local_file)
    return target.path


def remove(root: Path, name: str) -> None:
    """Forget a remote in both files (the data on it is left alone)."""
    remotes, _ = load_remotes(root)
    if name not in remotes:
        resolve(root, name)
    shared, local_file = _files(root)
    for cfg in (shared, local_file):
        cfg.remotes.pop(name, None)
        if cfg.default == name:
            cfg.default = None
    _save(root, shared, local_file)


def set_default(root: Path, name: str, *, local: bool = False) -> None:
    resolve(root, name)
    shared, local_file = _files(root)
    (local_file if local else shared).default = name
    _save(root, shared, local_file)


def _save(root: Path, shared: ConfigFile, local_file: ConfigFile) -> None:
    """Write both files; the local one is kept out of git first."""
    from hangar_pipe.core.gitignore import ensure_ignored

    for name, body in shared.remotes.items():  # credentials never sit in the committed file
        for key in CREDENTIAL_KEYS & set(body):
            local_file.remotes.setdefault(name, {})[key] = body.pop(key)
    if local_file.remotes or local_file.default or local_file.path.exists():
        ensure_ignored(root, [local_file.path])
        local_file.write()
    if shared.remotes or shared.default or shared.path.exists():
        shared.write()
