//! Ports of the relational store: one small trait per aggregate, and [`Store`] for all of them.
//!
//! Contract (checked by `latch_testkit::store_conformance` on SQLite and PostgreSQL): `get_*`
//! fails with [`StoreError::NotFound`] when the row is missing, `find_*` answers `None`;
//! uniqueness clashes are [`StoreError::Conflict`] and leave the store unchanged.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::model::*;
use crate::{
    ClientId, ConnectionId, ConnectionName, DeliveryId, FamilyId, Jti, Kid, RefreshTokenId,
    StoreError, TokenDigest, UserId,
};

#[async_trait]
pub trait ConnectionRepo: Send + Sync {
    /// Conflict on `name`.
    async fn insert_connection(&self, c: &Connection) -> Result<(), StoreError>;
    /// The connection as stored now: what a read-modify-write starts from.
    async fn get_connection(&self, id: &ConnectionId) -> Result<Connection, StoreError>;
    /// The connection, possibly from a short-lived cache (another instance's write is seen
    /// within the adapter's TTL). For hot read-only paths (a SCIM request); never for a
    /// read-modify-write, which would write a stale copy back.
    async fn get_connection_cached(&self, id: &ConnectionId) -> Result<Connection, StoreError> {
        self.get_connection(id).await
    }
    async fn find_connection_by_name(
        &self,
        name: &ConnectionName,
    ) -> Result<Option<Connection>, StoreError>;
    async fn list_connections(&self) -> Result<Vec<Connection>, StoreError>;
    /// Replaces everything but `id` and `created_at`, including `enabled_clients`.
    async fn update_connection(&self, c: &Connection) -> Result<(), StoreError>;
    async fn delete_connection(&self, id: &ConnectionId) -> Result<(), StoreError>;
    /// Adds one client to a connection's enabled clients, in place (no read-modify-write of
    /// the whole list, so two instances enabling two clients at once both stay); `false` when
    /// it was enabled already. [`StoreError::NotFound`] when there is no such connection.
    async fn enable_client_on_connection(
        &self,
        connection: &ConnectionId,
        client: &ClientId,
    ) -> Result<bool, StoreError>;
}

#[async_trait]
pub trait ClientRepo: Send + Sync {
    /// Conflict on `client_id`.
    async fn insert_client(&self, c: &Client) -> Result<(), StoreError>;
    async fn get_client(&self, id: &ClientId) -> Result<Client, StoreError>;
    async fn find_client(&self, id: &ClientId) -> Result<Option<Client>, StoreError>;
    async fn list_clients(&self) -> Result<Vec<Client>, StoreError>;
    /// Replaces everything but `client_id` and `created_at`, including the secrets.
    async fn update_client(&self, c: &Client) -> Result<(), StoreError>;
    /// Also removes the client from every connection's enabled clients.
    async fn delete_client(&self, id: &ClientId) -> Result<(), StoreError>;
    /// Whether any client has a `global_token_revocation` endpoint. May lag another instance's
    /// client write by as long as a cached client does.
    async fn any_client_takes_gtr(&self) -> Result<bool, StoreError>;
}

#[async_trait]
pub trait ClientGrantRepo: Send + Sync {
    /// Conflict on (client, audience).
    async fn insert_client_grant(&self, g: &ClientGrant) -> Result<(), StoreError>;
    async fn list_client_grants(&self) -> Result<Vec<ClientGrant>, StoreError>;
    async fn find_client_grant(
        &self,
        client: &ClientId,
        audience: &str,
    ) -> Result<Option<ClientGrant>, StoreError>;
    async fn update_client_grant(&self, g: &ClientGrant) -> Result<(), StoreError>;
    async fn delete_client_grant(&self, id: &str) -> Result<(), StoreError>;
}

