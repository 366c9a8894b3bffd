//! Nodes and pods as network namespaces, wired like Calico: each node is a namespace joined to
//! the root namespace by a veth pair; each pod is a namespace joined to its node by a veth,
//! with a /32 route on the node and proxy ARP, so pod traffic crosses the node's FORWARD chain.
//! Pods on different nodes talk through the root namespace.
//!
//! Addresses are the harness's own. Network `k` (0..=15, one per concurrent run) uses:
//!   node i:  172.(16+k).i.2/24, its root-side gateway 172.(16+k).i.1
//!   pods on node i: 10.(100+k).i.2 .. 10.(100+k).i.254
//! Names: node namespace `palisade-<k>-<node>`, pod namespace `palisade-<k>-pod-<ns>-<name>`,
//! so `ip netns exec palisade-0-pod-shop-web sh` opens a shell in pod shop/web.
//!
//! Dual-stack networks ([`Network::create_dual_stack`]) give every node and pod an IPv6 address
//! too. IPv6 between nodes goes through a router namespace of the network's own
//! (`palisade-<k>-v6router`), so the machine's IPv6 forwarding (global, unlike IPv4's per-link
//! switch) stays as it is:
//!   node i:  fd00:172:<16+k>:i::2/64 on its `eth1`, the router fd00:172:<16+k>:i::1
//!   pods on node i: fd00:10:<100+k>:i::<host>/128 (the numbers in hex), Calico-style: the
//!   node's side of the pod's veth is fe80::1, the pod's default route
//! Duplicate address detection is off in every namespace the network makes, so addresses work
//! at once; neighbour discovery stays on (the enforcer must never cut it).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use palisade_policy::reach::Probe;
use palisade_policy::{IpFamily, Protocol};

use crate::Error;
use crate::background::Background;
use crate::netns::{self, Netns, ip, sysctl};
use crate::util::alive;

const MAX_NETWORKS: u8 = 16;
const OWNER_DIR: &str = crate::machine::RUN_DIR;

pub struct Node {
    pub name: String,
    pub index: u8,
    pub address: Ipv4Addr,
    pub gateway: Ipv4Addr,
    /// Its IPv6 address, in a dual-stack network.
    pub address6: Option<Ipv6Addr>,
    root_link: String,
    pub netns: Netns,
}

pub struct PodNet {
    pub key: String,
    pub node: String,
    pub ip: Ipv4Addr,
    /// Its IPv6 address, in a dual-stack network.
    pub ip6: Option<Ipv6Addr>,
    servers: Vec<Server>,
    node_netns: String,
    node_link: String,
    // Last: the namespace goes after the servers that live in it.
    pub netns: Netns,
}

// Deleting a namespace frees its veths only later, asynchronously; deleting the link first
// frees both ends at once, so a name can be reused immediately.
impl Drop for Node {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.root_link]);
    }
}

impl Drop for PodNet {
    fn drop(&mut self) {
        self.servers.clear();
        let _ = ip(&["-n", &self.node_netns, "link", "del", &self.node_link]);
    }
}

/// A network of nodes and pods. Dropping it removes every namespace, link and route it made.
pub struct Network {
    pub id: u8,
    pods: Vec<PodNet>,
    nodes: Vec<Node>,
    next_host: Vec<u8>,
    next_link: u16,
    owner: PathBuf,
    /// The IPv6 router between the nodes, in a dual-stack network. After the nodes, so it goes
    /// after them.
    router6: Option<Netns>,
}

/// Removes what a crashed run with network id `k` left: its namespaces (their veths and routes go
/// with them).
pub(crate) fn sweep(k: u8) {
    for name in netns::list_with_prefix(&format!("palisade-{k}-")) {
        let _ = ip(&["netns", "del", &name]);
    }
    for i in 1..=u8::MAX {
        if ip(&["link", "del", &format!("pal{k}n{i}")]).is_err() && i > 8 {
            break;
        }
    }
}

