//! What every relational store backend must do. Each check builds its own entities, so checks run
//! in parallel on one database. `store_conformance_tests!(make)` turns them into `#[test]`s.

use latch_core::model::*;
use latch_core::store::Store;
use latch_core::*;
use time::Duration;

use crate::fixtures::{self, now};

/// Expands to one `#[tokio::test]` per check, each calling `$make(test_name).await` for an
/// `Option<StoreHarness>` (`None` = backend not configured, skipped loudly by `$make`).
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:path) => {
        $crate::__conformance_tests!(store_conformance, store, $make;
            connections_round_trip, connection_name_conflict_changes_nothing, connection_secrets_round_trip,
            clients_round_trip, client_delete_unlinks_connections, missing_rows,
            users_and_identities, user_search_and_paging, refresh_token_rotation_and_revocation,
            signing_keys_round_trip, logs_filter_newest_first, outbox_claims_are_exclusive,
            outbox_lease_expiry_and_outcomes, logout_terminate_records_before_deleting,
            client_grants_round_trip
        );
    };
}

/// Expands to one `#[tokio::test]` per session check.
#[macro_export]
macro_rules! session_conformance_tests {
    ($make:path) => {
        $crate::__conformance_tests!(session_conformance, sessions, $make;
            insert_find_and_expiry, touch_moves_idle_not_absolute, clients_join_once,
            user_index_lists_only_live_sessions, end_one_session, end_all_sessions_of_user,
            end_all_is_atomic_under_concurrency, codes_are_single_use, a_session_and_its_first_code_together, login_transactions_are_single_use,
            remember_once_guards_replay, upstream_session_round_trip, upstream_sid_finds_its_user,
            purge_drops_only_expired,
            rate_counters_count_per_window
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($module:ident, $field:ident, $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(h) = $make(stringify!($name)).await else { return };
                $crate::$module::$name(&*h.$field).await;
            }
        )*
    };
}

