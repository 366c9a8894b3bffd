//! Puts `palisade-cni` on the node and into its CNI configuration, keeps it there, and takes it
//! out again.
//!
//! - The binary is copied from the enforcer's image into the node's CNI bin directory (a
//!   temporary file renamed over the old one, so a runtime never runs half a binary).
//! - The entry goes last into the node's active configuration, the first valid
//!   `.conflist`/`.conf`/`.json` in lexical order, as containerd and CRI-O pick it; written to
//!   a temporary file and renamed, after checking the result is a valid configuration. A
//!   single-plugin `.conf` is left alone (it cannot chain a plugin): the status says so.
//! - The CNI's text as it was is kept beside it (`.<file>.palisade-orig`, a name no runtime
//!   reads), so removal restores it byte for byte.
//! - Checked again every [`RECHECK`]: a CNI that rewrites its configuration (flannel does on
//!   every start) gets the entry back within that time.
//! - Only where the node enforces (mode and CNI as the runtime loop decides): elsewhere the
//!   entry and the binary are removed.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use palisade_api::FirstPacketStatus;
use palisade_cni::protocol::PLUGIN_TYPE;

use super::FirstPacket;
use super::conflist::{self, ConflistError, Entry};
use crate::cni;
use crate::mode::{Mode, decide};

/// How often the installation is checked.
pub const RECHECK: Duration = Duration::from_secs(2);
const ORIGINAL: &str = "palisade-orig";

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {source}", .path.display())]
    Conflist {
        path: PathBuf,
        #[source]
        source: ConflistError,
    },
}

fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> InstallError + 'a {
    move |source| InstallError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct Installer {
    /// The node's CNI configuration directory (as mounted in the enforcer).
    pub conf_dir: PathBuf,
    /// The node's CNI bin directory (as mounted in the enforcer).
    pub bin_dir: PathBuf,
    /// The plugin binary to install (in the enforcer's image).
    pub plugin: PathBuf,
    pub entry: Entry,
    pub mode: Mode,
}

impl Installer {
    /// One check: installs or repairs where the node enforces, removes elsewhere; the state in
    /// words.
    pub fn ensure(&self) -> FirstPacketStatus {
        let not = |reason: String, config: Option<&Path>| FirstPacketStatus {
            installed: false,
            reason,
            config: config.map(|p| p.display().to_string()),
        };
        let cni = cni::detect(&self.conf_dir);
        let (enforcing, why) = decide(self.mode, &cni);
        if !enforcing {
            return match self.remove() {
                Ok(_) => not(format!("not needed: {why}"), None),
                Err(e) => not(
                    format!("not needed ({why}), but removing it failed: {e}"),
                    None,
                ),
            };
        }
        let info = match cni {
            Ok(info) => info,
            Err(e) => {
                return not(
                    format!("{e}; installed once the CNI writes its configuration"),
                    None,
                );
            }
        };
        match self
            .install_binary()
            .and_then(|()| self.install_entry(&info.file))
        {
            Ok(()) => FirstPacketStatus {
                installed: true,
                reason: format!(
                    "{PLUGIN_TYPE} is the last plugin of {} and in {}",
                    info.file.display(),
                    self.bin_dir.display()
                ),
                config: Some(info.file.display().to_string()),
            },
            Err(e) => not(e.to_string(), Some(&info.file)),
        }
    }

    fn install_binary(&self) -> Result<(), InstallError> {
        let wanted =
            fs::read(&self.plugin).map_err(io_error("reading the plugin", &self.plugin))?;
        let target = self.bin_dir.join(PLUGIN_TYPE);
        if fs::read(&target).is_ok_and(|have| have == wanted) {
            return Ok(());
        }
        write_atomically(&target, &wanted, 0o755)?;
        tracing::info!(path = %target.display(), "installed the CNI plugin binary");
        Ok(())
    }

