"""Where FiftyOne finds the review plugin (curate/plugin): `curate app` arranges it, `curate plugin install` links it.

FiftyOne looks for plugins in one folder, `fo.config.plugins_dir` (FIFTYONE_PLUGINS_DIR). `curate app`
must not hide a user's own plugins, so when ours is not installed there it serves the App with a private
folder (in the cache) that links both: our plugin and every entry of the user's plugins folder.
`curate plugin install` links ours into FiftyOne's folder once, so a plain `fiftyone app launch` finds it.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.errors import CurateError

PLUGIN_NAME = "@utkface-curate/review"
LINK_NAME = "utkface-curate-review"


class PluginError(CurateError, RuntimeError):
    pass


def plugin_source() -> Path:
    """The plugin folder shipped inside the package."""
    return Path(__file__).resolve().parent / "plugin"


def _link(target: Path, link: Path) -> None:
    """Point `link` at `target`, replacing only a link of ours (never a real folder)."""
    if link.is_symlink():
        if Path(os.readlink(link)) == target:
            return
        link.unlink()
    elif link.exists():
        raise PluginError(f"{link} exists and is not a link; move it away to install the review plugin there")
    link.symlink_to(target, target_is_directory=True)


def installed_in(plugins_dir: str | os.PathLike | None) -> bool:
    """Whether `plugins_dir` already holds a link to this checkout's plugin."""
    if not plugins_dir:
        return False
    link = Path(plugins_dir) / LINK_NAME
    return link.is_symlink() and link.resolve() == plugin_source()


def install(plugins_dir: str | os.PathLike) -> Path:
    """Link the plugin into `plugins_dir` (FiftyOne's plugins folder); idempotent."""
    d = Path(plugins_dir).expanduser()
    d.mkdir(parents=True, exist_ok=True)
    _link(plugin_source(), d / LINK_NAME)
    return d / LINK_NAME


def app_plugins_dir(user_dir: str | None, cache_dir: Path) -> Path:
    """A plugins folder for `curate app`: the user's, when ours is installed there; else a linked one."""
    if installed_in(user_dir):
        return Path(user_dir)
    d = cache_dir / "fiftyone-plugins"
    d.mkdir(parents=True, exist_ok=True)
    wanted = {LINK_NAME: plugin_source()}
    if user_dir and Path(user_dir).is_dir():
        for entry in Path(user_dir).iterdir():
            if not entry.name.startswith(".") and entry.name != LINK_NAME:
                wanted["user-" + entry.name] = entry.resolve()
    for old in d.iterdir():  # links to plugins the user has removed since
        if old.is_symlink() and old.name not in wanted:
            old.unlink()
    for name, target in wanted.items():
        _link(target, d / name)
    return d


REVIEW_SIDEBAR = ("age_corrected", "gender_corrected", "reviewed_by", "reviewed_at")
GRID_FIELDS = ("age", "gender", "oos_age_pred", "oos_gender_pred")


def configure_app(fo, ds) -> None:
    """Readable grid: only label vs out-of-sample prediction shown, coloured as the panel's legend says.

    Only our own entries are set: a user's colours for other fields and their other sidebar groups stay.
    """
    from curate.review_card import LEGEND

    schema = ds.get_field_schema()
    cfg = ds.app_config
    scheme = cfg.color_scheme or fo.ColorScheme()
    others = [f for f in (scheme.fields or []) if f.get("path") not in LEGEND]
    scheme.fields = others + [{"path": p, "fieldColor": c} for p, c in LEGEND.items() if p in schema]
    scheme.color_by = scheme.color_by or "field"
    cfg.color_scheme = scheme
    cfg.active_fields = fo.ActiveFields(paths=[f for f in GRID_FIELDS if f in schema])
    paths = [f for f in REVIEW_SIDEBAR if f in schema]
    rest = []
    for group in cfg.sidebar_groups or fo.DatasetAppConfig.default_sidebar_groups(ds):
        if group.name != "review":
            group.paths = [p for p in group.paths if p not in paths]
            rest.append(group)
    cfg.sidebar_groups = [fo.SidebarGroupDocument(name="review", paths=paths, expanded=True), *rest]
    ds.save()


def use_plugin(fo) -> Path:
    """Make this process and the App server it starts load the plugin; returns the plugins folder.

    The App's long jobs are queued for `fiftyone delegated launch` by default only where that launcher finds the
    plugin, i.e. when it is installed in FiftyOne's own plugins folder (`curate plugin install`); otherwise they run
    at once by default (CURATE_JOBS_DELEGATED, which the plugin reads)."""
    from core.manifest import default_cache_dir

    shared = installed_in(fo.config.plugins_dir)
    d = app_plugins_dir(fo.config.plugins_dir, Path(default_cache_dir()))
    os.environ["FIFTYONE_PLUGINS_DIR"] = fo.config.plugins_dir = str(d)
    os.environ.setdefault("CURATE_WORKDIR", os.getcwd())  # where the App's long jobs resolve relative paths
    os.environ["CURATE_JOBS_DELEGATED"] = "1" if shared else "0"
    return d


def record_workdir(ds, workdir: str | os.PathLike) -> None:
    """Store where `curate app` runs in the dataset, so that a job queued from the App and run later by `fiftyone
    delegated launch` in another folder resolves `dataset/...` where the user meant it."""
    from curate.fo_schema import update_info

    update_info(ds, lambda info: info.update(workdir=str(Path(workdir).resolve())))


def job_workdir(ds) -> str | None:
    """The folder an App job runs its `curate` command in: CURATE_WORKDIR (the App server's), else the folder the
    dataset's last `curate app` ran in (a delegated launcher's), else None (its own)."""
    return os.environ.get("CURATE_WORKDIR") or (ds.info.get("curate") or {}).get("workdir")
