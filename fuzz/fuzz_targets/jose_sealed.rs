//! Opaque access tokens as a bearer presents them: `latch_jose::TokenSealer::open` (the seeds
//! are sealed under the same fixed master key).
#![no_main]

use latch_jose::TokenSealer;
use libfuzzer_sys::fuzz_target;

/// The master key the seeds were sealed under (a test value).
const MASTER_KEY: [u8; 32] = [7; 32];

fuzz_target!(|data: &[u8]| {
    static SEALER: std::sync::OnceLock<TokenSealer> = std::sync::OnceLock::new();
    let sealer = SEALER.get_or_init(|| TokenSealer::derive(&MASTER_KEY));
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = sealer.open(token);
    }
});