#[async_trait]
pub trait UserRepo: Send + Sync {
    async fn insert_user(&self, u: &User) -> Result<(), StoreError>;
    async fn get_user(&self, id: &UserId) -> Result<User, StoreError>;
    async fn find_user(&self, id: &UserId) -> Result<Option<User>, StoreError>;
    async fn list_users(&self, q: &UserQuery) -> Result<Vec<User>, StoreError>;
    /// How many users [`list_users`](Self::list_users) finds over every page (paging ignored).
    async fn count_users(&self, q: &UserQuery) -> Result<u64, StoreError>;
    async fn find_users_by_email(&self, email: &str) -> Result<Vec<User>, StoreError>;
    async fn update_user(&self, u: &User) -> Result<(), StoreError>;
    /// A new user and their first identity, in one transaction: a conflict on either (the
    /// `user_id`; the identity's connection, issuer and subject) writes neither.
    async fn insert_user_with_identity(&self, u: &User, i: &Identity) -> Result<(), StoreError>;
    /// Sets the user's `blocked` flag, and `updated_at` to `now`, in one statement if it differs;
    /// answers the user as stored afterwards and whether this call changed it (`false`: it was so
    /// already and nothing was written). [`StoreError::NotFound`] when there is no such user.
    async fn update_user_blocked(
        &self,
        id: &UserId,
        blocked: bool,
        now: OffsetDateTime,
    ) -> Result<(User, bool), StoreError>;
    /// Removes the user and their identities and refresh tokens.
    async fn delete_user(&self, id: &UserId) -> Result<(), StoreError>;

