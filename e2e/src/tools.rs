//! Where the upstream tools are: `PALISADE_TOOLS` (set by `e2e/test.sh`), else the cache that
//! `e2e/tools/install.sh` fills.

use std::path::PathBuf;

pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PALISADE_TOOLS") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("PALISADE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                });
            base.join("palisade")
        });
    cache.join("bin")
}

/// The path of a tool, or an error that says how to install it.
pub fn tool(name: &str) -> Result<PathBuf, crate::Error> {
    let path = bin_dir().join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(crate::Error::MissingTool {
            name: name.into(),
            path,
        })
    }
}
