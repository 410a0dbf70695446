//! Start-up: data directory, master key, database (connect + migrate), session store, the
//! built-in database connection, and the management API's bootstrap token.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use latch_core::model::{Connection, DATABASE_CONNECTION, Strategy};
use latch_core::session::SessionStore;
use latch_core::store::Store;
use latch_core::users::{NewUser, PasswordHasher as _, UserError};
use latch_core::{Clock, ConnectionId, ConnectionName, StoreError, SystemClock};
use latch_http::AdminToken;
use latch_jose::password::Argon2id;
use latch_session::{EmbeddedSessionStore, RedisSessionStore};
use latch_store::{Cipher, SqlStore, StoreOptions};

use crate::app::AppState;
use crate::config::{Config, redact_url};

/// Everything `serve` starts with.
pub struct Started {
    pub state: AppState,
    /// A management API token generated on this start, to print once.
    pub new_admin_token: Option<String>,
    /// The password of the `admin` user created on this start, when generated, to print once.
    pub new_admin_password: Option<String>,
}

/// Creates the data dir readable by its owner only (0700), or makes an existing one so, with every
/// file in it 0600: it holds the database, the session store and the master key, which no other
/// local user may read. Warns when it had to tighten anything; after that nothing is wider, so a
/// start warns once.
fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let private = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).with_context(
                || {
                    format!(
                        "LATCH_DATA_DIR: cannot make {} private to this user",
                        path.display()
                    )
                },
            )
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("LATCH_DATA_DIR: cannot create {}", dir.display()))?;
        let was = std::fs::metadata(dir)
            .with_context(|| format!("LATCH_DATA_DIR: cannot read {}", dir.display()))?
            .permissions()
            .mode()
            & 0o777;
        if was & 0o077 != 0 {
            private(dir, 0o700)?;
        }
        let mut files = 0;
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("LATCH_DATA_DIR: cannot read {}", dir.display()))?;
        for entry in entries {
            let entry =
                entry.with_context(|| format!("LATCH_DATA_DIR: cannot read {}", dir.display()))?;
            // Not through symbolic links: only what is in the data dir itself.
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
                private(&entry.path(), 0o600)?;
                files += 1;
            }
        }
        if was & 0o077 != 0 || files > 0 {
            tracing::warn!(
                data_dir = %dir.display(),
                mode = format_args!("{was:o}"),
                files,
                "the data dir was open to other local users: it is now 0700 and its files 0600"
            );
        }
        Ok(())
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
        .with_context(|| format!("LATCH_DATA_DIR: cannot create {}", dir.display()))
}

/// Creates `path` empty and readable by its owner only (0600) unless it exists: SQLite takes an
/// empty file for a new database and gives its WAL and shared-memory files the database file's
/// mode, so all of them stay private.
fn create_private(path: &Path) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// Writes `contents` to a new file readable only by its owner.
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    Ok(())
}

/// The master key: `LATCH_SECRET_KEY`, or `secret.key` in the data dir (generated once).
fn master_key(config: &Config) -> anyhow::Result<[u8; 32]> {
    if let Some(k) = config.secret_key {
        return Ok(k);
    }
    let path = config.data_dir.join("secret.key");
    if !path.exists() {
        ensure_dir(&config.data_dir)?;
        let key = latch_jose::random_token(32);
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&key)?;
        write_private(&path, STANDARD.encode(raw).as_bytes())?;
        tracing::info!(path = %path.display(), "generated the master key that encrypts stored secrets");
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let raw = STANDARD
        .decode(text.trim())
        .with_context(|| format!("{} is not base64", path.display()))?;
    raw.try_into()
        .map_err(|_| anyhow::anyhow!("{} must hold 32 bytes, base64", path.display()))
}

fn database_url(config: &Config) -> anyhow::Result<String> {
    match &config.database_url {
        Some(u) => Ok(u.clone()),
        None => {
            ensure_dir(&config.data_dir)?;
            let path = config.data_dir.join("latch.db");
            create_private(&path)?;
            Ok(path.to_string_lossy().into_owned())
        }
    }
}

