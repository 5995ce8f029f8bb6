//! Hostile plugins against what a guest makes the host hold or wait for: strings cut inside a character, log floods, blocking host calls, describe, artifact quotas, terminal escapes, the compile cache.
//! Each case asserts the refusal, that the host survived and that the next
//! hook call works, and that the message names the grant.

#[allow(unused_imports)]
use crate::common::{Call, load, only_check, scratch};
