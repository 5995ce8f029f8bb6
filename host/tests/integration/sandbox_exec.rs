//! Hostile plugins against commands: programs a plugin can write, the fixed PATH, links a command follows, processes that outlive their command, working-directory races, read-only grants and commands.
//! Each case asserts the refusal, that the host survived and that the next
//! hook call works, and that the message names the grant.

#[allow(unused_imports)]
use crate::common::{Call, load, only_check, scratch};
