//! Hostile plugins against the WASI filesystem and name lookups: links that leave the grants, nested grants, paths outside every grant, DNS.
//! Each case asserts the refusal, that the host survived and that the next
//! hook call works, and that the message names the grant.

#[allow(unused_imports)]
use crate::common::{Call, load, only_check, scratch};
