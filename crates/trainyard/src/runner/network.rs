//! A private network for a job: one network namespace per host, joined by a per-job bridge,
//! so `algo-1..N` are distinct machines to a distributed framework (each has its own `eth0`
//! and address, and the same port can be bound on every host), and nothing else is reachable.
//!
//! Built with iproute2 (`ip`), which every Linux host with namespaces has: a bridge
//! `tyb<id>` holding `169.254.<n>.1/24` (which marks the subnet as taken), and per host a
//! namespace `ty<id>-<k>` whose `eth0` (one end of a veth pair, the other end on the bridge)
//! has `169.254.<n>.<k+1>/32` and one route per other host, so a host reaches its peers and
//! nothing else: not the bridge's address (this machine), not a default route. Link-local
//! addresses keep job traffic off every real network. The job's `/etc/hosts` maps `algo-k` to
//! those addresses; containers join their namespace. What a job may reach beyond its peers
//! comes through [`JobNetwork::forward`], one loopback port at a time.
//!
//! Everything is named after the job, so [`JobNetwork::remove_stale`] can clean up what a
//! crashed server left behind.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

/// The network of one job.
#[derive(Debug)]
pub struct JobNetwork {
    id: String,
    bridge: String,
    /// Per host: (namespace name, address).
    hosts: Vec<(String, Ipv4Addr)>,
    /// Left in place when dropped (a warm pool keeps it for the next job).
    kept: bool,
    /// Loopback ports forwarded to this machine's, for as long as the job runs.
    forwards: Vec<tokio::task::JoinHandle<()>>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A short stable id for a job name (interface names are limited to 15 bytes).
pub fn job_id(job: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in job.to_ascii_lowercase().bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:06x}", h & 0xff_ffff)
}

impl JobNetwork {
    /// Creates the bridge and one namespace per host. On any failure, what was created is
    /// removed again and the error says which step failed.
    pub fn create(job: &str, hosts: usize) -> Result<Self, String> {
        // Subnet choice and creation are one step per process, so two jobs never pick the
        // same free subnet.
        static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = CREATING.lock().unwrap_or_else(|p| p.into_inner());
        let id = job_id(job);
        Self::remove_stale(job);
        let subnet = free_subnet()?;
        let bridge = format!("tyb{id}");
        let mut net = JobNetwork {
            id: id.clone(),
            bridge: bridge.clone(),
            hosts: Vec::new(),
            kept: false,
            forwards: Vec::new(),
        };
        let gateway = format!("169.254.{subnet}.1/24");
        let built = (|| {
            ip(&["link", "add", &bridge, "type", "bridge"])?;
            // IPv4 only, on both sides: with IPv6 the bridge and every veth get a link-local
            // address and a `fe80::/64` route by themselves, through which a job reaches any
            // service of this machine listening on `[::]` (no route needed inside).
            no_ipv6(None, &bridge)?;
            ip(&["addr", "add", &gateway, "dev", &bridge])?;
            ip(&["link", "set", &bridge, "up"])?;
            for k in 0..hosts {
                let ns = format!("ty{id}-{}", k + 1);
                let veth = format!("ty{id}h{}", k + 1);
                let addr = Ipv4Addr::new(169, 254, subnet, (k + 2) as u8);
                ip(&["netns", "add", &ns])?;
                net.hosts.push((ns.clone(), addr));
                let ns_path = PathBuf::from("/run/netns").join(&ns);
                for iface in ["all", "default"] {
                    no_ipv6(Some(&ns_path), iface)?;
                }
                ip(&[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ])?;
                no_ipv6(None, &veth)?;
                no_ipv6(Some(&ns_path), "eth0")?;
                ip(&["link", "set", &veth, "master", &bridge, "up"])?;
                ip(&[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{addr}/32"),
                    "dev",
                    "eth0",
                ])?;
                ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
                ip(&["-n", &ns, "link", "set", "lo", "up"])?;
                for j in (0..hosts).filter(|j| *j != k) {
                    let peer = Ipv4Addr::new(169, 254, subnet, (j + 2) as u8);
                    ip(&[
                        "-n",
                        &ns,
                        "route",
                        "add",
                        &format!("{peer}/32"),
                        "dev",
                        "eth0",
                    ])?;
                }
            }
            Ok(())
        })();
        match built {
            Ok(()) => Ok(net),
            Err(e) => {
                net.remove();
                Err(e)
            }
        }
    }

