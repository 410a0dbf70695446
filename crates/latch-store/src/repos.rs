//! The `latch_core::store` traits on diesel. Every write that touches several rows runs in one
//! transaction.

use async_trait::async_trait;
use diesel::Connection as _;
use diesel::prelude::*;
use latch_core::clock::to_millis;
use latch_core::model::Connection;
use latch_core::model::*;
use latch_core::store::*;
use latch_core::*;
use time::OffsetDateTime;

use crate::SqlStore;
use crate::conn::DbConnection;
use crate::rows::*;
use crate::schema::*;
// Named, so `latch_core::users` (a glob above) does not shadow the table.
use crate::schema::users;

/// Runs `f` in a transaction; the store's own errors roll it back too.
fn tx<T>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    enum TxError {
        Store(StoreError),
        Db(diesel::result::Error),
    }
    impl From<diesel::result::Error> for TxError {
        fn from(e: diesel::result::Error) -> Self {
            Self::Db(e)
        }
    }
    conn.transaction(|c| f(c).map_err(TxError::Store))
        .map_err(|e| match e {
            TxError::Store(e) => e,
            TxError::Db(e) => db_err("transaction", "")(e),
        })
}

/// What one retention purge deletes: rows of `table` (key `key`) whose `date` is before the
/// cut and which meet `also` (an SQL condition followed by `AND`, or nothing). The statements
/// are made from these constants only.
struct Purge {
    table: &'static str,
    key: &'static str,
    date: &'static str,
    also: &'static str,
    entity: &'static str,
}

const LOG_EVENTS_PURGE: Purge = Purge {
    table: "log_events",
    key: "log_id",
    date: "date",
    also: "",
    entity: "log event",
};

const FINISHED_DELIVERIES_PURGE: Purge = Purge {
    table: "outbox",
    key: "id",
    date: "finished_at",
    also: "state <> 'pending' AND ",
    entity: "delivery",
};

const LOG_STREAM_EVENTS_PURGE: Purge = Purge {
    table: "log_stream_events",
    key: "seq",
    date: "date",
    also: "",
    entity: "log stream event",
};

/// One bounded batch of a retention purge (an index on the date finds it), at most `limit`
/// rows. On PostgreSQL rows another instance is deleting (or a worker holds) are skipped, not
/// waited for, and the ids go to the delete as an array: with `IN (SELECT …)` the planner may
/// hash-join against the whole table. SQLite deletes the oldest first.
fn purge_batch(
    conn: &mut DbConnection,
    p: &Purge,
    before: i64,
    limit: i64,
) -> Result<u64, StoreError> {
    use diesel::sql_types::BigInt;
    let Purge {
        table,
        key,
        date,
        also,
        entity,
    } = p;
    match conn {
        DbConnection::Pg(pg) => diesel::sql_query(format!(
            "DELETE FROM {table} WHERE {key} = ANY(ARRAY(\
               SELECT {key} FROM {table} WHERE {also}{date} < $1 \
               LIMIT $2 FOR UPDATE SKIP LOCKED))"
        ))
        .bind::<BigInt, _>(before)
        .bind::<BigInt, _>(limit)
        .execute(pg),
        DbConnection::Sqlite(lite) => diesel::sql_query(format!(
            "DELETE FROM {table} WHERE {key} IN (\
               SELECT {key} FROM {table} WHERE {also}{date} < ?1 ORDER BY {date} LIMIT ?2)"
        ))
        .bind::<BigInt, _>(before)
        .bind::<BigInt, _>(limit)
        .execute(lite),
    }
    .map(|n| n as u64)
    .map_err(db_err(entity, key))
}

fn not_found(entity: &'static str, id: &str) -> StoreError {
    StoreError::NotFound {
        entity,
        id: id.to_owned(),
    }
}

fn enabled_clients_of(conn: &mut DbConnection, id: &str) -> Result<Vec<String>, StoreError> {
    connection_clients::table
        .filter(connection_clients::connection_id.eq(id))
        .select(connection_clients::client_id)
        .order(connection_clients::client_id)
        .load(conn)
        .map_err(db_err("connection", "id"))
}

fn write_enabled_clients(conn: &mut DbConnection, c: &Connection) -> Result<(), StoreError> {
    diesel::delete(
        connection_clients::table.filter(connection_clients::connection_id.eq(c.id.as_str())),
    )
    .execute(conn)
    .map_err(db_err("connection", "id"))?;
    for client in &c.enabled_clients {
        diesel::insert_into(connection_clients::table)
            .values((
                connection_clients::connection_id.eq(c.id.as_str()),
                connection_clients::client_id.eq(client.as_str()),
            ))
            .execute(conn)
            .map_err(db_err("connection", "enabled_clients"))?;
    }
    Ok(())
}

/// Empties the connection cache when dropped, after the write it guards (whatever its outcome).
/// A read racing the write may cache the old state; like another instance's view, it lasts at
/// most [`crate::CLIENT_TTL`].
struct ForgetConnections<'a>(&'a SqlStore);

impl Drop for ForgetConnections<'_> {
    fn drop(&mut self) {
        self.0.forget_connections();
    }
}

#[async_trait]
impl ConnectionRepo for SqlStore {
    async fn insert_connection(&self, c: &Connection) -> Result<(), StoreError> {
        let _forget = ForgetConnections(self);
        let row = ConnectionRow::from_domain(c, &self.cipher)?;
        let c = c.clone();
        self.run_write(move |conn| {
            tx(conn, |conn| {
                diesel::insert_into(connections::table)
                    .values(&row)
                    .execute(conn)
                    .map_err(db_err("connection", "name"))?;
                write_enabled_clients(conn, &c)
            })
        })
        .await
    }

    async fn get_connection_cached(&self, id: &ConnectionId) -> Result<Connection, StoreError> {
        match self.cached_connection_by_id(id.as_str()) {
            Some(c) => Ok(c),
            None => self.get_connection(id).await,
        }
    }

    async fn get_connection(&self, id: &ConnectionId) -> Result<Connection, StoreError> {
        let id = id.as_str().to_owned();
        let cipher = self.cipher.clone();
        let c = self
            .run(move |conn| {
                let row: Option<ConnectionRow> = connections::table
                    .find(&id)
                    .select(ConnectionRow::as_select())
                    .first(conn)
                    .optional()
                    .map_err(db_err("connection", "id"))?;
                let row = row.ok_or_else(|| not_found("connection", &id))?;
                let enabled = enabled_clients_of(conn, &id)?;
                row.into_domain(enabled, &cipher)
            })
            .await?;
        self.cache_connection(&c);
        Ok(c)
    }

    async fn find_connection_by_name(
        &self,
        name: &ConnectionName,
    ) -> Result<Option<Connection>, StoreError> {
        if let Some(c) = self.cached_connection(name.as_str()) {
            return Ok(Some(c));
        }
        let name = name.as_str().to_owned();
        let cipher = self.cipher.clone();
        let found = self
            .run(move |conn| {
                let row: Option<ConnectionRow> = connections::table
                    .filter(connections::name.eq(&name))
                    .select(ConnectionRow::as_select())
                    .first(conn)
                    .optional()
                    .map_err(db_err("connection", "name"))?;
                match row {
                    None => Ok(None),
                    Some(row) => {
                        let enabled = enabled_clients_of(conn, &row.id)?;
                        row.into_domain(enabled, &cipher).map(Some)
                    }
                }
            })
            .await?;
        if let Some(c) = &found {
            self.cache_connection(c);
        }
        Ok(found)
    }

    async fn list_connections(&self) -> Result<Vec<Connection>, StoreError> {
        let cipher = self.cipher.clone();
        self.run(move |conn| {
            let rows: Vec<ConnectionRow> = connections::table
                .select(ConnectionRow::as_select())
                .order((connections::created_at, connections::name))
                .load(conn)
                .map_err(db_err("connection", "id"))?;
            let links: Vec<(String, String)> = connection_clients::table
                .select((
                    connection_clients::connection_id,
                    connection_clients::client_id,
                ))
                .order(connection_clients::client_id)
                .load(conn)
                .map_err(db_err("connection", "id"))?;
            rows.into_iter()
                .map(|r| {
                    let enabled = links
                        .iter()
                        .filter(|(c, _)| *c == r.id)
                        .map(|(_, cl)| cl.clone())
                        .collect();
                    r.into_domain(enabled, &cipher)
                })
                .collect()
        })
        .await
    }

    async fn enable_client_on_connection(
        &self,
        connection: &ConnectionId,
        client: &ClientId,
    ) -> Result<bool, StoreError> {
        let _forget = ForgetConnections(self);
        let (connection, client) = (connection.as_str().to_owned(), client.as_str().to_owned());
        self.run_write(move |conn| {
            // One statement, no transaction: the row is written or already there, and the write
            // lock is the first thing taken (a read upgraded to a write inside a transaction is
            // refused at once on SQLite when another process wrote in between, and a failed
            // insert would abort a PostgreSQL transaction).
            macro_rules! insert {
                ($c:expr) => {
                    diesel::insert_into(connection_clients::table)
                        .values((
                            connection_clients::connection_id.eq(&connection),
                            connection_clients::client_id.eq(&client),
                        ))
                        .on_conflict_do_nothing()
                        .execute($c)
                };
            }
            let inserted = match &mut **conn {
                DbConnection::Pg(pg) => insert!(pg),
                DbConnection::Sqlite(lite) => insert!(lite),
            };
            match inserted {
                Ok(n) => Ok(n > 0),
                Err(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                    _,
                )) => {
                    let exists = connections::table
                        .find(&connection)
                        .select(connections::id)
                        .first::<String>(conn)
                        .optional()
                        .map_err(db_err("connection", "id"))?;
                    Err(match exists {
                        None => not_found("connection", &connection),
                        Some(_) => not_found("client", &client),
                    })
                }
                Err(e) => Err(db_err("connection", "enabled_clients")(e)),
            }
        })
        .await
    }

    async fn update_connection(&self, c: &Connection) -> Result<(), StoreError> {
        let _forget = ForgetConnections(self);
        let row = ConnectionRow::from_domain(c, &self.cipher)?;
        let c = c.clone();
        self.run_write(move |conn| {
            tx(conn, |conn| {
                let n = diesel::update(connections::table.find(c.id.as_str()))
                    .set((
                        connections::name.eq(&row.name),
                        connections::display_name.eq(&row.display_name),
                        connections::strategy.eq(&row.strategy),
                        connections::options.eq(&row.options),
                        connections::secrets.eq(&row.secrets),
                        connections::updated_at.eq(row.updated_at),
                    ))
                    .execute(conn)
                    .map_err(db_err("connection", "name"))?;
                if n == 0 {
                    return Err(not_found("connection", c.id.as_str()));
                }
                write_enabled_clients(conn, &c)
            })
        })
        .await
    }

    async fn delete_connection(&self, id: &ConnectionId) -> Result<(), StoreError> {
        let _forget = ForgetConnections(self);
        let id = id.as_str().to_owned();
        self.run_write(move |conn| {
            tx(conn, |conn| {
                // Explicit, so the result does not depend on foreign-key enforcement.
                diesel::delete(scim_users::table.filter(scim_users::connection_id.eq(&id)))
                    .execute(conn)
                    .map_err(db_err("connection", "id"))?;
                diesel::delete(scim_tokens::table.filter(scim_tokens::connection_id.eq(&id)))
                    .execute(conn)
                    .map_err(db_err("connection", "id"))?;
                diesel::delete(scim_configs::table.find(&id))
                    .execute(conn)
                    .map_err(db_err("connection", "id"))?;
                let n = diesel::delete(connections::table.find(&id))
                    .execute(conn)
                    .map_err(db_err("connection", "id"))?;
                if n == 0 {
                    Err(not_found("connection", &id))
                } else {
                    Ok(())
                }
            })
        })
        .await
    }
}

