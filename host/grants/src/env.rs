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

/// Is `name` usable as an environment variable name? Not empty, no `=`, no
/// NUL.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        Err(format!("`{name}` is not an environment variable name"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_checked() {
        assert!(check_name("PGPASSWORD").is_ok());
        for bad in ["", "A=B", "A\0"] {
            let err = check_name(bad).unwrap_err();
            assert!(err.contains("not an environment variable name"), "{err}");
        }
    }
}