    /// Conflict on (connection, issuer, subject).
    async fn insert_identity(&self, i: &Identity) -> Result<(), StoreError>;
    async fn find_identity(
        &self,
        connection: &ConnectionId,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<Identity>, StoreError>;
    async fn list_identities(&self, user: &UserId) -> Result<Vec<Identity>, StoreError>;
    /// Every user with an identity in the connection (each once): whose sessions may have come
    /// through it.
    async fn list_connection_users(
        &self,
        connection: &ConnectionId,
    ) -> Result<Vec<UserId>, StoreError>;
    /// The identity and its user, in one read where the adapter can.
    async fn find_identity_with_user(
        &self,
        connection: &ConnectionId,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<(Identity, User)>, StoreError> {
        match self.find_identity(connection, issuer, subject).await? {
            Some(i) => {
                let u = self.get_user(&i.user_id).await?;
                Ok(Some((i, u)))
            }
            None => Ok(None),
        }
    }
    async fn update_identity(&self, i: &Identity) -> Result<(), StoreError>;
    /// A returning upstream user: the user and the identity saved together. Adapters do it in
    /// one transaction (one write per sign-in instead of two).
    async fn update_user_and_identity(&self, u: &User, i: &Identity) -> Result<(), StoreError> {
        self.update_user(u).await?;
        self.update_identity(i).await
    }
}

#[async_trait]
pub trait RefreshTokenRepo: Send + Sync {
    /// Records a grant and, when the client gets one, its first refresh token, together.
    async fn insert_grant(
        &self,
        g: &UserGrant,
        first_refresh_token: Option<&RefreshToken>,
    ) -> Result<(), StoreError>;
    async fn find_grant(&self, id: &FamilyId) -> Result<Option<UserGrant>, StoreError>;
    async fn insert_refresh_token(&self, t: &RefreshToken) -> Result<(), StoreError>;
    /// A token whose grant is revoked is answered as revoked (at the grant's time).
    async fn find_refresh_token(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<RefreshToken>, StoreError>;
    /// [`Self::find_refresh_token`] and the token's user in one read (the refresh grant's first
    /// step); the user is `None` when it no longer exists.
    async fn find_refresh_token_with_user(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<(RefreshToken, Option<User>)>, StoreError>;
    /// Marks a token rotated if, and only if, it is still usable at `now`; `false` means another
    /// request got there first (or it was revoked): the caller treats that as reuse.
    async fn mark_refresh_token_rotated(
        &self,
        id: &RefreshTokenId,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Rotation in one step: marks `old` rotated if, and only if, it is still usable at `now`,
    /// and stores its successor `new`; `false` (nothing written) means reuse or a lost race.
    async fn rotate_refresh_token(
        &self,
        old: &RefreshTokenId,
        new: &RefreshToken,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Revokes every not-yet-revoked grant and refresh token in scope, in one transaction;
    /// returns the refresh tokens it revoked.
    async fn revoke_refresh_tokens(
        &self,
        scope: &RevokeScope,
        now: OffsetDateTime,
    ) -> Result<Vec<RefreshToken>, StoreError>;
    /// Live (not revoked, not rotated, not expired) tokens of a user.
    async fn list_user_refresh_tokens(
        &self,
        user: &UserId,
        now: OffsetDateTime,
    ) -> Result<Vec<RefreshToken>, StoreError>;
    /// The clients with which the user holds a live (not revoked, not expired) grant, each once,
    /// in no particular order: the apps a user-wide logout sends Global Token Revocation to,
    /// besides those of the user's sessions.
    async fn list_user_grant_clients(
        &self,
        user: &UserId,
        now: OffsetDateTime,
    ) -> Result<Vec<ClientId>, StoreError>;
    async fn list_family(&self, family: &FamilyId) -> Result<Vec<RefreshToken>, StoreError>;
    /// Retention: deletes up to `limit` grants that expired before `before`, with their refresh
    /// tokens; returns how many grants it deleted. Safe with several instances purging at once.
    async fn purge_expired_grants(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, StoreError>;
}

#[async_trait]
pub trait SigningKeyRepo: Send + Sync {
    async fn insert_signing_key(&self, k: &SigningKey) -> Result<(), StoreError>;
    /// Stores `k` unless a key of its algorithm in its state is stored already, atomically
    /// across instances (instances started together make one first key, not one each). `true`
    /// if `k` was stored.
    async fn insert_signing_key_if_absent(&self, k: &SigningKey) -> Result<bool, StoreError>;
    async fn list_signing_keys(&self) -> Result<Vec<SigningKey>, StoreError>;
    async fn update_signing_key(&self, k: &SigningKey) -> Result<(), StoreError>;
    async fn get_signing_key(&self, kid: &Kid) -> Result<SigningKey, StoreError>;
}

#[async_trait]
pub trait LogRepo: Send + Sync {
    /// Records an event. It may be written asynchronously, but [`list_logs`](Self::list_logs)
    /// sees every event recorded before it was called.
    async fn insert_log(&self, e: &LogEvent) -> Result<(), StoreError>;
    /// Newest first.
    async fn list_logs(&self, q: &LogQuery) -> Result<Vec<LogEvent>, StoreError>;
    /// How many events [`list_logs`](Self::list_logs) finds over every page (paging ignored).
    async fn count_logs(&self, q: &LogQuery) -> Result<u64, StoreError>;
    /// Retention: deletes up to `limit` events dated before `before` (events recorded before the
    /// call included); returns how many it deleted. Safe with several instances purging at once.
    async fn purge_logs(&self, before: OffsetDateTime, limit: u32) -> Result<u64, StoreError>;
}

#[async_trait]
pub trait OutboxRepo: Send + Sync {
    /// Records deliveries, all or none.
    async fn insert_deliveries(&self, d: &[Delivery]) -> Result<(), StoreError>;
    /// Leases up to `limit` pending deliveries that are due and not held by a live lease,
    /// oldest first; each is held until `lease_until`. Safe with several instances.
    async fn claim_deliveries(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Leases one pending delivery (not held by a live lease); `None` if another worker has it
    /// or it is finished.
    async fn claim_delivery(
        &self,
        id: &DeliveryId,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<Option<Delivery>, StoreError>;
    /// Records the outcome of an attempt (state, attempts, next attempt, error) and frees the lease.
    async fn record_attempt(&self, d: &Delivery) -> Result<(), StoreError>;
    /// [`record_attempt`](Self::record_attempt) for many deliveries, in one transaction.
    async fn record_attempts(&self, d: &[Delivery]) -> Result<(), StoreError>;
    async fn get_delivery(&self, id: &DeliveryId) -> Result<Delivery, StoreError>;
    /// An administrator's "retry now": a `failed` delivery, or a `pending` one no worker holds,
    /// becomes `pending` and due at `now` with the new `jti` (a fresh logout token: an app that
    /// remembers the old one's `jti` would refuse it as a replay), `finished_at` and any expired
    /// lease cleared, the attempts so far kept. `None` when it is delivered or a worker holds
    /// it; [`StoreError::NotFound`] when there is no such delivery.
    async fn retry_delivery(
        &self,
        id: &DeliveryId,
        now: OffsetDateTime,
        jti: &Jti,
    ) -> Result<Option<Delivery>, StoreError>;
    /// How many deliveries are pending (due or not, leased or not), counting no further than
    /// `limit`: a bounded read of the pending index, for the `latch_outbox_pending` gauge.
    async fn count_pending_deliveries(&self, limit: u64) -> Result<u64, StoreError>;
    /// Deliveries matching `q`, newest first, at most `limit` (1 to 1000).
    async fn list_deliveries(
        &self,
        q: &DeliveryQuery,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Retention: deletes up to `limit` delivered or failed deliveries finished before `before`
    /// (pending ones are never deleted); returns how many it deleted. Safe with several
    /// instances purging at once.
    async fn purge_finished_deliveries(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, StoreError>;
}

/// Inbound SCIM: a connection's configuration and tokens, and its SCIM-provisioned users.
/// Deleting a connection deletes its configuration, tokens and SCIM records; deleting a user
/// ([`UserRepo::delete_user`]) deletes their SCIM records.
#[async_trait]
pub trait ScimRepo: Send + Sync {
    /// Creates or replaces the connection's configuration (`created_at` kept on replace).
    async fn put_scim_config(&self, c: &ScimConfig) -> Result<(), StoreError>;
    async fn find_scim_config(
        &self,
        connection: &ConnectionId,
    ) -> Result<Option<ScimConfig>, StoreError>;
    /// Turns SCIM off: the configuration and every token of the connection go (its users and
    /// their SCIM records stay). `false` when there was none.
    async fn delete_scim_config(&self, connection: &ConnectionId) -> Result<bool, StoreError>;

    async fn insert_scim_token(&self, t: &ScimToken) -> Result<(), StoreError>;
    /// The connection's tokens, oldest first.
    async fn list_scim_tokens(
        &self,
        connection: &ConnectionId,
    ) -> Result<Vec<ScimToken>, StoreError>;
    /// The token with this digest, whatever its connection or validity.
    async fn find_scim_token(&self, digest: &TokenDigest) -> Result<Option<ScimToken>, StoreError>;
    /// The token with this digest and its connection's SCIM configuration, read together (one
    /// round trip per SCIM request); `None` when there is no such token or SCIM is off.
    async fn find_scim_caller(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<(ScimToken, ScimConfig)>, StoreError>;
    /// `false` when the connection has no such token.
    async fn delete_scim_token(
        &self,
        connection: &ConnectionId,
        token_id: &str,
    ) -> Result<bool, StoreError>;

    /// A new SCIM user: the user, its identity in the connection and its SCIM record, in one
    /// transaction. A `userName` (case-insensitively) or `externalId` already used in the
    /// connection, or an identity clash, is [`StoreError::Conflict`] naming `userName`,
    /// `externalId` or `identity`, and writes nothing.
    async fn insert_scim_user(
        &self,
        user: &User,
        identity: &Identity,
        scim: &ScimUser,
    ) -> Result<(), StoreError>;

    /// A SCIM record for a user who exists already (signed in through the connection before
    /// SCIM was turned on). Uniqueness as for [`insert_scim_user`](Self::insert_scim_user); a
    /// user with a record in the connection already is a `Conflict` naming `user`.
    async fn attach_scim_user(&self, scim: &ScimUser) -> Result<(), StoreError>;

    /// The SCIM record and user of `user` in `connection`.
    async fn find_scim_user(
        &self,
        connection: &ConnectionId,
        user: &UserId,
    ) -> Result<Option<(ScimUser, User)>, StoreError>;

    /// A page of the connection's SCIM users matching `lookup`, ordered by creation (then
    /// user id), from the 0-based `offset`, at most `limit`; and how many match in all.
    async fn list_scim_users(
        &self,
        connection: &ConnectionId,
        lookup: &ScimLookup,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<(ScimUser, User)>, u64), StoreError>;

    /// Writes the user, its identity (found by `identity.user_id` and `connection_id`; its
    /// subject may change) and its SCIM record in one transaction, if the stored record's
    /// `version` is `expected_version` (else [`StoreError::Conflict`] naming `version`, nothing
    /// written). Uniqueness as for [`insert_scim_user`](Self::insert_scim_user).
    async fn update_scim_user(
        &self,
        user: &User,
        identity: &Identity,
        scim: &ScimUser,
        expected_version: i64,
    ) -> Result<(), StoreError>;

    /// An identity a SCIM client created (issuer [`SCIM_ISSUER`]) for this subject in this
    /// connection takes the upstream `issuer` of the first sign-in, so the sign-in finds that
    /// user. Returns the identity and user when one was claimed.
    async fn claim_scim_identity(
        &self,
        connection: &ConnectionId,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<(Identity, User)>, StoreError>;
}

/// Log streams (Auth0's) and their queues. The log writer queues each event it writes for every
/// stream whose filters it passes and that was created by the event's date (paused and suspended
/// streams included: their events are held), in the same transaction as the event; a worker
/// sends a stream's queue in order.
#[async_trait]
pub trait LogStreamRepo: Send + Sync {
    /// Conflict on `id`. Events written after this call returns are queued for it.
    async fn insert_log_stream(&self, s: &LogStream) -> Result<(), StoreError>;
    /// Oldest first.
    async fn list_log_streams(&self) -> Result<Vec<LogStream>, StoreError>;
    async fn find_log_stream(&self, id: &str) -> Result<Option<LogStream>, StoreError>;
    /// Writes `name`, `sink`, `filters` and `updated_at` (the delivery state is the workers'),
    /// and the status only when `status` is given (`s.status` and `s.suspended_reason` are not
    /// read): then `suspended_reason` is cleared, and a stream set `active` from another status
    /// (the stored one, decided in the same statement) is due at once, its failures forgotten.
    /// A change that leaves the status out never undoes a suspension the workers wrote
    /// meanwhile. [`StoreError::NotFound`] when there is no such stream.
    async fn update_log_stream(
        &self,
        s: &LogStream,
        status: Option<LogStreamStatus>,
    ) -> Result<(), StoreError>;
    /// Deletes the stream and its queue; `false` when there was none.
    async fn delete_log_stream(&self, id: &str) -> Result<bool, StoreError>;
    /// Leases one `active` stream that is due at `now`, not held by a live lease and has queued
    /// events, until `lease_until`, with its oldest `limit` queued events (in order). Only one
    /// worker anywhere holds a stream at a time. `None` when no stream is ready. The lease is
    /// `lease_until` (to the millisecond): the worker gives it to
    /// [`ack_log_stream`](Self::ack_log_stream) and [`fail_log_stream`](Self::fail_log_stream),
    /// which do nothing once another worker has taken the stream over.
    async fn claim_log_stream(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Option<(LogStream, Vec<LogStreamEvent>)>, StoreError>;
    /// The events `seqs` (exactly the ones sent) were delivered: they leave the queue, and no
    /// other (an event below the highest of them that the claim did not see stays), the lease is
    /// given back and the failures are forgotten. All of this only while `lease_until` is still
    /// the stream's lease (the claim's); otherwise nothing changes and `false`. With no `seqs`,
    /// only gives the lease back.
    async fn ack_log_stream(
        &self,
        id: &str,
        lease_until: OffsetDateTime,
        seqs: &[i64],
    ) -> Result<bool, StoreError>;
    /// An attempt failed: records it and gives the lease back; the queue is kept (the same events
    /// go first next time). Only while `lease_until` is still the stream's lease (otherwise
    /// nothing changes), and the failure is recorded only when the stream still has the
    /// failures it had when claimed (`f.failures - 1`): an administrator who set it `active`
    /// meanwhile had them forgotten, and that stands (the lease is given back all the same).
    /// `true` when the failure was recorded.
    async fn fail_log_stream(
        &self,
        id: &str,
        lease_until: OffsetDateTime,
        f: &LogStreamFailure,
    ) -> Result<bool, StoreError>;
    /// How many events wait in the stream's queue (events recorded before the call included).
    async fn count_log_stream_events(&self, id: &str) -> Result<u64, StoreError>;
    /// Deletes queued events of streams that no longer exist (an instance whose view of the
    /// streams was a few seconds old may queue events for a stream just deleted); how many.
    /// Cheap enough to run every minute on a large queue: it finds the streams the queue holds
    /// events of through the `(stream_id, seq)` index (one probe per stream, not a scan of the
    /// queue) and deletes by stream.
    async fn purge_orphan_log_stream_events(&self) -> Result<u64, StoreError>;
    /// Retention: deletes up to `limit` queued events, of any stream, dated before `before`
    /// (events recorded before the call included), so a stream left paused or suspended holds
    /// no more than the log keeps; returns how many it deleted. Safe with several instances
    /// purging at once.
    async fn purge_log_stream_events(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, StoreError>;
}

/// The whole relational store.
#[async_trait]
pub trait Store:
    ConnectionRepo
    + ClientRepo
    + ClientGrantRepo
    + UserRepo
    + RefreshTokenRepo
    + SigningKeyRepo
    + LogRepo
    + OutboxRepo
    + ScimRepo
    + LogStreamRepo
{
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Answers when the database is reachable.
    async fn ping(&self) -> Result<(), StoreError>;
    /// The connection pool's state now, without I/O; `None` when the adapter has no pool.
    fn pool_state(&self) -> Option<PoolState> {
        None
    }
    /// Log events dropped over the process's life because the log writer fell too far behind
    /// (its queue is bounded), without I/O.
    fn log_events_dropped(&self) -> u64 {
        0
    }
}

/// A connection pool's state: connections open (`in_use` + `idle`) and its size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}