/// Connects to the database and migrates it.
pub async fn open_store(config: &Config) -> anyhow::Result<SqlStore> {
    if config.data_dir.exists() {
        ensure_dir(&config.data_dir)?;
    }
    let url = database_url(config)?;
    let key = master_key(config)?;
    let cipher = Cipher::new(&key)?;
    // The setting an operator fixes: LATCH_DATABASE_URL, or the data dir's SQLite file.
    let setting = if config.database_url.is_some() {
        "LATCH_DATABASE_URL"
    } else {
        "database"
    };
    let store = SqlStore::open(StoreOptions::new(&url), cipher)
        .await
        .map_err(|e| describe(setting, &url, e))?;
    let applied = store
        .migrate()
        .await
        .map_err(|e| describe(setting, &url, e))?;
    for m in &applied {
        tracing::info!(migration = %m, "applied migration");
    }
    Ok(store)
}

/// One line naming the setting, the URL without its password, and what failed (the driver's
/// own multi-line messages folded into it).
fn describe(setting: &str, url: &str, e: StoreError) -> anyhow::Error {
    let mut msg = format!("{setting} {}: {e}", redact_url(url));
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    let line = msg
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    anyhow::anyhow!(line)
}

async fn open_sessions(config: &Config) -> anyhow::Result<Arc<dyn SessionStore>> {
    match &config.redis_url {
        Some(url) => {
            let s = RedisSessionStore::connect(url, config.redis_prefix.clone())
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "LATCH_REDIS_URL {}: {e}: {}",
                        redact_url(url),
                        source_text(&e)
                    )
                })?;
            // Sessions of releases that keyed them by their secret: unreachable now, deleted
            // in the background so a large keyspace does not hold up the start.
            let legacy = s.clone();
            tokio::spawn(async move {
                match legacy.drop_legacy_sessions().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        keys = n,
                        "deleted sessions stored by an earlier release under their secrets"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not delete earlier releases' sessions")
                    }
                }
            });
            Ok(Arc::new(s))
        }
        None => {
            ensure_dir(&config.data_dir)?;
            let path: PathBuf = config.data_dir.join("sessions.db");
            let s = EmbeddedSessionStore::open(&path).await.map_err(|e| {
                anyhow::anyhow!("session file {}: {e}: {}", path.display(), source_text(&e))
            })?;
            Ok(Arc::new(s))
        }
    }
}

fn source_text(e: &dyn std::error::Error) -> String {
    e.source().map(|s| s.to_string()).unwrap_or_default()
}

