//! The Events the enforcer writes on a pod for a denied connection attempt, as `palisade
//! denials` and `kubectl events --for pod/NAME` read them.

/// The reason of an Event for a connection the policies denied.
pub const DENIED_REASON: &str = "PolicyDenied";
/// The reason of an Event for a connection an audit-mode policy would deny.
pub const AUDIT_REASON: &str = "PolicyAuditWouldDeny";
/// The component that writes them (`source.component`, `reportingComponent`).
pub const DENIAL_EVENT_COMPONENT: &str = "palisade-enforcer";