impl Network {
    /// Claims a free network id (sweeping leftovers of dead runs) and creates `nodes` nodes.
    pub fn create(nodes: &[&str]) -> Result<Self, Error> {
        Self::create_with(nodes, false)
    }

    /// [`Network::create`] where every node and pod also has an IPv6 address.
    pub fn create_dual_stack(nodes: &[&str]) -> Result<Self, Error> {
        Self::create_with(nodes, true)
    }

    fn create_with(nodes: &[&str], dual_stack: bool) -> Result<Self, Error> {
        // Other test processes claim ids too (CI runs two test binaries side by side).
        let _lock = crate::machine::lock()?;
        let me = std::process::id() as i32;
        let mut claimed = None;
        for k in 0..MAX_NETWORKS {
            let owner = PathBuf::from(format!("{OWNER_DIR}/net-{k}.pid"));
            if let Ok(text) = std::fs::read_to_string(&owner) {
                let pid: i32 = text
                    .trim()
                    .split(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                if alive(pid) {
                    continue;
                }
            }
            sweep(k);
            // pid:nonce, so two networks of one process never share an id.
            std::fs::write(&owner, format!("{me}:{k}")).map_err(|source| Error::Io {
                what: owner.display().to_string(),
                source,
            })?;
            claimed = Some((k, owner));
            break;
        }
        let (id, owner) = claimed.ok_or_else(|| Error::Command {
            what: "allocating a test network".into(),
            stderr: format!("all {MAX_NETWORKS} network ids are in use"),
        })?;
        let mut net = Self {
            id,
            pods: Vec::new(),
            nodes: Vec::new(),
            next_host: Vec::new(),
            next_link: 0,
            owner,
            router6: None,
        };
        if dual_stack {
            let router = Netns::add(&format!("palisade-{id}-v6router"))?;
            no_dad(&router.name)?;
            sysctl(Some(&router.name), "net.ipv6.conf.all.forwarding", "1")?;
            net.router6 = Some(router);
        }
        for name in nodes {
            net.add_node(name)?;
        }
        Ok(net)
    }

    fn add_node(&mut self, name: &str) -> Result<(), Error> {
        let k = self.id;
        let i = self.nodes.len() as u8 + 1;
        let netns = Netns::add(&format!("palisade-{k}-{name}"))?;
        let root_if = format!("pal{k}n{i}");
        let (gateway, address) = (
            Ipv4Addr::new(172, 16 + k, i, 1),
            Ipv4Addr::new(172, 16 + k, i, 2),
        );
        let _ = ip(&["link", "del", &root_if]); // left by a crashed run
        ip(&[
            "link",
            "add",
            &root_if,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &netns.name,
        ])?;
        ip(&["addr", "add", &format!("{gateway}/24"), "dev", &root_if])?;
        ip(&["link", "set", &root_if, "up"])?;
        // Forwarding only on our own links: the machine's global ip_forward stays as it is.
        sysctl(None, &format!("net.ipv4.conf.{root_if}.forwarding"), "1")?;
        bring_up_eth0(
            &netns.name,
            &format!("{address}/24"),
            &[&["default", "via", &gateway.to_string()]],
        )?;
        sysctl(Some(&netns.name), "net.ipv4.ip_forward", "1")?;
        ip(&[
            "route",
            "add",
            &format!("10.{}.{i}.0/24", 100 + k),
            "via",
            &address.to_string(),
        ])?;
        let address6 = match &self.router6 {
            Some(router) => Some(self.wire_node6(router, &netns.name, i)?),
            None => None,
        };
        self.nodes.push(Node {
            name: name.into(),
            index: i,
            address,
            gateway,
            address6,
            root_link: root_if,
            netns,
        });
        self.next_host.push(2);
        Ok(())
    }

    /// Joins node `i` (namespace `node_ns`) to the IPv6 router by a link of its own (`eth1`):
    /// the node's default IPv6 route, the router's route to the node's pods. Returns the node's
    /// IPv6 address.
    fn wire_node6(&self, router: &Netns, node_ns: &str, i: u8) -> Result<Ipv6Addr, Error> {
        let k = u16::from(self.id);
        let net = |host: u16| Ipv6Addr::new(0xfd00, 0x172, 16 + k, u16::from(i), 0, 0, 0, host);
        let (gateway, address) = (net(1), net(2));
        no_dad(node_ns)?;
        sysctl(Some(node_ns), "net.ipv6.conf.all.forwarding", "1")?;
        let link = format!("n{i}");
        ip(&[
            "-n",
            &router.name,
            "link",
            "add",
            &link,
            "type",
            "veth",
            "peer",
            "name",
            "eth1",
            "netns",
            node_ns,
        ])?;
        ip(&[
            "-n",
            &router.name,
            "addr",
            "add",
            &format!("{gateway}/64"),
            "dev",
            &link,
            "nodad",
        ])?;
        ip(&["-n", &router.name, "link", "set", &link, "up"])?;
        ip(&[
            "-n",
            node_ns,
            "addr",
            "add",
            &format!("{address}/64"),
            "dev",
            "eth1",
            "nodad",
        ])?;
        ip(&["-n", node_ns, "link", "set", "eth1", "up"])?;
        ip(&[
            "-n",
            node_ns,
            "-6",
            "route",
            "add",
            "default",
            "via",
            &gateway.to_string(),
            "dev",
            "eth1",
        ])?;
        ip(&[
            "-n",
            &router.name,
            "-6",
            "route",
            "add",
            &format!("{}/64", pod_ip6(self.id, i, 0)),
            "via",
            &address.to_string(),
        ])?;
        Ok(address)
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Whether nodes and pods have IPv6 addresses too.
    pub fn dual_stack(&self) -> bool {
        self.router6.is_some()
    }
    pub fn pods(&self) -> &[PodNet] {
        &self.pods
    }

    pub fn pod(&self, key: &str) -> Option<&PodNet> {
        self.pods.iter().find(|p| p.key == key)
    }

    /// Creates pod `namespace/name` on `node` and returns its IP.
    pub fn add_pod(&mut self, node: &str, namespace: &str, name: &str) -> Result<Ipv4Addr, Error> {
        let k = self.id;
        let n = self
            .nodes
            .iter()
            .position(|x| x.name == node)
            .ok_or_else(|| Error::Command {
                what: format!("adding pod {namespace}/{name}"),
                stderr: format!("no node {node}"),
            })?;
        let host = self.next_host[n];
        if host == 255 {
            return Err(Error::Command {
                what: format!("adding pod {namespace}/{name}"),
                stderr: format!("node {node} is full"),
            });
        }
        self.next_host[n] += 1;
        self.next_link += 1;
        let node_ns = self.nodes[n].netns.name.clone();
        let pod_ip = Ipv4Addr::new(10, 100 + k, self.nodes[n].index, host);
        let netns = Netns::add(&format!("palisade-{k}-pod-{namespace}-{name}"))?;
        let pod_ip6 = self
            .dual_stack()
            .then(|| pod_ip6(k, self.nodes[n].index, u16::from(host)));
        if pod_ip6.is_some() {
            // Before the veth exists, so its addresses start without DAD.
            no_dad(&netns.name)?;
        }
        let link = format!("pal{k}p{}", self.next_link);
        ip(&[
            "-n",
            &node_ns,
            "link",
            "add",
            &link,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &netns.name,
        ])?;
        ip(&["-n", &node_ns, "link", "set", &link, "up"])?;
        sysctl(
            Some(&node_ns),
            &format!("net.ipv4.conf.{link}.proxy_arp"),
            "1",
        )?;
        // Proxy ARP answers after a random delay of up to 0.8 s by default; a first probe
        // would pay it on both ends and time out (Calico sets 0 too).
        sysctl(
            Some(&node_ns),
            &format!("net.ipv4.neigh.{link}.proxy_delay"),
            "0",
        )?;
        ip(&[
            "-n",
            &node_ns,
            "route",
            "add",
            &format!("{pod_ip}/32"),
            "dev",
            &link,
        ])?;
        // Calico-style: a /32 and a link-local gateway answered by the node's proxy ARP.
        bring_up_eth0(
            &netns.name,
            &format!("{pod_ip}/32"),
            &[
                &["169.254.1.1", "dev", "eth0"],
                &["default", "via", "169.254.1.1"],
            ],
        )?;
        if let Some(ip6) = pod_ip6 {
            // Calico-style for IPv6: a /128, the node's side of the veth at fe80::1 as gateway,
            // and a /128 route to the pod on the node.
            ip(&[
                "-n",
                &node_ns,
                "addr",
                "add",
                "fe80::1/64",
                "dev",
                &link,
                "nodad",
            ])?;
            ip(&[
                "-n",
                &node_ns,
                "-6",
                "route",
                "add",
                &format!("{ip6}/128"),
                "dev",
                &link,
            ])?;
            ip(&[
                "-n",
                &netns.name,
                "addr",
                "add",
                &format!("{ip6}/128"),
                "dev",
                "eth0",
                "nodad",
            ])?;
            ip(&[
                "-n",
                &netns.name,
                "-6",
                "route",
                "add",
                "default",
                "via",
                "fe80::1",
                "dev",
                "eth0",
            ])?;
        }
        self.pods.push(PodNet {
            key: format!("{namespace}/{name}"),
            node: node.into(),
            ip: pod_ip,
            ip6: pod_ip6,
            servers: Vec::new(),
            node_netns: node_ns,
            node_link: link,
            netns,
        });
        Ok(pod_ip)
    }

    /// Removes a pod (its namespace, veth and route).
    pub fn remove_pod(&mut self, key: &str) {
        self.pods.retain(|p| p.key != key);
    }

    /// Starts servers in pod `key` on each port: TCP accepts and answers, UDP echoes.
    pub fn serve(&mut self, key: &str, ports: &[(u16, Protocol)]) -> Result<(), Error> {
        let pod = self
            .pods
            .iter_mut()
            .find(|p| p.key == key)
            .ok_or_else(|| Error::Command {
                what: format!("serving in {key}"),
                stderr: "no such pod".into(),
            })?;
        for &(port, protocol) in ports {
            pod.servers.push(Server::start(
                &pod.netns.name,
                port,
                protocol,
                pod.ip6.is_some(),
            )?);
        }
        Ok(())
    }

    /// Probes every (from, to, port) in parallel with a bounded timeout each. Results are in the
    /// shape `palisade reach -o json` prints, so the two can be compared cell by cell.
    pub fn probe_all(
        &self,
        cells: &[(String, String, u16, Protocol)],
        timeout: Duration,
    ) -> Result<Vec<Probe>, Error> {
        self.probe_all_in(cells, timeout, IpFamily::V4)
    }

    /// [`Network::probe_all`] over IPv4 or IPv6 (to the destination's address of `family`).
    pub fn probe_all_in(
        &self,
        cells: &[(String, String, u16, Protocol)],
        timeout: Duration,
        family: IpFamily,
    ) -> Result<Vec<Probe>, Error> {
        const PARALLEL: usize = 32;
        let mut out = Vec::with_capacity(cells.len());
        for chunk in cells.chunks(PARALLEL) {
            let mut handles = Vec::new();
            for (from, to, port, protocol) in chunk {
                let src = self.pod(from).ok_or_else(|| Error::Command {
                    what: "probing".into(),
                    stderr: format!("no pod {from}"),
                })?;
                let dst = self.pod(to).ok_or_else(|| Error::Command {
                    what: "probing".into(),
                    stderr: format!("no pod {to}"),
                })?;
                let ip = dst.address(family)?;
                let (ns, port, protocol) = (src.netns.name.clone(), *port, *protocol);
                handles.push(std::thread::spawn(move || {
                    answer_from(&ns, ip, port, protocol, timeout).map(|a| a == Answer::Connected)
                }));
            }
            for (handle, (from, to, port, protocol)) in handles.into_iter().zip(chunk) {
                let allowed = handle.join().map_err(|_| Error::Command {
                    what: "probing".into(),
                    stderr: "a probe thread panicked".into(),
                })??;
                out.push(Probe {
                    from: from.clone(),
                    to: to.clone(),
                    port: *port,
                    protocol: protocol.to_string(),
                    allowed,
                    reason: String::new(),
                });
            }
        }
        Ok(out)
    }

    /// One probe.
    pub fn probe(
        &self,
        from: &str,
        to: &str,
        port: u16,
        protocol: Protocol,
    ) -> Result<bool, Error> {
        let cells = [(from.to_string(), to.to_string(), port, protocol)];
        Ok(self.probe_all(&cells, Duration::from_secs(1))?[0].allowed)
    }

    /// One probe, telling a refusal (an answer saying no) from silence (no answer in `timeout`).
    pub fn answer(
        &self,
        from: &str,
        to: &str,
        port: u16,
        protocol: Protocol,
        timeout: Duration,
    ) -> Result<Answer, Error> {
        self.answer_in(from, to, port, protocol, timeout, IpFamily::V4)
    }

    /// [`Network::answer`] over IPv4 or IPv6.
    pub fn answer_in(
        &self,
        from: &str,
        to: &str,
        port: u16,
        protocol: Protocol,
        timeout: Duration,
        family: IpFamily,
    ) -> Result<Answer, Error> {
        let pod = |key: &str| {
            self.pod(key).ok_or_else(|| Error::Command {
                what: "probing".into(),
                stderr: format!("no pod {key}"),
            })
        };
        let (ns, ip) = (pod(from)?.netns.name.clone(), pod(to)?.address(family)?);
        // A thread of its own: entering the pod's namespace must not move the caller.
        std::thread::spawn(move || answer_from(&ns, ip, port, protocol, timeout))
            .join()
            .map_err(|_| Error::Command {
                what: "probing".into(),
                stderr: "the probe thread panicked".into(),
            })?
    }
}

/// What a client sees of one connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// TCP: accepted; UDP: echoed.
    Connected,
    /// Told no at once: a TCP reset or an ICMP unreachable (connection refused, host
    /// unreachable, administratively prohibited).
    Refused,
    /// Nothing came back within the timeout.
    TimedOut,
}

impl Answer {
    fn of_error(e: &std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Answer::TimedOut,
            _ => Answer::Refused,
        }
    }
}

