//! A user's reads in batches: the identity an upstream subject names (with its user), the user's
//! live refresh tokens, and whether the user holds a live grant. A user-wide logout (Global
//! Token Revocation, a SCIM deactivation, the admin's sign-out) makes all three; alone, each is a
//! hand-off to a blocking thread, a pooled connection and a statement. One thread takes every
//! read waiting at that moment and makes one query per kind for all of them (`IN (…)` on both
//! backends; planned per execution on PostgreSQL, see [`Planned`]).
//!
//! Each read keeps its own answer: a query's rows are a superset of what each read asked for
//! (the identities matching any of the batch's connections, issuers and subjects; the tokens
//! live at the batch's earliest `now`), and each read takes the rows that match it exactly. A
//! row that does not decode fails only the reads it answers.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;
use latch_core::StoreError;
use latch_core::model::{Identity, RefreshToken, User};

use crate::batch::{Batcher, Db, OwnConn, Planned, Reply, answer_all, describe, with_conn};
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
        let own = OwnConn::default();
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
    if !ids.is_empty() {
        identities_of(ids, db, own);
    }
    if !tokens.is_empty() {
        tokens_of(tokens, db, own);
    }
    if !grants.is_empty() {
        grants_of(grants, db, own);
    }
}

/// The distinct values of one field of a batch's jobs.
fn distinct<'a>(values: impl Iterator<Item = &'a String>) -> Vec<String> {
    let set: HashSet<&String> = values.collect();
    set.into_iter().cloned().collect()
}

fn identities_of(jobs: Vec<IdentityJob>, db: &Db, own: &OwnConn) {
    let conns = distinct(jobs.iter().map(|j| &j.0));
    let issuers = distinct(jobs.iter().map(|j| &j.1));
    let subjects = distinct(jobs.iter().map(|j| &j.2));
    type Found = HashMap<(String, String, String), Result<(Identity, User), String>>;
    let found = with_conn(db, own, false, |conn| -> Result<Found, StoreError> {
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
            DbConnection::Pg(pg) => Planned(query!()).load(pg),
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
        }
        Err(e) => answer_all(jobs.into_iter().map(|j| j.3).collect(), e),
    }
}

fn tokens_of(jobs: Vec<TokensJob>, db: &Db, own: &OwnConn) {
    let users = distinct(jobs.iter().map(|j| &j.0));
    // The earliest `now` of the batch: a superset of every read's live tokens.
    let since = jobs.iter().map(|j| j.1).min().unwrap_or_default();
    let rows = with_conn(db, own, false, |conn| {
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
            DbConnection::Pg(pg) => Planned(query!()).load::<RefreshRow>(pg),
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
        }
        Err(e) => answer_all(jobs.into_iter().map(|j| j.2).collect(), e),
    }
}

fn grants_of(jobs: Vec<GrantJob>, db: &Db, own: &OwnConn) {
    let users = distinct(jobs.iter().map(|j| &j.0));
    let holders = with_conn(db, own, false, |conn| {
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
            DbConnection::Pg(pg) => Planned(query!()).load::<String>(pg),
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
        }
        Err(e) => answer_all(jobs.into_iter().map(|j| j.1).collect(), e),
    }
}
