//! Which iptables the node uses: the nft backend (`iptables-nft`, the default of current
//! distributions) or the legacy one (`iptables-legacy`, x_tables), and for which IP family.
//! Both backends can be loaded at once, but a packet only sees the rules of both when they do
//! not contradict each other's order; Palisade's rules belong in the backend the node's
//! kube-proxy and CNI use.

use std::fmt;

/// The iptables backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Backend {
    /// `iptables-nft`: iptables rules stored as nftables.
    Nft,
    /// `iptables-legacy`: the x_tables kernel interface.
    Legacy,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An IP family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// As the NodeEnforcement status and Kubernetes' `ipFamilies` say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One backend's tables of one family: which commands read and write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tables {
    pub backend: Backend,
    pub family: Family,
}

impl Tables {
    pub fn new(backend: Backend, family: Family) -> Self {
        Self { backend, family }
    }

    /// The commands for these tables: (iptables, save, restore).
    fn commands(self) -> [&'static str; 3] {
        match (self.family, self.backend) {
            (Family::V4, Backend::Nft) => {
                ["iptables-nft", "iptables-nft-save", "iptables-nft-restore"]
            }
            (Family::V4, Backend::Legacy) => [
                "iptables-legacy",
                "iptables-legacy-save",
                "iptables-legacy-restore",
            ],
            (Family::V6, Backend::Nft) => [
                "ip6tables-nft",
                "ip6tables-nft-save",
                "ip6tables-nft-restore",
            ],
            (Family::V6, Backend::Legacy) => [
                "ip6tables-legacy",
                "ip6tables-legacy-save",
                "ip6tables-legacy-restore",
            ],
        }
    }

    /// `iptables-nft`, `ip6tables-legacy`, …
    pub fn iptables(self) -> &'static str {
        self.commands()[0]
    }

    /// `iptables-nft-save`, `ip6tables-legacy-save`, …
    pub fn save(self) -> &'static str {
        self.commands()[1]
    }

    /// `iptables-nft-restore`, `ip6tables-legacy-restore`, …
    pub fn restore(self) -> &'static str {
        self.commands()[2]
    }
}

impl fmt::Display for Tables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.backend, self.family)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_name_backend_and_family() {
        let t = Tables::new(Backend::Legacy, Family::V6);
        assert_eq!(t.save(), "ip6tables-legacy-save");
        assert_eq!(t.restore(), "ip6tables-legacy-restore");
        assert_eq!(t.iptables(), "ip6tables-legacy");
        let t = Tables::new(Backend::Nft, Family::V4);
        assert_eq!(t.save(), "iptables-nft-save");
        assert_eq!(t.restore(), "iptables-nft-restore");
    }
}