impl PodNet {
    /// The pod's address of `family`.
    pub fn address(&self, family: IpFamily) -> Result<IpAddr, Error> {
        match family {
            IpFamily::V4 => Ok(IpAddr::V4(self.ip)),
            IpFamily::V6 => self.ip6.map(IpAddr::V6).ok_or_else(|| Error::Command {
                what: format!("probing {} over IPv6", self.key),
                stderr: "the pod has no IPv6 address (not a dual-stack network)".into(),
            }),
        }
    }
}

/// Pod `host`'s IPv6 address on node `node` of network `k` (host 0: the node's pod subnet).
fn pod_ip6(k: u8, node: u8, host: u16) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfd00,
        0x10,
        100 + u16::from(k),
        u16::from(node),
        0,
        0,
        0,
        host,
    )
}

/// Turns duplicate address detection off in namespace `ns`, for links made afterwards and those
/// there: test addresses are unique, and must work at once.
fn no_dad(ns: &str) -> Result<(), Error> {
    for scope in ["all", "default"] {
        sysctl(Some(ns), &format!("net.ipv6.conf.{scope}.accept_dad"), "0")?;
    }
    Ok(())
}

/// Gives namespace `ns`'s `eth0` its address, brings it up, and adds `routes`
/// (each the arguments after `ip route add`).
fn bring_up_eth0(ns: &str, cidr: &str, routes: &[&[&str]]) -> Result<(), Error> {
    ip(&["-n", ns, "addr", "add", cidr, "dev", "eth0"])?;
    ip(&["-n", ns, "link", "set", "eth0", "up"])?;
    for route in routes {
        let mut args = vec!["-n", ns, "route", "add"];
        args.extend_from_slice(route);
        ip(&args)?;
    }
    Ok(())
}

