//! A user's reads in batches: the identity an upstream subject names (with its user), the user's
//! live refresh tokens, and whether the user holds a live grant. A Global Token Revocation makes
//! all three (other user-wide logouts the last two; sign-ins, SCIM and the admin API read through
//! the same thread); alone, each is a hand-off to a blocking thread, a pooled connection and a
//! statement. One thread takes every read waiting at that moment and makes one query per kind
//! for all of them (`= ANY(…)` on PostgreSQL, planned at each execution for its values; `IN (…)`
//! on SQLite). Not kept prepared with generic plans as the refresh grant's are
//! ([`crate::batch::GenericPlans`]): a generic plan assumes 10 values in each array, so the
//! identities read's plan narrows by connection alone and costs in proportion to the table, and
//! the tokens read's by the user's average token count. Both failed the plan check most of the
//! time in the GTR bench, so keeping them prepared gained nothing and added the checks and a
//! second connection.
//!
//! Each read keeps its own answer: a query's rows are a superset of what each read asked for
//! (the identities matching any of the batch's connections, issuers and subjects; the tokens
//! live at the batch's earliest `now`), and each read takes the rows that match it exactly. A
//! row that does not decode fails only the reads it answers; a database that cannot be reached
//! fails the whole batch at once (one connection attempt, not one per kind).

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;
use latch_core::StoreError;
use latch_core::model::{Identity, RefreshToken, User};

use crate::batch::{Batcher, Db, OwnConn, Reply, answer_all, describe, with_conn};
use crate::conn::DbConnection;
use crate::rows::{IdentityRow, RefreshRow, UserRow, db_err};
use crate::schema::{grants, identities, refresh_tokens, users};

/// Most reads in one batch.
const BATCH: usize = 64;

pub(crate) enum Read {
    Identity {
        connection: String,
        issuer: String,
        subject: String,
        done: Reply<Option<(Identity, User)>>,
    },
    Tokens {
        user: String,
        now: i64,
        done: Reply<Vec<RefreshToken>>,
    },
    LiveGrant {
        user: String,
        done: Reply<bool>,
    },
}

pub(crate) struct UserReads {
    reads: Batcher<Read>,
}

impl UserReads {
    /// One thread, with a connection of its own (PostgreSQL's statement and lock limits, as the
    /// refresh batch threads').
    pub fn start(db: Db) -> Result<Self, StoreError> {
        let own = OwnConn::planned();
        let reads = Batcher::start("latch-user-reads", "user read", 1, BATCH, move |jobs| {
            read(jobs, &db, &own)
        })?;
        Ok(Self { reads })
    }

    /// [`latch_core::store::UserRepo::find_identity_with_user`] in the next batch.
    pub async fn identity_with_user(
        &self,
        connection: String,
        issuer: String,
        subject: String,
    ) -> Result<Option<(Identity, User)>, StoreError> {
        self.reads
            .call(|done| Read::Identity {
                connection,
                issuer,
                subject,
                done,
            })
            .await
    }

    /// The user's refresh tokens neither revoked, rotated nor expired at `now` (milliseconds),
    /// oldest first, in the next batch.
    pub async fn live_tokens(
        &self,
        user: String,
        now: i64,
    ) -> Result<Vec<RefreshToken>, StoreError> {
        self.reads
            .call(|done| Read::Tokens { user, now, done })
            .await
    }

    /// Whether the user holds a grant not revoked, in the next batch.
    pub async fn any_live_grant(&self, user: String) -> Result<bool, StoreError> {
        self.reads.call(|done| Read::LiveGrant { user, done }).await
    }
}

type IdentityJob = (String, String, String, Reply<Option<(Identity, User)>>);
type TokensJob = (String, i64, Reply<Vec<RefreshToken>>);
type GrantJob = (String, Reply<bool>);