fn load_client(conn: &mut DbConnection, id: &str) -> Result<Option<Client>, StoreError> {
    let row: Option<ClientRow> = clients::table
        .find(id)
        .select(ClientRow::as_select())
        .first(conn)
        .optional()
        .map_err(db_err("client", "client_id"))?;
    let Some(row) = row else { return Ok(None) };
    let secrets = client_secrets::table
        .filter(client_secrets::client_id.eq(id))
        .select(SecretRow::as_select())
        .order(client_secrets::created_at)
        .load(conn)
        .map_err(db_err("client", "client_id"))?;
    row.into_domain(secrets).map(Some)
}

fn write_secrets(conn: &mut DbConnection, c: &Client) -> Result<(), StoreError> {
    diesel::delete(
        client_secrets::table.filter(client_secrets::client_id.eq(c.client_id.as_str())),
    )
    .execute(conn)
    .map_err(db_err("client", "client_id"))?;
    for s in &c.secrets {
        diesel::insert_into(client_secrets::table)
            .values(SecretRow::from_domain(&c.client_id, s))
            .execute(conn)
            .map_err(db_err("client secret", "digest"))?;
    }
    Ok(())
}

#[async_trait]
impl ClientRepo for SqlStore {
    async fn insert_client(&self, c: &Client) -> Result<(), StoreError> {
        let row = ClientRow::from_domain(c)?;
        let c = c.clone();
        self.run_write(move |conn| {
            tx(conn, |conn| {
                diesel::insert_into(clients::table)
                    .values(&row)
                    .execute(conn)
                    .map_err(db_err("client", "client_id"))?;
                write_secrets(conn, &c)
            })
        })
        .await?;
        self.client_written();
        Ok(())
    }

    async fn any_client_takes_gtr(&self) -> Result<bool, StoreError> {
        if let Some(any) = self.gtr_clients().get("") {
            return Ok(any);
        }
        // A client written here while this read ran makes its answer stale: then it is not kept.
        let generation = self.client_writes();
        let any = self
            .run(|conn| {
                diesel::select(diesel::dsl::exists(
                    clients::table.filter(clients::global_token_revocation.is_not_null()),
                ))
                .get_result::<bool>(conn)
                .map_err(db_err("client", "global_token_revocation"))
            })
            .await?;
        if self.client_writes() == generation {
            self.gtr_clients().insert(String::new(), any);
        }
        Ok(any)
    }

    async fn get_client(&self, id: &ClientId) -> Result<Client, StoreError> {
        self.find_client(id)
            .await?
            .ok_or_else(|| not_found("client", id.as_str()))
    }

    async fn find_client(&self, id: &ClientId) -> Result<Option<Client>, StoreError> {
        if let Some(c) = self.cached_client(id.as_str()) {
            return Ok(Some(c));
        }
        let key = id.as_str().to_owned();
        let found = self.run(move |conn| load_client(conn, &key)).await?;
        if let Some(c) = &found {
            self.cache_client(Some(c), id.as_str());
        }
        Ok(found)
    }

    async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        self.run(move |conn| {
            let rows: Vec<ClientRow> = clients::table
                .select(ClientRow::as_select())
                .order((clients::created_at, clients::client_id))
                .load(conn)
                .map_err(db_err("client", "client_id"))?;
            let secrets: Vec<SecretRow> = client_secrets::table
                .select(SecretRow::as_select())
                .order(client_secrets::created_at)
                .load(conn)
                .map_err(db_err("client", "client_id"))?;
            let mut by_client: std::collections::HashMap<String, Vec<SecretRow>> =
                Default::default();
            for s in secrets {
                by_client.entry(s.client_id.clone()).or_default().push(s);
            }
            rows.into_iter()
                .map(|r| {
                    let s = by_client.remove(&r.client_id).unwrap_or_default();
                    r.into_domain(s)
                })
                .collect()
        })
        .await
    }

    async fn update_client(&self, c: &Client) -> Result<(), StoreError> {
        self.cache_client(None, c.client_id.as_str());
        let row = ClientRow::from_domain(c)?;
        let c = c.clone();
        self.run_write(move |conn| {
            tx(conn, |conn| {
                let n = diesel::update(clients::table.find(c.client_id.as_str()))
                    .set(&row)
                    .execute(conn)
                    .map_err(db_err("client", "client_id"))?;
                if n == 0 {
                    return Err(not_found("client", c.client_id.as_str()));
                }
                write_secrets(conn, &c)
            })
        })
        .await?;
        self.client_written();
        Ok(())
    }

    async fn delete_client(&self, id: &ClientId) -> Result<(), StoreError> {
        let _forget = ForgetConnections(self);
        self.cache_client(None, id.as_str());
        let id = id.as_str().to_owned();
        self.run_write(move |conn| {
            tx(conn, |conn| {
                // Explicit, so the result does not depend on foreign-key enforcement.
                diesel::delete(
                    connection_clients::table.filter(connection_clients::client_id.eq(&id)),
                )
                .execute(conn)
                .map_err(db_err("client", "client_id"))?;
                diesel::delete(client_secrets::table.filter(client_secrets::client_id.eq(&id)))
                    .execute(conn)
                    .map_err(db_err("client", "client_id"))?;
                diesel::delete(client_grants::table.filter(client_grants::client_id.eq(&id)))
                    .execute(conn)
                    .map_err(db_err("client", "client_id"))?;
                diesel::delete(refresh_tokens::table.filter(refresh_tokens::client_id.eq(&id)))
                    .execute(conn)
                    .map_err(db_err("client", "client_id"))?;
                let n = diesel::delete(clients::table.find(&id))
                    .execute(conn)
                    .map_err(db_err("client", "client_id"))?;
                if n == 0 {
                    Err(not_found("client", &id))
                } else {
                    Ok(())
                }
            })
        })
        .await?;
        self.client_written();
        Ok(())
    }
}

#[async_trait]
impl ClientGrantRepo for SqlStore {
    async fn insert_client_grant(&self, g: &ClientGrant) -> Result<(), StoreError> {
        let row = GrantRow::from_domain(g)?;
        let out = self
            .run_write(move |conn| {
                diesel::insert_into(client_grants::table)
                    .values(&row)
                    .execute(conn)
                    .map_err(db_err("client grant", "audience"))?;
                Ok(())
            })
            .await;
        self.client_written();
        out
    }

    async fn list_client_grants(&self) -> Result<Vec<ClientGrant>, StoreError> {
        self.run(move |conn| {
            let rows: Vec<GrantRow> = client_grants::table
                .select(GrantRow::as_select())
                .order((client_grants::created_at, client_grants::id))
                .load(conn)
                .map_err(db_err("client grant", "id"))?;
            rows.into_iter().map(GrantRow::into_domain).collect()
        })
        .await
    }

    async fn find_client_grant(
        &self,
        client: &ClientId,
        audience: &str,
    ) -> Result<Option<ClientGrant>, StoreError> {
        // Cached like clients (a client id cannot hold NUL, so the key is unambiguous).
        let key = format!("{}\0{audience}", client.as_str());
        if let Some(g) = self.client_grants().get(&key) {
            return Ok(Some(g));
        }
        // A client or grant written here while this read ran makes its answer stale: then it is
        // not kept.
        let generation = self.client_writes();
        let (client, audience) = (client.as_str().to_owned(), audience.to_owned());
        let found = self
            .run(move |conn| {
                let row: Option<GrantRow> = client_grants::table
                    .filter(client_grants::client_id.eq(&client))
                    .filter(client_grants::audience.eq(&audience))
                    .select(GrantRow::as_select())
                    .first(conn)
                    .optional()
                    .map_err(db_err("client grant", "id"))?;
                row.map(GrantRow::into_domain).transpose()
            })
            .await?;
        if let Some(g) = &found
            && self.client_writes() == generation
        {
            self.client_grants().insert(key, g.clone());
        }
        Ok(found)
    }

    async fn update_client_grant(&self, g: &ClientGrant) -> Result<(), StoreError> {
        let row = GrantRow::from_domain(g)?;
        let out = self
            .run_write(move |conn| {
                let n = diesel::update(client_grants::table.find(&row.id))
                    .set(client_grants::scope.eq(&row.scope))
                    .execute(conn)
                    .map_err(db_err("client grant", "id"))?;
                if n == 0 {
                    Err(not_found("client grant", &row.id))
                } else {
                    Ok(())
                }
            })
            .await;
        self.client_written();
        out
    }

    async fn delete_client_grant(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        let out = self
            .run_write(move |conn| {
                let n = diesel::delete(client_grants::table.find(&id))
                    .execute(conn)
                    .map_err(db_err("client grant", "id"))?;
                if n == 0 {
                    Err(not_found("client grant", &id))
                } else {
                    Ok(())
                }
            })
            .await;
        self.client_written();
        out
    }
}

type Db = <DbConnection as diesel::Connection>::Backend;

/// The users a search matches, before order and paging (shared by list and count).
fn users_matching(q: &UserQuery) -> users::BoxedQuery<'static, Db> {
    let mut query = users::table.into_boxed();
    if let Some(text) = q.q.as_deref().filter(|t| !t.is_empty()) {
        let escaped = text
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        query = query.filter(users::search.like(format!("%{escaped}%")).escape('\\'));
    }
    query
}

/// The log events a filter matches, before order and paging (shared by list and count).
fn logs_matching(q: &LogQuery) -> log_events::BoxedQuery<'static, Db> {
    let mut query = log_events::table.into_boxed();
    if let Some(id) = &q.log_id {
        query = query.filter(log_events::log_id.eq(id.as_str().to_owned()));
    }
    if let Some(t) = &q.event_type {
        query = query.filter(log_events::event_type.eq(t.clone()));
    }
    if let Some(u) = &q.user_id {
        query = query.filter(log_events::user_id.eq(u.as_str().to_owned()));
    }
    if let Some(c) = &q.client_id {
        query = query.filter(log_events::client_id.eq(c.as_str().to_owned()));
    }
    if let Some(c) = &q.connection {
        query = query.filter(log_events::connection.eq(c.as_str().to_owned()));
    }
    if let Some(from) = q.from {
        query = query.filter(log_events::date.ge(to_millis(from)));
    }
    if let Some(to) = q.to {
        query = query.filter(log_events::date.le(to_millis(to)));
    }
    query
}