    /// Takes over the network created under `job` earlier and kept (a warm pool's), when its
    /// bridge and all `hosts` namespaces are still there.
    pub fn adopt(job: &str, hosts: usize) -> Option<Self> {
        let id = job_id(job);
        let bridge = format!("tyb{id}");
        let out = Command::new("ip")
            .args(["-4", "-o", "addr", "show", "dev", &bridge])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let gateway: Ipv4Addr = text
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)?
            .split('/')
            .next()?
            .parse()
            .ok()?;
        let [a, b, subnet, _] = gateway.octets();
        if (a, b) != (169, 254) {
            return None;
        }
        let hosts = (0..hosts)
            .map(|k| {
                let ns = format!("ty{id}-{}", k + 1);
                std::path::Path::new("/run/netns")
                    .join(&ns)
                    .exists()
                    .then(|| (ns, Ipv4Addr::new(169, 254, subnet, (k + 2) as u8)))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(JobNetwork {
            id,
            bridge,
            hosts,
            kept: false,
            forwards: Vec::new(),
        })
    }

    /// Makes `127.0.0.1:port` inside every host reach `127.0.0.1:port` of this machine (the
    /// object store's endpoint of an installation without access control), and nothing else
    /// of it. Each host gets a listening socket made in its namespace; connections are
    /// relayed by this process until the network is dropped.
    pub fn forward(&mut self, port: u16) -> std::io::Result<()> {
        for k in 0..self.hosts.len() {
            let listener = listen_in(&self.netns_path(k), port)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            self.forwards.push(tokio::spawn(async move {
                while let Ok((mut inside, _)) = listener.accept().await {
                    tokio::spawn(async move {
                        if let Ok(mut outside) =
                            tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await
                        {
                            let _ = tokio::io::copy_bidirectional(&mut inside, &mut outside).await;
                        }
                    });
                }
            }));
        }
        Ok(())
    }

    /// Leaves the network in place when this value is dropped.
    pub fn keep(&mut self) {
        self.kept = true;
    }

    /// The address of host `index` (0-based).
    pub fn address(&self, index: usize) -> Ipv4Addr {
        self.hosts[index].1
    }

    /// The namespace file host `index` joins.
    pub fn netns_path(&self, index: usize) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.hosts[index].0)
    }

    /// The `/etc/hosts` lines naming every host.
    pub fn hosts_entries(&self) -> String {
        self.hosts
            .iter()
            .enumerate()
            .map(|(k, (_, a))| format!("{a}\talgo-{}\n", k + 1))
            .collect()
    }

    /// Deletes the namespaces (and with them the veth pairs) and the bridge.
    pub fn remove(&self) {
        for (ns, _) in &self.hosts {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
        tracing::debug!(id = %self.id, "job network removed");
    }

    /// Removes whatever a previous run of `job` left behind.
    pub fn remove_stale(job: &str) {
        let id = job_id(job);
        if let Ok(rd) = std::fs::read_dir("/run/netns") {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("ty{id}-")) {
                    let _ = ip(&["netns", "del", &name]);
                }
            }
        }
        let _ = ip(&["link", "del", &format!("tyb{id}")]);
    }
}

/// A listening socket on `127.0.0.1:port` of the network namespace at `netns` (a socket
/// stays in the namespace it was made in).
fn listen_in(netns: &std::path::Path, port: u16) -> std::io::Result<std::net::TcpListener> {
    in_netns(netns, || {
        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
        l.set_nonblocking(true)?;
        Ok(l)
    })
}