fn read(jobs: Vec<Read>, db: &Db, own: &OwnConn) {
    let (mut ids, mut tokens, mut grants) = (Vec::new(), Vec::new(), Vec::new());
    for j in jobs {
        match j {
            Read::Identity {
                connection,
                issuer,
                subject,
                done,
            } => ids.push((connection, issuer, subject, done)),
            Read::Tokens { user, now, done } => tokens.push((user, now, done)),
            Read::LiveGrant { user, done } => grants.push((user, done)),
        }
    }
    // A kind whose query found the database unreachable (or had its statement cancelled)
    // answers the kinds after it too, without another connection attempt.
    let mut down = None;
    if !ids.is_empty() {
        down = identities_of(ids, db, own);
    }
    if !tokens.is_empty() {
        if let Some(why) = &down {
            answer_unavailable(tokens.into_iter().map(|j| j.2), why);
        } else {
            down = tokens_of(tokens, db, own);
        }
    }
    if !grants.is_empty() {
        if let Some(why) = &down {
            answer_unavailable(grants.into_iter().map(|j| j.1), why);
        } else {
            grants_of(grants, db, own);
        }
    }
}

/// The text of `e` when the database could not be reached or cancelled the statement: the kinds
/// after it are not tried in this batch.
fn unavailable_text(e: &StoreError) -> Option<String> {
    matches!(e, StoreError::Unavailable(_)).then(|| describe(e))
}

fn answer_unavailable<T>(replies: impl Iterator<Item = Reply<T>>, why: &str) {
    for r in replies {
        let _ = r.send(Err(StoreError::Unavailable(why.to_owned().into())));
    }
}

/// The distinct values of one field of a batch's jobs.
fn distinct<'a>(values: impl Iterator<Item = &'a String>) -> Vec<String> {
    let set: HashSet<&String> = values.collect();
    set.into_iter().cloned().collect()
}

fn identities_of(jobs: Vec<IdentityJob>, db: &Db, own: &OwnConn) -> Option<String> {
    let conns = distinct(jobs.iter().map(|j| &j.0));
    let issuers = distinct(jobs.iter().map(|j| &j.1));
    let subjects = distinct(jobs.iter().map(|j| &j.2));
    type Found = HashMap<(String, String, String), Result<(Identity, User), String>>;
    let found = with_conn(db, own, false, |conn, plans| -> Result<Found, StoreError> {
        macro_rules! query {
            () => {
                identities::table
                    .inner_join(users::table.on(users::user_id.eq(identities::user_id)))
                    .filter(identities::connection_id.eq_any(&conns))
                    .filter(identities::issuer.eq_any(&issuers))
                    .filter(identities::subject.eq_any(&subjects))
                    .select((IdentityRow::as_select(), UserRow::as_select()))
            };
        }
        let rows: Vec<(IdentityRow, UserRow)> = match conn {
            DbConnection::Pg(pg) => plans.load(pg, query!()),
            DbConnection::Sqlite(lite) => query!().load(lite),
        }
        .map_err(db_err("identity", "subject"))?;
        let mut found = HashMap::with_capacity(rows.len());
        for (i, u) in rows {
            let key = (i.connection_id.clone(), i.issuer.clone(), i.subject.clone());
            let pair = i
                .into_domain()
                .and_then(|i| Ok((i, u.into_domain()?)))
                .map_err(|e| describe(&e));
            found.insert(key, pair);
        }
        Ok(found)
    });
    match found {
        Ok(found) => {
            for (c, i, s, done) in jobs {
                // Two reads of one identity in a batch each get it.
                let answer = match found.get(&(c, i, s)) {
                    None => Ok(None),
                    Some(Ok(pair)) => Ok(Some(pair.clone())),
                    Some(Err(e)) => Err(StoreError::Internal(e.clone().into())),
                };
                let _ = done.send(answer);
            }
            None
        }
        Err(e) => {
            let why = unavailable_text(&e);
            answer_all(jobs.into_iter().map(|j| j.3).collect(), e);
            why
        }
    }
}