pub async fn connections_round_trip(s: &dyn Store) {
    let client = fixtures::client();
    s.insert_client(&client).await.unwrap();
    let mut c = fixtures::connection(Strategy::Okta);
    c.enabled_clients = vec![client.client_id.clone()];
    s.insert_connection(&c).await.unwrap();

    assert_eq!(s.get_connection(&c.id).await.unwrap(), c);
    assert_eq!(
        s.find_connection_by_name(&c.name).await.unwrap().as_ref(),
        Some(&c)
    );
    assert!(s.list_connections().await.unwrap().contains(&c));

    let mut updated = c.clone();
    updated.name = ConnectionName::new(format!("{}-renamed", c.name));
    updated
        .options
        .insert("domain".into(), "other.okta.com".into());
    updated.enabled_clients.clear();
    updated.updated_at = now() + Duration::seconds(1);
    s.update_connection(&updated).await.unwrap();
    assert_eq!(s.get_connection(&c.id).await.unwrap(), updated);
    assert!(s.find_connection_by_name(&c.name).await.unwrap().is_none());

    s.delete_connection(&c.id).await.unwrap();
    assert!(matches!(
        s.get_connection(&c.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.delete_connection(&c.id).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn connection_name_conflict_changes_nothing(s: &dyn Store) {
    let a = fixtures::connection(Strategy::Oidc);
    s.insert_connection(&a).await.unwrap();
    let mut b = fixtures::connection(Strategy::Samlp);
    b.name = a.name.clone();
    let err = s.insert_connection(&b).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { field: "name", .. }),
        "{err:?}"
    );
    assert!(matches!(
        s.get_connection(&b.id).await,
        Err(StoreError::NotFound { .. })
    ));

    // Renaming onto a taken name fails too, and leaves the row as it was.
    let c = fixtures::connection(Strategy::Oidc);
    s.insert_connection(&c).await.unwrap();
    let mut clash = c.clone();
    clash.name = a.name.clone();
    assert!(matches!(
        s.update_connection(&clash).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(s.get_connection(&c.id).await.unwrap(), c);
}

pub async fn connection_secrets_round_trip(s: &dyn Store) {
    let mut c = fixtures::connection(Strategy::Oidc);
    c.secrets
        .insert("client_secret".into(), SecretString::new("s3cr3t-ü-value"));
    s.insert_connection(&c).await.unwrap();
    let got = s.get_connection(&c.id).await.unwrap();
    assert_eq!(got.secrets["client_secret"].expose(), "s3cr3t-ü-value");
    let mut none = got.clone();
    none.secrets.clear();
    s.update_connection(&none).await.unwrap();
    assert!(s.get_connection(&c.id).await.unwrap().secrets.is_empty());
}

pub async fn clients_round_trip(s: &dyn Store) {
    let c = fixtures::client();
    s.insert_client(&c).await.unwrap();
    assert_eq!(s.get_client(&c.client_id).await.unwrap(), c);
    assert!(matches!(
        s.insert_client(&c).await,
        Err(StoreError::Conflict { .. })
    ));

    let mut u = c.clone();
    u.name = "Renamed".into();
    u.callbacks.push(fixtures::url("http://127.0.0.1:3000/cb"));
    u.grant_types = vec![GrantType::ClientCredentials];
    u.signing_alg = SigningAlg::EdDSA;
    u.app_type = AppType::NonInteractive;
    u.oidc_logout.backchannel_logout_urls.clear();
    u.secrets.push(ClientSecret {
        digest: TokenDigest::new(format!("second-{}", crate::env::unique())),
        created_at: now() + Duration::seconds(1),
    });
    s.update_client(&u).await.unwrap();
    assert_eq!(s.get_client(&c.client_id).await.unwrap(), u);
    assert!(s.list_clients().await.unwrap().contains(&u));

    s.delete_client(&c.client_id).await.unwrap();
    assert!(s.find_client(&c.client_id).await.unwrap().is_none());
}

pub async fn client_delete_unlinks_connections(s: &dyn Store) {
    let (a, b) = (fixtures::client(), fixtures::client());
    s.insert_client(&a).await.unwrap();
    s.insert_client(&b).await.unwrap();
    let mut c = fixtures::connection(Strategy::Auth0);
    c.enabled_clients = vec![a.client_id.clone(), b.client_id.clone()];
    c.enabled_clients.sort();
    s.insert_connection(&c).await.unwrap();
    s.delete_client(&a.client_id).await.unwrap();
    assert_eq!(
        s.get_connection(&c.id).await.unwrap().enabled_clients,
        vec![b.client_id.clone()]
    );

    // Enabling an unknown client is refused and changes nothing.
    let mut bad = fixtures::connection(Strategy::Auth0);
    bad.enabled_clients = vec![ClientId::new("no-such-client")];
    assert!(s.insert_connection(&bad).await.is_err());
    assert!(
        s.find_connection_by_name(&bad.name)
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn missing_rows(s: &dyn Store) {
    assert!(matches!(
        s.get_client(&ClientId::new("nope")).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(
        s.find_client(&ClientId::new("nope"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        s.get_user(&UserId::new("nope")).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.update_user(&fixtures::user()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.update_client(&fixtures::client()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.update_connection(&fixtures::connection(Strategy::Oidc))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.get_signing_key(&Kid::new("nope")).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.get_delivery(&DeliveryId::new("nope")).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(
        s.find_refresh_token(&TokenDigest::new("nope"))
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn users_and_identities(s: &dyn Store) {
    let conn = fixtures::connection(Strategy::Okta);
    s.insert_connection(&conn).await.unwrap();
    let mut u = fixtures::user();
    u.email = u.email.map(|e| e.to_lowercase());
    u.profile.insert("department".into(), "R&D".into());
    s.insert_user(&u).await.unwrap();
    assert_eq!(s.get_user(&u.user_id).await.unwrap(), u);
    assert!(matches!(
        s.insert_user(&u).await,
        Err(StoreError::Conflict { .. })
    ));

    let email = u.email.clone().unwrap();
    let by_email = s.find_users_by_email(&email.to_uppercase()).await.unwrap();
    assert_eq!(by_email, vec![u.clone()]);

    let i = fixtures::identity(&u, &conn);
    s.insert_identity(&i).await.unwrap();
    assert_eq!(
        s.find_identity(&conn.id, &i.issuer, &i.subject)
            .await
            .unwrap(),
        Some(i.clone())
    );
    assert!(
        s.find_identity(&conn.id, "https://other.example", &i.subject)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.find_identity_with_user(&conn.id, &i.issuer, &i.subject)
            .await
            .unwrap(),
        Some((i.clone(), u.clone()))
    );
    assert!(
        s.find_identity_with_user(&conn.id, &i.issuer, "nobody")
            .await
            .unwrap()
            .is_none()
    );
    let mut dup = i.clone();
    dup.user_id = fixtures::user().user_id;
    assert!(s.insert_identity(&dup).await.is_err());

    let mut i2 = i.clone();
    i2.password_hash = Some(SecretString::new("$argon2id$v=19$m=19456,t=2,p=1$x$y"));
    i2.updated_at = now() + Duration::seconds(2);
    s.update_identity(&i2).await.unwrap();
    assert_eq!(
        s.list_identities(&u.user_id).await.unwrap(),
        vec![i2.clone()]
    );

    // A returning upstream user: both records in one write.
    let mut u3 = u.clone();
    u3.logins_count = 7;
    u3.name = Some("Renamed".into());
    let mut i3 = i2.clone();
    i3.profile = serde_json::Map::from_iter([("k".to_owned(), serde_json::json!("v"))]);
    i3.updated_at = now() + Duration::seconds(3);
    s.update_user_and_identity(&u3, &i3).await.unwrap();
    assert_eq!(s.get_user(&u.user_id).await.unwrap(), u3);
    assert_eq!(s.list_identities(&u.user_id).await.unwrap(), vec![i3]);
    // A missing identity fails the whole write: the user is not changed either.
    let mut ghost = i2.clone();
    ghost.subject = "no-such-subject".into();
    let mut u4 = u3.clone();
    u4.logins_count = 8;
    assert!(s.update_user_and_identity(&u4, &ghost).await.is_err());
    assert_eq!(s.get_user(&u.user_id).await.unwrap().logins_count, 7);

    let mut blocked = u.clone();
    blocked.blocked = true;
    blocked.logins_count = 3;
    blocked.last_login = Some(now());
    s.update_user(&blocked).await.unwrap();
    assert_eq!(s.get_user(&u.user_id).await.unwrap(), blocked);

    s.delete_user(&u.user_id).await.unwrap();
    assert!(s.find_user(&u.user_id).await.unwrap().is_none());
    assert!(
        s.find_identity(&conn.id, &i.issuer, &i.subject)
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn user_search_and_paging(s: &dyn Store) {
    let tag = crate::env::unique();
    let mut made = Vec::new();
    for n in 0..5 {
        let mut u = fixtures::user();
        u.name = Some(format!("Searchable {tag} {n}"));
        u.created_at = now() + Duration::seconds(n);
        s.insert_user(&u).await.unwrap();
        made.push(u);
    }
    // A literal `%` in the query does not match everything.
    let none = UserQuery {
        q: Some(format!("{tag}%")),
        page: 0,
        per_page: 50,
    };
    assert!(s.list_users(&none).await.unwrap().is_empty());
    let q = |page| UserQuery {
        q: Some(format!("searchable {}", tag.to_uppercase())),
        page,
        per_page: 2,
    };
    let p0 = s.list_users(&q(0)).await.unwrap();
    let p1 = s.list_users(&q(1)).await.unwrap();
    let p2 = s.list_users(&q(2)).await.unwrap();
    assert_eq!((p0.len(), p1.len(), p2.len()), (2, 2, 1));
    // Newest first.
    assert_eq!(p0[0].user_id, made[4].user_id);
    assert_eq!(p2[0].user_id, made[0].user_id);
}

pub async fn refresh_token_rotation_and_revocation(s: &dyn Store) {
    let (u, c) = (fixtures::user(), fixtures::client());
    s.insert_user(&u).await.unwrap();
    s.insert_client(&c).await.unwrap();
    let sid = SessionId::new(format!("sess-{}", crate::env::unique()));
    let bound = fixtures::refresh_token(&u, &c, Some(&sid), false);
    let offline = fixtures::refresh_token(&u, &c, Some(&sid), true);
    let other = fixtures::refresh_token(&u, &c, None, false);
    for t in [&bound, &offline, &other] {
        s.insert_refresh_token(t).await.unwrap();
    }
    assert_eq!(
        s.find_refresh_token(&bound.digest).await.unwrap().as_ref(),
        Some(&bound)
    );
    assert!(s.insert_refresh_token(&bound).await.is_err());

    // Rotation succeeds once; the second attempt is reuse.
    assert!(
        s.mark_refresh_token_rotated(&other.id, now())
            .await
            .unwrap()
    );
    assert!(
        !s.mark_refresh_token_rotated(&other.id, now())
            .await
            .unwrap()
    );
    let mut next = fixtures::refresh_token(&u, &c, None, false);
    next.family_id = other.family_id.clone();
    s.insert_refresh_token(&next).await.unwrap();
    assert_eq!(s.list_family(&other.family_id).await.unwrap().len(), 2);

    // A plain logout spares the offline grant.
    let scope = RevokeScope::Session {
        session_id: sid.clone(),
        include_offline: false,
    };
    let revoked = s.revoke_refresh_tokens(&scope, now()).await.unwrap();
    assert_eq!(
        revoked.iter().map(|t| &t.id).collect::<Vec<_>>(),
        vec![&bound.id]
    );
    assert!(revoked[0].revoked_at.is_some());
    assert!(
        s.revoke_refresh_tokens(&scope, now())
            .await
            .unwrap()
            .is_empty()
    );
    let live: Vec<_> = s
        .list_user_refresh_tokens(&u.user_id, now())
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(live.len(), 2);
    assert!(live.contains(&offline.id) && live.contains(&next.id));

    // Reuse revokes the family.
    let fam = s
        .revoke_refresh_tokens(&RevokeScope::Family(other.family_id.clone()), now())
        .await
        .unwrap();
    assert_eq!(fam.len(), 2);
    assert!(!s.mark_refresh_token_rotated(&next.id, now()).await.unwrap());

    // The user-wide revocation takes the offline one too.
    let all = s
        .revoke_refresh_tokens(&RevokeScope::User(u.user_id.clone()), now())
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|t| &t.id).collect::<Vec<_>>(),
        vec![&offline.id]
    );
    assert!(
        s.list_user_refresh_tokens(&u.user_id, now())
            .await
            .unwrap()
            .is_empty()
    );

    // An expired token cannot be rotated.
    let mut old = fixtures::refresh_token(&u, &c, None, false);
    old.expires_at = now() - Duration::seconds(1);
    s.insert_refresh_token(&old).await.unwrap();
    assert!(!s.mark_refresh_token_rotated(&old.id, now()).await.unwrap());
}

pub async fn signing_keys_round_trip(s: &dyn Store) {
    let u = crate::env::unique();
    let k = SigningKey {
        kid: Kid::new(format!("kid-{u}")),
        alg: SigningAlg::ES256,
        state: KeyState::Next,
        private_pem: SecretString::new(
            "-----BEGIN PRIVATE KEY-----\nMIG...\n-----END PRIVATE KEY-----\n",
        ),
        public_jwk: serde_json::json!({"kty": "EC", "crv": "P-256", "kid": format!("kid-{u}")}),
        created_at: now(),
        updated_at: now(),
        publish_until: None,
    };
    s.insert_signing_key(&k).await.unwrap();
    assert_eq!(s.get_signing_key(&k.kid).await.unwrap(), k);
    let mut cur = k.clone();
    cur.state = KeyState::Previous;
    cur.publish_until = Some(now() + Duration::hours(10));
    s.update_signing_key(&cur).await.unwrap();
    assert!(s.list_signing_keys().await.unwrap().contains(&cur));
    assert!(s.insert_signing_key(&k).await.is_err());
}

pub async fn logs_filter_newest_first(s: &dyn Store) {
    let tag = crate::env::unique();
    let user = UserId::new(format!("auth0|{tag}"));
    let base = now();
    let mut ids = Vec::new();
    for n in 0..4i64 {
        let e = LogEvent {
            log_id: LogId::new(format!("log-{tag}-{n}")),
            date: base + Duration::seconds(n),
            event_type: if n % 2 == 0 { "s".into() } else { "slo".into() },
            description: format!("event {n}"),
            user_id: Some(user.clone()),
            client_id: Some(ClientId::new(format!("c-{tag}"))),
            connection: Some(ConnectionName::new(format!("conn-{tag}"))),
            ip: Some("127.0.0.1".into()),
            details: serde_json::json!({"n": n}),
        };
        s.insert_log(&e).await.unwrap();
        ids.push(e);
    }
    let mine = LogQuery {
        user_id: Some(user.clone()),
        per_page: 10,
        ..Default::default()
    };
    let all = s.list_logs(&mine).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.log_id.as_str()).collect::<Vec<_>>(),
        vec![
            ids[3].log_id.as_str(),
            ids[2].log_id.as_str(),
            ids[1].log_id.as_str(),
            ids[0].log_id.as_str()
        ]
    );
    assert_eq!(all[0], ids[3]);
    let logins = s
        .list_logs(&LogQuery {
            event_type: Some("s".into()),
            ..mine.clone()
        })
        .await
        .unwrap();
    assert_eq!(logins.len(), 2);
    let window = s
        .list_logs(&LogQuery {
            from: Some(base + Duration::seconds(1)),
            to: Some(base + Duration::seconds(2)),
            ..mine.clone()
        })
        .await
        .unwrap();
    assert_eq!(window.len(), 2);
    let by_conn = s
        .list_logs(&LogQuery {
            connection: Some(ConnectionName::new(format!("conn-{tag}"))),
            per_page: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_conn.len(), 3);
    let by_client = s
        .list_logs(&LogQuery {
            client_id: Some(ClientId::new(format!("c-{tag}"))),
            page: 1,
            per_page: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_client.len(), 1);
    let one = s
        .list_logs(&LogQuery {
            log_id: Some(by_client[0].log_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(one, by_client);
}

fn delivery(tag: &str, n: usize) -> Delivery {
    let now = now();
    Delivery {
        id: DeliveryId::new(format!("dlv-{tag}-{n:04}")),
        client_id: ClientId::new(format!("c-{tag}")),
        target: fixtures::url("http://127.0.0.1:9/backchannel"),
        notice: LogoutNotice {
            sub: Some(UserId::new("auth0|x")),
            sid: Some(Sid::new("sid-x")),
            initiator: LogoutInitiator::RpLogout,
        },
        jti: Jti::new(format!("jti-{tag}-{n}")),
        state: DeliveryState::Pending,
        attempts: 0,
        created_at: now,
        next_attempt_at: now - Duration::days(3650) + Duration::milliseconds(n as i64),
        locked_until: None,
        last_error: None,
        finished_at: None,
    }
}

pub async fn outbox_claims_are_exclusive(s: &dyn Store) {
    // Deliveries due long ago, so they sort before anything other tests leave pending.
    let tag = crate::env::unique();
    let ds: Vec<_> = (0..20).map(|n| delivery(&tag, n)).collect();
    s.insert_deliveries(&ds).await.unwrap();
    assert_eq!(s.get_delivery(&ds[0].id).await.unwrap(), ds[0]);
    let lease = now() + Duration::minutes(1);
    let (a, b) = tokio::join!(
        s.claim_deliveries(now(), lease, 10),
        s.claim_deliveries(now(), lease, 10)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut mine: Vec<_> = a
        .iter()
        .chain(b.iter())
        .filter(|d| d.id.as_str().contains(&tag))
        .map(|d| d.id.clone())
        .collect();
    let total = mine.len();
    mine.sort();
    mine.dedup();
    assert_eq!(mine.len(), total, "a delivery was claimed twice");
    assert!(a.iter().all(|d| d.locked_until.is_some()));
}

pub async fn outbox_lease_expiry_and_outcomes(s: &dyn Store) {
    let tag = crate::env::unique();
    let d = delivery(&tag, 0);
    s.insert_deliveries(std::slice::from_ref(&d)).await.unwrap();
    // All or nothing: a batch with a duplicate id inserts nothing.
    let dup = vec![delivery(&tag, 1), d.clone()];
    assert!(s.insert_deliveries(&dup).await.is_err());
    assert!(s.get_delivery(&dup[0].id).await.is_err());

    let t0 = now();
    let lease = t0 + Duration::seconds(30);
    // One delivery can be claimed by id, once, while its lease lives.
    let single = delivery(&tag, 7);
    s.insert_deliveries(std::slice::from_ref(&single))
        .await
        .unwrap();
    assert!(
        s.claim_delivery(&single.id, t0, lease)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.claim_delivery(&single.id, t0, lease)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.claim_delivery(
            &single.id,
            lease + Duration::seconds(1),
            lease + Duration::seconds(30)
        )
        .await
        .unwrap()
        .is_some()
    );
    let claimed_now = |v: Vec<Delivery>| v.into_iter().any(|x| x.id == d.id);
    assert!(claimed_now(
        s.claim_deliveries(t0, lease, 1000).await.unwrap()
    ));
    assert!(!claimed_now(
        s.claim_deliveries(t0, lease, 1000).await.unwrap()
    ));
    // A lease whose holder died runs out; another worker takes the delivery.
    let later = t0 + Duration::seconds(31);
    let taken = s
        .claim_deliveries(later, later + Duration::seconds(30), 1000)
        .await
        .unwrap();
    let mut mine = taken
        .into_iter()
        .find(|x| x.id == d.id)
        .expect("re-claimed after lease expiry");

    mine.attempts += 1;
    mine.next_attempt_at = later + Duration::seconds(5);
    mine.last_error = Some("connection refused".into());
    s.record_attempt(&mine).await.unwrap();
    let stored = s.get_delivery(&d.id).await.unwrap();
    assert_eq!(stored.attempts, 1);
    assert_eq!(stored.locked_until, None);
    assert!(!claimed_now(
        s.claim_deliveries(later, later + Duration::seconds(30), 1000)
            .await
            .unwrap()
    ));
    let due = later + Duration::seconds(6);
    let mut again = s
        .claim_deliveries(due, due + Duration::seconds(30), 1000)
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.id == d.id)
        .expect("due again after backoff");
    again.state = DeliveryState::Delivered;
    again.finished_at = Some(due);
    // Recorded in a batch with another delivery.
    let mut other = delivery(&tag, 9);
    s.insert_deliveries(std::slice::from_ref(&other))
        .await
        .unwrap();
    other.state = DeliveryState::Failed;
    other.attempts = 1;
    other.last_error = Some("HTTP 400".into());
    s.record_attempts(&[again.clone(), other.clone()])
        .await
        .unwrap();
    assert_eq!(
        s.get_delivery(&other.id).await.unwrap().state,
        DeliveryState::Failed
    );
    let far = due + Duration::days(1);
    assert!(!claimed_now(
        s.claim_deliveries(far, far, 1000).await.unwrap()
    ));
    assert_eq!(
        s.get_delivery(&d.id).await.unwrap().state,
        DeliveryState::Delivered
    );
    assert!(
        s.list_deliveries(Some(DeliveryState::Delivered), 1000)
            .await
            .unwrap()
            .iter()
            .any(|x| x.id == d.id)
    );
}

/// The logout use-case against a real store and an in-memory session double: deliveries are
/// recorded, sessions end, tokens are revoked per policy.
pub async fn logout_terminate_records_before_deleting(s: &dyn Store) {
    use latch_core::logout::*;
    use latch_core::session::SessionStore;

    let (u, app, quiet) = (fixtures::user(), fixtures::client(), {
        let mut c = fixtures::client();
        c.oidc_logout.backchannel_logout_urls.clear();
        c
    });
    let holder = fixtures::client();
    s.insert_user(&u).await.unwrap();
    for c in [&app, &quiet, &holder] {
        s.insert_client(c).await.unwrap();
    }
    let sessions = crate::session_conformance::MemorySessions::default();
    let mut one = fixtures::session(&u.user_id);
    one.clients = vec![
        fixtures::session_client(app.client_id.as_str()),
        fixtures::session_client(quiet.client_id.as_str()),
    ];
    let two = fixtures::session(&u.user_id);
    sessions.insert_session(&one).await.unwrap();
    sessions.insert_session(&two).await.unwrap();
    let bound = fixtures::refresh_token(&u, &app, Some(&one.id), false);
    let offline = fixtures::refresh_token(&u, &app, Some(&one.id), true);
    let held = fixtures::refresh_token(&u, &holder, None, true);
    for t in [&bound, &offline, &held] {
        s.insert_refresh_token(t).await.unwrap();
    }

    // A plain logout of one session: one delivery (only `app` has a back-channel URL).
    let req = Terminate {
        target: Target::Session(one.id.clone()),
        tokens: TokenPolicy::SessionBound,
        initiator: LogoutInitiator::RpLogout,
        reserved_until: None,
    };
    let out = terminate(s, &sessions, &latch_core::SystemClock, &req)
        .await
        .unwrap();
    assert_eq!(out.sessions.len(), 1);
    assert_eq!(out.deliveries.len(), 1);
    assert_eq!(
        out.deliveries[0].notice.sid.as_ref(),
        Some(&one.clients[0].sid)
    );
    assert_eq!(
        s.get_delivery(&out.deliveries[0].id).await.unwrap().state,
        DeliveryState::Pending
    );
    assert_eq!(
        out.revoked_tokens.iter().map(|t| &t.id).collect::<Vec<_>>(),
        vec![&bound.id]
    );
    assert!(
        sessions
            .find_session(&one.id, now())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        sessions
            .find_session(&two.id, now())
            .await
            .unwrap()
            .is_some()
    );

    // Everything of the user: the other session ends, every token dies, the token holder is told.
    let req = Terminate {
        target: Target::User(u.user_id.clone()),
        tokens: TokenPolicy::AllOfUser,
        initiator: LogoutInitiator::SessionRevoked,
        reserved_until: None,
    };
    let out = terminate(s, &sessions, &latch_core::SystemClock, &req)
        .await
        .unwrap();
    assert_eq!(
        out.sessions.iter().map(|x| &x.id).collect::<Vec<_>>(),
        vec![&two.id]
    );
    let mut revoked: Vec<_> = out.revoked_tokens.iter().map(|t| t.id.clone()).collect();
    revoked.sort();
    let mut want = vec![offline.id.clone(), held.id.clone()];
    want.sort();
    assert_eq!(revoked, want);
    // `app` holds an offline token too: both token holders get a `sub`-only logout token.
    let mut told: Vec<_> = out
        .deliveries
        .iter()
        .map(|d| (d.client_id.clone(), d.notice.sid.clone()))
        .collect();
    told.sort();
    let mut expect = vec![
        (app.client_id.clone(), None),
        (holder.client_id.clone(), None),
    ];
    expect.sort();
    assert_eq!(told, expect);
}

pub async fn client_grants_round_trip(s: &dyn Store) {
    let c = fixtures::client();
    s.insert_client(&c).await.unwrap();
    let g = ClientGrant {
        id: format!("cgr_{}", crate::env::unique()),
        client_id: c.client_id.clone(),
        audience: "https://latch.example.com/api/v2/".into(),
        scope: vec!["read:users".into(), "update:users".into()],
        created_at: now(),
    };
    s.insert_client_grant(&g).await.unwrap();
    assert_eq!(
        s.find_client_grant(&c.client_id, &g.audience)
            .await
            .unwrap(),
        Some(g.clone())
    );
    assert!(
        s.find_client_grant(&c.client_id, "https://other/")
            .await
            .unwrap()
            .is_none()
    );
    let dup = ClientGrant {
        id: format!("cgr_{}", crate::env::unique()),
        ..g.clone()
    };
    assert!(matches!(
        s.insert_client_grant(&dup).await,
        Err(StoreError::Conflict { .. })
    ));
    let mut narrower = g.clone();
    narrower.scope = vec!["read:users".into()];
    s.update_client_grant(&narrower).await.unwrap();
    assert!(s.list_client_grants().await.unwrap().contains(&narrower));
    // Deleting the client takes its grants along.
    s.delete_client(&c.client_id).await.unwrap();
    assert!(
        s.find_client_grant(&c.client_id, &g.audience)
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        s.delete_client_grant(&g.id).await,
        Err(StoreError::NotFound { .. })
    ));
}
