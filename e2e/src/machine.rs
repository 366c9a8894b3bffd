//! What test clusters on this machine share, in this process or in another one (CI runs two
//! test binaries side by side): the lock under which they claim network ids, and the machine
//! settings real nodes change (the kernel settings kubelet writes, the mount points the nodes
//! need). The first real-node cluster records the machine as it was; the last one to stop puts
//! it back, so one cluster never undoes what another still stands on.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::util::alive;

/// Where the harness keeps its cross-process records.
pub const RUN_DIR: &str = "/run/palisade-e2e";

/// The record of the machine as it was before the first running real-node cluster, and which
/// clusters use it.
fn record_path() -> PathBuf {
    Path::new(RUN_DIR).join("real-nodes.machine")
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Holds the machine-wide harness lock (an exclusive `flock`) until dropped. Blocks while another
/// thread or process holds it.
pub fn lock() -> Result<File, Error> {
    std::fs::create_dir_all(RUN_DIR).map_err(io(RUN_DIR))?;
    let path = Path::new(RUN_DIR).join("lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(path.display().to_string()))?;
    file.lock()
        .map_err(io(format!("locking {}", path.display())))?;
    Ok(file)
}

/// The machine as it was: kernel settings (`key=value`) and the directories created for the
/// nodes' mounts (deepest first), and the clusters (`pid:network id`) that use them.
#[derive(Debug, Default, PartialEq)]
struct Record {
    users: Vec<(i32, u8)>,
    sysctls: Vec<(String, String)>,
    created: Vec<PathBuf>,
}

impl Record {
    fn parse(text: &str) -> Self {
        let mut record = Self::default();
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("user", who)) => {
                    if let Some((pid, k)) = who.split_once(':')
                        && let (Ok(pid), Ok(k)) = (pid.parse(), k.parse())
                    {
                        record.users.push((pid, k));
                    }
                }
                Some(("sysctl", setting)) => {
                    if let Some((key, value)) = setting.split_once('=') {
                        record.sysctls.push((key.into(), value.into()));
                    }
                }
                Some(("created", dir)) => record.created.push(dir.into()),
                _ => {}
            }
        }
        record
    }

    fn text(&self) -> String {
        let users = self.users.iter().map(|(p, k)| format!("user {p}:{k}\n"));
        let sysctls = self
            .sysctls
            .iter()
            .map(|(k, v)| format!("sysctl {k}={v}\n"));
        let created = self
            .created
            .iter()
            .map(|d| format!("created {}\n", d.display()));
        users.chain(sysctls).chain(created).collect()
    }

    /// Puts the machine back as recorded.
    fn restore(&self) {
        for (key, value) in &self.sysctls {
            write_sysctl(key, value);
        }
        for dir in &self.created {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn read_record() -> Option<Record> {
    std::fs::read_to_string(record_path())
        .ok()
        .map(|t| Record::parse(&t))
}

fn write_record(record: &Record) -> Result<(), Error> {
    std::fs::write(record_path(), record.text()).map_err(io(record_path().display().to_string()))
}

pub fn read_sysctl(key: &str) -> Option<String> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::read_to_string(path)
        .ok()
        .map(|v| v.trim().to_string())
}

fn write_sysctl(key: &str, value: &str) {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let _ = std::fs::write(path, value);
}

/// Registers real-node cluster `k` of this process as a user of the machine's settings. The
/// first user (no other live one) records `sysctls` as they are now and which of `mounts`
/// (and their parents) do not exist yet, after putting back what a crashed run recorded.
pub fn claim(k: u8, sysctls: &[&str], mounts: &[&str]) -> Result<(), Error> {
    let _lock = lock()?;
    let me = (std::process::id() as i32, k);
    let mut record = match read_record() {
        Some(r) if r.users.iter().any(|(pid, _)| alive(*pid)) => r,
        stale => {
            if let Some(r) = stale {
                r.restore();
            }
            Record {
                users: Vec::new(),
                sysctls: sysctls
                    .iter()
                    .filter_map(|key| read_sysctl(key).map(|v| (key.to_string(), v)))
                    .collect(),
                created: mounts
                    .iter()
                    .flat_map(|target| {
                        Path::new(target)
                            .ancestors()
                            .take_while(|a| !a.exists())
                            .map(Path::to_path_buf)
                            .collect::<Vec<_>>()
                    })
                    .collect(),
            }
        }
    };
    record.users.retain(|u| *u != me && alive(u.0));
    record.users.push(me);
    write_record(&record)
}

/// Cluster `k` of this process no longer uses the machine's settings; the last user puts them
/// back as the first one found them.
pub fn release(k: u8) {
    let Ok(_lock) = lock() else {
        return;
    };
    let me = (std::process::id() as i32, k);
    let Some(mut record) = read_record() else {
        return;
    };
    record.users.retain(|u| *u != me && alive(u.0));
    if record.users.is_empty() {
        record.restore();
        let _ = std::fs::remove_file(record_path());
    } else {
        let _ = write_record(&record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let record = Record {
            users: vec![(41, 0), (42, 3)],
            sysctls: vec![
                ("vm.overcommit_memory".into(), "0".into()),
                ("kernel.panic".into(), "0".into()),
            ],
            created: vec!["/opt/cni/bin".into(), "/opt/cni".into()],
        };
        assert_eq!(Record::parse(&record.text()), record);
    }
}
