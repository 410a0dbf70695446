-- Latch relational schema (PostgreSQL). Instants are Unix milliseconds (BIGINT); JSON is TEXT.
CREATE TABLE connections (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    display_name TEXT,
    strategy TEXT NOT NULL,
    options TEXT NOT NULL,
    secrets TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE clients (
    client_id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    app_type TEXT NOT NULL,
    callbacks TEXT NOT NULL,
    allowed_logout_urls TEXT NOT NULL,
    web_origins TEXT NOT NULL,
    grant_types TEXT NOT NULL,
    token_endpoint_auth_method TEXT NOT NULL,
    signing_alg TEXT NOT NULL,
    lifetimes TEXT NOT NULL,
    oidc_logout TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE client_secrets (
    client_id TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, digest)
);

CREATE TABLE client_grants (
    id TEXT PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
    audience TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (client_id, audience)
);

CREATE TABLE connection_clients (
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    client_id TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
    PRIMARY KEY (connection_id, client_id)
);
CREATE INDEX connection_clients_client ON connection_clients (client_id);

CREATE TABLE users (
    user_id TEXT PRIMARY KEY NOT NULL,
    email TEXT,
    email_verified BOOLEAN NOT NULL DEFAULT false,
    name TEXT,
    given_name TEXT,
    family_name TEXT,
    nickname TEXT,
    picture TEXT,
    profile TEXT NOT NULL,
    blocked BOOLEAN NOT NULL DEFAULT false,
    search TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_login BIGINT,
    logins_count BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX users_email ON users (email);

CREATE TABLE identities (
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    password_hash TEXT,
    profile TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (connection_id, issuer, subject)
);
CREATE INDEX identities_user ON identities (user_id);

CREATE TABLE refresh_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    family_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    client_id TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
    session_id TEXT,
    scope TEXT NOT NULL,
    offline BOOLEAN NOT NULL DEFAULT false,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    family_expires_at BIGINT NOT NULL,
    rotated_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    alg TEXT NOT NULL,
    state TEXT NOT NULL,
    private_key TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    publish_until BIGINT
);

CREATE TABLE log_events (
    log_id TEXT PRIMARY KEY NOT NULL,
    date BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    description TEXT NOT NULL,
    user_id TEXT,
    client_id TEXT,
    connection TEXT,
    ip TEXT,
    details TEXT NOT NULL
);
CREATE INDEX log_events_date ON log_events (date);
CREATE INDEX log_events_type ON log_events (event_type, date);
CREATE INDEX log_events_user ON log_events (user_id, date);

CREATE TABLE outbox (
    id TEXT PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL,
    target TEXT NOT NULL,
    notice TEXT NOT NULL,
    jti TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    locked_until BIGINT,
    last_error TEXT,
    finished_at BIGINT
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
