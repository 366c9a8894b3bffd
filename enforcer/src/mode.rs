//! Whether the enforcer programs rules on its node: the `--mode` it is given, and the decision
//! that mode and the node's CNI make together.

use crate::cni::{CniError, CniInfo};

/// Whether the enforcer programs rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Enforce only where the node's CNI does not enforce NetworkPolicy itself.
    Auto,
    /// Always enforce.
    Enforce,
    /// Never enforce; only report (existing Palisade rules are removed).
    Off,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Enforce => "enforce",
            Mode::Off => "off",
        }
    }
}

/// Whether to enforce given the mode and what the CNI configuration says, and why in words.
pub fn decide(mode: Mode, cni: &Result<CniInfo, CniError>) -> (bool, String) {
    match (mode, cni) {
        (Mode::Off, _) => (false, "mode off: reporting only".into()),
        (Mode::Enforce, _) => (true, "mode enforce".into()),
        (Mode::Auto, Ok(info)) => match info.enforces {
            Some(true) => (
                false,
                format!("{} enforces NetworkPolicy itself; standing aside", info.cni),
            ),
            Some(false) => (true, format!("{} does not enforce NetworkPolicy", info.cni)),
            None => (
                true,
                format!(
                    "CNI {} is not known to enforce NetworkPolicy; enforcing",
                    info.cni
                ),
            ),
        },
        (Mode::Auto, Err(e)) => (true, format!("{e}; enforcing")),
    }
}
