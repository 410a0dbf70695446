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
            clients_round_trip, client_delete_unlinks_connections, clients_taking_gtr_are_noticed, missing_rows,
            users_and_identities, users_and_identities_are_inserted_together, blocking_writes_only_a_change,
            user_search_and_paging, user_count_matches_the_search, refresh_token_rotation_and_revocation,
            refresh_tokens_rotate_in_one_step, refresh_tokens_rotate_concurrently,
            refresh_tokens_are_found_concurrently, user_reads_are_answered_concurrently,
            grants_are_revoked_with_their_tokens,
            signing_keys_round_trip, logs_filter_newest_first, log_count_matches_the_filters, outbox_claims_are_exclusive,
            outbox_lease_expiry_and_outcomes, outbox_kind_round_trips, outbox_retry_now, outbox_listed_by_user_and_client, outbox_pending_count_is_bounded, logs_purge_in_bounded_batches,
            outbox_purge_spares_pending_deliveries, client_grants_round_trip,
            scim_config_round_trip, scim_tokens_round_trip, scim_users_insert_and_uniqueness,
            scim_users_lookups_and_paging, scim_record_attaches_to_an_existing_user, scim_user_updates_check_the_version,
            scim_identity_is_claimed_once, scim_rows_go_with_their_user_and_connection,
            log_streams_round_trip, log_stream_queues_are_leased_in_order,
            log_stream_queues_purge_in_bounded_batches, log_stream_acks_only_what_was_sent,
            log_stream_outcomes_are_fenced_by_the_lease
        );
        $crate::__conformance_tests_owned!(store_conformance, store, $make;
            logout_records_before_deleting, logout_targets_end_what_they_name, user_use_cases
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
            remember_once_guards_replay, upstream_name_id_finds_its_user, upstream_session_round_trip, upstream_sid_finds_its_user,
            purge_drops_only_expired, expired_sessions_wait_for_the_sweeper,
            rate_counters_count_per_window,
            throttle_delays_double_after_free_failures, throttle_wait_changes_nothing,
            throttle_failures_leak_and_clear, throttle_is_atomic_under_concurrency
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn session_secret_is_not_at_rest() {
            let Some(h) = $make("session_secret_is_not_at_rest").await else { return };
            $crate::session_conformance::session_secret_is_not_at_rest(&h).await;
        }
    };
}

/// Like `__conformance_tests`, for checks that take the backend as an `Arc` (the Logout service
/// holds its store).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests_owned {
    ($module:ident, $field:ident, $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(h) = $make(stringify!($name)).await else { return };
                $crate::$module::$name(h.$field.clone()).await;
            }
        )*
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

