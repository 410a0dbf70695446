//! Retention: log events (and the events a paused log stream holds) and finished back-channel
//! deliveries older than their settings are purged, by a direct pass and by the background worker
//! every instance runs; pending deliveries never are.

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use latch_core::model::{
    ContentFormat, DEFAULT_CONTENT_TYPE, Delivery, DeliveryKind, DeliveryState, LogEvent, LogQuery,
    LogStream, LogStreamSink, LogStreamStatus, LogoutInitiator, LogoutNotice,
};
use latch_core::{ClientId, DeliveryId, Jti, LogId, StoreError, UserId};
use latch_server::retention::{Purged, purge};
use time::{Duration, OffsetDateTime};

use crate::support::{Harness, api};
use crate::{app, on_all_backends};

fn delivery(
    tag: &str,
    n: u32,
    state: DeliveryState,
    created_at: OffsetDateTime,
    finished_at: Option<OffsetDateTime>,
) -> Delivery {
    Delivery {
        id: DeliveryId::new(format!("dlv-{tag}-{n}")),
        kind: DeliveryKind::BackchannelLogout,
        client_id: ClientId::new(format!("c-{tag}")),
        target: url::Url::parse("http://127.0.0.1:9/bc").unwrap(),
        notice: LogoutNotice {
            sub: Some(UserId::new("auth0|retention")),
            sid: None,
            initiator: LogoutInitiator::RpLogout,
            email: None,
        },
        jti: Jti::new(format!("jti-{tag}-{n}")),
        state,
        attempts: i32::from(state != DeliveryState::Pending),
        created_at,
        // Never due during the test: the workers started below must leave it alone.
        next_attempt_at: created_at + Duration::days(365),
        locked_until: None,
        last_error: None,
        finished_at,
    }
}

async fn old_logs_and_finished_deliveries_are_purged(h: Harness) {
    let s = &h.state;
    // Whole milliseconds, as the store keeps instants.
    let now = latch_core::clock::truncate_millis(s.clock.now());
    let tag = latch_testkit::env::unique();
    let user = UserId::new(format!("auth0|{tag}"));
    let log = |n: i64, age: Duration| LogEvent {
        log_id: LogId::new(format!("log-{tag}-{n}")),
        user_id: Some(user.clone()),
        ..LogEvent::new(now - age, "s", "retention")
    };
    let mine = || async {
        s.store
            .list_logs(&LogQuery {
                user_id: Some(user.clone()),
                per_page: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.log_id.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    // The defaults: 30 days of log, 7 days of finished deliveries.
    assert_eq!(s.config.log_retention, Duration::days(30));
    assert_eq!(s.config.outbox_retention, Duration::days(7));
    // A stream paused since before all of it holds the sign-ins for its sink: no longer than the
    // log keeps them.
    let held = LogStream {
        id: format!("lst_{tag}"),
        name: "held".into(),
        status: LogStreamStatus::Paused,
        sink: LogStreamSink {
            endpoint: "http://127.0.0.1:9/sink".into(),
            content_type: DEFAULT_CONTENT_TYPE.into(),
            content_format: ContentFormat::JsonLines,
            authorization: None,
            headers: Vec::new(),
        },
        filters: vec!["auth.login.success".into()],
        suspended_reason: None,
        created_at: now - Duration::days(40),
        updated_at: now - Duration::days(40),
        failures: 0,
        failing_since: None,
        last_error: None,
        next_attempt_at: None,
    };
    s.store.insert_log_stream(&held).await.unwrap();
    for n in 0..5 {
        s.store
            .insert_log(&log(n, Duration::days(31) + Duration::minutes(n)))
            .await
            .unwrap();
    }
    s.store
        .insert_log(&log(100, Duration::days(29)))
        .await
        .unwrap();
    let d = |n, state, created: i64, finished: Option<i64>| {
        delivery(
            &tag,
            n,
            state,
            now - Duration::days(created),
            finished.map(|f| now - Duration::days(f)),
        )
    };
    let delivered = d(0, DeliveryState::Delivered, 9, Some(8));
    let failed = d(1, DeliveryState::Failed, 9, Some(8));
    let recent = d(2, DeliveryState::Delivered, 6, Some(6));
    let pending = d(3, DeliveryState::Pending, 40, None);
    s.store
        .insert_deliveries(&[
            delivered.clone(),
            failed.clone(),
            recent.clone(),
            pending.clone(),
        ])
        .await
        .unwrap();

    // Grants: one expired longer ago than the grace (with its refresh token), one within it.
    let (owner, app) = (
        latch_testkit::fixtures::user(),
        latch_testkit::fixtures::client(),
    );
    s.store.insert_user(&owner).await.unwrap();
    s.store.insert_client(&app).await.unwrap();
    let grant = |days_ago: i64| {
        let mut t = latch_testkit::fixtures::refresh_token(&owner, &app, None, false);
        t.expires_at = now - Duration::days(days_ago);
        t.family_expires_at = t.expires_at;
        let g = latch_testkit::fixtures::grant_of(&t);
        (g, t)
    };
    let (old_grant, old_token) = grant(31);
    let (young_grant, young_token) = grant(29);
    for (g, t) in [(&old_grant, &old_token), (&young_grant, &young_token)] {
        s.store.insert_grant(g, Some(t)).await.unwrap();
    }

    // One pass, in batches of two: everything past its retention, and nothing else.
    let purged = purge(&*s.store, &s.config, now, 2).await.unwrap();
    assert_eq!(
        purged,
        Purged {
            logs: 5,
            log_stream_events: 5,
            deliveries: 2,
            grants: 1,
        }
    );
    assert_eq!(s.store.find_grant(&old_grant.id).await.unwrap(), None);
    assert_eq!(
        s.store.find_refresh_token(&old_token.digest).await.unwrap(),
        None
    );
    assert!(s.store.find_grant(&young_grant.id).await.unwrap().is_some());
    assert_eq!(mine().await, vec![format!("log-{tag}-100")]);
    assert_eq!(s.store.count_log_stream_events(&held.id).await.unwrap(), 1);
    let app = app!(h);
    let shown = api(
        &app,
        "GET",
        &format!("/api/v2/log-streams/{}", held.id),
        None,
    )
    .await;
    assert_eq!(shown["events_waiting"], 1, "{shown}");
    for gone in [&delivered, &failed] {
        assert!(matches!(
            s.store.get_delivery(&gone.id).await,
            Err(StoreError::NotFound { .. })
        ));
    }
    assert_eq!(s.store.get_delivery(&recent.id).await.unwrap(), recent);
    assert_eq!(s.store.get_delivery(&pending.id).await.unwrap(), pending);

    // The background worker does the same with the instance's settings (here a day of each).
    let mut config = (*s.config).clone();
    config.log_retention = Duration::days(1);
    config.outbox_retention = Duration::days(1);
    let mut state = s.clone();
    state.config = Arc::new(config);
    let workers = latch_server::app::spawn_workers(&state);
    let deadline = Instant::now() + StdDuration::from_secs(10);
    while !(mine().await.is_empty()
        && s.store.count_log_stream_events(&held.id).await.unwrap() == 0
        && s.store.get_delivery(&recent.id).await.is_err())
    {
        assert!(
            Instant::now() < deadline,
            "the retention worker purged nothing"
        );
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    for w in workers {
        w.abort();
    }
    assert_eq!(
        s.store.get_delivery(&pending.id).await.unwrap().state,
        DeliveryState::Pending,
        "a pending delivery is never purged"
    );
}
on_all_backends!(
    old_logs_and_finished_deliveries_are_purged,
    old_logs_and_finished_deliveries_are_purged
);
