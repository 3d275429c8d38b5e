"""A second demo platform: a team chat product shaped like the real ones, without a single
foreign key (chat_schema.sql). Its data map (chat_datamap.toml) declares what the database does
not: references (composite, self, polymorphic, with '' for none) and an owner column named
differently in one table.

`set_up` installs and seeds it in an empty database; `tenant_rows` selects a team's rows by the
product's own joins, independently of the pipeline, so tests and the demo can compare.
"""

from __future__ import annotations

import hashlib
import random
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg

from offboarding.stores import ObjectStore

__all__ = [
    "CHAT_TABLES",
    "CHAT_TEAMS",
    "install_schema",
    "seed",
    "set_up",
    "store_files",
    "team_fingerprint",
    "tenant_rows",
    "write_datamap",
]

# Three teams, two of whose ids share a prefix (isolation must be exact).
CHAT_TEAMS = ("acme", "acme-corp", "globex")
_WORDS = ["ça", "marche", "déploiement", "lundi", "réunion", "東京", "rapport", "ok", "merci"]

# A team's rows of every table, by the product's own joins (what its support staff would run).
_TEAM_ROWS = {
    "chat.teams": "SELECT t.* FROM chat.teams t WHERE t.id = %(team)s",
    "chat.team_members": "SELECT m.* FROM chat.team_members m WHERE m.team_id = %(team)s",
    "chat.users": "SELECT u.* FROM chat.users u WHERE EXISTS (SELECT 1 FROM chat.team_members m "
    "WHERE m.user_id = u.id AND m.team_id = %(team)s)",
    "chat.channels": "SELECT c.* FROM chat.channels c WHERE c.teamid = %(team)s",
    "chat.posts": "SELECT p.* FROM chat.posts p JOIN chat.channels c ON c.id = p.channelid "
    "WHERE c.teamid = %(team)s",
    "chat.fileinfo": "SELECT f.* FROM chat.fileinfo f JOIN chat.channels c ON c.id = f.channelid "
    "WHERE c.teamid = %(team)s",
    "chat.reactions": "SELECT r.* FROM chat.reactions r "
    "LEFT JOIN chat.posts p ON r.target_type = 'post' AND p.id = r.target_id "
    "LEFT JOIN chat.fileinfo f ON r.target_type = 'file' AND f.id = r.target_id "
    "JOIN chat.channels c ON c.id = coalesce(p.channelid, f.channelid) "
    "WHERE c.teamid = %(team)s",
    "chat.post_links": "SELECT l.* FROM chat.post_links l "
    "JOIN chat.channels c ON c.id = l.from_channel WHERE c.teamid = %(team)s",
}
CHAT_TABLES = tuple(_TEAM_ROWS)


def _id(*parts: object) -> str:
    """A 26-character id, as the product makes them (deterministic here)."""
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:26]


def install_schema(dsn: str) -> None:
    schema = resources.files("offboarding.dev.demo").joinpath("chat_schema.sql").read_text()
    with psycopg.connect(dsn) as conn:
        conn.execute(schema)


def seed(dsn: str, teams: tuple[str, ...] = CHAT_TEAMS, posts_per_channel: int = 12) -> None:
    """Channels, threads, files (attached or not), reactions to posts and to files, and
    permalinks within each team."""
    rng = random.Random(2028)  # noqa: S311 (sample text, not secrets)
    rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in CHAT_TABLES}
    rows["chat.roles"] = [("team_admin", "manage_team"), ("team_user", "post")]
    rows["chat.systems"] = [("version", "9.4.1")]
    for n, team in enumerate(teams):
        rows["chat.teams"].append((team, team.title(), f"dpo@{team}.example", False, n))
        users = [_id("user", team, u) for u in range(4)]
        rows["chat.users"] += [
            (u, f"{team}-user-{k}", f"user{k}@{team}.example", "") for k, u in enumerate(users)
        ]
        # The first team's first user also works in every other team (a shared profile).
        users += [_id("user", teams[0], 0)] if n else []
        rows["chat.team_members"] += [(team, u, "team_user") for u in users]
        posts: list[tuple[str, str]] = []
        for c in range(3):
            channel = _id("channel", team, c)
            rows["chat.channels"].append((channel, team, f"channel-{c}", ""))
            root = ""
            for p in range(posts_per_channel):
                post = _id("post", team, c, p)
                thread = root if p % 3 else ""  # every third post starts a thread
                root = post if not thread else root
                words = " ".join(rng.choice(_WORDS) for _ in range(6))
                rows["chat.posts"].append(
                    (post, channel, thread, rng.choice(users), f"{team}: {words}", p)
                )
                posts.append((channel, post))
                if p % 4 == 0:
                    rows["chat.reactions"].append(
                        (_id("reaction", post), "post", post, rng.choice(users), "+1")
                    )
            for f in range(3):
                attached = posts[-1 - f][1] if f else ""  # one file never attached
                file = _id("file", team, c, f)
                folder = f"20261201/teams/{team}/channels/{channel}/{file}"
                # the second of each channel is an image, with a thumbnail
                name, thumbnail = (
                    (f"photo-{f}.jpg", f"{folder}/thumb.jpg") if f == 1 else (f"notes-{f}.txt", "")
                )
                rows["chat.fileinfo"].append(
                    (file, channel, attached, f"{folder}/{name}", thumbnail, 100 + f)
                )
                rows["chat.reactions"].append(
                    (_id("reaction", file), "file", file, rng.choice(users), "eyes")
                )
        for k in range(4):
            (fc, fp), (tc, tp) = posts[k], posts[-1 - k]
            rows["chat.post_links"].append((_id("link", team, k), fc, fp, tc, tp))
    _insert(dsn, rows)


def _insert(dsn: str, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        for table, values in rows.items():
            if values:
                marks = ", ".join(["%s"] * len(values[0]))
                cur.executemany(f"INSERT INTO {table} VALUES ({marks})", values)


def store_files(dsn: str, files: ObjectStore) -> None:
    """Every object the file records name (the file and its thumbnail), with some bytes."""
    with psycopg.connect(dsn) as conn:
        keys = conn.execute(
            "SELECT path FROM chat.fileinfo UNION SELECT thumbnailpath FROM chat.fileinfo "
            "WHERE thumbnailpath <> ''"
        ).fetchall()
    for (key,) in keys:
        files.put_bytes(key, f"contents of {key}\n".encode())


def set_up(dsn: str, files: ObjectStore | None = None) -> None:
    install_schema(dsn)
    seed(dsn)
    if files is not None:
        store_files(dsn, files)


def tenant_rows(dsn: str, team: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the team, per table, by the product's own joins, sorted."""
    with psycopg.connect(dsn) as conn:
        return {
            table: sorted(conn.execute(query, {"team": team}).fetchall(), key=repr)
            for table, query in _TEAM_ROWS.items()
        }


def team_fingerprint(dsn: str, team: str) -> str:
    """A digest of every row of the team: equal before and after another team's destruction."""
    return hashlib.sha256(repr(tenant_rows(dsn, team)).encode()).hexdigest()


def write_datamap(path: Path, extra: str = "") -> Path:
    """The chat platform's data map (chat_datamap.toml), with `extra` TOML appended."""
    text = resources.files("offboarding.dev.demo").joinpath("chat_datamap.toml").read_text()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + extra)
    return path