/// Whether any app takes GTR follows this store's own client writes at once (no other check
/// makes such an app).
pub async fn clients_taking_gtr_are_noticed(s: &dyn Store) {
    assert!(!s.any_client_takes_gtr().await.unwrap());
    let mut c = fixtures::client();
    s.insert_client(&c).await.unwrap();
    assert!(!s.any_client_takes_gtr().await.unwrap());
    c.global_token_revocation = Some(GtrTarget {
        endpoint: url::Url::parse("https://app.example.com/gtr").unwrap(),
        subject_format: GtrSubjectFormat::IssSub,
    });
    s.update_client(&c).await.unwrap();
    assert!(s.any_client_takes_gtr().await.unwrap());
    s.delete_client(&c.client_id).await.unwrap();
    assert!(!s.any_client_takes_gtr().await.unwrap());
    let mut d = fixtures::client();
    d.global_token_revocation = c.global_token_revocation.clone();
    s.insert_client(&d).await.unwrap();
    assert!(s.any_client_takes_gtr().await.unwrap());
    s.delete_client(&d.client_id).await.unwrap();
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

/// `count_users` counts what `list_users` finds over every page, whatever the page asked.
pub async fn user_count_matches_the_search(s: &dyn Store) {
    let tag = crate::env::unique();
    for n in 0..3 {
        let mut u = fixtures::user();
        u.name = Some(format!("Countable {tag} {n}"));
        s.insert_user(&u).await.unwrap();
    }
    let q = |text: String, page| UserQuery {
        q: Some(text),
        page,
        per_page: 2,
    };
    let text = format!("countable {}", tag.to_uppercase());
    assert_eq!(s.count_users(&q(text.clone(), 0)).await.unwrap(), 3);
    assert_eq!(s.count_users(&q(text.clone(), 7)).await.unwrap(), 3);
    assert_eq!(s.count_users(&q(format!("{text} 1"), 0)).await.unwrap(), 1);
    // The same escaping as the search: a literal `%` matches nothing here.
    assert_eq!(s.count_users(&q(format!("{tag}%"), 0)).await.unwrap(), 0);
    // No search: every user, at least these three.
    assert!(s.count_users(&UserQuery::default()).await.unwrap() >= 3);
}

/// The refresh grant's two store steps: the token read with its user, then the rotation that
/// stores the successor only when it spends the old token.
pub async fn refresh_tokens_rotate_in_one_step(s: &dyn Store) {
    let (u, c) = (fixtures::user(), fixtures::client());
    s.insert_user(&u).await.unwrap();
    s.insert_client(&c).await.unwrap();
    let old = fixtures::refresh_token(&u, &c, None, false);
    s.insert_grant(&fixtures::grant_of(&old), Some(&old))
        .await
        .unwrap();
    assert_eq!(
        s.find_refresh_token_with_user(&old.digest).await.unwrap(),
        Some((old.clone(), Some(u.clone())))
    );
    assert_eq!(
        s.find_refresh_token_with_user(&TokenDigest::new("nope"))
            .await
            .unwrap(),
        None
    );

    let mut next = fixtures::refresh_token(&u, &c, None, false);
    next.family_id = old.family_id.clone();
    assert!(s.rotate_refresh_token(&old.id, &next, now()).await.unwrap());
    let (spent, _) = s
        .find_refresh_token_with_user(&old.digest)
        .await
        .unwrap()
        .unwrap();
    assert!(spent.rotated_at.is_some());
    assert_eq!(
        s.find_refresh_token(&next.digest).await.unwrap().as_ref(),
        Some(&next)
    );
    // The second rotation of the same token writes nothing: its successor is not stored.
    let mut loser = fixtures::refresh_token(&u, &c, None, false);
    loser.family_id = old.family_id.clone();
    assert!(
        !s.rotate_refresh_token(&old.id, &loser, now())
            .await
            .unwrap()
    );
    assert_eq!(s.find_refresh_token(&loser.digest).await.unwrap(), None);
    assert_eq!(s.list_family(&old.family_id).await.unwrap().len(), 2);

    // Neither an expired nor a revoked token rotates.
    let mut expired = fixtures::refresh_token(&u, &c, None, false);
    expired.expires_at = now() - time::Duration::seconds(1);
    s.insert_grant(&fixtures::grant_of(&expired), Some(&expired))
        .await
        .unwrap();
    let successor = fixtures::refresh_token(&u, &c, None, false);
    assert!(
        !s.rotate_refresh_token(&expired.id, &successor, now())
            .await
            .unwrap()
    );
    assert_eq!(s.find_refresh_token(&successor.digest).await.unwrap(), None);
    s.revoke_refresh_tokens(&RevokeScope::Family(next.family_id.clone()), now())
        .await
        .unwrap();
    let (revoked, _) = s
        .find_refresh_token_with_user(&next.digest)
        .await
        .unwrap()
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(
        !s.rotate_refresh_token(&next.id, &successor, now())
            .await
            .unwrap()
    );
    assert_eq!(s.find_refresh_token(&successor.digest).await.unwrap(), None);
}

/// Rotations arriving together (written in one batch where the adapter groups them) keep their
/// own outcomes: distinct live tokens all rotate, with a session-bound successor keeping its
/// session; of concurrent exchanges of one token exactly one wins; an expired token among them
/// rotates nothing, and a rotation that cannot be written (its successor's digest is taken) fails
/// alone and changes nothing.
pub async fn refresh_tokens_rotate_concurrently(s: &dyn Store) {
    let (u, c) = (fixtures::user(), fixtures::client());
    s.insert_user(&u).await.unwrap();
    s.insert_client(&c).await.unwrap();
    let session = SessionId::new(format!("sess-{}", crate::env::unique()));
    let mut olds = Vec::new();
    for i in 0..12 {
        let t = fixtures::refresh_token(&u, &c, (i % 2 == 0).then_some(&session), false);
        s.insert_grant(&fixtures::grant_of(&t), Some(&t))
            .await
            .unwrap();
        olds.push(t);
    }
    let mut expired = fixtures::refresh_token(&u, &c, None, false);
    expired.expires_at = now() - time::Duration::seconds(1);
    s.insert_grant(&fixtures::grant_of(&expired), Some(&expired))
        .await
        .unwrap();
    let successor_of = |old: &RefreshToken| {
        let mut n = fixtures::refresh_token(&u, &c, old.session_id.as_ref(), false);
        n.family_id = old.family_id.clone();
        n
    };
    // Each live token once, the first one four more times, and the expired one.
    let mut work: Vec<(RefreshToken, RefreshToken)> =
        olds.iter().map(|o| (o.clone(), successor_of(o))).collect();
    for _ in 0..4 {
        work.push((olds[0].clone(), successor_of(&olds[0])));
    }
    work.push((expired.clone(), successor_of(&expired)));
    let stuck = fixtures::refresh_token(&u, &c, None, false);
    s.insert_grant(&fixtures::grant_of(&stuck), Some(&stuck))
        .await
        .unwrap();
    let mut clash = successor_of(&stuck);
    clash.digest = olds[2].digest.clone();
    work.push((stuck.clone(), clash));
    let at = now();
    let outcomes = futures_util::future::join_all(
        work.iter()
            .map(|(old, new)| s.rotate_refresh_token(&old.id, new, at)),
    )
    .await;
    let mut outcomes = outcomes;
    let failed = outcomes.pop().unwrap();
    assert!(
        matches!(failed, Err(StoreError::Conflict { .. })),
        "{failed:?}"
    );
    let won: Vec<bool> = outcomes.into_iter().map(|r| r.unwrap()).collect();
    for (i, old) in olds.iter().enumerate().skip(1) {
        assert!(won[i], "token {i} rotates");
        let stored = s.find_refresh_token(&work[i].1.digest).await.unwrap();
        assert_eq!(stored.as_ref(), Some(&work[i].1));
        assert_eq!(stored.unwrap().session_id, old.session_id);
        let spent = s.find_refresh_token(&old.digest).await.unwrap().unwrap();
        assert!(spent.rotated_at.is_some());
    }
    // The first token: one of its five exchanges won, and only the winner's successor exists.
    let first: Vec<usize> = std::iter::once(0).chain(12..16).collect();
    let winners: Vec<usize> = first.iter().copied().filter(|&i| won[i]).collect();
    assert_eq!(winners.len(), 1, "one exchange of a token wins: {won:?}");
    for &i in &first {
        let stored = s.find_refresh_token(&work[i].1.digest).await.unwrap();
        assert_eq!(stored.is_some(), i == winners[0]);
    }
    assert_eq!(s.list_family(&olds[0].family_id).await.unwrap().len(), 2);
    // The expired token: refused, nothing stored.
    assert!(!won[16]);
    assert_eq!(
        s.find_refresh_token(&work[16].1.digest).await.unwrap(),
        None
    );
}

/// Lookups arriving together (read in one query where the adapter groups them) each get their
/// own token, with its user and its grant's revocation; an unknown digest among them is `None`.
pub async fn refresh_tokens_are_found_concurrently(s: &dyn Store) {
    let c = fixtures::client();
    s.insert_client(&c).await.unwrap();
    let mut tokens = Vec::new();
    for _ in 0..10 {
        let u = fixtures::user();
        s.insert_user(&u).await.unwrap();
        let t = fixtures::refresh_token(&u, &c, None, false);
        s.insert_grant(&fixtures::grant_of(&t), Some(&t))
            .await
            .unwrap();
        tokens.push((t, u));
    }
    s.revoke_refresh_tokens(&RevokeScope::Family(tokens[3].0.family_id.clone()), now())
        .await
        .unwrap();
    let unknown = TokenDigest::new(format!("rtd-unknown-{}", crate::env::unique()));
    let mut digests: Vec<TokenDigest> = tokens.iter().map(|(t, _)| t.digest.clone()).collect();
    digests.push(unknown);
    digests.push(tokens[5].0.digest.clone());
    let found =
        futures_util::future::join_all(digests.iter().map(|d| s.find_refresh_token_with_user(d)))
            .await;
    let found: Vec<_> = found.into_iter().map(|r| r.unwrap()).collect();
    for (i, (t, u)) in tokens.iter().enumerate() {
        let (got, user) = found[i].clone().unwrap();
        assert_eq!(got.id, t.id);
        assert_eq!(user.as_ref(), Some(u));
        assert_eq!(got.revoked_at.is_some(), i == 3, "token {i}");
    }
    assert_eq!(found[10], None);
    assert_eq!(
        found[11].as_ref().map(|(t, _)| &t.id),
        Some(&tokens[5].0.id)
    );
}

/// A user-wide logout's reads arriving together (read in one query per kind where the adapter
/// groups them) each get their own answer: the identity a subject names (none for another
/// issuer, or for a subject of another connection), the user's live tokens at that read's own
/// `now`, and a user's revocation only when they hold a live grant.
pub async fn user_reads_are_answered_concurrently(s: &dyn Store) {
    let (a, b) = (
        fixtures::connection(Strategy::Okta),
        fixtures::connection(Strategy::Okta),
    );
    s.insert_connection(&a).await.unwrap();
    s.insert_connection(&b).await.unwrap();
    let c = fixtures::client();
    s.insert_client(&c).await.unwrap();
    let mut people = Vec::new();
    for n in 0..6 {
        let u = fixtures::user();
        s.insert_user(&u).await.unwrap();
        let i = fixtures::identity(&u, if n % 2 == 0 { &a } else { &b });
        s.insert_identity(&i).await.unwrap();
        people.push((u, i));
    }
    // Users 0 and 1: a token expiring in one hour and one in 15 days; user 2: a grant without
    // tokens; users 3 to 5: nothing.
    let mut tokens = Vec::new();
    for (u, _) in &people[..2] {
        let mut soon = fixtures::refresh_token(u, &c, None, false);
        soon.expires_at = now() + Duration::hours(1);
        let later = fixtures::refresh_token(u, &c, None, true);
        for t in [&soon, &later] {
            s.insert_grant(&fixtures::grant_of(t), Some(t))
                .await
                .unwrap();
        }
        tokens.push((soon, later));
    }
    let mut bare = fixtures::grant_of(&fixtures::refresh_token(&people[2].0, &c, None, false));
    bare.expires_at = now() + Duration::hours(24);
    s.insert_grant(&bare, None).await.unwrap();

    let finds = futures_util::future::join_all(
        people
            .iter()
            .map(|(_, i)| s.find_identity_with_user(&i.connection_id, &i.issuer, &i.subject))
            .chain([
                // Another issuer; a subject of `b` asked of `a`.
                s.find_identity_with_user(&a.id, "https://other.example", &people[0].1.subject),
                s.find_identity_with_user(&a.id, &people[1].1.issuer, &people[1].1.subject),
            ]),
    );
    // User 0 read now and in two hours (its first token expired by then); user 1 now.
    let later = now() + Duration::hours(2);
    let lists = futures_util::future::join_all([
        s.list_user_refresh_tokens(&people[0].0.user_id, now()),
        s.list_user_refresh_tokens(&people[0].0.user_id, later),
        s.list_user_refresh_tokens(&people[1].0.user_id, now()),
        s.list_user_refresh_tokens(&people[3].0.user_id, now()),
    ]);
    let scopes: Vec<RevokeScope> = people[2..]
        .iter()
        .map(|(u, _)| RevokeScope::User(u.user_id.clone()))
        .collect();
    let revokes =
        futures_util::future::join_all(scopes.iter().map(|r| s.revoke_refresh_tokens(r, now())));
    let (finds, lists, revokes) = tokio::join!(finds, lists, revokes);

    let finds: Vec<_> = finds.into_iter().map(|r| r.unwrap()).collect();
    for (n, (u, i)) in people.iter().enumerate() {
        assert_eq!(finds[n], Some((i.clone(), u.clone())), "identity {n}");
    }
    assert_eq!(finds[6], None, "another issuer");
    assert_eq!(finds[7], None, "another connection");

    let ids = |r: &Result<Vec<RefreshToken>, StoreError>| -> Vec<RefreshTokenId> {
        r.as_ref().unwrap().iter().map(|t| t.id.clone()).collect()
    };
    let (soon0, later0) = &tokens[0];
    let (soon1, later1) = &tokens[1];
    let mut want = vec![soon0.id.clone(), later0.id.clone()];
    let mut got = ids(&lists[0]);
    want.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    got.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    assert_eq!(got, want, "user 0 now");
    assert_eq!(
        ids(&lists[1]),
        vec![later0.id.clone()],
        "user 0 in two hours"
    );
    let mut got = ids(&lists[2]);
    got.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    let mut want = vec![soon1.id.clone(), later1.id.clone()];
    want.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    assert_eq!(got, want, "user 1 now");
    assert!(ids(&lists[3]).is_empty(), "user 3 has none");

    for r in revokes {
        assert!(r.unwrap().is_empty(), "no refresh token among users 2 to 5");
    }
    assert!(
        s.find_grant(&bare.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some(),
        "user 2's grant without tokens was revoked"
    );
    // User 0's were not touched by the others' revocations.
    assert_eq!(
        s.list_user_refresh_tokens(&people[0].0.user_id, now())
            .await
            .unwrap()
            .len(),
        2
    );
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
        s.insert_grant(&fixtures::grant_of(t), Some(t))
            .await
            .unwrap();
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
    s.insert_grant(&fixtures::grant_of(&old), Some(&old))
        .await
        .unwrap();
    assert!(!s.mark_refresh_token_rotated(&old.id, now()).await.unwrap());
}

/// Every code exchange records a grant, with or without a refresh token; revocations end grants
/// and their tokens together, by the same scopes.
pub async fn grants_are_revoked_with_their_tokens(s: &dyn Store) {
    let (u, c) = (fixtures::user(), fixtures::client());
    s.insert_user(&u).await.unwrap();
    s.insert_client(&c).await.unwrap();
    let sid = SessionId::new(format!("sess-{}", crate::env::unique()));
    // A client without refresh tokens: a grant alone.
    let mut bare = fixtures::grant_of(&fixtures::refresh_token(&u, &c, Some(&sid), false));
    bare.expires_at = now() + Duration::hours(24);
    s.insert_grant(&bare, None).await.unwrap();
    assert_eq!(s.find_grant(&bare.id).await.unwrap().as_ref(), Some(&bare));
    assert!(s.insert_grant(&bare, None).await.is_err(), "ids are unique");
    assert_eq!(
        s.find_grant(&FamilyId::new("fam_missing")).await.unwrap(),
        None
    );
    // A refresh-token grant in the same session, and an offline one.
    let bound_rt = fixtures::refresh_token(&u, &c, Some(&sid), false);
    let offline_rt = fixtures::refresh_token(&u, &c, Some(&sid), true);
    for t in [&bound_rt, &offline_rt] {
        s.insert_grant(&fixtures::grant_of(t), Some(t))
            .await
            .unwrap();
    }

    // A plain logout of the session ends the session's grants, the bare one included.
    let scope = RevokeScope::Session {
        session_id: sid.clone(),
        include_offline: false,
    };
    let revoked = s.revoke_refresh_tokens(&scope, now()).await.unwrap();
    assert_eq!(
        revoked.iter().map(|t| &t.id).collect::<Vec<_>>(),
        vec![&bound_rt.id]
    );
    assert!(
        s.find_grant(&bare.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert!(
        s.find_grant(&bound_rt.family_id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    let offline = s.find_grant(&offline_rt.family_id).await.unwrap().unwrap();
    assert!(offline.is_live(now()));

    // A token that escaped its grant's revocation (rotated in concurrently) reads as revoked.
    let mut escaped = fixtures::refresh_token(&u, &c, Some(&sid), false);
    escaped.family_id = bound_rt.family_id.clone();
    s.insert_refresh_token(&escaped).await.unwrap();
    let found = s
        .find_refresh_token(&escaped.digest)
        .await
        .unwrap()
        .unwrap();
    assert!(!found.is_usable(now()));

    // Revoking a grant with no refresh token, by its id (an access token's `gid`).
    let mut lone = fixtures::grant_of(&fixtures::refresh_token(&u, &c, None, false));
    lone.expires_at = now() + Duration::hours(1);
    s.insert_grant(&lone, None).await.unwrap();
    assert!(
        s.revoke_refresh_tokens(&RevokeScope::Family(lone.id.clone()), now())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.find_grant(&lone.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );

    // User-wide: the offline grant and its token too.
    let all = s
        .revoke_refresh_tokens(&RevokeScope::User(u.user_id.clone()), now())
        .await
        .unwrap();
    let mut ids = all.iter().map(|t| &t.id).collect::<Vec<_>>();
    ids.sort();
    let mut want = vec![&offline_rt.id, &escaped.id];
    want.sort();
    assert_eq!(ids, want);
    assert!(
        s.find_grant(&offline_rt.family_id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );

    // A deleted user's grants go with them.
    let fresh = fixtures::grant_of(&fixtures::refresh_token(&u, &c, None, false));
    s.insert_grant(&fresh, None).await.unwrap();
    s.delete_user(&u.user_id).await.unwrap();
    assert_eq!(s.find_grant(&fresh.id).await.unwrap(), None);
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

    // A first key of an algorithm and state is stored once: the second is refused, another
    // state or algorithm is not.
    let first = |kid: &str, alg: SigningAlg, state: KeyState| SigningKey {
        kid: Kid::new(format!("{kid}-{u}")),
        alg,
        state,
        ..k.clone()
    };
    let a = first("a", SigningAlg::RS256, KeyState::Current);
    assert!(s.insert_signing_key_if_absent(&a).await.unwrap());
    assert!(
        !s.insert_signing_key_if_absent(&first("b", SigningAlg::RS256, KeyState::Current))
            .await
            .unwrap()
    );
    assert!(
        s.insert_signing_key_if_absent(&first("c", SigningAlg::RS256, KeyState::Next))
            .await
            .unwrap()
    );
    assert!(
        s.insert_signing_key_if_absent(&first("d", SigningAlg::EdDSA, KeyState::Current))
            .await
            .unwrap()
    );
    let current: Vec<_> = s
        .list_signing_keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|x| x.alg == SigningAlg::RS256 && x.state == KeyState::Current)
        .collect();
    assert_eq!(current, [a]);
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

/// `count_logs` counts what `list_logs` finds with the same filters over every page.
pub async fn log_count_matches_the_filters(s: &dyn Store) {
    let tag = crate::env::unique();
    let user = UserId::new(format!("auth0|count-{tag}"));
    let base = now();
    for n in 0..5i64 {
        s.insert_log(&LogEvent {
            log_id: LogId::new(format!("log-count-{tag}-{n}")),
            date: base + Duration::seconds(n),
            event_type: if n < 3 { "s".into() } else { "f".into() },
            description: format!("event {n}"),
            user_id: Some(user.clone()),
            client_id: Some(ClientId::new(format!("c-count-{tag}"))),
            connection: Some(ConnectionName::new(format!("conn-count-{tag}"))),
            ip: None,
            details: serde_json::json!({}),
        })
        .await
        .unwrap();
    }
    let mine = LogQuery {
        user_id: Some(user.clone()),
        page: 3,
        per_page: 2,
        ..Default::default()
    };
    // Counted right after recording: events still queued for the writer count too.
    assert_eq!(s.count_logs(&mine).await.unwrap(), 5);
    let check = |q: LogQuery, want: u64| async move {
        assert_eq!(s.count_logs(&q).await.unwrap(), want, "{q:?}");
        let mut listed = 0;
        for page in 0.. {
            let got = s
                .list_logs(&LogQuery { page, ..q.clone() })
                .await
                .unwrap()
                .len();
            if got == 0 {
                break;
            }
            listed += got as u64;
        }
        assert_eq!(listed, want, "{q:?}");
    };
    check(
        LogQuery {
            event_type: Some("f".into()),
            ..mine.clone()
        },
        2,
    )
    .await;
    check(
        LogQuery {
            from: Some(base + Duration::seconds(1)),
            to: Some(base + Duration::seconds(3)),
            ..mine.clone()
        },
        3,
    )
    .await;
    check(
        LogQuery {
            client_id: Some(ClientId::new(format!("c-count-{tag}"))),
            connection: Some(ConnectionName::new(format!("conn-count-{tag}"))),
            per_page: 100,
            ..Default::default()
        },
        5,
    )
    .await;
    check(
        LogQuery {
            log_id: Some(LogId::new(format!("log-count-{tag}-4"))),
            ..Default::default()
        },
        1,
    )
    .await;
    check(
        LogQuery {
            connection: Some(ConnectionName::new(format!("conn-none-{tag}"))),
            ..Default::default()
        },
        0,
    )
    .await;
}

fn delivery(tag: &str, n: usize) -> Delivery {
    let now = now();
    Delivery {
        id: DeliveryId::new(format!("dlv-{tag}-{n:04}")),
        kind: DeliveryKind::BackchannelLogout,
        client_id: ClientId::new(format!("c-{tag}")),
        target: fixtures::url("http://127.0.0.1:9/backchannel"),
        notice: LogoutNotice {
            sub: Some(UserId::new("auth0|x")),
            sid: Some(Sid::new("sid-x")),
            initiator: LogoutInitiator::RpLogout,
            email: None,
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
        s.list_deliveries(
            &latch_core::model::DeliveryQuery::in_state(DeliveryState::Delivered),
            1000
        )
        .await
        .unwrap()
        .iter()
        .any(|x| x.id == d.id)
    );
}

/// The pending count (the `latch_outbox_pending` gauge): every pending delivery, due or not,
/// leased or not, of any kind; no finished one; and no more than the limit asked.
pub async fn outbox_pending_count_is_bounded(s: &dyn Store) {
    let before = s.count_pending_deliveries(u64::MAX).await.unwrap();
    let tag = crate::env::unique();
    let mut ds: Vec<_> = (0..6).map(|n| delivery(&tag, n)).collect();
    ds[1].next_attempt_at = now() + Duration::hours(1);
    ds[2].locked_until = Some(now() + Duration::minutes(1));
    ds[3].kind = DeliveryKind::Gtr;
    s.insert_deliveries(&ds).await.unwrap();
    assert_eq!(
        s.count_pending_deliveries(u64::MAX).await.unwrap(),
        before + 6
    );
    let mut delivered = ds[4].clone();
    delivered.state = DeliveryState::Delivered;
    delivered.attempts = 1;
    delivered.finished_at = Some(now());
    let mut failed = ds[5].clone();
    failed.state = DeliveryState::Failed;
    failed.attempts = 1;
    failed.finished_at = Some(now());
    failed.last_error = Some("HTTP 400".into());
    s.record_attempts(&[delivered, failed]).await.unwrap();
    assert_eq!(
        s.count_pending_deliveries(u64::MAX).await.unwrap(),
        before + 4
    );
    assert_eq!(s.count_pending_deliveries(3).await.unwrap(), 3);
    assert_eq!(s.count_pending_deliveries(0).await.unwrap(), 0);
}

/// A delivery's kind is written with it (one row, and a batch: PostgreSQL's `COPY`) and read back
/// by every read: by id, a claim of due rows, a claim by id, after attempts are recorded (one,
/// and a batch), a retry, a listing.
pub async fn outbox_kind_round_trips(s: &dyn Store) {
    let tag = crate::env::unique();
    let kind = DeliveryKind::BackchannelLogout;
    let batch: Vec<_> = (0..3)
        .map(|n| Delivery {
            kind,
            ..delivery(&tag, n)
        })
        .collect();
    let single = Delivery {
        kind,
        ..delivery(&tag, 3)
    };
    s.insert_deliveries(&batch).await.unwrap();
    s.insert_deliveries(std::slice::from_ref(&single))
        .await
        .unwrap();
    for d in batch.iter().chain([&single]) {
        assert_eq!(s.get_delivery(&d.id).await.unwrap(), *d);
    }
    let t0 = now();
    let lease = t0 + Duration::minutes(1);
    let mut claimed: Vec<_> = s
        .claim_deliveries(t0, lease, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.id.as_str().contains(&tag))
        .collect();
    assert_eq!(claimed.len(), 4);
    assert!(claimed.iter().all(|d| d.kind == kind));
    for d in &mut claimed {
        d.attempts = 1;
        d.state = DeliveryState::Failed;
        d.finished_at = Some(t0);
    }
    s.record_attempts(&claimed[..3]).await.unwrap();
    s.record_attempt(&claimed[3]).await.unwrap();
    for d in &claimed {
        let stored = s.get_delivery(&d.id).await.unwrap();
        assert_eq!((stored.kind, stored.state), (kind, DeliveryState::Failed));
    }
    let retried = s
        .retry_delivery(
            &single.id,
            t0,
            &Jti::new(format!("jti-retry-{}", crate::env::unique())),
        )
        .await
        .unwrap()
        .expect("a failed delivery can be retried");
    assert_eq!(retried.kind, kind);
    let again = s
        .claim_delivery(&single.id, t0, lease)
        .await
        .unwrap()
        .expect("due again");
    assert_eq!(again.kind, kind);
    let listed = s
        .list_deliveries(
            &latch_core::model::DeliveryQuery::in_state(DeliveryState::Failed),
            1000,
        )
        .await
        .unwrap();
    let mine: Vec<_> = listed
        .iter()
        .filter(|d| d.id.as_str().contains(&tag))
        .collect();
    assert_eq!(mine.len(), 3);
    assert!(mine.iter().all(|d| d.kind == kind));
}

/// Deliveries are listed by user (the notice's `sub`), client and state together, newest first;
/// a GTR delivery's email travels with it.
pub async fn outbox_listed_by_user_and_client(s: &dyn Store) {
    let tag = crate::env::unique();
    let user = UserId::new(format!("auth0|{tag}"));
    let other = ClientId::new(format!("other-{tag}"));
    let mut ds: Vec<Delivery> = (0..4).map(|n| delivery(&tag, n)).collect();
    for (n, d) in ds.iter_mut().enumerate() {
        d.created_at += Duration::seconds(n as i64);
        if n < 3 {
            d.notice.sub = Some(user.clone());
        }
    }
    ds[2].client_id = other.clone();
    ds[1].kind = DeliveryKind::Gtr;
    ds[1].notice.sid = None;
    ds[1].notice.email = Some(format!("{tag}@example.com"));
    s.insert_deliveries(&ds).await.unwrap();
    let ids = |v: Vec<Delivery>| v.into_iter().map(|d| d.id).collect::<Vec<_>>();
    let mine = DeliveryQuery {
        user_id: Some(user.clone()),
        ..DeliveryQuery::default()
    };
    assert_eq!(
        ids(s.list_deliveries(&mine, 100).await.unwrap()),
        vec![ds[2].id.clone(), ds[1].id.clone(), ds[0].id.clone()]
    );
    let at_other = DeliveryQuery {
        client_id: Some(other),
        ..mine.clone()
    };
    assert_eq!(
        ids(s.list_deliveries(&at_other, 100).await.unwrap()),
        vec![ds[2].id.clone()]
    );
    let failed = DeliveryQuery {
        state: Some(DeliveryState::Failed),
        ..mine.clone()
    };
    assert!(s.list_deliveries(&failed, 100).await.unwrap().is_empty());
    assert_eq!(s.list_deliveries(&mine, 1).await.unwrap().len(), 1);
    assert_eq!(s.get_delivery(&ds[1].id).await.unwrap(), ds[1]);
}

/// An administrator's "retry now": a failed delivery, or a pending one nobody holds, is due at
/// once; a delivered one, or one a worker holds, is left alone.
pub async fn outbox_retry_now(s: &dyn Store) {
    let tag = crate::env::unique();
    let t0 = now();
    let in_a_minute = t0 + Duration::minutes(1);
    let claimed = |v: &[Delivery], id: &DeliveryId| v.iter().any(|x| &x.id == id);

    // Failed for good (a 4xx): nothing claims it, until it is retried.
    let mut failed = delivery(&tag, 0);
    s.insert_deliveries(std::slice::from_ref(&failed))
        .await
        .unwrap();
    failed.state = DeliveryState::Failed;
    failed.attempts = 3;
    failed.last_error = Some("HTTP 400".into());
    failed.finished_at = Some(t0);
    s.record_attempt(&failed).await.unwrap();
    assert!(!claimed(
        &s.claim_deliveries(t0, in_a_minute, 1000).await.unwrap(),
        &failed.id
    ));
    let later = t0 + Duration::seconds(5);
    let retried = s
        .retry_delivery(
            &failed.id,
            later,
            &Jti::new(format!("jti-retry-{}", crate::env::unique())),
        )
        .await
        .unwrap()
        .expect("a failed delivery can be retried");
    assert_eq!(retried.state, DeliveryState::Pending);
    assert_eq!(retried.next_attempt_at, later);
    assert_eq!(retried.finished_at, None);
    assert_eq!(retried.locked_until, None);
    assert_eq!(retried.attempts, 3, "attempts kept");
    assert_ne!(retried.jti, failed.jti, "a fresh token");
    assert!(retried.jti.as_str().starts_with("jti-retry-"));
    assert_eq!(s.get_delivery(&failed.id).await.unwrap(), retried);
    let mut taken = s
        .claim_deliveries(later, later + Duration::seconds(30), 1000)
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.id == failed.id)
        .expect("claimed once due");
    // …and a worker holds it now: a second retry changes nothing.
    assert_eq!(
        s.retry_delivery(
            &failed.id,
            later,
            &Jti::new(format!("jti-retry-{}", crate::env::unique()))
        )
        .await
        .unwrap(),
        None
    );
    assert!(
        s.get_delivery(&failed.id)
            .await
            .unwrap()
            .locked_until
            .is_some()
    );

    // Delivered: not retried.
    taken.state = DeliveryState::Delivered;
    taken.finished_at = Some(later);
    s.record_attempt(&taken).await.unwrap();
    assert_eq!(
        s.retry_delivery(
            &taken.id,
            later,
            &Jti::new(format!("jti-retry-{}", crate::env::unique()))
        )
        .await
        .unwrap(),
        None
    );
    assert_eq!(
        s.get_delivery(&taken.id).await.unwrap().state,
        DeliveryState::Delivered
    );

    // Pending, waiting out its backoff with no lease: due now.
    let mut waiting = delivery(&tag, 1);
    s.insert_deliveries(std::slice::from_ref(&waiting))
        .await
        .unwrap();
    waiting.attempts = 1;
    waiting.next_attempt_at = t0 + Duration::hours(1);
    s.record_attempt(&waiting).await.unwrap();
    assert!(!claimed(
        &s.claim_deliveries(t0, in_a_minute, 1000).await.unwrap(),
        &waiting.id
    ));
    let due = s
        .retry_delivery(
            &waiting.id,
            t0,
            &Jti::new(format!("jti-retry-{}", crate::env::unique())),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(due.next_attempt_at, t0);
    assert!(claimed(
        &s.claim_deliveries(t0, in_a_minute, 1000).await.unwrap(),
        &waiting.id
    ));

    // Unknown: an error, not a silent nothing.
    assert!(matches!(
        s.retry_delivery(
            &DeliveryId::new(format!("dlv-{tag}-none")),
            t0,
            &Jti::new("jti-none")
        )
        .await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Deletes batches until one comes back short, as the retention task does; the total.
async fn drain(purge: impl AsyncFn() -> u64, batch: u64) -> u64 {
    let mut total = 0;
    loop {
        let n = purge().await;
        assert!(n <= batch, "a batch is bounded: {n} > {batch}");
        total += n;
        if n < batch {
            return total;
        }
    }
}

/// Retention of the log: events dated before the cut go, in batches of at most `limit`; the
/// rest stay. Two instances purging at once delete each event once between them, without error.
pub async fn logs_purge_in_bounded_batches(s: &dyn Store) {
    let tag = crate::env::unique();
    let user = UserId::new(format!("auth0|{tag}"));
    // Far back (2001), so no other check's events are older.
    let cut = time::OffsetDateTime::from_unix_timestamp(1_000_000_000).unwrap();
    let event = |n: i64, date| LogEvent {
        user_id: Some(user.clone()),
        log_id: LogId::new(format!("log-{tag}-{n}")),
        ..LogEvent::new(date, "s", "retention")
    };
    for n in 0..25 {
        s.insert_log(&event(n, cut - Duration::seconds(n + 1)))
            .await
            .unwrap();
    }
    // At the cut, and after it: kept.
    s.insert_log(&event(100, cut)).await.unwrap();
    s.insert_log(&event(101, cut + Duration::days(1)))
        .await
        .unwrap();
    assert_eq!(s.purge_logs(cut, 10).await.unwrap(), 10);
    let (a, b) = tokio::join!(
        drain(async || s.purge_logs(cut, 4).await.unwrap(), 4),
        drain(async || s.purge_logs(cut, 4).await.unwrap(), 4),
    );
    assert_eq!(a + b, 15, "every old event deleted once");
    assert_eq!(s.purge_logs(cut, 10).await.unwrap(), 0);
    let left = s
        .list_logs(&LogQuery {
            user_id: Some(user.clone()),
            per_page: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        left.iter().map(|e| e.log_id.as_str()).collect::<Vec<_>>(),
        vec![format!("log-{tag}-101"), format!("log-{tag}-100")]
    );
}

/// Retention of the outbox: delivered and failed deliveries finished before the cut go, in
/// bounded batches; a pending one stays however old it is, and so does one finished later. Two
/// instances purging at once delete each delivery once between them.
pub async fn outbox_purge_spares_pending_deliveries(s: &dyn Store) {
    let tag = crate::env::unique();
    let cut = time::OffsetDateTime::from_unix_timestamp(1_000_000_000).unwrap();
    let mut old = Vec::new();
    for n in 0..12 {
        let mut d = delivery(&tag, n);
        d.state = if n % 2 == 0 {
            DeliveryState::Delivered
        } else {
            DeliveryState::Failed
        };
        d.attempts = 1;
        d.created_at = cut - Duration::days(1);
        d.finished_at = Some(cut - Duration::minutes(n as i64 + 1));
        old.push(d);
    }
    let mut pending = delivery(&tag, 50);
    pending.created_at = cut - Duration::days(30);
    pending.finished_at = Some(cut - Duration::days(30));
    let mut recent = delivery(&tag, 51);
    recent.state = DeliveryState::Delivered;
    recent.finished_at = Some(cut);
    let mut all = old.clone();
    all.extend([pending.clone(), recent.clone()]);
    s.insert_deliveries(&all).await.unwrap();

    assert_eq!(s.purge_finished_deliveries(cut, 5).await.unwrap(), 5);
    let (a, b) = tokio::join!(
        drain(
            async || s.purge_finished_deliveries(cut, 3).await.unwrap(),
            3
        ),
        drain(
            async || s.purge_finished_deliveries(cut, 3).await.unwrap(),
            3
        ),
    );
    assert_eq!(a + b, 7, "every old finished delivery deleted once");
    assert_eq!(s.purge_finished_deliveries(cut, 5).await.unwrap(), 0);
    for d in &old {
        assert!(matches!(
            s.get_delivery(&d.id).await,
            Err(StoreError::NotFound { .. })
        ));
    }
    assert_eq!(
        s.get_delivery(&pending.id).await.unwrap().state,
        DeliveryState::Pending,
        "a pending delivery is never purged"
    );
    assert_eq!(s.get_delivery(&recent.id).await.unwrap(), recent);
}

/// What the Logout service handed over, in order: reservations asked, deliveries dispatched,
/// deliveries tried now (with the bound).
pub struct RecordingNotifier {
    /// The reservation it hands out: the deliveries must carry it.
    pub reservation: time::OffsetDateTime,
    pub reserved: std::sync::atomic::AtomicUsize,
    pub dispatched: std::sync::Mutex<Vec<DeliveryId>>,
    pub delivered_now: std::sync::Mutex<Vec<(Vec<DeliveryId>, std::time::Duration)>>,
}

impl Default for RecordingNotifier {
    fn default() -> Self {
        Self {
            reservation: latch_core::clock::truncate_millis(now() + Duration::seconds(30)),
            reserved: Default::default(),
            dispatched: Default::default(),
            delivered_now: Default::default(),
        }
    }
}

#[async_trait::async_trait]
impl latch_core::logout::Notifier for RecordingNotifier {
    fn reserve_until(&self) -> Option<time::OffsetDateTime> {
        self.reserved
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Some(self.reservation)
    }
    async fn deliver_now(&self, d: &[Delivery], within: std::time::Duration) {
        let ids = d.iter().map(|d| d.id.clone()).collect();
        self.delivered_now.lock().unwrap().push((ids, within));
    }
    fn dispatch(&self, d: &[Delivery]) {
        self.dispatched
            .lock()
            .unwrap()
            .extend(d.iter().map(|d| d.id.clone()));
    }
}

fn logout_service(
    s: std::sync::Arc<dyn Store>,
) -> (
    latch_core::logout::Logout,
    std::sync::Arc<crate::session_conformance::MemorySessions>,
    std::sync::Arc<RecordingNotifier>,
) {
    let sessions = std::sync::Arc::new(crate::session_conformance::MemorySessions::default());
    let notifier = std::sync::Arc::new(RecordingNotifier::default());
    let logout = latch_core::logout::Logout::new(
        s,
        sessions.clone(),
        std::sync::Arc::new(latch_core::SystemClock),
        notifier.clone(),
    );
    (logout, sessions, notifier)
}

/// The Logout service against a real store and an in-memory session double: deliveries are
/// recorded before any session ends (a session store failing at the deletion leaves them
/// recorded and the session alive), sessions end, tokens are revoked per policy, and the
/// deliveries are handed over as the urgency says.
pub async fn logout_records_before_deleting(s: std::sync::Arc<dyn Store>) {
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
    let (logout, sessions, notifier) = logout_service(s.clone());
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
        s.insert_grant(&fixtures::grant_of(t), Some(t))
            .await
            .unwrap();
    }
    let pending_for = |sid: Sid| {
        let s = s.clone();
        async move {
            s.list_deliveries(
                &latch_core::model::DeliveryQuery::in_state(DeliveryState::Pending),
                10_000,
            )
            .await
            .unwrap()
            .into_iter()
            .filter(|d| d.notice.sid.as_ref() == Some(&sid))
            .collect::<Vec<_>>()
        }
    };

    // The session store fails when asked to delete: the delivery is on record already, the
    // session is still there, nothing was handed over.
    sessions.fail_ends(true);
    let failed = logout
        .end(
            Target::Session(one.id.clone()),
            TokenPolicy::SessionBound,
            LogoutInitiator::RpLogout,
            Urgency::BrowserWaiting,
        )
        .await;
    assert!(failed.is_err());
    let recorded = pending_for(one.clients[0].sid.clone()).await;
    assert_eq!(recorded.len(), 1, "recorded before the deletion was tried");
    assert_eq!(recorded[0].client_id, app.client_id);
    assert_eq!(recorded[0].locked_until, Some(notifier.reservation));
    assert!(
        sessions
            .find_session(&one.id, now())
            .await
            .unwrap()
            .is_some()
    );
    assert!(notifier.delivered_now.lock().unwrap().is_empty());
    sessions.fail_ends(false);

    // A plain logout of one session: one delivery (only `app` has a back-channel URL), tried
    // now within the browser's bound.
    let out = logout
        .end(
            Target::Session(one.id.clone()),
            TokenPolicy::SessionBound,
            LogoutInitiator::RpLogout,
            Urgency::BrowserWaiting,
        )
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
        *notifier.delivered_now.lock().unwrap(),
        vec![(vec![out.deliveries[0].id.clone()], BROWSER_WAIT)]
    );
    assert!(notifier.dispatched.lock().unwrap().is_empty());
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

    // Everything of the user, in the background: the other session ends, every token dies, the
    // token holders are told.
    let out = logout
        .end(
            Target::User(u.user_id.clone()),
            TokenPolicy::AllOfUser,
            LogoutInitiator::SessionRevoked,
            Urgency::Background,
        )
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
    assert_eq!(
        *notifier.dispatched.lock().unwrap(),
        out.deliveries
            .iter()
            .map(|d| d.id.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        notifier.reserved.load(std::sync::atomic::Ordering::SeqCst),
        3
    );
}

/// What each kind of target ends: a user's sessions at one connection (all, or those of one
/// upstream `sid`), every session that came through a connection (found through its
/// identities), and the front-channel URLs of the apps in the ended sessions.
pub async fn logout_targets_end_what_they_name(s: std::sync::Arc<dyn Store>) {
    use latch_core::logout::*;
    use latch_core::session::SessionStore;

    let conn = fixtures::connection(Strategy::Okta);
    s.insert_connection(&conn).await.unwrap();
    let mut front = fixtures::client();
    front.oidc_logout.frontchannel_logout_url =
        Some(url::Url::parse("https://front.example.com/logout").unwrap());
    front.oidc_logout.frontchannel_logout_session_required = true;
    let mut front_no_sid = fixtures::client();
    front_no_sid.oidc_logout.frontchannel_logout_url =
        Some(url::Url::parse("https://other.example.com/fc").unwrap());
    for c in [&front, &front_no_sid] {
        s.insert_client(c).await.unwrap();
    }
    let (ann, bob, carl) = (fixtures::user(), fixtures::user(), fixtures::user());
    for u in [&ann, &bob, &carl] {
        s.insert_user(u).await.unwrap();
    }
    // Ann and Bob came through the connection; Carl did not.
    for u in [&ann, &bob] {
        s.insert_identity(&fixtures::identity(u, &conn))
            .await
            .unwrap();
    }
    let mut users = s.list_connection_users(&conn.id).await.unwrap();
    users.sort();
    let mut want = vec![ann.user_id.clone(), bob.user_id.clone()];
    want.sort();
    assert_eq!(users, want);

    let (logout, sessions, _) = logout_service(s.clone());
    let at = |u: &User, upstream_sid: Option<&str>| {
        let mut x = fixtures::session(&u.user_id);
        x.connection = conn.name.clone();
        x.upstream.sid = upstream_sid.map(str::to_owned);
        x
    };
    let ann_a = {
        let mut x = at(&ann, Some("up-a"));
        x.clients = vec![
            fixtures::session_client(front.client_id.as_str()),
            fixtures::session_client(front_no_sid.client_id.as_str()),
        ];
        x
    };
    let ann_b = at(&ann, Some("up-b"));
    let ann_db = fixtures::session(&ann.user_id); // through the database connection
    let bob_1 = at(&bob, None);
    let carl_db = fixtures::session(&carl.user_id);
    for x in [&ann_a, &ann_b, &ann_db, &bob_1, &carl_db] {
        sessions.insert_session(x).await.unwrap();
    }
    let live = |x: &latch_core::session::Session| {
        let (sessions, id) = (sessions.clone(), x.id.clone());
        async move { sessions.find_session(&id, now()).await.unwrap().is_some() }
    };

    // One upstream session of Ann: only the session it created ends; the front-channel URLs
    // of its apps come back, with the `sid` only where the app asked for it.
    let out = logout
        .end(
            Target::UserAtConnection {
                user: ann.user_id.clone(),
                connection: conn.name.clone(),
                upstream: Some(latch_core::logout::UpstreamMatch::Sid("up-a".into())),
            },
            TokenPolicy::SessionBound,
            LogoutInitiator::IdpLogout,
            Urgency::Background,
        )
        .await
        .unwrap();
    assert_eq!(
        out.sessions.iter().map(|x| &x.id).collect::<Vec<_>>(),
        vec![&ann_a.id]
    );
    assert_eq!(
        out.front_channel,
        vec![
            FrontChannelTarget {
                client_id: front.client_id.clone(),
                url: front.oidc_logout.frontchannel_logout_url.clone().unwrap(),
                sid: Some(ann_a.clients[0].sid.clone()),
            },
            FrontChannelTarget {
                client_id: front_no_sid.client_id.clone(),
                url: front_no_sid
                    .oidc_logout
                    .frontchannel_logout_url
                    .clone()
                    .unwrap(),
                sid: None,
            },
        ]
    );
    assert!(live(&ann_b).await && live(&ann_db).await);

    // The connection goes: every session that came through it ends, no other.
    let listed = s.list_connection_users(&conn.id).await.unwrap();
    s.delete_connection(&conn.id).await.unwrap();
    let out = logout
        .end(
            Target::UsersAtConnection {
                users: listed,
                connection: conn.name.clone(),
            },
            TokenPolicy::SessionBound,
            LogoutInitiator::SessionRevoked,
            Urgency::Background,
        )
        .await
        .unwrap();
    let mut ended: Vec<_> = out.sessions.iter().map(|x| x.id.clone()).collect();
    ended.sort();
    let mut want = vec![ann_b.id.clone(), bob_1.id.clone()];
    want.sort();
    assert_eq!(ended, want);
    assert!(out.front_channel.is_empty());
    assert!(live(&ann_db).await && live(&carl_db).await);
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

/// A new user and their identity are written together: a clash on the identity leaves no user
/// behind, a clash on the user no identity.
pub async fn users_and_identities_are_inserted_together(s: &dyn Store) {
    let conn = fixtures::connection(Strategy::Auth0);
    s.insert_connection(&conn).await.unwrap();
    let u = fixtures::user();
    let i = fixtures::identity(&u, &conn);
    s.insert_user_with_identity(&u, &i).await.unwrap();
    assert_eq!(
        s.find_identity_with_user(&conn.id, &i.issuer, &i.subject)
            .await
            .unwrap(),
        Some((i.clone(), u.clone()))
    );

    // The identity is taken: the other user is not written either.
    let other = fixtures::user();
    let clash = Identity {
        user_id: other.user_id.clone(),
        ..i.clone()
    };
    let err = s
        .insert_user_with_identity(&other, &clash)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                entity: "identity",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(s.find_user(&other.user_id).await.unwrap().is_none());
    assert_eq!(
        s.list_identities(&u.user_id).await.unwrap(),
        vec![i.clone()]
    );

    // The user id is taken: the new identity is not written.
    let fresh = fixtures::identity(&u, &conn);
    let err = s.insert_user_with_identity(&u, &fresh).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { entity: "user", .. }),
        "{err:?}"
    );
    assert!(
        s.find_identity(&conn.id, &fresh.issuer, &fresh.subject)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.get_user(&u.user_id).await.unwrap(), u);
}

/// `update_user_blocked` writes only a change, and says whether it made one.
pub async fn blocking_writes_only_a_change(s: &dyn Store) {
    let u = fixtures::user();
    s.insert_user(&u).await.unwrap();
    let later = now() + Duration::seconds(5);
    let (blocked, changed) = s
        .update_user_blocked(&u.user_id, true, later)
        .await
        .unwrap();
    assert!(changed);
    assert_eq!(
        blocked,
        User {
            blocked: true,
            updated_at: later,
            ..u.clone()
        }
    );
    // Already blocked: nothing written (`updated_at` kept).
    let (again, changed) = s
        .update_user_blocked(&u.user_id, true, later + Duration::seconds(5))
        .await
        .unwrap();
    assert!(!changed);
    assert_eq!(again, blocked);
    assert_eq!(s.get_user(&u.user_id).await.unwrap(), blocked);

    let (unblocked, changed) = s
        .update_user_blocked(&u.user_id, false, later + Duration::seconds(9))
        .await
        .unwrap();
    assert!(changed);
    assert!(!unblocked.blocked);
    assert_eq!(unblocked.updated_at, later + Duration::seconds(9));

    assert!(matches!(
        s.update_user_blocked(&fixtures::user_id(), true, later)
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

/// A stand-in for argon2id (`latch_jose::password::Argon2id`): tests of the use-cases need a
/// hash, not its cost. Never a product hasher.
pub struct TestHasher;

#[async_trait::async_trait]
impl latch_core::users::PasswordHasher for TestHasher {
    async fn hash(&self, password: &str) -> Result<SecretString, latch_core::users::HashError> {
        Ok(SecretString::new(format!(
            "$test${}${password}",
            crate::env::unique()
        )))
    }
}

/// A database user to create with a fresh id, as the management API would.
fn new_user<'a>(
    connection: &'a Connection,
    email: &'a str,
    password: &'a str,
) -> latch_core::users::NewUser<'a> {
    latch_core::users::NewUser {
        connection,
        id: crate::env::unique(),
        username: None,
        email: Some(email),
        email_verified: false,
        password: Some(password),
        password_policy: true,
        name: None,
        nickname: None,
        blocked: false,
        app_metadata: Default::default(),
    }
}

/// The user use-cases against a real store: `create` writes the user and identity together and
/// checks its rules first (a duplicate identity or email leaves no user row); `block` ends the
/// sessions of a newly blocked user only; `unblock`; `delete` ends the sessions, then deletes.
pub async fn user_use_cases(s: std::sync::Arc<dyn Store>) {
    use latch_core::session::SessionStore;
    use latch_core::users::{self, NewUser, UserError};

    // Milliseconds, as the store keeps them.
    let clock = latch_core::clock::ManualClock::new(now());
    let conn = fixtures::connection(Strategy::Auth0);
    s.insert_connection(&conn).await.unwrap();
    let tag = crate::env::unique();
    let email = format!("jane-{tag}@example.com");
    let new = |email, password| new_user(&conn, email, password);

    let typed = format!("  {}  ", email.to_uppercase());
    let first = new(&typed, "Good-Passw0rd");
    let id = first.id.clone();
    let u = users::create(&*s, &clock, &TestHasher, first)
        .await
        .unwrap();
    assert_eq!(u.user_id.as_str(), format!("auth0|{id}"));
    assert_eq!(u.email.as_deref(), Some(email.as_str()));
    assert_eq!(u.name.as_deref(), Some(email.as_str()));
    assert_eq!(u.nickname, Some(format!("jane-{tag}")));
    assert_eq!(s.get_user(&u.user_id).await.unwrap(), u);
    let identities = s.list_identities(&u.user_id).await.unwrap();
    assert_eq!(identities.len(), 1);
    assert_eq!(
        (
            identities[0].issuer.as_str(),
            identities[0].subject.as_str()
        ),
        (latch_core::connector::DATABASE_ISSUER, id.as_str())
    );
    assert!(
        identities[0]
            .password_hash
            .as_ref()
            .is_some_and(|h| h.expose().ends_with("$Good-Passw0rd"))
    );

    let count = s.count_users(&Default::default()).await.unwrap();
    // The same email again: refused before anything is written.
    let twin = new(&email, "Good-Passw0rd");
    let twin_id = twin.id.clone();
    let err = users::create(&*s, &clock, &TestHasher, twin)
        .await
        .unwrap_err();
    assert!(matches!(err, UserError::Exists), "{err:?}");
    // A duplicate identity (the subject is taken): the store refuses both rows.
    let other = format!("other-{tag}@example.com");
    let clash = NewUser {
        username: Some(id.clone()),
        ..new(&other, "Good-Passw0rd")
    };
    let clash_id = clash.id.clone();
    let err = users::create(&*s, &clock, &TestHasher, clash)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            UserError::Store(StoreError::Conflict {
                entity: "identity",
                ..
            })
        ),
        "{err:?}"
    );
    for id in [&twin_id, &clash_id] {
        let id = UserId::new(format!("auth0|{id}"));
        assert!(s.find_user(&id).await.unwrap().is_none(), "{id:?}");
    }

    // The rules, in order; nothing is written for any of them.
    let okta = fixtures::connection(Strategy::Okta);
    let fresh = format!("fresh-{tag}@example.com");
    for (attempt, want) in [
        (new_user(&okta, &fresh, "Good-Passw0rd"), "NotDatabase"),
        (new("not an email", "Good-Passw0rd"), "InvalidEmail"),
        (new(&fresh, "weak"), "Password"),
        (
            NewUser {
                name: Some(" ".into()),
                ..new(&fresh, "Good-Passw0rd")
            },
            "InvalidName",
        ),
    ] {
        let err = users::create(&*s, &clock, &TestHasher, attempt)
            .await
            .unwrap_err();
        assert!(format!("{err:?}").starts_with(want), "{err:?}");
    }
    assert_eq!(s.count_users(&Default::default()).await.unwrap(), count);
    // The operator's own password skips the connection's policy.
    let admin = users::create(
        &*s,
        &clock,
        &TestHasher,
        NewUser {
            username: Some(format!("admin-{tag}")),
            email: None,
            password_policy: false,
            name: Some("Administrator".into()),
            ..new("unused@example.com", "weak")
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (admin.email.as_deref(), admin.nickname.as_deref()),
        (None, None)
    );
    assert!(
        s.find_identity(
            &conn.id,
            latch_core::connector::DATABASE_ISSUER,
            &format!("admin-{tag}")
        )
        .await
        .unwrap()
        .is_some()
    );

    // Block: a newly blocked user's sessions end; blocking again writes nothing, and ends what
    // a failed first logout may have left (here: a session that appeared meanwhile).
    let (logout, sessions, _) = logout_service(s.clone());
    let session = fixtures::session(&u.user_id);
    sessions.insert_session(&session).await.unwrap();
    let b = users::block(&*s, &clock, &logout, &u.user_id)
        .await
        .unwrap();
    assert!(b.user.blocked);
    assert!(b.newly);
    assert_eq!(b.ended.sessions.len(), 1);
    assert!(
        sessions
            .list_user_sessions(&u.user_id, now())
            .await
            .unwrap()
            .is_empty()
    );
    let left = fixtures::session(&u.user_id);
    sessions.insert_session(&left).await.unwrap();
    let again = users::block(&*s, &clock, &logout, &u.user_id)
        .await
        .unwrap();
    assert!(again.user.blocked && !again.newly);
    assert_eq!(
        again
            .ended
            .sessions
            .iter()
            .map(|x| &x.id)
            .collect::<Vec<_>>(),
        vec![&left.id]
    );
    assert!(
        !users::unblock(&*s, &clock, &u.user_id)
            .await
            .unwrap()
            .blocked
    );
    assert!(!s.get_user(&u.user_id).await.unwrap().blocked);

    // Delete: the sessions end first, then the user goes with their identity.
    sessions
        .insert_session(&fixtures::session(&u.user_id))
        .await
        .unwrap();
    let ended = users::delete(&*s, &logout, &u.user_id).await.unwrap();
    assert_eq!(ended.sessions.len(), 1);
    assert!(s.find_user(&u.user_id).await.unwrap().is_none());
    assert!(s.list_identities(&u.user_id).await.unwrap().is_empty());
    for err in [
        users::delete(&*s, &logout, &u.user_id).await.unwrap_err(),
        users::block(&*s, &clock, &logout, &u.user_id)
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(err, UserError::Store(StoreError::NotFound { .. })),
            "{err:?}"
        );
    }
}

// ---------- inbound SCIM ----------

/// A SCIM token of `conn`, created `after` seconds from now.
fn scim_token(conn: &Connection, after: i64) -> ScimToken {
    let u = crate::env::unique();
    ScimToken {
        token_id: format!("tok_{u}"),
        connection_id: conn.id.clone(),
        digest: TokenDigest::new(format!("scim-{u}")),
        scopes: vec!["get:users".into(), "post:users".into()],
        created_at: now() + Duration::seconds(after),
        valid_until: None,
    }
}

/// A user a SCIM client provisions into `conn`: the user, its identity (issuer [`SCIM_ISSUER`],
/// the `externalId` as subject when there is one) and its SCIM record, version 1.
fn scim_user(
    conn: &Connection,
    user_name: &str,
    external_id: Option<&str>,
) -> (User, Identity, ScimUser) {
    let user = fixtures::user();
    let mut identity = fixtures::identity(&user, conn);
    identity.issuer = SCIM_ISSUER.into();
    if let Some(e) = external_id {
        identity.subject = e.into();
    }
    let resource = serde_json::json!({
        "name": {"givenName": "Ada", "familyName": user_name},
        "emails": [{"type": "work", "value": user.email, "primary": true}],
    });
    let scim = ScimUser {
        connection_id: conn.id.clone(),
        user_id: user.user_id.clone(),
        user_name: user_name.into(),
        external_id: external_id.map(str::to_owned),
        active: true,
        resource: resource.as_object().unwrap().clone(),
        version: 1,
        created_at: user.created_at,
        updated_at: user.updated_at,
    };
    (user, identity, scim)
}

/// The field a store error names as clashing, if it is a conflict.
fn conflict_field(e: &StoreError) -> Option<&'static str> {
    match e {
        StoreError::Conflict { field, .. } => Some(field),
        _ => None,
    }
}

/// How many SCIM users `conn` has.
async fn scim_count(s: &dyn Store, conn: &ConnectionId) -> u64 {
    s.list_scim_users(conn, &ScimLookup::All, 0, 100)
        .await
        .unwrap()
        .1
}

/// Nothing of a refused SCIM user was written: no user, no identity, no SCIM record.
async fn nothing_of(s: &dyn Store, user: &User, identity: &Identity) {
    assert!(s.find_user(&user.user_id).await.unwrap().is_none());
    assert!(s.list_identities(&user.user_id).await.unwrap().is_empty());
    assert!(
        s.find_scim_user(&identity.connection_id, &user.user_id)
            .await
            .unwrap()
            .is_none()
    );
}

/// A connection's SCIM configuration is created, replaced (keeping `created_at`) and deleted with
/// its tokens; another connection's are untouched.
pub async fn scim_config_round_trip(s: &dyn Store) {
    let (a, b) = (
        fixtures::connection(Strategy::Okta),
        fixtures::connection(Strategy::Samlp),
    );
    s.insert_connection(&a).await.unwrap();
    s.insert_connection(&b).await.unwrap();
    assert!(s.find_scim_config(&a.id).await.unwrap().is_none());
    assert!(!s.delete_scim_config(&a.id).await.unwrap());

    let config = |conn: &Connection, attribute: &str| ScimConfig {
        connection_id: conn.id.clone(),
        user_id_attribute: attribute.into(),
        mapping: serde_json::json!([{"auth0": "email", "scim": "emails[primary eq true].value"}]),
        created_at: now(),
        updated_at: now(),
    };
    let first = config(&a, DEFAULT_SCIM_USER_ID_ATTRIBUTE);
    s.put_scim_config(&first).await.unwrap();
    assert_eq!(
        s.find_scim_config(&a.id).await.unwrap(),
        Some(first.clone())
    );
    let other = config(&b, DEFAULT_SCIM_USER_ID_ATTRIBUTE);
    s.put_scim_config(&other).await.unwrap();

    // Replaced: everything but `created_at`.
    let replaced = ScimConfig {
        user_id_attribute: "userName".into(),
        mapping: serde_json::json!([{"auth0": "nickname", "scim": "userName"}]),
        created_at: first.created_at + Duration::seconds(30),
        updated_at: first.updated_at + Duration::seconds(30),
        ..first.clone()
    };
    s.put_scim_config(&replaced).await.unwrap();
    assert_eq!(
        s.find_scim_config(&a.id).await.unwrap(),
        Some(ScimConfig {
            created_at: first.created_at,
            ..replaced.clone()
        })
    );

    // Turning SCIM off takes the tokens too, and only this connection's.
    let (ta, tb) = (scim_token(&a, 0), scim_token(&b, 0));
    s.insert_scim_token(&ta).await.unwrap();
    s.insert_scim_token(&tb).await.unwrap();
    // A caller is its token with its own connection's configuration.
    assert_eq!(
        s.find_scim_caller(&ta.digest).await.unwrap(),
        Some((
            ta.clone(),
            ScimConfig {
                created_at: first.created_at,
                ..replaced.clone()
            }
        ))
    );
    assert_eq!(
        s.find_scim_caller(&tb.digest).await.unwrap(),
        Some((tb.clone(), other.clone()))
    );
    assert!(
        s.find_scim_caller(&TokenDigest::new("no-such-digest"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.delete_scim_config(&a.id).await.unwrap());
    assert!(s.find_scim_caller(&ta.digest).await.unwrap().is_none());
    assert!(s.find_scim_config(&a.id).await.unwrap().is_none());
    assert!(s.list_scim_tokens(&a.id).await.unwrap().is_empty());
    assert!(s.find_scim_token(&ta.digest).await.unwrap().is_none());
    assert!(!s.delete_scim_config(&a.id).await.unwrap());
    assert_eq!(s.find_scim_config(&b.id).await.unwrap(), Some(other));
    assert_eq!(s.list_scim_tokens(&b.id).await.unwrap(), vec![tb]);

    // Put again after a delete: a new configuration.
    s.put_scim_config(&replaced).await.unwrap();
    assert_eq!(s.find_scim_config(&a.id).await.unwrap(), Some(replaced));
}

/// Tokens are listed per connection oldest first, found by digest whatever their connection,
/// unique by digest, and deleted only through their own connection.
pub async fn scim_tokens_round_trip(s: &dyn Store) {
    let (a, b) = (
        fixtures::connection(Strategy::Okta),
        fixtures::connection(Strategy::Oidc),
    );
    s.insert_connection(&a).await.unwrap();
    s.insert_connection(&b).await.unwrap();
    let mut later = scim_token(&a, 5);
    later.scopes = SCIM_SCOPES.iter().map(|s| (*s).to_owned()).collect();
    later.valid_until = Some(later.created_at + Duration::days(30));
    let earlier = scim_token(&a, 0);
    let theirs = scim_token(&b, 0);
    for t in [&later, &earlier, &theirs] {
        s.insert_scim_token(t).await.unwrap();
    }
    assert_eq!(
        s.list_scim_tokens(&a.id).await.unwrap(),
        vec![earlier.clone(), later.clone()]
    );
    assert_eq!(
        s.find_scim_token(&later.digest).await.unwrap(),
        Some(later.clone())
    );
    assert_eq!(
        s.find_scim_token(&theirs.digest).await.unwrap(),
        Some(theirs.clone())
    );
    assert!(
        s.find_scim_token(&TokenDigest::new("no-such-digest"))
            .await
            .unwrap()
            .is_none()
    );

    // A digest is one token's.
    let twin = ScimToken {
        digest: earlier.digest.clone(),
        ..scim_token(&b, 0)
    };
    let err = s.insert_scim_token(&twin).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_eq!(
        s.list_scim_tokens(&b.id).await.unwrap(),
        vec![theirs.clone()]
    );

    // Another connection's token id deletes nothing.
    assert!(!s.delete_scim_token(&a.id, &theirs.token_id).await.unwrap());
    assert_eq!(
        s.find_scim_token(&theirs.digest).await.unwrap(),
        Some(theirs.clone())
    );
    assert!(s.delete_scim_token(&a.id, &earlier.token_id).await.unwrap());
    assert!(!s.delete_scim_token(&a.id, &earlier.token_id).await.unwrap());
    assert!(s.find_scim_token(&earlier.digest).await.unwrap().is_none());
    assert_eq!(s.list_scim_tokens(&a.id).await.unwrap(), vec![later]);
}

/// A SCIM user is its user, identity and record, written together; `userName` (whatever its
/// case), `externalId` and the identity are unique within the connection, and a clash writes
/// nothing. Another connection may use the same values.
pub async fn scim_users_insert_and_uniqueness(s: &dyn Store) {
    let (a, b) = (
        fixtures::connection(Strategy::Okta),
        fixtures::connection(Strategy::Okta),
    );
    s.insert_connection(&a).await.unwrap();
    s.insert_connection(&b).await.unwrap();
    let tag = crate::env::unique();
    let name = format!("Ada.Lovelace-{tag}@Example.com");
    let ext = format!("00u-{tag}");
    let (u, i, r) = scim_user(&a, &name, Some(&ext));
    s.insert_scim_user(&u, &i, &r).await.unwrap();
    assert_eq!(
        s.find_scim_user(&a.id, &u.user_id).await.unwrap(),
        Some((r.clone(), u.clone()))
    );
    assert_eq!(
        s.find_identity_with_user(&a.id, SCIM_ISSUER, &ext)
            .await
            .unwrap(),
        Some((i.clone(), u.clone()))
    );
    assert!(s.find_scim_user(&b.id, &u.user_id).await.unwrap().is_none());

    // The same userName in another case.
    let (u2, i2, r2) = scim_user(&a, &name.to_uppercase(), Some(&format!("{ext}-2")));
    let err = s.insert_scim_user(&u2, &i2, &r2).await.unwrap_err();
    assert_eq!(conflict_field(&err), Some("userName"), "{err:?}");
    nothing_of(s, &u2, &i2).await;

    // The same externalId (its identity's subject is taken as well: the externalId is named).
    let (u3, i3, r3) = scim_user(&a, &format!("other-{tag}"), Some(&ext));
    let err = s.insert_scim_user(&u3, &i3, &r3).await.unwrap_err();
    assert_eq!(conflict_field(&err), Some("externalId"), "{err:?}");
    nothing_of(s, &u3, &i3).await;

    // The identity alone is taken.
    let (u4, mut i4, r4) = scim_user(&a, &format!("third-{tag}"), None);
    i4.subject = ext.clone();
    let err = s.insert_scim_user(&u4, &i4, &r4).await.unwrap_err();
    assert_eq!(conflict_field(&err), Some("identity"), "{err:?}");
    nothing_of(s, &u4, &i4).await;

    // The user id is taken: no second record for it.
    let (_, _, mut r5) = scim_user(&a, &format!("fourth-{tag}"), None);
    r5.user_id = u.user_id.clone();
    let mut i5 = fixtures::identity(&u, &a);
    i5.issuer = SCIM_ISSUER.into();
    assert!(matches!(
        s.insert_scim_user(&u, &i5, &r5).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(
        s.find_identity(&a.id, SCIM_ISSUER, &i5.subject)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(scim_count(s, &a.id).await, 1);
    assert_eq!(
        s.find_scim_user(&a.id, &u.user_id).await.unwrap(),
        Some((r.clone(), u.clone()))
    );

    // externalId is case-exact; users without one do not clash; another connection may reuse
    // both values.
    let (u6, i6, r6) = scim_user(&a, &format!("fifth-{tag}"), Some(&ext.to_uppercase()));
    s.insert_scim_user(&u6, &i6, &r6).await.unwrap();
    for n in 0..2 {
        let (u, i, r) = scim_user(&a, &format!("no-external-{n}-{tag}"), None);
        s.insert_scim_user(&u, &i, &r).await.unwrap();
    }
    let (u7, i7, r7) = scim_user(&b, &name, Some(&ext));
    s.insert_scim_user(&u7, &i7, &r7).await.unwrap();
    assert_eq!(
        s.find_scim_user(&b.id, &u7.user_id).await.unwrap(),
        Some((r7, u7))
    );
    assert_eq!(scim_count(s, &a.id).await, 4);
    assert_eq!(scim_count(s, &b.id).await, 1);
}

/// Each lookup finds the connection's users by one attribute (userName and email whatever their
/// case, externalId exactly), ordered by creation then user id, paged from a 0-based offset,
/// with the total of every page.
/// A user who signed in before SCIM was on gets a SCIM record of their own (found, listed); a
/// second record for them, or one reusing another's userName or externalId, is a Conflict.
pub async fn scim_record_attaches_to_an_existing_user(s: &dyn Store) {
    let a = fixtures::connection(Strategy::Oidc);
    s.insert_connection(&a).await.unwrap();
    let tag = crate::env::unique();
    let signed_in = fixtures::user();
    let id = fixtures::identity(&signed_in, &a);
    s.insert_user_with_identity(&signed_in, &id).await.unwrap();
    let (_, _, mut r) = scim_user(&a, &format!("early-{tag}"), Some(&format!("ext-{tag}")));
    r.user_id = signed_in.user_id.clone();
    s.attach_scim_user(&r).await.unwrap();
    assert_eq!(
        s.find_scim_user(&a.id, &signed_in.user_id).await.unwrap(),
        Some((r.clone(), signed_in.clone()))
    );
    let err = s.attach_scim_user(&r).await.unwrap_err();
    assert!(conflict_field(&err).is_some(), "{err:?}");
    let other = fixtures::user();
    s.insert_user(&other).await.unwrap();
    let mut dup = r.clone();
    dup.user_id = other.user_id.clone();
    dup.external_id = None;
    let err = s.attach_scim_user(&dup).await.unwrap_err();
    assert_eq!(conflict_field(&err), Some("userName"), "{err:?}");
    assert!(
        s.find_scim_user(&a.id, &other.user_id)
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn scim_users_lookups_and_paging(s: &dyn Store) {
    let (a, b) = (
        fixtures::connection(Strategy::Okta),
        fixtures::connection(Strategy::Okta),
    );
    s.insert_connection(&a).await.unwrap();
    s.insert_connection(&b).await.unwrap();
    let tag = crate::env::unique();
    let mut made = Vec::new();
    let start = now();
    for n in 0..5i64 {
        let (mut u, i, mut r) = scim_user(
            &a,
            &format!("User{n}-{tag}"),
            Some(&format!("ext{n}-{tag}")),
        );
        // The last two were created at the same instant: the user id orders them.
        let at = start + Duration::seconds(n.min(3));
        (u.created_at, r.created_at) = (at, at);
        s.insert_scim_user(&u, &i, &r).await.unwrap();
        made.push((r, u));
    }
    made.sort_by(|x, y| (x.0.created_at, &x.0.user_id).cmp(&(y.0.created_at, &y.0.user_id)));
    // Another connection's user with the same email and userName as one of these.
    let (mut u, i, r) = scim_user(&b, &made[1].0.user_name, Some(&format!("ext1-{tag}")));
    u.email = made[1].1.email.clone();
    s.insert_scim_user(&u, &i, &r).await.unwrap();

    let list = |lookup: ScimLookup, offset, limit| {
        let id = a.id.clone();
        async move {
            s.list_scim_users(&id, &lookup, offset, limit)
                .await
                .unwrap()
        }
    };
    assert_eq!(list(ScimLookup::All, 0, 100).await, (made.clone(), 5));
    assert_eq!(list(ScimLookup::All, 0, 2).await, (made[0..2].to_vec(), 5));
    assert_eq!(list(ScimLookup::All, 2, 2).await, (made[2..4].to_vec(), 5));
    assert_eq!(list(ScimLookup::All, 4, 2).await, (made[4..].to_vec(), 5));
    assert_eq!(list(ScimLookup::All, 5, 2).await, (vec![], 5));
    assert_eq!(list(ScimLookup::All, 0, 0).await, (vec![], 5));

    let second = made[1].clone();
    let by_name = ScimLookup::UserName(second.0.user_name.to_lowercase());
    assert_eq!(list(by_name, 0, 10).await, (vec![second.clone()], 1));
    let by_name = ScimLookup::UserName(second.0.user_name.to_uppercase());
    assert_eq!(
        list(by_name.clone(), 0, 10).await,
        (vec![second.clone()], 1)
    );
    assert_eq!(list(by_name, 1, 10).await, (vec![], 1));
    let ext = second.0.external_id.clone().unwrap();
    assert_eq!(
        list(ScimLookup::ExternalId(ext.clone()), 0, 10).await,
        (vec![second.clone()], 1)
    );
    assert_eq!(
        list(ScimLookup::ExternalId(ext.to_uppercase()), 0, 10).await,
        (vec![], 0)
    );
    let email = second.1.email.clone().unwrap();
    assert_eq!(
        list(ScimLookup::Email(email.to_uppercase()), 0, 10).await,
        (vec![second.clone()], 1)
    );
    assert_eq!(
        list(ScimLookup::UserName(format!("nobody-{tag}")), 0, 10).await,
        (vec![], 0)
    );
    assert_eq!(
        list(
            ScimLookup::Email(format!("nobody-{tag}@example.com")),
            0,
            10
        )
        .await,
        (vec![], 0)
    );
    // The other connection sees only its own.
    let (page, total) = s
        .list_scim_users(&b.id, &ScimLookup::Email(email), 0, 10)
        .await
        .unwrap();
    assert_eq!(total, 1);
    assert_eq!(page[0].1.user_id, u.user_id);
}

/// An update writes the user, identity (its subject may change) and record together when the
/// stored version is the one expected; a stale version or a clash writes nothing.
pub async fn scim_user_updates_check_the_version(s: &dyn Store) {
    let conn = fixtures::connection(Strategy::Okta);
    s.insert_connection(&conn).await.unwrap();
    let tag = crate::env::unique();
    let (u, i, r) = scim_user(&conn, &format!("grace-{tag}"), Some(&format!("ext-{tag}")));
    s.insert_scim_user(&u, &i, &r).await.unwrap();
    let (ou, oi, or) = scim_user(
        &conn,
        &format!("Other-{tag}"),
        Some(&format!("other-{tag}")),
    );
    s.insert_scim_user(&ou, &oi, &or).await.unwrap();

    let later = now() + Duration::seconds(10);
    let mut u2 = u.clone();
    u2.name = Some("Grace Hopper".into());
    u2.blocked = true;
    u2.updated_at = later;
    let mut i2 = i.clone();
    i2.subject = format!("new-ext-{tag}");
    i2.updated_at = later;
    let mut r2 = r.clone();
    r2.user_name = format!("Grace.Hopper-{tag}");
    r2.external_id = Some(i2.subject.clone());
    r2.active = false;
    r2.resource
        .insert("displayName".into(), "Grace Hopper".into());
    r2.version = 2;
    r2.updated_at = later;
    s.update_scim_user(&u2, &i2, &r2, 1).await.unwrap();
    assert_eq!(
        s.find_scim_user(&conn.id, &u.user_id).await.unwrap(),
        Some((r2.clone(), u2.clone()))
    );
    assert_eq!(
        s.list_identities(&u.user_id).await.unwrap(),
        vec![i2.clone()]
    );
    assert!(
        s.find_identity(&conn.id, SCIM_ISSUER, &i.subject)
            .await
            .unwrap()
            .is_none()
    );

    // Whoever read version 1 is too late now.
    let stored = || async {
        (
            s.find_scim_user(&conn.id, &u.user_id).await.unwrap(),
            s.list_identities(&u.user_id).await.unwrap(),
        )
    };
    let before = stored().await;
    let mut u3 = u2.clone();
    u3.name = Some("Stale".into());
    let mut i3 = i2.clone();
    i3.subject = format!("stale-{tag}");
    let mut r3 = r2.clone();
    r3.user_name = format!("stale-{tag}");
    r3.version = 3;
    let err = s.update_scim_user(&u3, &i3, &r3, 1).await.unwrap_err();
    assert_eq!(conflict_field(&err), Some("version"), "{err:?}");
    assert_eq!(stored().await, before);

    // Another user's userName (in another case) or externalId: refused, nothing written.
    let mut clash = r3.clone();
    clash.user_name = or.user_name.to_uppercase();
    let err = s.update_scim_user(&u3, &i3, &clash, 2).await.unwrap_err();
    assert_eq!(conflict_field(&err), Some("userName"), "{err:?}");
    assert_eq!(stored().await, before);
    let mut clash = r3.clone();
    clash.external_id = or.external_id.clone();
    let err = s.update_scim_user(&u3, &i3, &clash, 2).await.unwrap_err();
    assert_eq!(conflict_field(&err), Some("externalId"), "{err:?}");
    assert_eq!(stored().await, before);
    // The other user's identity subject.
    let mut taken = i3.clone();
    taken.subject = oi.subject.clone();
    let err = s.update_scim_user(&u3, &taken, &r3, 2).await.unwrap_err();
    assert_eq!(conflict_field(&err), Some("identity"), "{err:?}");
    assert_eq!(stored().await, before);

    // The right version, and a userName that differs only in case from its own.
    r3.user_name = r2.user_name.to_lowercase();
    s.update_scim_user(&u3, &i3, &r3, 2).await.unwrap();
    assert_eq!(
        s.find_scim_user(&conn.id, &u.user_id).await.unwrap(),
        Some((r3, u3.clone()))
    );
    assert_eq!(
        s.list_identities(&u.user_id).await.unwrap(),
        vec![i3.clone()]
    );

    // No such SCIM user.
    let (gu, gi, gr) = scim_user(&conn, &format!("ghost-{tag}"), None);
    let err = s.update_scim_user(&gu, &gi, &gr, 1).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    // The other user is as it was.
    assert_eq!(
        s.find_scim_user(&conn.id, &ou.user_id).await.unwrap(),
        Some((or, ou))
    );
}

/// The first sign-in through the connection claims the identity a SCIM client created for its
/// subject, once.
pub async fn scim_identity_is_claimed_once(s: &dyn Store) {
    let (a, b) = (
        fixtures::connection(Strategy::Okta),
        fixtures::connection(Strategy::Okta),
    );
    s.insert_connection(&a).await.unwrap();
    s.insert_connection(&b).await.unwrap();
    let tag = crate::env::unique();
    let subject = format!("00u-{tag}");
    let (u, i, r) = scim_user(&a, &format!("claim-{tag}"), Some(&subject));
    s.insert_scim_user(&u, &i, &r).await.unwrap();
    // A sign-in identity of another user in the connection is not a SCIM one.
    let other = fixtures::user();
    let signed_in = fixtures::identity(&other, &a);
    s.insert_user_with_identity(&other, &signed_in)
        .await
        .unwrap();
    let issuer = "https://acme.okta.com";

    assert!(
        s.claim_scim_identity(&b.id, issuer, &subject)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.claim_scim_identity(&a.id, issuer, &format!("nobody-{tag}"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.claim_scim_identity(&a.id, issuer, &signed_in.subject)
            .await
            .unwrap()
            .is_none()
    );

    let claimed = Identity {
        issuer: issuer.into(),
        ..i.clone()
    };
    assert_eq!(
        s.claim_scim_identity(&a.id, issuer, &subject)
            .await
            .unwrap(),
        Some((claimed.clone(), u.clone()))
    );
    assert_eq!(
        s.find_identity_with_user(&a.id, issuer, &subject)
            .await
            .unwrap(),
        Some((claimed.clone(), u.clone()))
    );
    assert!(
        s.find_identity(&a.id, SCIM_ISSUER, &subject)
            .await
            .unwrap()
            .is_none()
    );
    // Nothing left to claim.
    assert!(
        s.claim_scim_identity(&a.id, issuer, &subject)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.list_identities(&u.user_id).await.unwrap(), vec![claimed]);
    // The SCIM record is the same user's still.
    assert_eq!(
        s.find_scim_user(&a.id, &u.user_id).await.unwrap(),
        Some((r, u))
    );
}

/// Deleting a user deletes their SCIM records; deleting a connection deletes its SCIM
/// configuration, tokens and records: a connection made again with the same id has none.
pub async fn scim_rows_go_with_their_user_and_connection(s: &dyn Store) {
    let (a, b) = (
        fixtures::connection(Strategy::Okta),
        fixtures::connection(Strategy::Okta),
    );
    s.insert_connection(&a).await.unwrap();
    s.insert_connection(&b).await.unwrap();
    let tag = crate::env::unique();
    s.put_scim_config(&ScimConfig {
        connection_id: a.id.clone(),
        user_id_attribute: DEFAULT_SCIM_USER_ID_ATTRIBUTE.into(),
        mapping: serde_json::json!([]),
        created_at: now(),
        updated_at: now(),
    })
    .await
    .unwrap();
    let token = scim_token(&a, 0);
    s.insert_scim_token(&token).await.unwrap();
    let name = format!("gone-{tag}");
    let (u1, i1, r1) = scim_user(&a, &name, Some(&format!("ext1-{tag}")));
    s.insert_scim_user(&u1, &i1, &r1).await.unwrap();
    let (u2, i2, r2) = scim_user(&a, &format!("stays-{tag}"), Some(&format!("ext2-{tag}")));
    s.insert_scim_user(&u2, &i2, &r2).await.unwrap();
    let (other, oi, or) = scim_user(&b, &format!("other-{tag}"), None);
    s.insert_scim_user(&other, &oi, &or).await.unwrap();

    s.delete_user(&u1.user_id).await.unwrap();
    assert!(
        s.find_scim_user(&a.id, &u1.user_id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(scim_count(s, &a.id).await, 1);
    // Its userName and externalId are free again.
    let (u3, i3, r3) = scim_user(&a, &name, r1.external_id.as_deref());
    s.insert_scim_user(&u3, &i3, &r3).await.unwrap();

    s.delete_connection(&a.id).await.unwrap();
    assert!(s.find_scim_token(&token.digest).await.unwrap().is_none());
    s.insert_connection(&a).await.unwrap();
    assert!(s.find_scim_config(&a.id).await.unwrap().is_none());
    assert!(s.list_scim_tokens(&a.id).await.unwrap().is_empty());
    assert_eq!(scim_count(s, &a.id).await, 0);
    for u in [&u2, &u3] {
        assert!(s.find_scim_user(&a.id, &u.user_id).await.unwrap().is_none());
    }
    // The other connection's are untouched.
    assert_eq!(
        s.find_scim_user(&b.id, &other.user_id).await.unwrap(),
        Some((or, other))
    );
    assert_eq!(scim_count(s, &b.id).await, 1);
}

fn log_stream(tag: &str, filters: &[&str], status: LogStreamStatus) -> LogStream {
    LogStream {
        id: format!("lst_{tag}"),
        name: format!("stream {tag}"),
        status,
        sink: LogStreamSink {
            endpoint: format!("https://sink.example/{tag}"),
            content_type: DEFAULT_CONTENT_TYPE.into(),
            content_format: ContentFormat::JsonLines,
            authorization: Some(SecretString::new(format!("Bearer secret-{tag}"))),
            headers: vec![
                ("X-Api-Key".into(), SecretString::new(format!("key-{tag}"))),
                ("X-Tenant".into(), SecretString::new("t1")),
            ],
        },
        filters: filters.iter().map(|f| (*f).to_owned()).collect(),
        suspended_reason: None,
        created_at: now(),
        updated_at: now(),
        failures: 0,
        failing_since: None,
        last_error: None,
        next_attempt_at: None,
    }
}

/// Streams are stored (the authorization read back as written), listed, changed and deleted.
pub async fn log_streams_round_trip(s: &dyn Store) {
    let tag = crate::env::unique();
    let a = log_stream(
        &format!("a{tag}"),
        &["auth.login.success"],
        LogStreamStatus::Active,
    );
    let mut b = log_stream(&format!("b{tag}"), &[], LogStreamStatus::Active);
    b.sink.authorization = None;
    b.sink.headers.clear();
    b.sink.content_format = ContentFormat::JsonArray;
    b.created_at = now() + Duration::milliseconds(1);
    s.insert_log_stream(&a).await.unwrap();
    s.insert_log_stream(&b).await.unwrap();
    assert!(matches!(
        s.insert_log_stream(&a).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(s.find_log_stream(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(
        s.list_log_streams().await.unwrap(),
        vec![a.clone(), b.clone()]
    );

    let mut changed = a.clone();
    changed.name = "renamed".into();
    changed.status = LogStreamStatus::Paused;
    changed.filters = vec!["auth.logout.success".into(), "other".into()];
    changed.sink.authorization = Some(SecretString::new("Basic other"));
    changed.sink.headers = vec![("X-Other".into(), SecretString::new("v2"))];
    changed.updated_at = now() + Duration::seconds(1);
    s.update_log_stream(&changed, Some(changed.status))
        .await
        .unwrap();
    assert_eq!(s.find_log_stream(&a.id).await.unwrap(), Some(changed));

    let missing = log_stream(&format!("missing{tag}"), &[], LogStreamStatus::Active);
    assert!(matches!(
        s.update_log_stream(&missing, None).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(s.find_log_stream(&missing.id).await.unwrap().is_none());
    assert!(s.delete_log_stream(&a.id).await.unwrap());
    assert!(!s.delete_log_stream(&a.id).await.unwrap());
    assert_eq!(s.list_log_streams().await.unwrap(), vec![b]);
}

/// Waits for the log writer: a read of the log sees everything recorded before it.
async fn flush_log(s: &dyn Store) {
    s.list_logs(&LogQuery {
        per_page: 1,
        ..LogQuery::default()
    })
    .await
    .unwrap();
}

/// Events are queued per stream by its filters (paused streams too), in order, as `GET
/// /api/v2/logs` shows them; a claim leases one stream with its oldest events; an ack drops
/// them, a failure keeps them (the same events come first again) until the stream is due;
/// suspension stops claims until the stream is active again; a lease that lapses is taken again.
pub async fn log_stream_queues_are_leased_in_order(s: &dyn Store) {
    let tag = crate::env::unique();
    let logins = log_stream(
        &format!("l{tag}"),
        &["auth.login.success"],
        LogStreamStatus::Active,
    );
    let all = log_stream(&format!("x{tag}"), &[], LogStreamStatus::Active);
    let paused = log_stream(&format!("p{tag}"), &[], LogStreamStatus::Paused);
    for st in [&logins, &all, &paused] {
        s.insert_log_stream(st).await.unwrap();
    }
    let t0 = now();
    let mut sent = Vec::new();
    for (n, kind) in ["s", "slo", "sapi", "s"].iter().enumerate() {
        let e = LogEvent {
            user_id: Some(UserId::new(format!("auth0|{tag}"))),
            details: serde_json::json!({"n": n}),
            ..LogEvent::new(t0 + Duration::milliseconds(n as i64), kind, "event")
        };
        s.insert_log(&e).await.unwrap();
        sent.push(e);
    }
    flush_log(s).await;
    let listed = s
        .list_logs(&LogQuery {
            user_id: Some(UserId::new(format!("auth0|{tag}"))),
            per_page: 100,
            ..LogQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 4);
    let as_listed = |id: &str| {
        listed
            .iter()
            .find(|e| e.log_id.as_str() == id)
            .map(LogEvent::api_json)
            .unwrap()
    };
    assert_eq!(s.count_log_stream_events(&logins.id).await.unwrap(), 2);
    assert_eq!(s.count_log_stream_events(&all.id).await.unwrap(), 4);
    assert_eq!(s.count_log_stream_events(&paused.id).await.unwrap(), 4);

    let lease = t0 + Duration::seconds(30);
    // The stream whose oldest event is oldest first: both have the first event; then by id.
    let (first, first_events) = s.claim_log_stream(t0, lease, 100).await.unwrap().unwrap();
    let (second, second_events) = s.claim_log_stream(t0, lease, 100).await.unwrap().unwrap();
    assert!(
        s.claim_log_stream(t0, lease, 100).await.unwrap().is_none(),
        "paused: never"
    );
    let (l_events, x_events) = if first.id == logins.id {
        assert_eq!(second.id, all.id);
        (first_events, second_events)
    } else {
        assert_eq!(
            (first.id.as_str(), second.id.as_str()),
            (all.id.as_str(), logins.id.as_str())
        );
        (second_events, first_events)
    };
    let ids = |ev: &[LogStreamEvent]| ev.iter().map(|e| e.log_id.clone()).collect::<Vec<_>>();
    let seqs = |ev: &[LogStreamEvent]| ev.iter().map(|e| e.seq).collect::<Vec<_>>();
    let sent_ids = |which: &[usize]| {
        which
            .iter()
            .map(|i| sent[*i].log_id.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&l_events), sent_ids(&[0, 3]));
    assert_eq!(ids(&x_events), sent_ids(&[0, 1, 2, 3]));
    assert!(x_events.windows(2).all(|w| w[0].seq < w[1].seq));
    for e in &x_events {
        let data: serde_json::Value = serde_json::from_str(&e.payload).unwrap();
        assert_eq!(data, as_listed(&e.log_id));
        let item: serde_json::Value = serde_json::from_str(&e.item()).unwrap();
        assert_eq!(item["log_id"], e.log_id.as_str());
        assert_eq!(item["data"], data);
    }

    // Delivered: gone from the queue.
    assert!(
        s.ack_log_stream(&logins.id, lease, &seqs(&l_events))
            .await
            .unwrap()
    );
    assert_eq!(s.count_log_stream_events(&logins.id).await.unwrap(), 0);

    // A limit takes the oldest; a failure keeps them for the next attempt, when due.
    assert!(
        s.fail_log_stream(
            &all.id,
            lease,
            &LogStreamFailure {
                failures: 1,
                failing_since: t0,
                error: "HTTP 503".into(),
                next_attempt_at: t0 + Duration::seconds(2),
                suspend: false,
            },
        )
        .await
        .unwrap()
    );
    assert!(
        s.claim_log_stream(t0 + Duration::seconds(1), lease, 2)
            .await
            .unwrap()
            .is_none()
    );
    let (again, events) = s
        .claim_log_stream(t0 + Duration::seconds(2), lease, 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.failures, again.last_error.as_deref()),
        (1, Some("HTTP 503"))
    );
    assert_eq!(again.failing_since, Some(t0));
    assert_eq!(ids(&events), sent_ids(&[0, 1]));
    assert_eq!(events[0].seq, x_events[0].seq);
    // Held by the lease until it lapses.
    assert!(
        s.claim_log_stream(t0 + Duration::seconds(3), lease, 2)
            .await
            .unwrap()
            .is_none()
    );
    let lease2 = lease + Duration::seconds(30);
    let (lapsed, lapsed_events) = s.claim_log_stream(lease, lease2, 2).await.unwrap().unwrap();
    assert_eq!(lapsed.id, all.id);
    assert_eq!(ids(&lapsed_events), sent_ids(&[0, 1]));
    // The first lease is over: its holder's ack changes nothing.
    assert!(
        !s.ack_log_stream(&all.id, lease, &seqs(&events))
            .await
            .unwrap()
    );
    assert_eq!(s.count_log_stream_events(&all.id).await.unwrap(), 4);
    assert!(
        s.ack_log_stream(&all.id, lease2, &seqs(&lapsed_events))
            .await
            .unwrap()
    );
    assert_eq!(s.count_log_stream_events(&all.id).await.unwrap(), 2);

    // Failing too long: suspended with the reason, never claimed, until set active again.
    let later = lease + Duration::seconds(60);
    let lease3 = later + Duration::seconds(30);
    let (_, rest) = s
        .claim_log_stream(later, lease3, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&rest), sent_ids(&[2, 3]));
    assert!(
        s.fail_log_stream(
            &all.id,
            lease3,
            &LogStreamFailure {
                failures: 1,
                failing_since: t0,
                error: "connection refused".into(),
                next_attempt_at: later,
                suspend: true,
            },
        )
        .await
        .unwrap()
    );
    let suspended = s.find_log_stream(&all.id).await.unwrap().unwrap();
    assert_eq!(suspended.status, LogStreamStatus::Suspended);
    assert_eq!(
        suspended.suspended_reason.as_deref(),
        Some("connection refused")
    );
    assert!(
        s.claim_log_stream(later + Duration::hours(1), later + Duration::hours(2), 100)
            .await
            .unwrap()
            .is_none()
    );
    let resumed = LogStream {
        status: LogStreamStatus::Active,
        suspended_reason: None,
        ..suspended
    };
    s.update_log_stream(&resumed, Some(LogStreamStatus::Active))
        .await
        .unwrap();
    let stored = s.find_log_stream(&all.id).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.failures,
            stored.failing_since,
            stored.next_attempt_at
        ),
        (0, None, None)
    );
    let (back, events) = s
        .claim_log_stream(later, later + Duration::seconds(30), 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.id, all.id);
    assert_eq!(ids(&events), sent_ids(&[2, 3]));

    // Deleting a stream deletes its queue; nothing is left to purge.
    assert!(s.delete_log_stream(&paused.id).await.unwrap());
    assert_eq!(s.count_log_stream_events(&paused.id).await.unwrap(), 0);
    assert_eq!(s.purge_orphan_log_stream_events().await.unwrap(), 0);
    // An event written after a stream is deleted is not queued for it.
    s.insert_log(&LogEvent::new(now(), "s", "after"))
        .await
        .unwrap();
    flush_log(s).await;
    assert_eq!(s.count_log_stream_events(&paused.id).await.unwrap(), 0);
    assert_eq!(s.count_log_stream_events(&logins.id).await.unwrap(), 1);
}

/// Retention of the log streams' queues: queued events dated before the cut go, whichever stream
/// holds them (paused ones included), in batches of at most `limit`, events still on their way
/// to the database included; the rest stay, in order. Two instances purging at once delete each
/// event once between them, without error.
pub async fn log_stream_queues_purge_in_bounded_batches(s: &dyn Store) {
    let tag = crate::env::unique();
    // Far back (2001), as for the log; the streams are older still, so they queue these events.
    let cut = time::OffsetDateTime::from_unix_timestamp(1_000_000_000).unwrap();
    let mut held = log_stream(&format!("h{tag}"), &[], LogStreamStatus::Paused);
    let mut logins = log_stream(
        &format!("l{tag}"),
        &["auth.login.success"],
        LogStreamStatus::Active,
    );
    for st in [&mut held, &mut logins] {
        st.created_at = cut - Duration::days(365);
        st.updated_at = st.created_at;
        s.insert_log_stream(st).await.unwrap();
    }
    let event = |n: i64, kind: &str, date| LogEvent {
        user_id: Some(UserId::new(format!("auth0|{tag}"))),
        log_id: LogId::new(format!("log-{tag}-{n}")),
        ..LogEvent::new(date, kind, "retention")
    };
    // 12 sign-ins for both streams and one sign-out for the paused one: 25 queued before the cut.
    for n in 0..12 {
        s.insert_log(&event(n, "s", cut - Duration::seconds(n + 1)))
            .await
            .unwrap();
    }
    s.insert_log(&event(50, "slo", cut - Duration::days(1)))
        .await
        .unwrap();
    // At the cut, and after it: kept.
    s.insert_log(&event(100, "s", cut)).await.unwrap();
    s.insert_log(&event(101, "s", cut + Duration::days(1)))
        .await
        .unwrap();
    // No flush first: the purge sees what was recorded before it.
    assert_eq!(s.purge_log_stream_events(cut, 10).await.unwrap(), 10);
    let (a, b) = tokio::join!(
        drain(async || s.purge_log_stream_events(cut, 4).await.unwrap(), 4),
        drain(async || s.purge_log_stream_events(cut, 4).await.unwrap(), 4),
    );
    assert_eq!(a + b, 15, "every old queued event deleted once");
    assert_eq!(s.purge_log_stream_events(cut, 10).await.unwrap(), 0);
    assert_eq!(s.count_log_stream_events(&held.id).await.unwrap(), 2);
    assert_eq!(s.count_log_stream_events(&logins.id).await.unwrap(), 2);
    // The log itself is not the queue's business (it has its own purge).
    let logged = s
        .list_logs(&LogQuery {
            user_id: Some(UserId::new(format!("auth0|{tag}"))),
            per_page: 100,
            ..LogQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(logged.len(), 15);

    // What is left is sent as before: the kept events, in order (the paused stream: never).
    let lease = now() + Duration::seconds(30);
    let (stream, events) = s
        .claim_log_stream(now(), lease, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stream.id, logins.id);
    assert_eq!(
        events.iter().map(|e| e.log_id.as_str()).collect::<Vec<_>>(),
        vec![format!("log-{tag}-100"), format!("log-{tag}-101")]
    );
    let sent: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert!(s.ack_log_stream(&logins.id, lease, &sent).await.unwrap());
    assert_eq!(s.count_log_stream_events(&logins.id).await.unwrap(), 0);
    assert!(
        s.claim_log_stream(now(), now() + Duration::seconds(30), 100)
            .await
            .unwrap()
            .is_none()
    );
}

/// Records `kinds` as events of test `tag`, a millisecond apart from `t0`, and waits for the log
/// writer; the events, in order.
async fn stream_events(
    s: &dyn Store,
    tag: &str,
    t0: time::OffsetDateTime,
    kinds: &[&str],
) -> Vec<LogEvent> {
    let mut out = Vec::new();
    for (n, kind) in kinds.iter().enumerate() {
        let e = LogEvent {
            user_id: Some(UserId::new(format!("auth0|{tag}"))),
            ..LogEvent::new(t0 + Duration::milliseconds(n as i64), kind, "event")
        };
        s.insert_log(&e).await.unwrap();
        out.push(e);
    }
    flush_log(s).await;
    out
}

fn stream_log_ids(events: &[LogStreamEvent]) -> Vec<String> {
    events.iter().map(|e| e.log_id.clone()).collect()
}

fn event_log_ids(events: &[&LogEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.log_id.as_str().to_owned())
        .collect()
}

/// An ack deletes exactly the events that were sent: an event the claim did not see stays, even
/// below the highest acknowledged one (on PostgreSQL another instance's event can commit after
/// a later one was read), and goes out next, in order. An ack of nothing only gives the lease
/// back: the failures stay.
pub async fn log_stream_acks_only_what_was_sent(s: &dyn Store) {
    let tag = crate::env::unique();
    let st = log_stream(&format!("k{tag}"), &[], LogStreamStatus::Active);
    s.insert_log_stream(&st).await.unwrap();
    let t0 = now();
    let sent = stream_events(s, &tag, t0, &["s", "s", "s", "s", "s"]).await;
    let lease = t0 + Duration::seconds(30);
    let (_, events) = s.claim_log_stream(t0, lease, 100).await.unwrap().unwrap();
    assert_eq!(events.len(), 5);
    // The first, third and fifth were sent; the second and fourth, as if not yet seen, were not.
    let acked = [events[0].seq, events[2].seq, events[4].seq];
    assert!(s.ack_log_stream(&st.id, lease, &acked).await.unwrap());
    assert_eq!(s.count_log_stream_events(&st.id).await.unwrap(), 2);
    let (_, left) = s.claim_log_stream(t0, lease, 100).await.unwrap().unwrap();
    assert_eq!(stream_log_ids(&left), event_log_ids(&[&sent[1], &sent[3]]));

    // A failure, then a claim that finds nothing to send: the lease goes back, the streak stays.
    assert!(
        s.fail_log_stream(
            &st.id,
            lease,
            &LogStreamFailure {
                failures: 1,
                failing_since: t0,
                error: "HTTP 503".into(),
                next_attempt_at: t0,
                suspend: false,
            },
        )
        .await
        .unwrap()
    );
    let lease2 = lease + Duration::seconds(30);
    let (held, _) = s.claim_log_stream(t0, lease2, 100).await.unwrap().unwrap();
    assert_eq!(held.failures, 1);
    assert!(s.ack_log_stream(&st.id, lease2, &[]).await.unwrap());
    let stored = s.find_log_stream(&st.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.failures, stored.last_error.as_deref()),
        (1, Some("HTTP 503"))
    );
    assert_eq!(s.count_log_stream_events(&st.id).await.unwrap(), 2);
    assert!(
        s.claim_log_stream(t0, lease2, 100).await.unwrap().is_some(),
        "the lease was given back"
    );
}

/// Only the holder of a stream's current lease records an outcome: a worker whose lease lapsed
/// and was taken over changes nothing (no ack, no failure, no release of the new holder's
/// lease). A failure of an attempt that began before an administrator set the stream `active`
/// does not undo that; a change that leaves the status out does not undo a suspension the
/// workers wrote after the change's read.
pub async fn log_stream_outcomes_are_fenced_by_the_lease(s: &dyn Store) {
    let tag = crate::env::unique();
    let st = log_stream(&format!("f{tag}"), &[], LogStreamStatus::Active);
    s.insert_log_stream(&st).await.unwrap();
    let t0 = now();
    stream_events(s, &tag, t0, &["s", "slo"]).await;
    let failure = |failures: i32, error: &str, suspend: bool| LogStreamFailure {
        failures,
        failing_since: t0,
        error: error.into(),
        next_attempt_at: t0,
        suspend,
    };

    // A claims; its lease lapses and B takes the stream.
    let l1 = t0 + Duration::seconds(30);
    let (_, a_events) = s.claim_log_stream(t0, l1, 100).await.unwrap().unwrap();
    let l2 = l1 + Duration::seconds(30);
    let (_, b_events) = s.claim_log_stream(l1, l2, 100).await.unwrap().unwrap();
    assert_eq!(a_events, b_events);
    // A's late outcomes change nothing.
    let a_seqs: Vec<i64> = a_events.iter().map(|e| e.seq).collect();
    assert!(!s.ack_log_stream(&st.id, l1, &a_seqs).await.unwrap());
    assert!(
        !s.fail_log_stream(&st.id, l1, &failure(1, "late", false))
            .await
            .unwrap()
    );
    assert!(!s.ack_log_stream(&st.id, l1, &[]).await.unwrap());
    assert_eq!(s.count_log_stream_events(&st.id).await.unwrap(), 2);
    let stored = s.find_log_stream(&st.id).await.unwrap().unwrap();
    assert_eq!((stored.failures, stored.last_error), (0, None));
    // B still holds it.
    assert!(
        s.claim_log_stream(l1 + Duration::seconds(1), l2, 100)
            .await
            .unwrap()
            .is_none(),
        "a stale outcome released the new holder's lease"
    );
    assert!(
        s.fail_log_stream(&st.id, l2, &failure(1, "HTTP 503", false))
            .await
            .unwrap()
    );

    // C claims (one failure so far); an administrator pauses and resumes the stream while C
    // sends. C's failure, which would suspend it, comes after: the resume stands.
    let l3 = l2 + Duration::seconds(30);
    let (c, _) = s.claim_log_stream(l2, l3, 100).await.unwrap().unwrap();
    assert_eq!(c.failures, 1);
    s.update_log_stream(&c, Some(LogStreamStatus::Paused))
        .await
        .unwrap();
    s.update_log_stream(&c, Some(LogStreamStatus::Active))
        .await
        .unwrap();
    assert!(
        !s.fail_log_stream(&st.id, l3, &failure(2, "HTTP 500", true))
            .await
            .unwrap()
    );
    let stored = s.find_log_stream(&st.id).await.unwrap().unwrap();
    assert_eq!(stored.status, LogStreamStatus::Active);
    assert_eq!(
        (stored.failures, stored.failing_since, stored.last_error),
        (0, None, None)
    );
    assert!(stored.suspended_reason.is_none());

    // C's lease was given back all the same: D claims at once. A change read before D's failure
    // suspends the stream, and written after it with no status, leaves it suspended.
    let l4 = l3 + Duration::seconds(30);
    let (_, _) = s.claim_log_stream(l2, l4, 100).await.unwrap().unwrap();
    let read = s.find_log_stream(&st.id).await.unwrap().unwrap();
    assert!(
        s.fail_log_stream(&st.id, l4, &failure(1, "HTTP 500", true))
            .await
            .unwrap()
    );
    let renamed = LogStream {
        name: "renamed".into(),
        filters: vec!["auth.login.success".into()],
        ..read
    };
    s.update_log_stream(&renamed, None).await.unwrap();
    let stored = s.find_log_stream(&st.id).await.unwrap().unwrap();
    assert_eq!(stored.name, "renamed");
    assert_eq!(stored.filters, vec!["auth.login.success".to_owned()]);
    assert_eq!(stored.status, LogStreamStatus::Suspended);
    assert_eq!(stored.suspended_reason.as_deref(), Some("HTTP 500"));
    assert_eq!(
        (stored.failures, stored.last_error.as_deref()),
        (1, Some("HTTP 500"))
    );
    assert!(
        s.claim_log_stream(l4 + Duration::hours(1), l4 + Duration::hours(2), 100)
            .await
            .unwrap()
            .is_none()
    );
}
