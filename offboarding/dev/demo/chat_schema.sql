-- A team chat product, shaped as such products ship: no foreign key at all (the application
-- keeps its references), text ids, '' written for "none", a polymorphic reactions table, and
-- a tenant column named differently in one table. Written for the project's tests and demo.
CREATE SCHEMA chat;

-- The product's teams are the platform's tenants.
CREATE TABLE chat.teams (
    id text PRIMARY KEY,
    display_name text NOT NULL,
    email text NOT NULL,
    readonly boolean NOT NULL DEFAULT false,
    createat bigint NOT NULL
);

-- A user can belong to several teams: the profile is nobody's alone.
CREATE TABLE chat.users (
    id text PRIMARY KEY,
    username text NOT NULL UNIQUE,
    email text NOT NULL,
    nickname text NOT NULL DEFAULT ''
);

CREATE TABLE chat.team_members (
    team_id text NOT NULL,
    user_id text NOT NULL,
    roles text NOT NULL DEFAULT '',
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX ON chat.team_members (user_id);

-- The team column is `teamid` here, `team_id` elsewhere.
CREATE TABLE chat.channels (
    id text PRIMARY KEY,
    teamid text NOT NULL,
    name text NOT NULL,
    purpose text NOT NULL DEFAULT ''
);
CREATE INDEX ON chat.channels (teamid);

-- Threads: a reply's rootid is its thread's first post, '' for a first post.
CREATE TABLE chat.posts (
    id text PRIMARY KEY,
    channelid text NOT NULL,
    rootid text NOT NULL DEFAULT '',
    userid text NOT NULL,
    message text NOT NULL,
    createat bigint NOT NULL
);
CREATE INDEX ON chat.posts (channelid);
CREATE INDEX ON chat.posts (rootid);
CREATE INDEX ON chat.posts (userid);
-- (channelid, id) is how links name a post
CREATE UNIQUE INDEX ON chat.posts (channelid, id);

-- A file is uploaded to a channel and attached to a post later ('' until then).
CREATE TABLE chat.fileinfo (
    id text PRIMARY KEY,
    channelid text NOT NULL,
    postid text NOT NULL DEFAULT '',
    path text NOT NULL,
    thumbnailpath text NOT NULL DEFAULT '',
    size bigint NOT NULL
);
CREATE INDEX ON chat.fileinfo (channelid);
CREATE INDEX ON chat.fileinfo (postid);

-- Reactions to posts and to files: target_type says which table target_id is a key of.
CREATE TABLE chat.reactions (
    id text PRIMARY KEY,
    target_type text NOT NULL,
    target_id text NOT NULL,
    userid text NOT NULL,
    emoji text NOT NULL
);
CREATE INDEX ON chat.reactions (target_id, target_type);

-- A permalink from one post to another, each named by (channel, post).
CREATE TABLE chat.post_links (
    id text PRIMARY KEY,
    from_channel text NOT NULL,
    from_post text NOT NULL,
    to_channel text NOT NULL,
    to_post text NOT NULL
);
CREATE INDEX ON chat.post_links (from_channel, from_post);
CREATE INDEX ON chat.post_links (to_channel, to_post);

-- The product's own configuration: nobody's data.
CREATE TABLE chat.roles (name text PRIMARY KEY, permissions text NOT NULL);
CREATE TABLE chat.systems (name text PRIMARY KEY, value text NOT NULL);
