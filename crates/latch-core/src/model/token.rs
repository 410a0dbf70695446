use time::OffsetDateTime;

use crate::{ClientId, FamilyId, RefreshTokenId, SessionId, TokenDigest, UserId};

/// A refresh token as stored: the token itself is never kept, only its digest.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshToken {
    pub id: RefreshTokenId,
    pub digest: TokenDigest,
    pub family_id: FamilyId,
    pub user_id: UserId,
    pub client_id: ClientId,
    /// The browser session it was granted in, if any.
    pub session_id: Option<SessionId>,
    pub scope: String,
    /// Granted with `offline_access`: survives a plain logout (never a GTR or an admin clear).
    pub offline: bool,
    pub created_at: OffsetDateTime,
    /// Idle expiry of this token: unused until then, it dies.
    pub expires_at: OffsetDateTime,
    /// Absolute end of the rotation family: no rotation extends past it.
    pub family_expires_at: OffsetDateTime,
    /// Set when the token was exchanged for a newer one; a second use is reuse.
    pub rotated_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

impl RefreshToken {
    pub fn is_usable(&self, now: OffsetDateTime) -> bool {
        self.rotated_at.is_none() && self.revoked_at.is_none() && self.expires_at > now
    }
}

/// What a user granted a client in one authorization (one code exchange): the revocable record
/// every access and refresh token of that authorization is checked against. Its id is the
/// refresh tokens' `family_id` and the access tokens' `gid`; a client without refresh tokens has
/// one too, so a logout can end its access tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct UserGrant {
    pub id: FamilyId,
    pub user_id: UserId,
    pub client_id: ClientId,
    /// The browser session it was granted in, if any.
    pub session_id: Option<SessionId>,
    /// Granted with `offline_access`: survives a plain logout (never a GTR or an admin clear).
    pub offline: bool,
    pub created_at: OffsetDateTime,
    /// When nothing issued under it is valid any more (its last access or refresh token).
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

impl UserGrant {
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// Which grants, with their refresh tokens, to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeScope {
    Family(FamilyId),
    /// Grants and tokens bound to one session; offline ones only when `include_offline`.
    Session {
        session_id: SessionId,
        include_offline: bool,
    },
    /// Every grant and token of a user, offline ones included.
    User(UserId),
}
