//! Environment variables: `grants.env`, for the guest's own environment and
//! for every variable a command is given.

use super::{Denial, Grants, Kind, grant_line};

impl Grants {
    /// Is `name` a granted environment variable?
    pub fn check_env(&self, name: &str) -> Result<(), Denial> {
        if self.env.iter().any(|g| g == name) {
            Ok(())
        } else {
            Err(Denial::new(Kind::Env, name, grant_line("env", name)))
        }
    }
}