    fn install_entry(&self, file: &Path) -> Result<(), InstallError> {
        let text = fs::read_to_string(file).map_err(io_error("reading", file))?;
        let edited =
            conflist::with_plugin(&text, &self.entry).map_err(|source| InstallError::Conflist {
                path: file.to_path_buf(),
                source,
            })?;
        let Some(edited) = edited else {
            return Ok(());
        };
        if !conflist::has_plugin(&text) {
            // The CNI's own text (first install, or the CNI rewrote it): what removal restores.
            write_atomically(&original_of(file), text.as_bytes(), 0o600)?;
        }
        write_atomically(file, edited.as_bytes(), mode_of(file))?;
        tracing::info!(config = %file.display(), "added {PLUGIN_TYPE} as the last plugin of the CNI configuration");
        Ok(())
    }

    /// Takes the plugin out of every configuration in the directory (restoring the CNI's own
    /// text where it is the same configuration), then removes the binary; how many files were
    /// edited.
    pub fn remove(&self) -> Result<usize, InstallError> {
        let mut edited = 0;
        let entries = match fs::read_dir(&self.conf_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_error("reading", &self.conf_dir)(e)),
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for file in &files {
            let is_config = file
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "conflist" | "conf" | "json"));
            if !is_config || !file.is_file() {
                continue;
            }
            let Ok(text) = fs::read_to_string(file) else {
                continue;
            };
            let original = original_of(file);
            // A file the plugin cannot be taken out of (it was its only plugin) is left as is.
            if let Ok(Some(without)) = conflist::without_plugin(&text) {
                let restore = fs::read_to_string(&original)
                    .ok()
                    .filter(|o| conflist::same(o, &without))
                    .unwrap_or(without);
                write_atomically(file, restore.as_bytes(), mode_of(file))?;
                tracing::info!(config = %file.display(), "removed {PLUGIN_TYPE} from the CNI configuration");
                edited += 1;
            }
            let _ = fs::remove_file(&original);
        }
        // Copies kept of files that are gone.
        for file in files {
            let stale = file
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.') && n.ends_with(ORIGINAL));
            if stale {
                let _ = fs::remove_file(file);
            }
        }
        let binary = self.bin_dir.join(PLUGIN_TYPE);
        match fs::remove_file(&binary) {
            Ok(()) => tracing::info!(path = %binary.display(), "removed the CNI plugin binary"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("removing", &binary)(e)),
        }
        Ok(edited)
    }
}

/// Where the CNI's own text of `file` is kept.
fn original_of(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    file.with_file_name(format!(".{name}.{ORIGINAL}"))
}

fn mode_of(file: &Path) -> u32 {
    fs::metadata(file)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644)
}

/// `bytes` into a temporary file beside `target` (a name no CNI runtime reads), then renamed
/// over it: readers see the old file or the new one, never half of one.
fn write_atomically(target: &Path, bytes: &[u8], mode: u32) -> Result<(), InstallError> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = target.with_file_name(format!(".{name}.palisade-tmp"));
    let write = || -> io::Result<()> {
        let mut f = fs::File::create(&temporary)?;
        f.write_all(bytes)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&temporary, target)
    };
    write().map_err(|source| {
        let _ = fs::remove_file(&temporary);
        InstallError::Io {
            what: "writing",
            path: target.to_path_buf(),
            source,
        }
    })
}

/// Shared by [`keep_installed`] and the removal when the enforcer stops: once retired, no
/// check installs anything again. Without it a check running after the removal (the process
/// lives on for its rules' cleanup) put the plugin back, and with the enforcer gone every new
/// pod of the node failed closed.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<tokio::sync::Mutex<bool>>);

impl Gate {
    /// Runs `remove` once no check is in progress, and retires the installer for good.
    pub async fn retire<T: Send + 'static>(
        &self,
        remove: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let mut retired = self.0.lock().await;
        *retired = true;
        tokio::task::spawn_blocking(remove).await
    }
}