impl Drop for Network {
    fn drop(&mut self) {
        self.pods.clear();
        self.nodes.clear();
        let _ = std::fs::remove_file(&self.owner);
    }
}

/// Whether this kernel offers SCTP sockets.
pub fn sctp_supported() -> bool {
    use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
    // The socket closes when dropped.
    socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        SockProtocol::Sctp,
    )
    .is_ok()
}

/// Connects from inside namespace `ns`: TCP succeeds on an accepted connection, UDP on an echo;
/// an error saying no (an ICMP error on the connected UDP socket, a reset) is a refusal.
fn answer_from(
    ns: &str,
    ip: IpAddr,
    port: u16,
    protocol: Protocol,
    timeout: Duration,
) -> Result<Answer, Error> {
    netns::enter(ns)?;
    let addr = SocketAddr::new(ip, port);
    Ok(match protocol {
        Protocol::Tcp => match TcpStream::connect_timeout(&addr, timeout) {
            Ok(_) => Answer::Connected,
            Err(e) => Answer::of_error(&e),
        },
        Protocol::Udp => {
            let any = if ip.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
            let sock = UdpSocket::bind(any).map_err(|source| Error::Io {
                what: "udp probe socket".into(),
                source,
            })?;
            let _ = sock.set_read_timeout(Some(timeout));
            let mut buf = [0u8; 64];
            let echoed = sock
                .connect(addr)
                .and_then(|()| sock.send(b"palisade-probe"))
                .and_then(|_| sock.recv(&mut buf));
            match echoed {
                Ok(n) if &buf[..n] == b"palisade-probe" => Answer::Connected,
                Ok(_) => Answer::Refused,
                Err(e) => Answer::of_error(&e),
            }
        }
        Protocol::Sctp => {
            return Err(Error::Command {
                what: "SCTP probe".into(),
                stderr: "SCTP probes are not implemented (this kernel has no SCTP)".into(),
            });
        }
    })
}

