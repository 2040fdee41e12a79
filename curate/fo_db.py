"""Connecting to FiftyOne's database: fail fast with one clear line instead of a 30 s hang.

FiftyOne uses its own embedded `mongod` unless `FIFTYONE_DATABASE_URI` (or `database_uri` in
~/.fiftyone/config.json) points at a separately started MongoDB server, which is how a team shares one
dataset. Importing fiftyone does not connect; the first query does, and an unreachable server would
then block for pymongo's 30 s server-selection timeout and end in a long traceback. `connect()` pings
the configured server first with a short timeout and raises `DatabaseError` naming the (password-
masked) URI. It also switches FiftyOne's write batching to large fixed-size batches: the default
"latency" batcher shrinks batches to a few samples on a busy machine, which makes bulk inserts of
tens of thousands of samples several times slower.
"""

from __future__ import annotations

import os
import re

from core.errors import CurateError

DEFAULT_TIMEOUT_S = float(os.environ.get("CURATE_DB_TIMEOUT", "5"))
BATCH_SIZE = 2000


class DatabaseError(CurateError, RuntimeError):
    """The FiftyOne database cannot be reached or holds something we must not overwrite."""


def mask_uri(uri: str) -> str:
    """mongodb://user:secret@host -> mongodb://user:***@host."""
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", uri)


def connect(timeout_s: float = DEFAULT_TIMEOUT_S):
    """Import fiftyone, check its database answers, and return the `fiftyone` module."""
    # For this process only (the user's ~/.fiftyone is theirs): no usage tracking, and no warning that
    # the offline fallback's bundled mongod (6.0) is FiftyOne's oldest supported version.
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    import fiftyone as fo

    uri = fo.config.database_uri
    if uri:
        ping(uri, timeout_s)
    fo.config.default_batcher = "static"
    fo.config.batcher_static_size = BATCH_SIZE
    fo.config.show_progress_bars = False
    try:
        fo.list_datasets()
    except Exception as e:  # the embedded mongod failed to start, or the server refused us
        where = f"at {mask_uri(uri)}" if uri else "(FiftyOne's embedded mongod)"
        raise DatabaseError(
            f"FiftyOne database {where} is not usable: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from None
    if not uri:
        check_database_dir(fo)
    return fo


def check_database_dir(fo) -> None:
    """Refuse a FiftyOne service that serves another folder than the configured database_dir.

    Why: FiftyOne reuses any database service already running on the machine, whatever its folder, so
    with another FiftyOne (an App, a script) running on other data, `FIFTYONE_DATABASE_DIR` is silently
    ignored and curate would read and write that other database.
    """
    from fiftyone.core.odm.database import get_db_client

    want = os.path.realpath(os.path.expanduser(fo.config.database_dir))
    try:
        opts = get_db_client().admin.command("getCmdLineOpts")
        have = os.path.realpath(opts["parsed"]["storage"]["dbPath"])
    except Exception:  # noqa: BLE001 - a server that does not say where its data is: nothing to compare
        return
    if have != want:
        raise DatabaseError(
            f"FiftyOne connected to a database service serving {have}, not the configured database_dir {want}: "
            "another FiftyOne (App or script) is running on other data; stop it, or point "
            "FIFTYONE_DATABASE_DIR at its folder"
        )


def ping(uri: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    import pymongo
    from pymongo.errors import PyMongoError

    ms = int(timeout_s * 1000)
    try:
        client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms)
        try:
            client.admin.command("ping")
        finally:
            client.close()
    except (PyMongoError, ValueError) as e:
        msg = str(e).split(",")[0].split("\n")[0]
        raise DatabaseError(
            f"cannot reach the FiftyOne database at {mask_uri(uri)} within {timeout_s:g}s ({msg}); "
            "start that MongoDB server or unset FIFTYONE_DATABASE_URI to use the embedded one"
        ) from None