/// Checks the installation every [`RECHECK`], publishing its state in `first_packet` and
/// logging when it changes. Runs until the process ends or `gate` is retired.
pub async fn keep_installed(installer: Installer, first_packet: FirstPacket, gate: Gate) {
    let mut last: Option<FirstPacketStatus> = None;
    loop {
        let i = installer.clone();
        let retired = gate.0.lock().await;
        if *retired {
            return;
        }
        let status = tokio::task::spawn_blocking(move || i.ensure())
            .await
            .unwrap_or_else(|e| FirstPacketStatus {
                installed: false,
                reason: format!("the installer task: {e}"),
                config: None,
            });
        drop(retired);
        if last.as_ref() != Some(&status) {
            if status.installed {
                tracing::info!(reason = %status.reason, "first-packet isolation installed");
            } else {
                tracing::warn!(reason = %status.reason, "first-packet isolation not installed");
            }
            first_packet.set_status(status.clone());
            last = Some(status);
        }
        tokio::time::sleep(RECHECK).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRIDGE: &str = "{\"cniVersion\": \"0.4.0\", \"name\": \"e2e\", \"plugins\": [\n  {\"type\": \"bridge\", \"bridge\": \"cni0\"},\n  {\"type\": \"portmap\", \"capabilities\": {\"portMappings\": true}}\n]}\n";

    struct Dirs(PathBuf);

    impl Drop for Dirs {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn installer(name: &str, mode: Mode) -> (Installer, Dirs) {
        let root =
            std::env::temp_dir().join(format!("palisade-installer-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for d in ["net.d", "bin", "image"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("image/palisade-cni"), b"#!/bin/sh\n").unwrap();
        let installer = Installer {
            conf_dir: root.join("net.d"),
            bin_dir: root.join("bin"),
            plugin: root.join("image/palisade-cni"),
            entry: Entry {
                socket: "/run/palisade/enforcer.sock".into(),
                node_name: "node-1".into(),
                timeout_seconds: 10,
            },
            mode,
        };
        (installer, Dirs(root))
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The enforcer stopping on uninstall: the installer loop, running all along, never puts
    /// the plugin back once the removal has run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_is_installed_after_the_removal() {
        let (i, _dirs) = installer("retired", Mode::Auto);
        let conf = i.conf_dir.join("10-bridge.conflist");
        fs::write(&conf, BRIDGE).unwrap();
        let gate = Gate::default();
        let first_packet = FirstPacket::new("node-1", Duration::from_secs(1));
        let running = tokio::spawn(keep_installed(i.clone(), first_packet, gate.clone()));
        let start = std::time::Instant::now();
        while !fs::read_to_string(&conf).unwrap().contains(PLUGIN_TYPE) {
            assert!(start.elapsed() < Duration::from_secs(10), "never installed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let remover = i.clone();
        gate.retire(move || remover.remove())
            .await
            .unwrap()
            .unwrap();
        // Past more than one recheck: the loop has ended and the CNI's text is as it was.
        tokio::time::timeout(RECHECK * 2, running)
            .await
            .expect("the installer loop ends once retired")
            .unwrap();
        assert_eq!(fs::read_to_string(&conf).unwrap(), BRIDGE);
        assert!(!i.bin_dir.join(PLUGIN_TYPE).exists());
    }

    #[test]
    fn install_repair_and_remove_to_the_byte() {
        let (i, _dirs) = installer("cycle", Mode::Auto);
        let conf = i.conf_dir.join("10-bridge.conflist");
        fs::write(&conf, BRIDGE).unwrap();
        let status = i.ensure();
        assert!(status.installed, "{status:?}");
        assert_eq!(status.config.as_deref(), Some(conf.to_str().unwrap()));
        let installed = fs::read_to_string(&conf).unwrap();
        assert_eq!(
            cni::parse_config(&installed).unwrap().1,
            ["bridge", "portmap", "palisade-cni"]
        );
        assert_eq!(
            fs::read(i.bin_dir.join("palisade-cni")).unwrap(),
            b"#!/bin/sh\n"
        );
        let mode = fs::metadata(i.bin_dir.join("palisade-cni"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        // Idempotent: nothing rewritten, no temporary files left.
        let before = fs::metadata(&conf).unwrap().modified().unwrap();
        assert!(i.ensure().installed);
        assert_eq!(fs::metadata(&conf).unwrap().modified().unwrap(), before);
        assert_eq!(
            listing(&i.conf_dir),
            [".10-bridge.conflist.palisade-orig", "10-bridge.conflist"]
        );
        // The CNI rewrote its configuration: the entry is back on the next check.
        fs::write(&conf, BRIDGE).unwrap();
        assert!(i.ensure().installed);
        assert!(conflist::has_plugin(&fs::read_to_string(&conf).unwrap()));
        // Removed: the CNI's own bytes, no binary, no copies.
        assert_eq!(i.remove().unwrap(), 1);
        assert_eq!(fs::read_to_string(&conf).unwrap(), BRIDGE);
        assert_eq!(listing(&i.conf_dir), ["10-bridge.conflist"]);
        assert!(listing(&i.bin_dir).is_empty());
        assert_eq!(i.remove().unwrap(), 0);
    }

    #[test]
    fn removal_keeps_what_the_cni_changed_since() {
        let (i, _dirs) = installer("changed", Mode::Auto);
        let conf = i.conf_dir.join("10-bridge.conflist");
        fs::write(&conf, BRIDGE).unwrap();
        assert!(i.ensure().installed);
        // Someone else edited the file after us (another MTU): removal keeps their change.
        let edited = fs::read_to_string(&conf)
            .unwrap()
            .replace("\"cni0\"", "\"cni1\"");
        fs::write(&conf, &edited).unwrap();
        i.remove().unwrap();
        let left = fs::read_to_string(&conf).unwrap();
        assert!(
            left.contains("cni1") && !conflist::has_plugin(&left),
            "{left}"
        );
    }

    #[test]
    fn only_where_the_node_enforces_and_never_on_a_single_plugin_conf() {
        let (i, _dirs) = installer("calico", Mode::Auto);
        let conf = i.conf_dir.join("10-calico.conflist");
        fs::write(
            &conf,
            "{\"cniVersion\": \"0.3.1\", \"name\": \"k8s-pod-network\", \"plugins\": [{\"type\": \"calico\"}]}",
        )
        .unwrap();
        let status = i.ensure();
        assert!(!status.installed);
        assert!(
            status
                .reason
                .starts_with("not needed: calico enforces NetworkPolicy itself"),
            "{}",
            status.reason
        );
        assert!(!conflist::has_plugin(&fs::read_to_string(&conf).unwrap()));

        let (i, _dirs) = installer("single", Mode::Enforce);
        let conf = i.conf_dir.join("10-bridge.conf");
        let single = "{\"cniVersion\": \"0.4.0\", \"name\": \"b\", \"type\": \"bridge\"}";
        fs::write(&conf, single).unwrap();
        let status = i.ensure();
        assert!(!status.installed);
        assert!(
            status.reason.contains("single-plugin configuration"),
            "{}",
            status.reason
        );
        assert_eq!(fs::read_to_string(&conf).unwrap(), single);

        let (i, _dirs) = installer("empty", Mode::Enforce);
        let status = i.ensure();
        assert!(!status.installed);
        assert!(
            status
                .reason
                .contains("installed once the CNI writes its configuration"),
            "{}",
            status.reason
        );
    }

    #[test]
    fn a_missing_plugin_binary_is_said_and_the_configuration_untouched() {
        let (mut i, _dirs) = installer("nobinary", Mode::Enforce);
        i.plugin = i.plugin.with_file_name("absent");
        let conf = i.conf_dir.join("10-bridge.conflist");
        fs::write(&conf, BRIDGE).unwrap();
        let status = i.ensure();
        assert!(!status.installed);
        assert!(
            status.reason.starts_with("reading the plugin"),
            "{}",
            status.reason
        );
        assert_eq!(fs::read_to_string(&conf).unwrap(), BRIDGE);
    }
}
