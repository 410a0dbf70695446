//! User passwords: argon2id with OWASP's parameters (m = 19 MiB, t = 2, p = 1), stored as PHC
//! strings. Slow on purpose: never use it for high-entropy tokens (see [`crate::token`]).

use std::sync::{Condvar, Mutex, OnceLock};

use argon2::password_hash::{Output, PasswordHash, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use latch_core::SecretString;

fn params() -> Params {
    #[allow(clippy::expect_used)]
    Params::new(19_456, 2, 1, None).expect("valid argon2 parameters")
}

/// argon2id's working memory (19 MiB per check), kept and reused instead of allocated per check:
/// glibc's allocator keeps large blocks it has freed in per-thread arenas, so an allocation per
/// hash made an instance's resident memory climb by 19 MiB steps under steady sign-ins. At most
/// one block per core exists; a hash beyond that waits for one (hashing is CPU-bound: more at
/// once would not finish sooner).
struct Memory {
    state: Mutex<(Vec<Vec<Block>>, usize)>,
    returned: Condvar,
}

fn memory() -> &'static Memory {
    static MEMORY: OnceLock<Memory> = OnceLock::new();
    MEMORY.get_or_init(|| Memory {
        state: Mutex::new((Vec::new(), 0)),
        returned: Condvar::new(),
    })
}

/// Hands a block back to the pool however the hash ended.
struct Lease(Option<Vec<Block>>);

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(blocks) = self.0.take() {
            let m = memory();
            m.state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .0
                .push(blocks);
            m.returned.notify_one();
        }
    }
}

/// Runs `f` over `count` blocks of pooled memory.
fn with_memory<T>(count: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    let m = memory();
    let limit = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let blocks = {
        let mut state = m.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(b) = state.0.pop() {
                break b;
            }
            if state.1 < limit {
                state.1 += 1;
                break Vec::new();
            }
            state = m.returned.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    };
    let mut lease = Lease(Some(blocks));
    let blocks = lease.0.get_or_insert_with(Vec::new);
    if blocks.len() < count {
        blocks.resize(count, Block::new());
    }
    f(&mut blocks[..count])
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) for `password`. New passwords are rare
/// (an account made, a password changed, the first start's admin): they use memory of their
/// own, given back at once, so a process that has only made its admin idles without a pooled
/// block. Sign-ins ([`verify`]) use the pool.
pub fn hash(password: &str) -> Result<SecretString, argon2::password_hash::Error> {
    use argon2::password_hash::PasswordHasher;
    let mut raw = [0u8; 16];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| argon2::password_hash::Error::Crypto)?;
    let salt = SaltString::encode_b64(&raw)?;
    Ok(SecretString::new(
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
            .hash_password(password.as_bytes(), &salt)?
            .to_string(),
    ))
}

/// [`hash`] as core's [`latch_core::users::PasswordHasher`] port: on a blocking thread, so the
/// argon2id work (tens of milliseconds of CPU) stays off the async workers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Argon2id;

#[async_trait::async_trait]
impl latch_core::users::PasswordHasher for Argon2id {
    async fn hash(&self, password: &str) -> Result<SecretString, latch_core::users::HashError> {
        let password = SecretString::new(password.to_owned());
        tokio::task::spawn_blocking(move || hash(password.expose()))
            .await
            .map_err(|e| latch_core::users::HashError(Box::new(e)))?
            .map_err(|e| latch_core::users::HashError(e.to_string().into()))
    }
}

/// Checks `password` against a stored PHC string. With `None` (no such account) it still does
/// the work of one check, so timing does not tell whether an account exists.
pub fn verify(password: &str, stored: Option<&SecretString>) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| {
        hash("latch-dummy-password")
            .map(|h| h.expose().to_owned())
            .unwrap_or_default()
    });
    let (phc, real) = match stored {
        Some(s) => (s.expose(), true),
        None => (dummy.as_str(), false),
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    verify_parsed(password, &parsed) && real
}

fn verify_parsed(password: &str, parsed: &PasswordHash<'_>) -> bool {
    let ours = params();
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(parsed),
        parsed.salt,
        parsed.hash,
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    if params.block_count() > ours.block_count() {
        // A hash made with more memory than Latch uses (imported): the library's own path.
        return Argon2::new(algorithm, version, params)
            .verify_password(password.as_bytes(), parsed)
            .is_ok();
    }
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let count = params.block_count();
    let made = with_memory(count, |m| {
        Argon2::new(algorithm, version, params).hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut out,
            m,
        )
    });
    // `Output`'s equality is constant-time.
    made.is_ok() && Output::new(&out).is_ok_and(|o| o == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash("correct horse battery staple").unwrap();
        assert!(h.expose().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse battery staple", Some(&h)));
        assert!(!verify("Correct horse battery staple", Some(&h)));
        assert!(!verify("latch-dummy-password", None));
        assert_ne!(hash("x").unwrap(), hash("x").unwrap(), "salted");
    }

    #[tokio::test]
    async fn the_port_hashes_as_hash_does() {
        use latch_core::users::PasswordHasher as _;
        let h = Argon2id.hash("correct horse battery staple").await.unwrap();
        assert!(h.expose().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse battery staple", Some(&h)));
    }

    #[test]
    fn hashes_from_the_library_verify_and_the_pool_is_bounded() {
        use argon2::password_hash::PasswordHasher;
        // A PHC string argon2's own path made (as stored before the pool) still verifies.
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let lib = Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        assert!(verify("pw", Some(&SecretString::new(lib.clone()))));
        assert!(!verify("pW", Some(&SecretString::new(lib))));
        let ours = hash("pw").unwrap();
        // Smaller parameters (another deployment's) verify too; a malformed string does not.
        let small = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(4096, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw", &salt)
        .unwrap()
        .to_string();
        assert!(verify("pw", Some(&SecretString::new(small))));
        assert!(!verify(
            "pw",
            Some(&SecretString::new("$argon2id$v=19$m=19456"))
        ));
        // Many hashes at once never hold more blocks than the limit.
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| assert!(verify("pw", Some(&ours))));
            }
        });
        let made = memory().state.lock().unwrap().1;
        let limit = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        assert!(made <= limit, "{made} > {limit}");
    }
}