/// Runs `f` on a thread that entered the network namespace at `netns` (and dies with it).
fn in_netns<T: Send>(
    netns: &std::path::Path,
    f: impl FnOnce() -> std::io::Result<T> + Send,
) -> std::io::Result<T> {
    let ns = std::fs::File::open(netns)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread panicked")))
    })
}

/// Turns IPv6 off for `iface` (or `all`/`default`) of this machine's network namespace, or of
/// the one at `netns`: `/proc/sys/net` shows the namespace of the thread that opens it. A
/// kernel without IPv6 has nothing to turn off.
fn no_ipv6(netns: Option<&std::path::Path>, iface: &str) -> Result<(), String> {
    let write = || {
        let path = PathBuf::from("/proc/sys/net/ipv6/conf")
            .join(iface)
            .join("disable_ipv6");
        match std::fs::write(&path, b"1") {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if std::path::Path::new("/proc/sys/net/ipv6").exists() {
                    Err(e)
                } else {
                    Ok(())
                }
            }
            r => r,
        }
    };
    match netns {
        None => write(),
        Some(ns) => in_netns(ns, write),
    }
    .map_err(|e| format!("turning IPv6 off for {iface}: {e}"))
}

impl Drop for JobNetwork {
    fn drop(&mut self) {
        for f in &self.forwards {
            f.abort();
        }
        if !self.kept {
            self.remove();
        }
    }
}

/// A /24 of 169.254.0.0/16 no interface of this machine uses (skipping 169.254.169.x, the
/// cloud metadata address's subnet).
fn free_subnet() -> Result<u8, String> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .map_err(|e| format!("running ip addr: {e}"))?;
    let used = String::from_utf8_lossy(&out.stdout).into_owned();
    let start = (std::process::id() % 250) as u8;
    for i in 0..250u16 {
        let n = ((start as u16 + i) % 250 + 1) as u8;
        if n == 169 {
            continue;
        }
        if !used.contains(&format!(" 169.254.{n}.")) {
            return Ok(n);
        }
    }
    Err("no free 169.254.x.0/24 subnet for the job network".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip_out(args: &[&str]) -> String {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(out.status.success(), "ip {args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A job reaches nothing of this machine: no IPv6 on either side of its link (a
    /// link-local address would reach services on `[::]`), no route but its peers'.
    #[test]
    #[cfg_attr(
        not(feature = "netns"),
        ignore = "needs root and iproute2: --features netns"
    )]
    fn a_job_network_has_no_ipv6_and_no_route_out() {
        let name = format!("netns-unit-{}", std::process::id());
        let net = JobNetwork::create(&name, 2).expect("creating a job network (root, iproute2)");
        let id = job_id(&name);
        assert_eq!(
            ip_out(&["-6", "-o", "addr", "show", "dev", &format!("tyb{id}")]),
            ""
        );
        assert_eq!(
            ip_out(&["-6", "-o", "addr", "show", "dev", &format!("ty{id}h1")]),
            ""
        );
        let ns = format!("ty{id}-1");
        assert_eq!(ip_out(&["-n", &ns, "-6", "-o", "addr", "show"]), "");
        assert_eq!(ip_out(&["-n", &ns, "-6", "route", "show"]), "");
        let routes = ip_out(&["-n", &ns, "-4", "route", "show"]);
        assert!(!routes.contains("default"), "{routes}");
        assert_eq!(routes.lines().count(), 1, "only the peer's: {routes}");
        drop(net);
        assert!(!std::path::Path::new("/run/netns").join(&ns).exists());
    }

    #[test]
    fn ids_are_short_and_stable() {
        assert_eq!(job_id("My-Job"), job_id("my-job"));
        assert_eq!(job_id("x").len(), 6);
        assert!(
            format!("ty{}h100", job_id("x")).len() <= 15,
            "interface names fit IFNAMSIZ"
        );
    }
}