fn tokens_of(jobs: Vec<TokensJob>, db: &Db, own: &OwnConn) -> Option<String> {
    let users = distinct(jobs.iter().map(|j| &j.0));
    // The earliest `now` of the batch: a superset of every read's live tokens.
    let since = jobs.iter().map(|j| j.1).min().unwrap_or_default();
    let rows = with_conn(db, own, false, |conn, plans| {
        macro_rules! query {
            () => {
                refresh_tokens::table
                    .filter(refresh_tokens::user_id.eq_any(&users))
                    .filter(refresh_tokens::revoked_at.is_null())
                    .filter(refresh_tokens::rotated_at.is_null())
                    .filter(refresh_tokens::expires_at.gt(since))
                    .select(RefreshRow::as_select())
                    .order(refresh_tokens::created_at)
            };
        }
        match conn {
            DbConnection::Pg(pg) => plans.load::<_, RefreshRow>(pg, query!()),
            DbConnection::Sqlite(lite) => query!().load::<RefreshRow>(lite),
        }
        .map_err(db_err("refresh token", "user_id"))
    });
    match rows {
        Ok(rows) => {
            // Each user's tokens, oldest first, with their expiry in milliseconds.
            let mut by_user: HashMap<String, Vec<(i64, RefreshToken)>> = HashMap::new();
            for r in rows {
                by_user
                    .entry(r.user_id.clone())
                    .or_default()
                    .push((r.expires_at, r.into_domain()));
            }
            for (user, now, done) in jobs {
                let mine = by_user
                    .get(&user)
                    .into_iter()
                    .flatten()
                    .filter(|(expires, _)| *expires > now)
                    .map(|(_, t)| t.clone())
                    .collect();
                let _ = done.send(Ok(mine));
            }
            None
        }
        Err(e) => {
            let why = unavailable_text(&e);
            answer_all(jobs.into_iter().map(|j| j.2).collect(), e);
            why
        }
    }
}

fn grants_of(jobs: Vec<GrantJob>, db: &Db, own: &OwnConn) -> Option<String> {
    let users = distinct(jobs.iter().map(|j| &j.0));
    let holders = with_conn(db, own, false, |conn, plans| {
        macro_rules! query {
            () => {
                grants::table
                    .filter(grants::revoked_at.is_null())
                    .filter(grants::user_id.eq_any(&users))
                    .select(grants::user_id)
                    .distinct()
            };
        }
        match conn {
            DbConnection::Pg(pg) => plans.load::<_, String>(pg, query!()),
            DbConnection::Sqlite(lite) => query!().load::<String>(lite),
        }
        .map_err(db_err("grant", "user_id"))
    });
    match holders {
        Ok(holders) => {
            let holders: HashSet<String> = holders.into_iter().collect();
            for (user, done) in jobs {
                let _ = done.send(Ok(holders.contains(&user)));
            }
            None
        }
        Err(e) => {
            let why = unavailable_text(&e);
            answer_all(jobs.into_iter().map(|j| j.1).collect(), e);
            why
        }
    }
}

#[cfg(test)]
mod tests {
    use latch_core::UserId;
    use latch_core::model::Strategy;
    use latch_core::store::*;
    use latch_testkit::fixtures::{self, now};
    use time::Duration;
    use tokio::sync::oneshot;

    use super::*;
    use crate::SqlStore;