/// Creates the built-in `database` connection if it is missing (safe with several instances
/// starting at once).
pub async fn ensure_database_connection(
    store: &dyn Store,
    clock: &dyn Clock,
) -> anyhow::Result<()> {
    let name = ConnectionName::new(DATABASE_CONNECTION);
    if store.find_connection_by_name(&name).await?.is_some() {
        return Ok(());
    }
    let now = clock.now();
    let mut options = serde_json::Map::new();
    options.insert("passwordPolicy".into(), "good".into());
    options.insert("brute_force_protection".into(), true.into());
    let c = Connection {
        id: ConnectionId::new(format!("con_{}", latch_jose::random_alnum(16))),
        name,
        display_name: Some("Username-Password".into()),
        strategy: Strategy::Auth0,
        options,
        secrets: Default::default(),
        enabled_clients: vec![],
        created_at: now,
        updated_at: now,
    };
    match store.insert_connection(&c).await {
        Ok(()) => {
            tracing::info!("created the built-in database connection");
            Ok(())
        }
        Err(StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The admin UI's client (`latch-admin`): public, PKCE, its callback under the current issuer
/// (updated when the issuer changes), enabled on the database connection.
pub async fn ensure_admin_client(
    store: &dyn Store,
    clock: &dyn Clock,
    issuer: &str,
) -> anyhow::Result<()> {
    use latch_core::ClientId;
    use latch_core::model::*;
    let id = ClientId::new(ADMIN_CLIENT_ID);
    let callback = url::Url::parse(&format!("{issuer}{ADMIN_CALLBACK_PATH}"))?;
    let signed_out = url::Url::parse(&format!("{issuer}/admin/signed-out"))?;
    let now = clock.now();
    match store.find_client(&id).await? {
        Some(mut c) => {
            if c.callbacks != [callback.clone()] || c.allowed_logout_urls != [signed_out.clone()] {
                c.callbacks = vec![callback];
                c.allowed_logout_urls = vec![signed_out];
                c.updated_at = now;
                store.update_client(&c).await?;
            }
        }
        None => {
            let c = Client {
                client_id: id.clone(),
                name: "Latch admin".into(),
                description: Some("The admin UI of this Latch.".into()),
                app_type: AppType::RegularWeb,
                callbacks: vec![callback],
                allowed_logout_urls: vec![signed_out],
                web_origins: vec![],
                grant_types: vec![GrantType::AuthorizationCode],
                token_endpoint_auth_method: TokenEndpointAuthMethod::None,
                signing_alg: SigningAlg::RS256,
                lifetimes: TokenLifetimes::default(),
                oidc_logout: OidcLogout::default(),
                addons: Default::default(),
                global_token_revocation: None,
                secrets: vec![],
                created_at: now,
                updated_at: now,
            };
            match store.insert_client(&c).await {
                Ok(()) | Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let name = ConnectionName::new(DATABASE_CONNECTION);
            if let Some(mut db) = store.find_connection_by_name(&name).await?
                && !db.enabled_clients.contains(&id)
            {
                db.enabled_clients.push(id);
                db.updated_at = now;
                store.update_connection(&db).await?;
            }
        }
    }
    Ok(())
}

/// The `admin` password: `password`, or a generated one (also returned first, to print once).
fn admin_password(password: Option<&str>) -> (Option<String>, String) {
    let generated = password.is_none().then(|| latch_jose::random_token(18));
    let secret = password
        .map(str::to_owned)
        .or_else(|| generated.clone())
        .unwrap_or_default();
    (generated, secret)
}

/// The first admin: user `admin` in the database connection, role `admin`, with
/// `LATCH_ADMIN_PASSWORD` or a generated password (returned once, to print). Created when no
/// `admin` identity exists, through [`latch_core::users::create`] (user and identity in one
/// transaction: an instance that loses the race to create it leaves nothing behind).
pub async fn ensure_admin_user(
    store: &dyn Store,
    clock: &dyn Clock,
    password: Option<&str>,
) -> anyhow::Result<Option<String>> {
    use latch_core::model::*;
    let Some(db) = store
        .find_connection_by_name(&ConnectionName::new(DATABASE_CONNECTION))
        .await?
    else {
        return Ok(None);
    };
    if store
        .find_identity(
            &db.id,
            latch_core::connector::DATABASE_ISSUER,
            ADMIN_USERNAME,
        )
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let (generated, secret) = admin_password(password);
    let mut app_metadata = serde_json::Map::new();
    app_metadata.insert("roles".into(), serde_json::json!([ADMIN_ROLE]));
    let new = NewUser {
        connection: &db,
        id: latch_jose::random_alnum(24).to_lowercase(),
        username: Some(ADMIN_USERNAME.into()),
        email: None,
        email_verified: false,
        password: Some(&secret),
        // The operator's (checked by the configuration) or generated.
        password_policy: false,
        name: Some("Administrator".into()),
        nickname: Some(ADMIN_USERNAME.into()),
        blocked: false,
        app_metadata,
    };
    match latch_core::users::create(store, clock, &Argon2id, new).await {
        Ok(_) => {
            tracing::info!("created the admin user");
            Ok(generated)
        }
        // Another instance created it first.
        Err(UserError::Store(StoreError::Conflict { .. })) => Ok(None),
        Err(UserError::Store(e)) => Err(e.into()),
        Err(e) => Err(anyhow::anyhow!("admin user: {e}")),
    }
}

/// A new bootstrap management API token (`latch_…`, 256 bits) and the digest kept of it.
fn new_bootstrap_token() -> (String, AdminToken) {
    let token = format!("latch_{}", latch_jose::random_token(32));
    let digest = AdminToken::new(&token);
    (token, digest)
}

/// The management API token: `LATCH_ADMIN_TOKEN`, else the digest stored in the data dir, else
/// a new token (its digest stored, the token itself returned once to print).
fn admin_token(config: &Config) -> anyhow::Result<(AdminToken, Option<String>)> {
    if let Some(t) = &config.admin_token {
        return Ok((AdminToken::new(t), None));
    }
    let path = config.data_dir.join("admin-token.sha256");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let raw = STANDARD
            .decode(text.trim())
            .with_context(|| format!("{} is not base64", path.display()))?;
        let digest: [u8; 32] = raw
            .try_into()
            .map_err(|_| anyhow::anyhow!("{} is corrupt", path.display()))?;
        return Ok((AdminToken::from_digest(digest), None));
    }
    ensure_dir(&config.data_dir)?;
    let (token, t) = new_bootstrap_token();
    write_private(&path, STANDARD.encode(t.digest()).as_bytes())?;
    Ok((t, Some(token)))
}

/// For commands that read or repair an existing deployment (`keys list`, `admin …`): refuses,
/// naming the data dir, when there is none, instead of creating one.
pub fn require_deployment(config: &Config) -> anyhow::Result<()> {
    let dir = config.data_dir.display();
    if config.database_url.is_none() && !config.data_dir.join("latch.db").exists() {
        anyhow::bail!(
            "no Latch deployment found in {dir} (no latch.db): run this where `latch serve` ran \
             (LATCH_DATA_DIR, or LATCH_DATABASE_URL for PostgreSQL)"
        );
    }
    if config.secret_key.is_none() && !config.data_dir.join("secret.key").exists() {
        anyhow::bail!(
            "no master key in {dir} (no secret.key) and LATCH_SECRET_KEY is not set: stored \
             secrets cannot be opened"
        );
    }
    Ok(())
}

/// `latch admin reset-password`: a new password for the `admin` user (`password`, or a
/// generated one, returned to print once). Also unblocks it and restores its admin role, so an
/// operator locked out of the UI gets back in.
pub async fn reset_admin_password(
    config: &Config,
    password: Option<&str>,
) -> anyhow::Result<Option<String>> {
    use latch_core::model::{ADMIN_ROLE, ADMIN_USERNAME};
    require_deployment(config)?;
    let opened = open_store(config).await?;
    let store: &dyn Store = &opened;
    let db = store
        .find_connection_by_name(&ConnectionName::new(DATABASE_CONNECTION))
        .await?
        .ok_or_else(|| anyhow::anyhow!("the database connection is missing"))?;
    let Some((mut identity, mut user)) = store
        .find_identity_with_user(
            &db.id,
            latch_core::connector::DATABASE_ISSUER,
            ADMIN_USERNAME,
        )
        .await?
    else {
        // Never created (or deleted): create it as the first start would.
        return ensure_admin_user(store, &SystemClock, password).await;
    };
    let (generated, secret) = admin_password(password);
    let hash = Argon2id
        .hash(&secret)
        .await
        .map_err(|e| anyhow::anyhow!("admin password: {e}"))?;
    let now = SystemClock.now();
    identity.password_hash = Some(hash);
    identity.updated_at = now;
    user.blocked = false;
    let roles = user
        .app_metadata
        .entry("roles")
        .or_insert_with(|| serde_json::json!([]));
    match roles.as_array_mut() {
        Some(list) if list.iter().any(|r| r == ADMIN_ROLE) => {}
        Some(list) => list.push(serde_json::json!(ADMIN_ROLE)),
        None => *roles = serde_json::json!([ADMIN_ROLE]),
    }
    user.updated_at = now;
    store.update_user_and_identity(&user, &identity).await?;
    Ok(generated)
}

/// `latch admin new-token`: a new bootstrap management API token (returned to print once); the
/// previous one stops working at the next start of each instance. Not for `LATCH_ADMIN_TOKEN`
/// deployments, whose token is the operator's to change.
pub fn new_admin_token(config: &Config) -> anyhow::Result<String> {
    if config.admin_token.is_some() {
        anyhow::bail!(
            "LATCH_ADMIN_TOKEN is set: the management API token is that value; change it there"
        );
    }
    require_deployment(config)?;
    let path = config.data_dir.join("admin-token.sha256");
    let (token, t) = new_bootstrap_token();
    let fresh = config.data_dir.join("admin-token.sha256.new");
    let _ = std::fs::remove_file(&fresh);
    write_private(&fresh, STANDARD.encode(t.digest()).as_bytes())?;
    std::fs::rename(&fresh, &path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(token)
}

/// Brings everything up on the wall clock; any failure is an error naming what could not start.
pub async fn start(config: Config) -> anyhow::Result<Started> {
    start_with_clock(config, Arc::new(SystemClock)).await
}

/// [`start`] on `clock`: every use-case, and every cache (the store's, other issuers' keys and
/// documents, upstream metadata), reads the time from it, so tests move time instead of sleeping.
pub async fn start_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Started> {
    if config.database_url.is_some() && config.secret_key.is_none() {
        tracing::warn!(
            "LATCH_SECRET_KEY is not set: stored secrets are encrypted with a key in the data dir; \
             every instance sharing this database must use the same LATCH_SECRET_KEY"
        );
    }
    let store = open_store(&config).await?.with_clock(clock.clone());
    let sessions = open_sessions(&config).await?;
    ensure_database_connection(&store, &*clock).await?;
    ensure_admin_client(&store, &*clock, config.issuer_str()).await?;
    let new_admin_password =
        ensure_admin_user(&store, &*clock, config.admin_password.as_deref()).await?;
    let (token, new_admin_token) = admin_token(&config)?;
    let store: Arc<dyn Store> = Arc::new(store);
    let keys = Arc::new(
        latch_jose::KeyRing::load_current(store.clone(), clock.clone())
            .await
            .map_err(|e| anyhow::anyhow!("signing keys: {e}"))?,
    );
    // Next keys are published before they sign, not before Latch serves: a first start
    // generates them after it is up (an RSA key is most of a first start's time).
    tokio::spawn({
        let keys = keys.clone();
        async move {
            if let Err(e) = keys.publish_missing_next_keys().await {
                tracing::warn!(error = %e, "next signing keys not generated; a rotation will make them");
            }
        }
    });
    let saml_keys = Arc::new(
        latch_saml::keys::IdpKeys::load(store.clone(), config.issuer.host_str().unwrap_or("latch"))
            .await
            .map_err(|e| anyhow::anyhow!("SAML signing keys: {e}"))?,
    );
    let backchannel = Arc::new(latch_backchannel::Backchannel::new(
        store.clone(),
        clock.clone(),
        keys.clone(),
        config.issuer_str().to_owned(),
        latch_backchannel::Settings {
            retry_for: time::Duration::seconds(config.backchannel_retry_for.as_secs() as i64),
            outbound: config.outbound_policy(),
            ..Default::default()
        },
    ));
    let sealer = Arc::new(latch_jose::TokenSealer::derive(&master_key(&config)?));
    // Every outbound request goes through the one policy (and the body cap) of `Outbound`.
    let outbound = |secs| {
        latch_http::client::Outbound::new(
            config.outbound_policy(),
            std::time::Duration::from_secs(secs),
        )
    };
    let remote = Arc::new(latch_remote::RemoteKeys::new(
        Arc::new(outbound(5)),
        clock.clone(),
    ));
    let upstream = Arc::new(latch_federation::Upstream {
        oidc: latch_federation::OidcConnector::new(
            outbound(10),
            remote.clone(),
            clock.clone(),
            Arc::new(latch_jose::TokenSealer::derive_for(
                &master_key(&config)?,
                latch_federation::oidc::UPSTREAM_TOKEN_KEY_INFO,
            )),
        ),
        saml: latch_federation::SamlConnector::new(
            outbound(10),
            sessions.clone(),
            clock.clone(),
            saml_keys.clone(),
        ),
    });
    let shed = crate::shed::Shed::new(config.max_concurrent_requests);
    Ok(Started {
        state: AppState {
            config: Arc::new(config),
            store,
            sessions,
            clock,
            admin_token: Some(token),
            backchannel,
            upstream_logout: upstream.clone(),
            upstream,
            sealer,
            remote,
            keys,
            saml_keys,
            scrape: Default::default(),
            shed,
        },
        new_admin_token,
        new_admin_password,
    })
}
