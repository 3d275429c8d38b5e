-- A multi-tenant collaboration platform, as the operator's application would have it.
-- Shared tables carry tenant_id; comments reach their tenant only through posts.

CREATE TABLE plans (
    id text PRIMARY KEY,
    name text NOT NULL,
    monthly_price numeric(10, 2) NOT NULL,
    features jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE tenants (
    id text PRIMARY KEY,
    name text NOT NULL,
    region text NOT NULL,
    contact_email text,
    -- The client's age public key (age1...), where it gave one: its export is encrypted to it.
    age_recipient text,
    plan_id text REFERENCES plans (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    -- The platform's own switch: a read-only tenant's rows refuse writes (the guard below).
    -- The offboarding pipeline sets it through the data map's freeze hook; it adds no column.
    read_only boolean NOT NULL DEFAULT false
);

CREATE TABLE users (
    id bigint PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (id),
    display_name text NOT NULL,
    email text NOT NULL,
    phone text,
    locale text,
    created_at timestamptz NOT NULL,
    last_login_at timestamp,
    avatar bytea
);

CREATE TABLE spaces (
    id bigint PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (id),
    name text NOT NULL,
    created_by bigint REFERENCES users (id),
    tags text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL
);

CREATE TABLE posts (
    id bigint PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (id),
    space_id bigint NOT NULL REFERENCES spaces (id),
    author_id bigint REFERENCES users (id),
    title text NOT NULL,
    body text,
    score numeric(12, 4),
    published_at timestamptz,
    metadata jsonb
);

CREATE TABLE comments (
    id bigint PRIMARY KEY,
    post_id bigint NOT NULL REFERENCES posts (id),
    parent_id bigint REFERENCES comments (id),
    author_id bigint REFERENCES users (id),
    body text NOT NULL,
    created_at timestamptz NOT NULL,
    likes integer NOT NULL DEFAULT 0
);

CREATE TABLE wiki_pages (
    id uuid PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (id),
    space_id bigint NOT NULL REFERENCES spaces (id),
    title text NOT NULL,
    content text,
    revision integer NOT NULL,
    updated_at timestamptz NOT NULL,
    attributes jsonb
);

CREATE TABLE documents (
    id bigint PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (id),
    space_id bigint REFERENCES spaces (id),
    filename text NOT NULL,
    object_key text NOT NULL,
    content_type text,
    size_bytes bigint NOT NULL,
    sha256 text NOT NULL,
    uploaded_at timestamptz NOT NULL,
    uploaded_by bigint REFERENCES users (id)
);

CREATE TABLE chat_messages (
    id bigint PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (id),
    space_id bigint NOT NULL REFERENCES spaces (id),
    author_id bigint REFERENCES users (id),
    sent_at timestamptz NOT NULL,
    body text NOT NULL,
    edited boolean NOT NULL DEFAULT false,
    reactions jsonb
);

CREATE TABLE survey_answers (
    id bigint PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (id),
    user_id bigint REFERENCES users (id),
    survey text NOT NULL,
    rating smallint,
    weight double precision,
    answers jsonb NOT NULL,
    submitted_on date NOT NULL,
    time_spent interval,
    choices integer[]
);

-- Some tenants bought the "custom apps" option: a schema of their own.
CREATE SCHEMA "tenant_acme";
CREATE TABLE "tenant_acme".custom_fields (
    id integer PRIMARY KEY,
    label text NOT NULL,
    config jsonb,
    updated_at timestamptz NOT NULL
);
CREATE SCHEMA "tenant_globex";
CREATE TABLE "tenant_globex".custom_fields (LIKE "tenant_acme".custom_fields INCLUDING ALL);

-- The platform's half of "freeze": a read-only tenant's rows refuse writes, except in the
-- offboarding pipeline's destruction session, which names the tenant.
CREATE FUNCTION tenant_write_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    row_tenant text := CASE WHEN TG_OP = 'INSERT' THEN NEW.tenant_id ELSE OLD.tenant_id END;
    frozen boolean;
BEGIN
    SELECT read_only INTO frozen FROM tenants WHERE id = row_tenant;
    IF frozen
       AND current_setting('offboarding.destroying_tenant', true) IS DISTINCT FROM row_tenant THEN
        RAISE EXCEPTION 'tenant % is read-only for offboarding', row_tenant
            USING ERRCODE = 'read_only_sql_transaction';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'spaces', 'posts', 'wiki_pages', 'documents',
                             'chat_messages', 'survey_answers'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OR DELETE ON %I '
                       'FOR EACH ROW EXECUTE FUNCTION tenant_write_guard()',
                       t || '_write_guard', t);
    END LOOP;
END $$;
