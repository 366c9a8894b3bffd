//! What the compiler is asked for: the mark bit it borrows, the audit log rate, and what
//! happens to a denied packet.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileOptions {
    /// Netlink group audit logs and denial logs go to (the enforcer reads it itself when it
    /// reports denials; `tcpdump -i nflog:<group>` shows it too).
    pub nflog_group: u16,
    /// Hand the first packet of each denied connection attempt (conntrack NEW) to the NFLOG
    /// group as well, within [`Self::deny_logs_per_minute`]: what the enforcer's denial reader
    /// turns into Events, metrics and log lines.
    pub log_denials: bool,
    /// Denial log rate per pod and direction (NetworkPolicy denials), and node-wide for
    /// ClusterNetworkPolicy Deny rules; beyond it packets are still denied, just not logged.
    pub deny_logs_per_minute: u32,
    pub deny_log_burst: u32,
    /// The single mark bit Palisade borrows while a packet is in its chains.
    pub mark: u32,
    /// Audit log rate per pod and direction.
    pub audit_logs_per_minute: u32,
    pub audit_log_burst: u32,
    /// What happens to a packet no rule allows.
    pub deny_action: DenyAction,
    /// With [`DenyAction::Reject`]: answers a minute, node-wide, for TCP and for the rest each.
    pub rejects_per_minute: u32,
    pub reject_burst: u32,
    /// Deny TCP packets to or from a local pod that conntrack picked up mid-stream (NEW but no
    /// SYN), whatever the policies: the other half of cutting a connection by deleting its
    /// conntrack entry, so the connection stays cut whichever side talks next. Goes with the
    /// enforcer's `--cut-denied-connections`.
    pub deny_mid_stream_tcp: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        Self {
            nflog_group: 100,
            log_denials: false,
            deny_logs_per_minute: 60,
            deny_log_burst: 10,
            mark: 0x10000,
            audit_logs_per_minute: 10,
            audit_log_burst: 20,
            deny_action: DenyAction::Drop,
            rejects_per_minute: 6000,
            reject_burst: 100,
            deny_mid_stream_tcp: true,
        }
    }
}

/// What happens to a packet that policies deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DenyAction {
    /// Drop silently: the client waits for its timeout (a scanner learns nothing).
    #[default]
    Drop,
    /// Refuse: a TCP reset, or ICMP admin-prohibited for other protocols, rate-limited (beyond
    /// the rate, drop): the client fails at once.
    Reject,
}

impl DenyAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyAction::Drop => "drop",
            DenyAction::Reject => "reject",
        }
    }
}

/// kube-proxy's masquerade (0x4000) and drop (0x8000) bits.
pub const KUBE_PROXY_MARKS: u32 = 0xc000;

impl CompileOptions {
    /// Refuses a mark that is not one bit or that kube-proxy uses.
    pub fn validate(&self) -> Result<(), String> {
        if self.mark.count_ones() != 1 || self.mark & KUBE_PROXY_MARKS != 0 {
            return Err(format!(
                "mark {:#x} must be a single bit other than kube-proxy's 0x4000 and 0x8000",
                self.mark
            ));
        }
        if self.audit_logs_per_minute == 0 {
            return Err("audit log rate must be at least 1 a minute".into());
        }
        if self.log_denials && self.deny_logs_per_minute == 0 {
            return Err("denial log rate must be at least 1 a minute".into());
        }
        if self.rejects_per_minute == 0 {
            return Err("reject rate must be at least 1 a minute".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_refuse_kube_proxy_marks() {
        assert_eq!(CompileOptions::default().validate(), Ok(()));
        for mark in [0x4000, 0x8000, 0x30000, 0] {
            let options = CompileOptions {
                mark,
                ..Default::default()
            };
            assert!(options.validate().is_err(), "{mark:#x}");
        }
    }
}