    /// One batch built by hand, so every read is in it whatever the timing: each read takes
    /// exactly its own rows from the batch's superset (an identity whose connection, issuer and
    /// subject each appear in the batch, but not together, is nobody's), a user's tokens come
    /// oldest first and live at the read's own `now`, and the grant probe says no for a user
    /// without a live grant.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_batch_answers_each_read_exactly() {
        let dir = latch_testkit::env::TempDir::new();
        let store = SqlStore::for_test(&dir.path().join("latch.db").to_string_lossy()).await;
        let (a, b) = (
            fixtures::connection(Strategy::Okta),
            fixtures::connection(Strategy::Okta),
        );
        store.insert_connection(&a).await.unwrap();
        store.insert_connection(&b).await.unwrap();
        let client = fixtures::client();
        store.insert_client(&client).await.unwrap();
        let (u1, u2, u3) = (fixtures::user(), fixtures::user(), fixtures::user());
        for u in [&u1, &u2, &u3] {
            store.insert_user(u).await.unwrap();
        }
        // x = (a, iss1, s1), y = (b, iss2, s2), z = (a, iss2, s2); asked: x, y and (a, iss1, s2).
        let mut x = fixtures::identity(&u1, &a);
        x.issuer = "https://one.example".into();
        let mut y = fixtures::identity(&u2, &b);
        y.issuer = "https://two.example".into();
        let mut z = fixtures::identity(&u3, &a);
        z.issuer = y.issuer.clone();
        z.subject = y.subject.clone();
        for i in [&x, &y, &z] {
            store.insert_identity(i).await.unwrap();
        }
        // u1: an older token expiring in an hour, inserted after a newer one expiring later.
        let mut newer = fixtures::refresh_token(&u1, &client, None, true);
        newer.created_at = now() - Duration::minutes(1);
        let mut older = fixtures::refresh_token(&u1, &client, None, false);
        older.created_at = now() - Duration::minutes(2);
        older.expires_at = now() + Duration::hours(1);
        for t in [&newer, &older] {
            store
                .insert_grant(&fixtures::grant_of(t), Some(t))
                .await
                .unwrap();
        }

        let db = store.batch_db();
        let mut answers_id = Vec::new();
        let mut answers_tokens = Vec::new();
        let mut answers_grant = Vec::new();
        let mut jobs = Vec::new();
        for (c, i, s) in [
            (&x.connection_id, &x.issuer, &x.subject),
            (&y.connection_id, &y.issuer, &y.subject),
            (&x.connection_id, &x.issuer, &y.subject),
        ] {
            let (done, answer) = oneshot::channel();
            jobs.push(Read::Identity {
                connection: c.as_str().to_owned(),
                issuer: i.clone(),
                subject: s.clone(),
                done,
            });
            answers_id.push(answer);
        }
        let millis = |t: time::OffsetDateTime| i64::try_from(t.unix_timestamp_nanos() / 1_000_000);
        for (u, at) in [
            (&u1.user_id, now()),
            (&u1.user_id, now() + Duration::hours(2)),
            (&u2.user_id, now()),
        ] {
            let (done, answer) = oneshot::channel();
            jobs.push(Read::Tokens {
                user: u.as_str().to_owned(),
                now: millis(at).unwrap(),
                done,
            });
            answers_tokens.push(answer);
        }
        for u in [&u1.user_id, &u2.user_id, &UserId::new("auth0|nobody")] {
            let (done, answer) = oneshot::channel();
            jobs.push(Read::LiveGrant {
                user: u.as_str().to_owned(),
                done,
            });
            answers_grant.push(answer);
        }
        tokio::task::spawn_blocking(move || read(jobs, &db, &OwnConn::planned()))
            .await
            .unwrap();

        let mut ids = Vec::new();
        for a in answers_id {
            ids.push(a.await.unwrap().unwrap().map(|(i, u)| (i, u.user_id)));
        }
        assert_eq!(ids[0], Some((x.clone(), u1.user_id.clone())));
        assert_eq!(ids[1], Some((y.clone(), u2.user_id.clone())));
        assert_eq!(
            ids[2], None,
            "(a, iss1, s2) is nobody's, though z = (a, iss2, s2) is read"
        );

        let mut tokens = Vec::new();
        for a in answers_tokens {
            let list = a.await.unwrap().unwrap();
            tokens.push(list.into_iter().map(|t| t.id).collect::<Vec<_>>());
        }
        assert_eq!(
            tokens[0],
            vec![older.id.clone(), newer.id.clone()],
            "oldest first"
        );
        assert_eq!(tokens[1], vec![newer.id.clone()], "at the read's own now");
        assert!(tokens[2].is_empty(), "u2 has none");

        let mut grants = Vec::new();
        for a in answers_grant {
            grants.push(a.await.unwrap().unwrap());
        }
        assert_eq!(grants, vec![true, false, false]);
    }
}
