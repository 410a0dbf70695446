//! Table definitions, shared by SQLite and PostgreSQL (only types both support: Text, BigInt,
//! Integer, Bool, Nullable).

diesel::table! {
    connections (id) {
        id -> Text,
        name -> Text,
        display_name -> Nullable<Text>,
        strategy -> Text,
        options -> Text,
        secrets -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    clients (client_id) {
        client_id -> Text,
        name -> Text,
        description -> Nullable<Text>,
        app_type -> Text,
        callbacks -> Text,
        allowed_logout_urls -> Text,
        web_origins -> Text,
        grant_types -> Text,
        token_endpoint_auth_method -> Text,
        signing_alg -> Text,
        lifetimes -> Text,
        oidc_logout -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        addons -> Text,
        global_token_revocation -> Nullable<Text>,
    }
}

diesel::table! {
    client_secrets (client_id, digest) {
        client_id -> Text,
        digest -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    client_grants (id) {
        id -> Text,
        client_id -> Text,
        audience -> Text,
        scope -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    connection_clients (connection_id, client_id) {
        connection_id -> Text,
        client_id -> Text,
    }
}

diesel::table! {
    users (user_id) {
        user_id -> Text,
        email -> Nullable<Text>,
        email_verified -> Bool,
        name -> Nullable<Text>,
        given_name -> Nullable<Text>,
        family_name -> Nullable<Text>,
        nickname -> Nullable<Text>,
        picture -> Nullable<Text>,
        profile -> Text,
        blocked -> Bool,
        search -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        last_login -> Nullable<BigInt>,
        logins_count -> BigInt,
        app_metadata -> Text,
    }
}

diesel::table! {
    identities (connection_id, issuer, subject) {
        connection_id -> Text,
        issuer -> Text,
        subject -> Text,
        user_id -> Text,
        password_hash -> Nullable<Text>,
        profile -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Text,
        digest -> Text,
        family_id -> Text,
        user_id -> Text,
        client_id -> Text,
        session_id -> Nullable<Text>,
        scope -> Text,
        offline -> Bool,
        created_at -> BigInt,
        expires_at -> BigInt,
        family_expires_at -> BigInt,
        rotated_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    grants (id) {
        id -> Text,
        user_id -> Text,
        client_id -> Text,
        session_id -> Nullable<Text>,
        offline -> Bool,
        created_at -> BigInt,
        expires_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        alg -> Text,
        state -> Text,
        private_key -> Text,
        public_jwk -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        publish_until -> Nullable<BigInt>,
    }
}

diesel::table! {
    log_events (log_id) {
        log_id -> Text,
        date -> BigInt,
        event_type -> Text,
        description -> Text,
        user_id -> Nullable<Text>,
        client_id -> Nullable<Text>,
        connection -> Nullable<Text>,
        ip -> Nullable<Text>,
        details -> Text,
    }
}

diesel::table! {
    outbox (id) {
        id -> Text,
        client_id -> Text,
        target -> Text,
        notice -> Text,
        jti -> Text,
        state -> Text,
        attempts -> Integer,
        created_at -> BigInt,
        next_attempt_at -> BigInt,
        locked_until -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        finished_at -> Nullable<BigInt>,
        kind -> Text,
        user_id -> Nullable<Text>,
    }
}

diesel::table! {
    scim_configs (connection_id) {
        connection_id -> Text,
        user_id_attribute -> Text,
        mapping -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    scim_tokens (token_id) {
        token_id -> Text,
        connection_id -> Text,
        digest -> Text,
        scopes -> Text,
        created_at -> BigInt,
        valid_until -> Nullable<BigInt>,
    }
}

diesel::table! {
    scim_users (connection_id, user_id) {
        connection_id -> Text,
        user_id -> Text,
        user_name -> Text,
        /// `user_name` lower-cased: unique within the connection.
        user_name_key -> Text,
        external_id -> Nullable<Text>,
        active -> Bool,
        resource -> Text,
        version -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    log_streams (id) {
        id -> Text,
        name -> Text,
        status -> Text,
        sink -> Text,
        filters -> Text,
        suspended_reason -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
        locked_until -> Nullable<BigInt>,
        failures -> Integer,
        failing_since -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        next_attempt_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    log_stream_events (seq) {
        seq -> BigInt,
        stream_id -> Text,
        log_id -> Text,
        date -> BigInt,
        payload -> Text,
    }
}

diesel::joinable!(client_secrets -> clients (client_id));
diesel::joinable!(identities -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(
    connections,
    clients,
    client_secrets,
    connection_clients,
    client_grants,
    users,
    identities,
    refresh_tokens,
    grants,
    signing_keys,
    log_events,
    outbox,
    scim_configs,
    scim_tokens,
    scim_users,
    log_streams,
    log_stream_events,
);