/// A server thread inside a pod's namespace, stopped on drop.
struct Server {
    /// Stopped when dropped.
    _thread: Background,
}

impl Server {
    /// With `dual_stack`, one socket on `::` serves both families (IPv4 clients arrive as
    /// IPv4-mapped addresses).
    fn start(ns: &str, port: u16, protocol: Protocol, dual_stack: bool) -> Result<Self, Error> {
        let any: IpAddr = if dual_stack {
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        };
        let ns = ns.to_string();
        let setup = move || -> Result<Box<dyn FnMut() + Send>, Error> {
            netns::enter(&ns)?;
            let io = |what: &str| {
                let what = format!("{what} {port}/{protocol} in {ns}");
                move |source| Error::Io { what, source }
            };
            match protocol {
                Protocol::Tcp => {
                    let l = TcpListener::bind((any, port)).map_err(io("listening on"))?;
                    l.set_nonblocking(true).map_err(io("configuring"))?;
                    Ok(Box::new(move || match l.accept() {
                        Ok((mut c, _)) => {
                            let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
                            let _ = c.write_all(b"palisade\n");
                            let _ = c.read(&mut [0u8; 16]);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }))
                }
                Protocol::Udp => {
                    let s = UdpSocket::bind((any, port)).map_err(io("binding"))?;
                    s.set_read_timeout(Some(Duration::from_millis(50)))
                        .map_err(io("configuring"))?;
                    Ok(Box::new(move || {
                        let mut buf = [0u8; 512];
                        if let Ok((n, from)) = s.recv_from(&mut buf) {
                            let _ = s.send_to(&buf[..n], from);
                        }
                    }))
                }
                Protocol::Sctp => Err(Error::Command {
                    what: "SCTP server".into(),
                    stderr: "not available on this kernel".into(),
                }),
            }
        };
        let serve = |mut step: Box<dyn FnMut() + Send>, stop: Arc<AtomicBool>| {
            while !stop.load(Ordering::Relaxed) {
                step();
            }
        };
        Ok(Self {
            _thread: Background::start("server", setup, serve)?,
        })
    }
}