#[async_trait]
impl UserRepo for SqlStore {
    async fn insert_user(&self, u: &User) -> Result<(), StoreError> {
        let row = UserRow::from_domain(u)?;
        self.run_write(move |conn| {
            diesel::insert_into(users::table)
                .values(&row)
                .execute(conn)
                .map_err(db_err("user", "user_id"))?;
            Ok(())
        })
        .await
    }

    async fn get_user(&self, id: &UserId) -> Result<User, StoreError> {
        self.find_user(id)
            .await?
            .ok_or_else(|| not_found("user", id.as_str()))
    }

    async fn find_user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        let id = id.as_str().to_owned();
        self.run(move |conn| {
            let row: Option<UserRow> = users::table
                .find(&id)
                .select(UserRow::as_select())
                .first(conn)
                .optional()
                .map_err(db_err("user", "user_id"))?;
            row.map(UserRow::into_domain).transpose()
        })
        .await
    }

    async fn list_users(&self, q: &UserQuery) -> Result<Vec<User>, StoreError> {
        let q = q.clone();
        self.run(move |conn| {
            let per_page = i64::from(q.per_page.clamp(1, 100));
            let rows: Vec<UserRow> = users_matching(&q)
                .select(UserRow::as_select())
                .order((users::created_at.desc(), users::user_id))
                .limit(per_page)
                .offset(i64::from(q.page) * per_page)
                .load(conn)
                .map_err(db_err("user", "user_id"))?;
            rows.into_iter().map(UserRow::into_domain).collect()
        })
        .await
    }

    async fn count_users(&self, q: &UserQuery) -> Result<u64, StoreError> {
        let q = q.clone();
        self.run(move |conn| {
            let n: i64 = users_matching(&q)
                .count()
                .get_result(conn)
                .map_err(db_err("user", "user_id"))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn find_users_by_email(&self, email: &str) -> Result<Vec<User>, StoreError> {
        let email = email.to_lowercase();
        self.run(move |conn| {
            let rows: Vec<UserRow> = users::table
                .filter(users::email.eq(&email))
                .select(UserRow::as_select())
                .order(users::created_at)
                .load(conn)
                .map_err(db_err("user", "email"))?;
            rows.into_iter().map(UserRow::into_domain).collect()
        })
        .await
    }

    async fn update_user(&self, u: &User) -> Result<(), StoreError> {
        let row = UserRow::from_domain(u)?;
        self.run_write(move |conn| write_user(conn, &row)).await
    }

    async fn insert_user_with_identity(&self, u: &User, i: &Identity) -> Result<(), StoreError> {
        let user = UserRow::from_domain(u)?;
        let identity = IdentityRow::from_domain(i)?;
        self.run_write(move |conn| {
            tx(conn, |conn| {
                diesel::insert_into(users::table)
                    .values(&user)
                    .execute(conn)
                    .map_err(db_err("user", "user_id"))?;
                diesel::insert_into(identities::table)
                    .values(&identity)
                    .execute(conn)
                    .map_err(db_err("identity", "subject"))?;
                Ok(())
            })
        })
        .await
    }

    async fn update_user_blocked(
        &self,
        id: &UserId,
        blocked: bool,
        now: OffsetDateTime,
    ) -> Result<(User, bool), StoreError> {
        let id = id.as_str().to_owned();
        let at = to_millis(now);
        self.run_write(move |conn| {
            // Only a row that differs is written: the count says whether this call changed it.
            let n = diesel::update(
                users::table
                    .filter(users::user_id.eq(&id))
                    .filter(users::blocked.ne(blocked)),
            )
            .set((users::blocked.eq(blocked), users::updated_at.eq(at)))
            .execute(conn)
            .map_err(db_err("user", "user_id"))?;
            let row: Option<UserRow> = users::table
                .find(&id)
                .select(UserRow::as_select())
                .first(conn)
                .optional()
                .map_err(db_err("user", "user_id"))?;
            match row {
                Some(r) => Ok((r.into_domain()?, n > 0)),
                None => Err(not_found("user", &id)),
            }
        })
        .await
    }

    async fn update_user_and_identity(&self, u: &User, i: &Identity) -> Result<(), StoreError> {
        let mut user = UserRow::from_domain(u)?;
        let identity = IdentityRow::from_domain(i)?;
        self.run_write(move |conn| {
            tx(conn, |conn| {
                // A sign-in's update never writes `blocked`: a block (or a SCIM deactivation)
                // committed since the user was read stays.
                let blocked: Option<bool> = users::table
                    .find(&user.user_id)
                    .select(users::blocked)
                    .first(conn)
                    .optional()
                    .map_err(db_err("user", "user_id"))?;
                if let Some(b) = blocked {
                    user.blocked = b;
                }
                write_user(conn, &user)?;
                write_identity(conn, &identity)
            })
        })
        .await
    }

    async fn delete_user(&self, id: &UserId) -> Result<(), StoreError> {
        let id = id.as_str().to_owned();
        self.run_write(move |conn| {
            tx(conn, |conn| {
                diesel::delete(identities::table.filter(identities::user_id.eq(&id)))
                    .execute(conn)
                    .map_err(db_err("user", "user_id"))?;
                diesel::delete(refresh_tokens::table.filter(refresh_tokens::user_id.eq(&id)))
                    .execute(conn)
                    .map_err(db_err("user", "user_id"))?;
                diesel::delete(grants::table.filter(grants::user_id.eq(&id)))
                    .execute(conn)
                    .map_err(db_err("user", "user_id"))?;
                diesel::delete(scim_users::table.filter(scim_users::user_id.eq(&id)))
                    .execute(conn)
                    .map_err(db_err("user", "user_id"))?;
                let n = diesel::delete(users::table.find(&id))
                    .execute(conn)
                    .map_err(db_err("user", "user_id"))?;
                if n == 0 {
                    Err(not_found("user", &id))
                } else {
                    Ok(())
                }
            })
        })
        .await
    }

    async fn insert_identity(&self, i: &Identity) -> Result<(), StoreError> {
        let row = IdentityRow::from_domain(i)?;
        self.run_write(move |conn| {
            diesel::insert_into(identities::table)
                .values(&row)
                .execute(conn)
                .map_err(db_err("identity", "subject"))?;
            Ok(())
        })
        .await
    }

    async fn find_identity(
        &self,
        connection: &ConnectionId,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<Identity>, StoreError> {
        let key = (
            connection.as_str().to_owned(),
            issuer.to_owned(),
            subject.to_owned(),
        );
        self.run(move |conn| {
            let row: Option<IdentityRow> = identities::table
                .find((&key.0, &key.1, &key.2))
                .select(IdentityRow::as_select())
                .first(conn)
                .optional()
                .map_err(db_err("identity", "subject"))?;
            row.map(IdentityRow::into_domain).transpose()
        })
        .await
    }

    async fn find_identity_with_user(
        &self,
        connection: &ConnectionId,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<(Identity, User)>, StoreError> {
        // Read with the other reads waiting at that moment (see `user_reads`).
        self.user_reads
            .identity_with_user(
                connection.as_str().to_owned(),
                issuer.to_owned(),
                subject.to_owned(),
            )
            .await
    }

    async fn list_identities(&self, user: &UserId) -> Result<Vec<Identity>, StoreError> {
        let user = user.as_str().to_owned();
        self.run(move |conn| {
            let rows: Vec<IdentityRow> = identities::table
                .filter(identities::user_id.eq(&user))
                .select(IdentityRow::as_select())
                .order(identities::created_at)
                .load(conn)
                .map_err(db_err("identity", "user_id"))?;
            rows.into_iter().map(IdentityRow::into_domain).collect()
        })
        .await
    }

    async fn list_connection_users(
        &self,
        connection: &ConnectionId,
    ) -> Result<Vec<UserId>, StoreError> {
        let connection = connection.as_str().to_owned();
        self.run(move |conn| {
            let ids: Vec<String> = identities::table
                .filter(identities::connection_id.eq(&connection))
                .select(identities::user_id)
                .distinct()
                .load(conn)
                .map_err(db_err("identity", "connection_id"))?;
            Ok(ids.into_iter().map(UserId::new).collect())
        })
        .await
    }

    async fn update_identity(&self, i: &Identity) -> Result<(), StoreError> {
        let row = IdentityRow::from_domain(i)?;
        self.run_write(move |conn| write_identity(conn, &row)).await
    }
}

fn write_user(conn: &mut DbConnection, row: &UserRow) -> Result<(), StoreError> {
    let n = diesel::update(users::table.find(&row.user_id))
        .set(row)
        .execute(conn)
        .map_err(db_err("user", "user_id"))?;
    if n == 0 {
        Err(not_found("user", &row.user_id))
    } else {
        Ok(())
    }
}

fn write_identity(conn: &mut DbConnection, row: &IdentityRow) -> Result<(), StoreError> {
    let n = diesel::update(identities::table.find((&row.connection_id, &row.issuer, &row.subject)))
        .set((
            identities::user_id.eq(&row.user_id),
            identities::password_hash.eq(&row.password_hash),
            identities::profile.eq(&row.profile),
            identities::updated_at.eq(row.updated_at),
        ))
        .execute(conn)
        .map_err(db_err("identity", "subject"))?;
    if n == 0 {
        Err(not_found("identity", &row.subject))
    } else {
        Ok(())
    }
}

#[async_trait]
impl RefreshTokenRepo for SqlStore {
    async fn insert_grant(
        &self,
        g: &UserGrant,
        first_refresh_token: Option<&RefreshToken>,
    ) -> Result<(), StoreError> {
        let grant = UserGrantRow::from_domain(g);
        let refresh = first_refresh_token.map(RefreshRow::from_domain);
        self.run_write(move |conn| {
            let insert_grant = |conn: &mut DbConnection| {
                diesel::insert_into(grants::table)
                    .values(&grant)
                    .execute(conn)
                    .map_err(db_err("grant", "id"))
            };
            match &refresh {
                None => insert_grant(conn).map(drop),
                Some(row) => tx(conn, |conn| {
                    insert_grant(conn)?;
                    diesel::insert_into(refresh_tokens::table)
                        .values(row)
                        .execute(conn)
                        .map_err(db_err("refresh token", "digest"))?;
                    Ok(())
                }),
            }
        })
        .await
    }

    async fn find_grant(&self, id: &FamilyId) -> Result<Option<UserGrant>, StoreError> {
        let id = id.as_str().to_owned();
        self.run(move |conn| {
            let row: Option<UserGrantRow> = grants::table
                .find(&id)
                .select(UserGrantRow::as_select())
                .first(conn)
                .optional()
                .map_err(db_err("grant", "id"))?;
            Ok(row.map(UserGrantRow::into_domain))
        })
        .await
    }

    async fn insert_refresh_token(&self, t: &RefreshToken) -> Result<(), StoreError> {
        let row = RefreshRow::from_domain(t);
        self.run_write(move |conn| {
            diesel::insert_into(refresh_tokens::table)
                .values(&row)
                .execute(conn)
                .map_err(db_err("refresh token", "digest"))?;
            Ok(())
        })
        .await
    }

    async fn find_refresh_token(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<RefreshToken>, StoreError> {
        let digest = digest.as_str().to_owned();
        self.run(move |conn| {
            // With its grant's revocation in the same read: a token that escaped its grant's
            // revocation (rotated in concurrently) is still dead.
            let row: Option<(RefreshRow, Option<i64>)> = refresh_tokens::table
                .left_join(grants::table.on(grants::id.eq(refresh_tokens::family_id)))
                .filter(refresh_tokens::digest.eq(&digest))
                .select((RefreshRow::as_select(), grants::revoked_at.nullable()))
                .first(conn)
                .optional()
                .map_err(db_err("refresh token", "digest"))?;
            Ok(row.map(|(r, grant_revoked)| token_of_grant(r, grant_revoked)))
        })
        .await
    }

    async fn find_refresh_token_with_user(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<(RefreshToken, Option<User>)>, StoreError> {
        // Looked up with the other lookups waiting at that moment (see `refresh_batches`).
        self.refresh
            .find_with_user(digest.as_str().to_owned())
            .await
    }

    async fn mark_refresh_token_rotated(
        &self,
        id: &RefreshTokenId,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let id = id.as_str().to_owned();
        let now = to_millis(now);
        self.run_write(move |conn| {
            // One conditional UPDATE: of two concurrent exchanges only one sees a row change.
            let n = diesel::update(
                refresh_tokens::table
                    .find(&id)
                    .filter(refresh_tokens::rotated_at.is_null())
                    .filter(refresh_tokens::revoked_at.is_null())
                    .filter(refresh_tokens::expires_at.gt(now)),
            )
            .set(refresh_tokens::rotated_at.eq(Some(now)))
            .execute(conn)
            .map_err(db_err("refresh token", "id"))?;
            Ok(n == 1)
        })
        .await
    }

    async fn rotate_refresh_token(
        &self,
        old: &RefreshTokenId,
        new: &RefreshToken,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        // Group commit: written with the other rotations waiting at that moment (see
        // `refresh_batches`); answered after their commit.
        self.refresh
            .rotate(
                old.as_str().to_owned(),
                to_millis(now),
                RefreshRow::from_domain(new),
            )
            .await
    }

    async fn revoke_refresh_tokens(
        &self,
        scope: &RevokeScope,
        now: OffsetDateTime,
    ) -> Result<Vec<RefreshToken>, StoreError> {
        let now = to_millis(now);
        // `$with!(filter)` for the rows of the scope in `$t` (`refresh_tokens`, or `grants`,
        // whose `$family` column is its id). Each scope is its own statement type, so diesel
        // prepares it once per connection (a boxed filter is parsed each time).
        macro_rules! in_scope {
            ($t:ident, $family:ident, $scope:expr, $with:ident) => {
                match $scope {
                    RevokeScope::Family(f) => $with!($t::$family.eq(f.as_str())),
                    RevokeScope::User(u) => $with!($t::user_id.eq(u.as_str())),
                    RevokeScope::Session {
                        session_id,
                        include_offline: true,
                    } => $with!($t::session_id.eq(session_id.as_str())),
                    RevokeScope::Session {
                        session_id,
                        include_offline: false,
                    } => $with!(
                        $t::session_id
                            .eq(session_id.as_str())
                            .and($t::offline.eq(false))
                    ),
                }
            };
        }
        // Most logouts have nothing to revoke: they look first, with a prepared read (diesel
        // parses the update on every call) that on SQLite does not wait for a writer's turn.
        // Every refresh token belongs to a grant, revoked with it: live grants are what to find.
        // A user's (every user-wide logout) with the other reads waiting at that moment (see
        // `user_reads`).
        let any = match scope {
            RevokeScope::User(u) => {
                self.user_reads
                    .any_live_grant(u.as_str().to_owned())
                    .await?
            }
            _ => {
                let s = scope.clone();
                self.run(move |conn| {
                    macro_rules! first {
                        ($filter:expr) => {
                            grants::table
                                .filter(grants::revoked_at.is_null())
                                .filter($filter)
                                .select(grants::id)
                                .first::<String>(conn)
                        };
                    }
                    in_scope!(grants, id, &s, first)
                        .optional()
                        .map_err(db_err("grant", "id"))
                })
                .await?
                .is_some()
            }
        };
        if !any {
            return Ok(Vec::new());
        }
        // One transaction: the grants, then their tokens; only the statement that flips a row
        // reports it as revoked.
        let scope = scope.clone();
        self.run_write(move |conn| {
            tx(conn, |conn| {
                macro_rules! revoke_grants {
                    ($filter:expr) => {
                        diesel::update(
                            grants::table
                                .filter(grants::revoked_at.is_null())
                                .filter($filter),
                        )
                        .set(grants::revoked_at.eq(Some(now)))
                        .execute(conn)
                    };
                }
                in_scope!(grants, id, &scope, revoke_grants).map_err(db_err("grant", "id"))?;
                macro_rules! revoke {
                    ($c:expr) => {{
                        macro_rules! update {
                            ($filter:expr) => {
                                diesel::update(
                                    refresh_tokens::table
                                        .filter(refresh_tokens::revoked_at.is_null())
                                        .filter($filter),
                                )
                                .set(refresh_tokens::revoked_at.eq(Some(now)))
                                .returning(RefreshRow::as_returning())
                                .get_results::<RefreshRow>($c)
                            };
                        }
                        in_scope!(refresh_tokens, family_id, &scope, update)
                    }};
                }
                let rows = match &mut *conn {
                    DbConnection::Pg(pg) => revoke!(pg),
                    DbConnection::Sqlite(lite) => revoke!(lite),
                }
                .map_err(db_err("refresh token", "id"))?;
                Ok(rows.into_iter().map(RefreshRow::into_domain).collect())
            })
        })
        .await
    }

    async fn list_user_refresh_tokens(
        &self,
        user: &UserId,
        now: OffsetDateTime,
    ) -> Result<Vec<RefreshToken>, StoreError> {
        // Read with the other reads waiting at that moment (see `user_reads`).
        self.user_reads
            .live_tokens(user.as_str().to_owned(), to_millis(now))
            .await
    }

    async fn list_user_grant_clients(
        &self,
        user: &UserId,
        now: OffsetDateTime,
    ) -> Result<Vec<ClientId>, StoreError> {
        let user = user.as_str().to_owned();
        let now = to_millis(now);
        self.run(move |conn| {
            let ids: Vec<String> = grants::table
                .filter(grants::user_id.eq(&user))
                .filter(grants::revoked_at.is_null())
                .filter(grants::expires_at.gt(now))
                .select(grants::client_id)
                .distinct()
                .load(conn)
                .map_err(db_err("grant", "user_id"))?;
            Ok(ids.into_iter().map(ClientId::new).collect())
        })
        .await
    }

    async fn purge_expired_grants(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let (before, limit) = (to_millis(before), i64::from(limit));
        self.run_write(move |conn| {
            tx(conn, |conn| {
                // One bounded batch (`grants_expires`); instances racing delete the same rows
                // at most twice, harmlessly.
                let ids: Vec<String> = grants::table
                    .filter(grants::expires_at.lt(before))
                    .select(grants::id)
                    .limit(limit)
                    .load(conn)
                    .map_err(db_err("grant", "id"))?;
                if ids.is_empty() {
                    return Ok(0);
                }
                diesel::delete(
                    refresh_tokens::table.filter(refresh_tokens::family_id.eq_any(&ids)),
                )
                .execute(conn)
                .map_err(db_err("refresh token", "family_id"))?;
                let n = diesel::delete(grants::table.filter(grants::id.eq_any(&ids)))
                    .execute(conn)
                    .map_err(db_err("grant", "id"))?;
                Ok(n as u64)
            })
        })
        .await
    }

    async fn list_family(&self, family: &FamilyId) -> Result<Vec<RefreshToken>, StoreError> {
        let family = family.as_str().to_owned();
        self.run(move |conn| {
            let rows: Vec<RefreshRow> = refresh_tokens::table
                .filter(refresh_tokens::family_id.eq(&family))
                .select(RefreshRow::as_select())
                .order((refresh_tokens::created_at, refresh_tokens::id))
                .load(conn)
                .map_err(db_err("refresh token", "family_id"))?;
            Ok(rows.into_iter().map(RefreshRow::into_domain).collect())
        })
        .await
    }
}

/// The PostgreSQL advisory lock under which a first key of an algorithm and state is stored
/// ("Latch_ky").
const SIGNING_KEYS_LOCK: i64 = 0x4c61_7463_685f_6b79;

#[async_trait]
impl SigningKeyRepo for SqlStore {
    async fn insert_signing_key(&self, k: &SigningKey) -> Result<(), StoreError> {
        let row = KeyRow::from_domain(k, &self.cipher)?;
        self.run_write(move |conn| {
            diesel::insert_into(signing_keys::table)
                .values(&row)
                .execute(conn)
                .map_err(db_err("signing key", "kid"))?;
            Ok(())
        })
        .await
    }

    async fn insert_signing_key_if_absent(&self, k: &SigningKey) -> Result<bool, StoreError> {
        let row = KeyRow::from_domain(k, &self.cipher)?;
        self.run_write(move |conn| {
            // One statement: on SQLite it holds the write lock from the check to the insert.
            // On PostgreSQL two such statements could both find nothing, so they run under a
            // transaction-scoped advisory lock and take turns.
            macro_rules! insert {
                ($c:expr) => {
                    diesel::insert_into(signing_keys::table)
                        .values(
                            diesel::select((
                                row.kid.as_str().into_sql::<diesel::sql_types::Text>(),
                                row.alg.as_str().into_sql::<diesel::sql_types::Text>(),
                                row.state.as_str().into_sql::<diesel::sql_types::Text>(),
                                row.private_key.as_str().into_sql::<diesel::sql_types::Text>(),
                                row.public_jwk.as_str().into_sql::<diesel::sql_types::Text>(),
                                row.created_at.into_sql::<diesel::sql_types::BigInt>(),
                                row.updated_at.into_sql::<diesel::sql_types::BigInt>(),
                                row.publish_until
                                    .into_sql::<diesel::sql_types::Nullable<diesel::sql_types::BigInt>>(),
                            ))
                            .filter(diesel::dsl::not(diesel::dsl::exists(
                                signing_keys::table
                                    .filter(signing_keys::alg.eq(&row.alg))
                                    .filter(signing_keys::state.eq(&row.state)),
                            ))),
                        )
                        .into_columns((
                            signing_keys::kid,
                            signing_keys::alg,
                            signing_keys::state,
                            signing_keys::private_key,
                            signing_keys::public_jwk,
                            signing_keys::created_at,
                            signing_keys::updated_at,
                            signing_keys::publish_until,
                        ))
                        .execute($c)
                };
            }
            let n = match &mut **conn {
                // READ COMMITTED whatever the database's default: the check must see a key
                // committed while this transaction waited for the lock.
                DbConnection::Pg(pg) => pg.build_transaction().read_committed().run(|pg| {
                    diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                        .bind::<diesel::sql_types::BigInt, _>(SIGNING_KEYS_LOCK)
                        .execute(pg)?;
                    insert!(pg)
                }),
                DbConnection::Sqlite(lite) => insert!(lite),
            }
            .map_err(db_err("signing key", "kid"))?;
            Ok(n > 0)
        })
        .await
    }

    async fn list_signing_keys(&self) -> Result<Vec<SigningKey>, StoreError> {
        let cipher = self.cipher.clone();
        self.run(move |conn| {
            let rows: Vec<KeyRow> = signing_keys::table
                .select(KeyRow::as_select())
                .order((signing_keys::created_at, signing_keys::kid))
                .load(conn)
                .map_err(db_err("signing key", "kid"))?;
            rows.into_iter().map(|r| r.into_domain(&cipher)).collect()
        })
        .await
    }

    async fn update_signing_key(&self, k: &SigningKey) -> Result<(), StoreError> {
        let row = KeyRow::from_domain(k, &self.cipher)?;
        self.run_write(move |conn| {
            let n = diesel::update(signing_keys::table.find(&row.kid))
                .set(&row)
                .execute(conn)
                .map_err(db_err("signing key", "kid"))?;
            if n == 0 {
                Err(not_found("signing key", &row.kid))
            } else {
                Ok(())
            }
        })
        .await
    }

    async fn get_signing_key(&self, kid: &Kid) -> Result<SigningKey, StoreError> {
        let kid = kid.as_str().to_owned();
        let cipher = self.cipher.clone();
        self.run(move |conn| {
            let row: Option<KeyRow> = signing_keys::table
                .find(&kid)
                .select(KeyRow::as_select())
                .first(conn)
                .optional()
                .map_err(db_err("signing key", "kid"))?;
            row.ok_or_else(|| not_found("signing key", &kid))?
                .into_domain(&cipher)
        })
        .await
    }
}

#[async_trait]
impl LogRepo for SqlStore {
    async fn insert_log(&self, e: &LogEvent) -> Result<(), StoreError> {
        self.logs.push(LogRow::from_domain(e)?);
        Ok(())
    }

    async fn list_logs(&self, q: &LogQuery) -> Result<Vec<LogEvent>, StoreError> {
        self.logs.flush().await;
        let q = q.clone();
        self.run(move |conn| {
            let per_page = i64::from(q.per_page.clamp(1, 100));
            let rows: Vec<LogRow> = logs_matching(&q)
                .select(LogRow::as_select())
                .order((log_events::date.desc(), log_events::log_id.desc()))
                .limit(per_page)
                .offset(i64::from(q.page) * per_page)
                .load(conn)
                .map_err(db_err("log event", "log_id"))?;
            rows.into_iter().map(LogRow::into_domain).collect()
        })
        .await
    }

    async fn count_logs(&self, q: &LogQuery) -> Result<u64, StoreError> {
        self.logs.flush().await;
        let q = q.clone();
        self.run(move |conn| {
            let n: i64 = logs_matching(&q)
                .count()
                .get_result(conn)
                .map_err(db_err("log event", "log_id"))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn purge_logs(&self, before: OffsetDateTime, limit: u32) -> Result<u64, StoreError> {
        // Events still queued for the writer are purged too when they are old enough.
        self.logs.flush().await;
        let (before, limit) = (to_millis(before), i64::from(limit));
        self.run_write(move |conn| purge_batch(conn, &LOG_EVENTS_PURGE, before, limit))
            .await
    }
}

/// The row an attempt's outcome is written as: the lease is given back.
fn attempt_row(d: &Delivery) -> Result<DeliveryRow, StoreError> {
    let mut row = DeliveryRow::from_domain(d)?;
    row.locked_until = None;
    Ok(row)
}

/// Writes one attempt's outcome; the number of rows it changed.
fn write_attempt(conn: &mut DbConnection, row: &DeliveryRow) -> Result<usize, StoreError> {
    diesel::update(outbox::table.find(&row.id))
        .set(row)
        .execute(conn)
        .map_err(db_err("delivery", "id"))
}

#[async_trait]
impl OutboxRepo for SqlStore {
    async fn insert_deliveries(&self, d: &[Delivery]) -> Result<(), StoreError> {
        if d.is_empty() {
            return Ok(());
        }
        let rows = d
            .iter()
            .map(DeliveryRow::from_domain)
            .collect::<Result<Vec<_>, _>>()?;
        self.run_write(move |conn| {
            tx(conn, |conn| {
                match conn {
                    // COPY: a GTR or a mass logout records thousands at once, in one round
                    // trip with nothing to parse or plan per row.
                    DbConnection::Pg(pg) => {
                        diesel::copy_from(outbox::table)
                            .from_insertable(&rows)
                            .execute(pg)
                            .map_err(db_err("delivery", "id"))?;
                    }
                    DbConnection::Sqlite(_) => {
                        for row in &rows {
                            diesel::insert_into(outbox::table)
                                .values(row)
                                .execute(conn)
                                .map_err(db_err("delivery", "id"))?;
                        }
                    }
                }
                Ok(())
            })
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let now = to_millis(now);
        let lease = to_millis(lease_until);
        self.run_write(move |conn| {
            use diesel::connection::SimpleConnection;
            use diesel::sql_types::BigInt;
            // One statement: the due rows nobody holds, leased at once. On PostgreSQL rows
            // another instance is claiming are skipped, not waited for; SQLite has one writer.
            // PostgreSQL takes them in no set order: with an ORDER BY, a table whose statistics
            // lag behind a burst of thousands of deliveries is planned as "read and sort every
            // pending row" on each claim; without one, the scan stops at the first `limit` rows.
            // Only the kinds this binary can send: during a rolling upgrade an older instance
            // leaves a newer kind to the newer instances instead of holding it unsent.
            let kinds = DeliveryKind::ALL
                .iter()
                .map(|k| format!("'{}'", k.as_str()))
                .collect::<Vec<_>>()
                .join(", ");
            let rows: Vec<DeliveryRow> = match &mut **conn {
                // Through the partial index `outbox_pending`, never a sequential scan: right
                // after a burst the statistics still say "most rows pending", and the planner
                // then walks the table from its start, past every delivery sent (and every dead
                // row version) since the last vacuum, on each claim; the drain of 100,000
                // deliveries slowed round after round. An index scan also marks the entries of
                // rows it finds dead, so the next claim skips them. (SET LOCAL: this transaction
                // only.)
                DbConnection::Pg(pg) => pg.transaction(|pg| {
                    pg.batch_execute(
                        "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off",
                    )?;
                    diesel::sql_query(format!(
                        "UPDATE outbox SET locked_until = $1 WHERE id IN (\
                           SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= $2 \
                           AND (locked_until IS NULL OR locked_until <= $2) AND kind IN ({kinds}) \
                           LIMIT $3 FOR UPDATE SKIP LOCKED) \
                         RETURNING *"
                    ))
                    .bind::<BigInt, _>(lease)
                    .bind::<BigInt, _>(now)
                    .bind::<BigInt, _>(i64::from(limit))
                    .load(pg)
                }),
                DbConnection::Sqlite(lite) => diesel::sql_query(format!(
                    "UPDATE outbox SET locked_until = ?1 WHERE id IN (\
                       SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?2 \
                       AND (locked_until IS NULL OR locked_until <= ?2) AND kind IN ({kinds}) \
                       ORDER BY next_attempt_at, id LIMIT ?3) \
                     RETURNING *"
                ))
                .bind::<BigInt, _>(lease)
                .bind::<BigInt, _>(now)
                .bind::<BigInt, _>(i64::from(limit))
                .load(lite),
            }
            .map_err(db_err("delivery", "id"))?;
            let mut claimed = rows
                .into_iter()
                .map(DeliveryRow::into_domain)
                .collect::<Result<Vec<_>, _>>()?;
            claimed.sort_by(|a, b| {
                a.next_attempt_at
                    .cmp(&b.next_attempt_at)
                    .then_with(|| a.id.cmp(&b.id))
            });
            Ok(claimed)
        })
        .await
    }

    async fn claim_delivery(
        &self,
        id: &DeliveryId,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<Option<Delivery>, StoreError> {
        let id = id.as_str().to_owned();
        let (now, lease) = (to_millis(now), to_millis(lease_until));
        self.run_write(move |conn| {
            let n = diesel::update(
                outbox::table
                    .find(&id)
                    .filter(outbox::state.eq(DeliveryState::Pending.as_str()))
                    .filter(
                        outbox::locked_until
                            .is_null()
                            .or(outbox::locked_until.le(now)),
                    ),
            )
            .set(outbox::locked_until.eq(Some(lease)))
            .execute(conn)
            .map_err(db_err("delivery", "id"))?;
            if n == 0 {
                return Ok(None);
            }
            let row: DeliveryRow = outbox::table
                .find(&id)
                .select(DeliveryRow::as_select())
                .first(conn)
                .map_err(db_err("delivery", "id"))?;
            row.into_domain().map(Some)
        })
        .await
    }

    async fn record_attempt(&self, d: &Delivery) -> Result<(), StoreError> {
        let row = attempt_row(d)?;
        self.run_write(move |conn| {
            if write_attempt(conn, &row)? == 0 {
                Err(not_found("delivery", &row.id))
            } else {
                Ok(())
            }
        })
        .await
    }

    async fn record_attempts(&self, d: &[Delivery]) -> Result<(), StoreError> {
        if d.is_empty() {
            return Ok(());
        }
        let rows = d.iter().map(attempt_row).collect::<Result<Vec<_>, _>>()?;
        self.run_write(move |conn| match &mut **conn {
            // One statement for the whole batch: the outcomes travel as arrays.
            DbConnection::Pg(pg) => {
                use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};
                diesel::sql_query(
                    "UPDATE outbox AS o SET state = v.state, attempts = v.attempts, \
                       next_attempt_at = v.next_attempt_at, locked_until = NULL, \
                       last_error = v.last_error, finished_at = v.finished_at \
                     FROM unnest($1::text[], $2::text[], $3::int4[], $4::int8[], $5::text[], $6::int8[]) \
                       AS v(id, state, attempts, next_attempt_at, last_error, finished_at) \
                     WHERE o.id = v.id",
                )
                .bind::<Array<Text>, _>(rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>())
                .bind::<Array<Text>, _>(rows.iter().map(|r| r.state.clone()).collect::<Vec<_>>())
                .bind::<Array<Integer>, _>(rows.iter().map(|r| r.attempts).collect::<Vec<_>>())
                .bind::<Array<BigInt>, _>(
                    rows.iter().map(|r| r.next_attempt_at).collect::<Vec<_>>(),
                )
                .bind::<Array<Nullable<Text>>, _>(
                    rows.iter().map(|r| r.last_error.clone()).collect::<Vec<_>>(),
                )
                .bind::<Array<Nullable<BigInt>>, _>(
                    rows.iter().map(|r| r.finished_at).collect::<Vec<_>>(),
                )
                .execute(pg)
                .map(drop)
                .map_err(db_err("delivery", "id"))
            }
            DbConnection::Sqlite(_) => tx(conn, |conn| {
                for row in &rows {
                    write_attempt(conn, row)?;
                }
                Ok(())
            }),
        })
        .await
    }

    async fn get_delivery(&self, id: &DeliveryId) -> Result<Delivery, StoreError> {
        let id = id.as_str().to_owned();
        self.run(move |conn| {
            let row: Option<DeliveryRow> = outbox::table
                .find(&id)
                .select(DeliveryRow::as_select())
                .first(conn)
                .optional()
                .map_err(db_err("delivery", "id"))?;
            row.ok_or_else(|| not_found("delivery", &id))?.into_domain()
        })
        .await
    }

    async fn retry_delivery(
        &self,
        id: &DeliveryId,
        now: OffsetDateTime,
        jti: &Jti,
    ) -> Result<Option<Delivery>, StoreError> {
        let id = id.as_str().to_owned();
        let jti = jti.as_str().to_owned();
        let now = to_millis(now);
        self.run_write(move |conn| {
            // One conditional UPDATE: a worker claiming the row at the same moment either
            // holds it first (nothing changes here) or claims it after, already due.
            let pending = DeliveryState::Pending.as_str();
            let n = diesel::update(
                outbox::table.find(&id).filter(
                    outbox::state
                        .eq(DeliveryState::Failed.as_str())
                        .or(outbox::state.eq(pending).and(
                            outbox::locked_until
                                .is_null()
                                .or(outbox::locked_until.le(now)),
                        )),
                ),
            )
            .set((
                outbox::state.eq(pending),
                outbox::next_attempt_at.eq(now),
                outbox::locked_until.eq(None::<i64>),
                outbox::finished_at.eq(None::<i64>),
                outbox::jti.eq(&jti),
            ))
            .execute(conn)
            .map_err(db_err("delivery", "id"))?;
            let row: Option<DeliveryRow> = outbox::table
                .find(&id)
                .select(DeliveryRow::as_select())
                .first(conn)
                .optional()
                .map_err(db_err("delivery", "id"))?;
            match row {
                None => Err(not_found("delivery", &id)),
                Some(_) if n == 0 => Ok(None),
                Some(r) => r.into_domain().map(Some),
            }
        })
        .await
    }

    async fn count_pending_deliveries(&self, limit: u64) -> Result<u64, StoreError> {
        // `state = 'pending'` written out, so both backends read the partial index
        // `outbox_pending`; the inner LIMIT stops the read there.
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT COUNT(*) AS n FROM \
             (SELECT 1 AS one FROM outbox WHERE state = 'pending' LIMIT {limit}) AS p"
        );
        self.run(move |conn| {
            let row: CountRow = match &mut **conn {
                DbConnection::Pg(pg) => diesel::sql_query(&sql).get_result(pg),
                DbConnection::Sqlite(lite) => diesel::sql_query(&sql).get_result(lite),
            }
            .map_err(db_err("delivery", "id"))?;
            Ok(u64::try_from(row.n).unwrap_or(0))
        })
        .await
    }

    async fn list_deliveries(
        &self,
        query: &DeliveryQuery,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let query = query.clone();
        self.run(move |conn| {
            let mut q = outbox::table.select(DeliveryRow::as_select()).into_boxed();
            if let Some(s) = query.state {
                q = q.filter(outbox::state.eq(s.as_str()));
            }
            if let Some(u) = &query.user_id {
                q = q.filter(outbox::user_id.eq(u.as_str().to_owned()));
            }
            if let Some(c) = &query.client_id {
                q = q.filter(outbox::client_id.eq(c.as_str().to_owned()));
            }
            let rows: Vec<DeliveryRow> = q
                .order((outbox::created_at.desc(), outbox::id.desc()))
                .limit(i64::from(limit.clamp(1, 1000)))
                .load(conn)
                .map_err(db_err("delivery", "id"))?;
            rows.into_iter().map(DeliveryRow::into_domain).collect()
        })
        .await
    }

    async fn purge_finished_deliveries(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let (before, limit) = (to_millis(before), i64::from(limit));
        // A pending delivery is never deleted: only finished rows (the partial index
        // `outbox_finished` holds only them).
        self.run_write(move |conn| purge_batch(conn, &FINISHED_DELIVERIES_PURGE, before, limit))
            .await
    }
}

/// Reads the SCIM record of `user` in `connection` with its user.
fn load_scim_user(
    conn: &mut DbConnection,
    connection: &str,
    user: &str,
) -> Result<Option<(ScimUser, User)>, StoreError> {
    let row: Option<(ScimUserRow, UserRow)> = scim_users::table
        .inner_join(users::table.on(users::user_id.eq(scim_users::user_id)))
        .filter(scim_users::connection_id.eq(connection))
        .filter(scim_users::user_id.eq(user))
        .select((ScimUserRow::as_select(), UserRow::as_select()))
        .first(conn)
        .optional()
        .map_err(scim_user_err)?;
    match row {
        Some((s, u)) => Ok(Some((s.into_domain()?, u.into_domain()?))),
        None => Ok(None),
    }
}

/// The user, identity and SCIM record of one write must name one user in one connection.
fn check_scim_write(user: &User, identity: &Identity, scim: &ScimUser) -> Result<(), StoreError> {
    if identity.user_id != user.user_id
        || scim.user_id != user.user_id
        || identity.connection_id != scim.connection_id
    {
        return Err(StoreError::Internal(
            "a SCIM write names different users or connections".into(),
        ));
    }
    Ok(())
}

/// An identity write of a SCIM user that failed: a clash is named `identity`.
fn scim_identity_err(e: diesel::result::Error) -> StoreError {
    db_err("scim user", "identity")(e)
}

#[async_trait]
impl ScimRepo for SqlStore {
    async fn put_scim_config(&self, c: &ScimConfig) -> Result<(), StoreError> {
        let row = ScimConfigRow::from_domain(c)?;
        self.run_write(move |conn| {
            let update = |conn: &mut DbConnection| {
                diesel::update(scim_configs::table.find(&row.connection_id))
                    .set((
                        scim_configs::user_id_attribute.eq(&row.user_id_attribute),
                        scim_configs::mapping.eq(&row.mapping),
                        scim_configs::updated_at.eq(row.updated_at),
                    ))
                    .execute(conn)
                    .map_err(db_err("scim configuration", "connection_id"))
            };
            // Replace (keeping `created_at`), else create; a create that lost a race with
            // another one replaces what that one wrote.
            if update(conn)? > 0 {
                return Ok(());
            }
            match diesel::insert_into(scim_configs::table)
                .values(&row)
                .execute(conn)
                .map_err(db_err("scim configuration", "connection_id"))
            {
                Err(StoreError::Conflict { .. }) => update(conn).map(drop),
                other => other.map(drop),
            }
        })
        .await
    }

    async fn find_scim_config(
        &self,
        connection: &ConnectionId,
    ) -> Result<Option<ScimConfig>, StoreError> {
        let id = connection.as_str().to_owned();
        self.run(move |conn| {
            let row: Option<ScimConfigRow> = scim_configs::table
                .find(&id)
                .select(ScimConfigRow::as_select())
                .first(conn)
                .optional()
                .map_err(db_err("scim configuration", "connection_id"))?;
            row.map(ScimConfigRow::into_domain).transpose()
        })
        .await
    }

    async fn delete_scim_config(&self, connection: &ConnectionId) -> Result<bool, StoreError> {
        let id = connection.as_str().to_owned();
        self.run_write(move |conn| {
            tx(conn, |conn| {
                diesel::delete(scim_tokens::table.filter(scim_tokens::connection_id.eq(&id)))
                    .execute(conn)
                    .map_err(db_err("scim token", "connection_id"))?;
                let n = diesel::delete(scim_configs::table.find(&id))
                    .execute(conn)
                    .map_err(db_err("scim configuration", "connection_id"))?;
                Ok(n > 0)
            })
        })
        .await
    }

    async fn insert_scim_token(&self, t: &ScimToken) -> Result<(), StoreError> {
        let row = ScimTokenRow::from_domain(t)?;
        self.run_write(move |conn| {
            diesel::insert_into(scim_tokens::table)
                .values(&row)
                .execute(conn)
                .map_err(db_err("scim token", "token_id"))?;
            Ok(())
        })
        .await
    }

    async fn list_scim_tokens(
        &self,
        connection: &ConnectionId,
    ) -> Result<Vec<ScimToken>, StoreError> {
        let id = connection.as_str().to_owned();
        self.run(move |conn| {
            let rows: Vec<ScimTokenRow> = scim_tokens::table
                .filter(scim_tokens::connection_id.eq(&id))
                .select(ScimTokenRow::as_select())
                .order((scim_tokens::created_at, scim_tokens::token_id))
                .load(conn)
                .map_err(db_err("scim token", "connection_id"))?;
            rows.into_iter().map(ScimTokenRow::into_domain).collect()
        })
        .await
    }

    async fn find_scim_token(&self, digest: &TokenDigest) -> Result<Option<ScimToken>, StoreError> {
        let digest = digest.as_str().to_owned();
        self.run(move |conn| {
            let row: Option<ScimTokenRow> = scim_tokens::table
                .filter(scim_tokens::digest.eq(&digest))
                .select(ScimTokenRow::as_select())
                .first(conn)
                .optional()
                .map_err(db_err("scim token", "digest"))?;
            row.map(ScimTokenRow::into_domain).transpose()
        })
        .await
    }

    async fn find_scim_caller(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<(ScimToken, ScimConfig)>, StoreError> {
        let digest = digest.as_str().to_owned();
        self.run(move |conn| {
            let row: Option<(ScimTokenRow, ScimConfigRow)> = scim_tokens::table
                .inner_join(
                    scim_configs::table
                        .on(scim_configs::connection_id.eq(scim_tokens::connection_id)),
                )
                .filter(scim_tokens::digest.eq(&digest))
                .select((ScimTokenRow::as_select(), ScimConfigRow::as_select()))
                .first(conn)
                .optional()
                .map_err(db_err("scim token", "digest"))?;
            row.map(|(t, c)| Ok((t.into_domain()?, c.into_domain()?)))
                .transpose()
        })
        .await
    }

    async fn delete_scim_token(
        &self,
        connection: &ConnectionId,
        token_id: &str,
    ) -> Result<bool, StoreError> {
        let (connection, token_id) = (connection.as_str().to_owned(), token_id.to_owned());
        self.run_write(move |conn| {
            let n = diesel::delete(
                scim_tokens::table
                    .filter(scim_tokens::token_id.eq(&token_id))
                    .filter(scim_tokens::connection_id.eq(&connection)),
            )
            .execute(conn)
            .map_err(db_err("scim token", "token_id"))?;
            Ok(n > 0)
        })
        .await
    }

    async fn insert_scim_user(
        &self,
        user: &User,
        identity: &Identity,
        scim: &ScimUser,
    ) -> Result<(), StoreError> {
        check_scim_write(user, identity, scim)?;
        let user = UserRow::from_domain(user)?;
        let identity = IdentityRow::from_domain(identity)?;
        let scim = ScimUserRow::from_domain(scim)?;
        self.run_write(move |conn| {
            tx(conn, |conn| {
                diesel::insert_into(users::table)
                    .values(&user)
                    .execute(conn)
                    .map_err(db_err("user", "user_id"))?;
                // The SCIM record before the identity: a taken `externalId` (often also the
                // identity's subject) is named as such.
                diesel::insert_into(scim_users::table)
                    .values(&scim)
                    .execute(conn)
                    .map_err(scim_user_err)?;
                diesel::insert_into(identities::table)
                    .values(&identity)
                    .execute(conn)
                    .map_err(scim_identity_err)?;
                Ok(())
            })
        })
        .await
    }

    async fn attach_scim_user(&self, scim: &ScimUser) -> Result<(), StoreError> {
        let row = ScimUserRow::from_domain(scim)?;
        self.run_write(move |conn| {
            diesel::insert_into(scim_users::table)
                .values(&row)
                .execute(conn)
                .map_err(|e| match scim_user_err(e) {
                    StoreError::Conflict { field, .. }
                        if field != "userName" && field != "externalId" =>
                    {
                        StoreError::Conflict {
                            entity: "scim user",
                            field: "user",
                        }
                    }
                    other => other,
                })?;
            Ok(())
        })
        .await
    }

    async fn find_scim_user(
        &self,
        connection: &ConnectionId,
        user: &UserId,
    ) -> Result<Option<(ScimUser, User)>, StoreError> {
        let (connection, user) = (connection.as_str().to_owned(), user.as_str().to_owned());
        self.run(move |conn| load_scim_user(conn, &connection, &user))
            .await
    }

    async fn list_scim_users(
        &self,
        connection: &ConnectionId,
        lookup: &ScimLookup,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<(ScimUser, User)>, u64), StoreError> {
        let connection = connection.as_str().to_owned();
        let lookup = lookup.clone();
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |conn| {
            // The connection's SCIM users with their users, matching the lookup (each lookup
            // is an equality on an indexed column: `scim_users_user_name`,
            // `scim_users_external_id`, `users_email`).
            macro_rules! matching {
                () => {{
                    let q = scim_users::table
                        .inner_join(users::table.on(users::user_id.eq(scim_users::user_id)))
                        .filter(scim_users::connection_id.eq(connection.clone()))
                        .into_boxed::<Db>();
                    match &lookup {
                        ScimLookup::All => q,
                        ScimLookup::UserName(n) => {
                            q.filter(scim_users::user_name_key.eq(user_name_key(n)))
                        }
                        ScimLookup::ExternalId(e) => {
                            q.filter(scim_users::external_id.eq(e.clone()))
                        }
                        ScimLookup::Email(e) => q.filter(users::email.eq(e.to_lowercase())),
                    }
                }};
            }
            let total: i64 = matching!()
                .count()
                .get_result(conn)
                .map_err(scim_user_err)?;
            let total = u64::try_from(total).unwrap_or(0);
            if limit == 0 || offset >= i64::try_from(total).unwrap_or(i64::MAX) {
                return Ok((Vec::new(), total));
            }
            let rows: Vec<(ScimUserRow, UserRow)> = matching!()
                .select((ScimUserRow::as_select(), UserRow::as_select()))
                .order((scim_users::created_at, scim_users::user_id))
                .offset(offset)
                .limit(limit)
                .load(conn)
                .map_err(scim_user_err)?;
            let page = rows
                .into_iter()
                .map(|(s, u)| Ok((s.into_domain()?, u.into_domain()?)))
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok((page, total))
        })
        .await
    }

    async fn update_scim_user(
        &self,
        user: &User,
        identity: &Identity,
        scim: &ScimUser,
        expected_version: i64,
    ) -> Result<(), StoreError> {
        check_scim_write(user, identity, scim)?;
        let user = UserRow::from_domain(user)?;
        let identity = IdentityRow::from_domain(identity)?;
        let scim = ScimUserRow::from_domain(scim)?;
        self.run_write(move |conn| {
            tx(conn, |conn| {
                // The version check and the SCIM record's write in one statement: of two
                // writers that read the same version, one finds it changed.
                let n = diesel::update(
                    scim_users::table
                        .filter(scim_users::connection_id.eq(&scim.connection_id))
                        .filter(scim_users::user_id.eq(&scim.user_id))
                        .filter(scim_users::version.eq(expected_version)),
                )
                .set((
                    scim_users::user_name.eq(&scim.user_name),
                    scim_users::user_name_key.eq(&scim.user_name_key),
                    scim_users::external_id.eq(&scim.external_id),
                    scim_users::active.eq(scim.active),
                    scim_users::resource.eq(&scim.resource),
                    scim_users::version.eq(scim.version),
                    scim_users::updated_at.eq(scim.updated_at),
                ))
                .execute(conn)
                .map_err(scim_user_err)?;
                if n == 0 {
                    let exists = scim_users::table
                        .filter(scim_users::connection_id.eq(&scim.connection_id))
                        .filter(scim_users::user_id.eq(&scim.user_id))
                        .select(scim_users::version)
                        .first::<i64>(conn)
                        .optional()
                        .map_err(scim_user_err)?;
                    return Err(match exists {
                        Some(_) => StoreError::Conflict {
                            entity: "scim user",
                            field: "version",
                        },
                        None => not_found("scim user", &scim.user_id),
                    });
                }
                write_user(conn, &user)?;
                // The user's identity in the connection, whatever its issuer and subject were.
                let n = diesel::update(
                    identities::table
                        .filter(identities::connection_id.eq(&identity.connection_id))
                        .filter(identities::user_id.eq(&identity.user_id)),
                )
                .set((
                    identities::issuer.eq(&identity.issuer),
                    identities::subject.eq(&identity.subject),
                    identities::password_hash.eq(&identity.password_hash),
                    identities::profile.eq(&identity.profile),
                    identities::updated_at.eq(identity.updated_at),
                ))
                .execute(conn)
                .map_err(scim_identity_err)?;
                if n == 0 {
                    return Err(not_found("identity", &identity.user_id));
                }
                Ok(())
            })
        })
        .await
    }

    async fn claim_scim_identity(
        &self,
        connection: &ConnectionId,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<(Identity, User)>, StoreError> {
        let key = (
            connection.as_str().to_owned(),
            issuer.to_owned(),
            subject.to_owned(),
        );
        self.run_write(move |conn| {
            tx(conn, |conn| {
                // One conditional UPDATE: of two sign-ins claiming at once, one finds nothing.
                let n = diesel::update(identities::table.find((&key.0, SCIM_ISSUER, &key.2)))
                    .set(identities::issuer.eq(&key.1))
                    .execute(conn)
                    .map_err(scim_identity_err)?;
                if n == 0 {
                    return Ok(None);
                }
                let (i, u): (IdentityRow, UserRow) = identities::table
                    .inner_join(users::table.on(users::user_id.eq(identities::user_id)))
                    .filter(identities::connection_id.eq(&key.0))
                    .filter(identities::issuer.eq(&key.1))
                    .filter(identities::subject.eq(&key.2))
                    .select((IdentityRow::as_select(), UserRow::as_select()))
                    .first(conn)
                    .map_err(db_err("identity", "subject"))?;
                Ok(Some((i.into_domain()?, u.into_domain()?)))
            })
        })
        .await
    }
}

/// Leases one ready stream (see `LogStreamRepo::claim_log_stream`): `active`, due, not held,
/// with queued events; the one whose oldest queued event is oldest first. On PostgreSQL a stream
/// another instance is claiming is skipped, not waited for; SQLite has one writer.
const CLAIM_LOG_STREAM_PG: &str = "UPDATE log_streams SET locked_until = $1 WHERE id IN (\
    SELECT s.id FROM log_streams s WHERE s.status = 'active' \
    AND (s.locked_until IS NULL OR s.locked_until <= $2) \
    AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= $2) \
    AND EXISTS (SELECT 1 FROM log_stream_events e WHERE e.stream_id = s.id) \
    ORDER BY (SELECT MIN(e.seq) FROM log_stream_events e WHERE e.stream_id = s.id), s.id \
    LIMIT 1 FOR UPDATE SKIP LOCKED) \
    RETURNING *";
const CLAIM_LOG_STREAM_SQLITE: &str = "UPDATE log_streams SET locked_until = ?1 WHERE id IN (\
    SELECT s.id FROM log_streams s WHERE s.status = 'active' \
    AND (s.locked_until IS NULL OR s.locked_until <= ?2) \
    AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= ?2) \
    AND EXISTS (SELECT 1 FROM log_stream_events e WHERE e.stream_id = s.id) \
    ORDER BY (SELECT MIN(e.seq) FROM log_stream_events e WHERE e.stream_id = s.id), s.id \
    LIMIT 1) \
    RETURNING *";

/// Most streams the orphan purge looks at in one pass (each one index probe): far more than
/// anyone runs; past it, the rest wait for the next pass.
const ORPHAN_PROBES: i64 = 10_000;

/// The ids the queue holds events of that no stream has (`purge_orphan_log_stream_events`),
/// found by a loose index scan of `log_stream_events (stream_id, seq)`: each step asks the
/// index for the next id above the last one, so the cost is one probe per stream the queue
/// holds, not a read of every queued event. At most `$1` steps.
pub(crate) const ORPHAN_LOG_STREAMS_PG: &str = "WITH RECURSIVE ids(id, n) AS (\
    SELECT (SELECT stream_id FROM log_stream_events ORDER BY stream_id LIMIT 1), 1 \
    UNION ALL \
    SELECT (SELECT e.stream_id FROM log_stream_events e WHERE e.stream_id > ids.id \
            ORDER BY e.stream_id LIMIT 1), ids.n + 1 \
    FROM ids WHERE ids.id IS NOT NULL AND ids.n < $1) \
    SELECT id FROM ids WHERE id IS NOT NULL \
    AND NOT EXISTS (SELECT 1 FROM log_streams s WHERE s.id = ids.id)";
pub(crate) const ORPHAN_LOG_STREAMS_SQLITE: &str = "WITH RECURSIVE ids(id, n) AS (\
    SELECT (SELECT stream_id FROM log_stream_events ORDER BY stream_id LIMIT 1), 1 \
    UNION ALL \
    SELECT (SELECT e.stream_id FROM log_stream_events e WHERE e.stream_id > ids.id \
            ORDER BY e.stream_id LIMIT 1), ids.n + 1 \
    FROM ids WHERE ids.id IS NOT NULL AND ids.n < ?1) \
    SELECT id FROM ids WHERE id IS NOT NULL \
    AND NOT EXISTS (SELECT 1 FROM log_streams s WHERE s.id = ids.id)";

/// A count, from raw SQL.
#[derive(diesel::QueryableByName)]
struct CountRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// One stream id, from raw SQL.
#[derive(diesel::QueryableByName)]
struct StreamIdRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
}

#[async_trait]
impl LogStreamRepo for SqlStore {
    async fn insert_log_stream(&self, st: &LogStream) -> Result<(), StoreError> {
        let row = LogStreamRow::from_domain(st, &self.cipher)?;
        self.run_write(move |conn| {
            diesel::insert_into(log_streams::table)
                .values(&row)
                .execute(conn)
                .map(|_| ())
                .map_err(db_err("log stream", "id"))
        })
        .await?;
        self.logs.streams_changed();
        Ok(())
    }

    async fn list_log_streams(&self) -> Result<Vec<LogStream>, StoreError> {
        let cipher = self.cipher.clone();
        self.run(move |conn| {
            let rows: Vec<LogStreamRow> = log_streams::table
                .select(LogStreamRow::as_select())
                .order((log_streams::created_at, log_streams::id))
                .load(conn)
                .map_err(db_err("log stream", "id"))?;
            rows.into_iter().map(|r| r.into_domain(&cipher)).collect()
        })
        .await
    }

    async fn find_log_stream(&self, id: &str) -> Result<Option<LogStream>, StoreError> {
        let (id, cipher) = (id.to_owned(), self.cipher.clone());
        self.run(move |conn| {
            let row: Option<LogStreamRow> = log_streams::table
                .find(&id)
                .select(LogStreamRow::as_select())
                .first(conn)
                .optional()
                .map_err(db_err("log stream", "id"))?;
            row.map(|r| r.into_domain(&cipher)).transpose()
        })
        .await
    }

    async fn update_log_stream(
        &self,
        st: &LogStream,
        status: Option<LogStreamStatus>,
    ) -> Result<(), StoreError> {
        let row = LogStreamRow::from_domain(st, &self.cipher)?;
        self.run_write(move |conn| {
            tx(conn, |conn| {
                let target = log_streams::table.find(&row.id);
                let n = diesel::update(target)
                    .set((
                        log_streams::name.eq(&row.name),
                        log_streams::sink.eq(&row.sink),
                        log_streams::filters.eq(&row.filters),
                        log_streams::updated_at.eq(row.updated_at),
                    ))
                    .execute(conn)
                    .map_err(db_err("log stream", "id"))?;
                if n == 0 {
                    return Err(not_found("log stream", &row.id));
                }
                match status {
                    None => {}
                    // A resume, decided on the stored status by the statement itself: a
                    // suspension written meanwhile is resumed whole (its failures forgotten).
                    Some(LogStreamStatus::Active) => {
                        let active = LogStreamStatus::Active.as_str();
                        diesel::update(target.filter(log_streams::status.ne(active)))
                            .set((
                                log_streams::status.eq(active),
                                log_streams::suspended_reason.eq(None::<String>),
                                log_streams::failures.eq(0),
                                log_streams::failing_since.eq(None::<i64>),
                                log_streams::last_error.eq(None::<String>),
                                log_streams::next_attempt_at.eq(None::<i64>),
                            ))
                            .execute(conn)
                            .map_err(db_err("log stream", "id"))?;
                    }
                    Some(other) => {
                        diesel::update(target)
                            .set((
                                log_streams::status.eq(other.as_str()),
                                log_streams::suspended_reason.eq(None::<String>),
                            ))
                            .execute(conn)
                            .map_err(db_err("log stream", "id"))?;
                    }
                }
                Ok(())
            })
        })
        .await?;
        self.logs.streams_changed();
        Ok(())
    }

    async fn delete_log_stream(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let deleted = self
            .run_write(move |conn| {
                tx(conn, |conn| {
                    diesel::delete(
                        log_stream_events::table.filter(log_stream_events::stream_id.eq(&id)),
                    )
                    .execute(conn)
                    .map_err(db_err("log stream", "id"))?;
                    let n = diesel::delete(log_streams::table.find(&id))
                        .execute(conn)
                        .map_err(db_err("log stream", "id"))?;
                    Ok(n > 0)
                })
            })
            .await?;
        self.logs.streams_changed();
        Ok(deleted)
    }

    async fn claim_log_stream(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Option<(LogStream, Vec<LogStreamEvent>)>, StoreError> {
        let (now, lease) = (to_millis(now), to_millis(lease_until));
        let cipher = self.cipher.clone();
        self.run_write(move |conn| {
            use diesel::sql_types::BigInt;
            tx(conn, |conn| {
                let rows: Vec<LogStreamRow> = match conn {
                    DbConnection::Pg(pg) => diesel::sql_query(CLAIM_LOG_STREAM_PG)
                        .bind::<BigInt, _>(lease)
                        .bind::<BigInt, _>(now)
                        .load(pg),
                    DbConnection::Sqlite(lite) => diesel::sql_query(CLAIM_LOG_STREAM_SQLITE)
                        .bind::<BigInt, _>(lease)
                        .bind::<BigInt, _>(now)
                        .load(lite),
                }
                .map_err(db_err("log stream", "id"))?;
                let Some(row) = rows.into_iter().next() else {
                    return Ok(None);
                };
                let events: Vec<LogStreamEventRow> = log_stream_events::table
                    .filter(log_stream_events::stream_id.eq(&row.id))
                    .select(LogStreamEventRow::as_select())
                    .order(log_stream_events::seq)
                    .limit(i64::from(limit.max(1)))
                    .load(conn)
                    .map_err(db_err("log stream", "id"))?;
                let stream = row.into_domain(&cipher)?;
                Ok(Some((
                    stream,
                    events
                        .into_iter()
                        .map(LogStreamEventRow::into_domain)
                        .collect(),
                )))
            })
        })
        .await
    }

    async fn ack_log_stream(
        &self,
        id: &str,
        lease_until: OffsetDateTime,
        seqs: &[i64],
    ) -> Result<bool, StoreError> {
        let (id, lease, seqs) = (id.to_owned(), to_millis(lease_until), seqs.to_vec());
        self.run_write(move |conn| {
            tx(conn, |conn| {
                // Only the lease's holder: a worker whose lease lapsed and was taken over changes
                // nothing (and does not release the new holder's lease).
                let mine = log_streams::table
                    .find(&id)
                    .filter(log_streams::locked_until.eq(Some(lease)));
                if seqs.is_empty() {
                    let n = diesel::update(mine)
                        .set(log_streams::locked_until.eq(None::<i64>))
                        .execute(conn)
                        .map_err(db_err("log stream", "id"))?;
                    return Ok(n > 0);
                }
                let n = diesel::update(mine)
                    .set((
                        log_streams::locked_until.eq(None::<i64>),
                        log_streams::failures.eq(0),
                        log_streams::failing_since.eq(None::<i64>),
                        log_streams::last_error.eq(None::<String>),
                        log_streams::next_attempt_at.eq(None::<i64>),
                    ))
                    .execute(conn)
                    .map_err(db_err("log stream", "id"))?;
                if n == 0 {
                    return Ok(false);
                }
                // Exactly the events sent: one queued below the highest of them that the claim
                // did not see (committed late by another instance) must stay.
                diesel::delete(
                    log_stream_events::table
                        .filter(log_stream_events::stream_id.eq(&id))
                        .filter(log_stream_events::seq.eq_any(&seqs)),
                )
                .execute(conn)
                .map_err(db_err("log stream", "id"))?;
                Ok(true)
            })
        })
        .await
    }

    async fn fail_log_stream(
        &self,
        id: &str,
        lease_until: OffsetDateTime,
        f: &LogStreamFailure,
    ) -> Result<bool, StoreError> {
        let (id, lease, f) = (id.to_owned(), to_millis(lease_until), f.clone());
        self.run_write(move |conn| {
            tx(conn, |conn| {
                let mine = log_streams::table
                    .find(&id)
                    .filter(log_streams::locked_until.eq(Some(lease)));
                // Counted from the failures the claim saw: when an administrator set the stream
                // `active` meanwhile (failures forgotten), this late failure is not recorded
                // over it.
                let recorded = diesel::update(
                    mine.filter(log_streams::failures.eq(f.failures.saturating_sub(1))),
                )
                .set((
                    log_streams::locked_until.eq(None::<i64>),
                    log_streams::failures.eq(f.failures),
                    log_streams::failing_since.eq(Some(to_millis(f.failing_since))),
                    log_streams::last_error.eq(Some(&f.error)),
                    log_streams::next_attempt_at.eq(Some(to_millis(f.next_attempt_at))),
                ))
                .execute(conn)
                .map_err(db_err("log stream", "id"))?
                    > 0;
                if !recorded {
                    // Still the holder: the lease is given back all the same.
                    diesel::update(mine)
                        .set(log_streams::locked_until.eq(None::<i64>))
                        .execute(conn)
                        .map_err(db_err("log stream", "id"))?;
                    return Ok(false);
                }
                if f.suspend {
                    // Unless an admin paused it meanwhile.
                    diesel::update(
                        log_streams::table
                            .find(&id)
                            .filter(log_streams::status.eq(LogStreamStatus::Active.as_str())),
                    )
                    .set((
                        log_streams::status.eq(LogStreamStatus::Suspended.as_str()),
                        log_streams::suspended_reason.eq(Some(&f.error)),
                    ))
                    .execute(conn)
                    .map_err(db_err("log stream", "id"))?;
                }
                Ok(true)
            })
        })
        .await
    }

    async fn count_log_stream_events(&self, id: &str) -> Result<u64, StoreError> {
        self.logs.flush().await;
        let id = id.to_owned();
        self.run(move |conn| {
            let n: i64 = log_stream_events::table
                .filter(log_stream_events::stream_id.eq(&id))
                .count()
                .get_result(conn)
                .map_err(db_err("log stream", "id"))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn purge_orphan_log_stream_events(&self) -> Result<u64, StoreError> {
        use diesel::sql_types::BigInt;
        // A read (no write turn on SQLite); most of the time it finds nothing to delete.
        let orphans: Vec<StreamIdRow> = self
            .run(move |conn| {
                match &mut **conn {
                    DbConnection::Pg(pg) => diesel::sql_query(ORPHAN_LOG_STREAMS_PG)
                        .bind::<BigInt, _>(ORPHAN_PROBES)
                        .load(pg),
                    DbConnection::Sqlite(lite) => diesel::sql_query(ORPHAN_LOG_STREAMS_SQLITE)
                        .bind::<BigInt, _>(ORPHAN_PROBES)
                        .load(lite),
                }
                .map_err(db_err("log stream", "id"))
            })
            .await?;
        let mut purged = 0;
        for StreamIdRow { id } in orphans {
            // By the index; and only while the stream is still gone (ids are never used again,
            // so this is belt and braces).
            purged += self
                .run_write(move |conn| {
                    diesel::delete(
                        log_stream_events::table
                            .filter(log_stream_events::stream_id.eq(&id))
                            .filter(diesel::dsl::not(diesel::dsl::exists(
                                log_streams::table.find(&id),
                            ))),
                    )
                    .execute(conn)
                    .map(|n| n as u64)
                    .map_err(db_err("log stream", "id"))
                })
                .await?;
        }
        Ok(purged)
    }

    async fn purge_log_stream_events(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, StoreError> {
        // Events still queued for the writer are queued (and purged) too when old enough.
        self.logs.flush().await;
        let (before, limit) = (to_millis(before), i64::from(limit));
        self.run_write(move |conn| purge_batch(conn, &LOG_STREAM_EVENTS_PURGE, before, limit))
            .await
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        self.backend.as_str()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|conn| {
            use diesel::connection::SimpleConnection;
            conn.batch_execute("SELECT 1")
                .map_err(|e| StoreError::Unavailable(Box::new(e)))
        })
        .await
    }

    fn pool_state(&self) -> Option<PoolState> {
        let s = self.pool.state();
        Some(PoolState {
            in_use: s.connections.saturating_sub(s.idle_connections),
            idle: s.idle_connections,
            max: self.pool.max_size(),
        })
    }

    fn log_events_dropped(&self) -> u64 {
        self.logs.dropped()
    }
}
