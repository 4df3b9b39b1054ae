//! The service's files are its user's alone: they hold every tenant's
//! payments, key hashes, webhook secrets and compiled policies (native code
//! the service runs). The data directory is 0700 and its files 0600: set
//! when they are made, and tightened on start for a directory an earlier
//! version left open, saying what changed.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The mode of the data directory and the directories in it.
pub const DIRECTORY_MODE: u32 = 0o700;

/// The mode of every file the service keeps.
pub const FILE_MODE: u32 = 0o600;

/// Makes the data directory (0700) if it is missing, makes every file the
/// process creates from now on private (umask 077: the store's files, the
/// compiled policies, the checkpoint log), and tightens what an earlier
/// version left open: the data directory, its files and `compiled/`, and
/// `elsewhere` (a store's files kept outside the data directory).
pub fn keep_private(data_dir: &Path, elsewhere: &[PathBuf]) -> Result<()> {
    // SAFETY: umask only sets the process's file creation mask.
    unsafe {
        libc::umask(0o077);
    }
    if !data_dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIRECTORY_MODE)
            .create(data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    }
    tighten_tree(data_dir)?;
    for path in elsewhere.iter().filter(|p| !p.starts_with(data_dir)) {
        tighten(path, FILE_MODE)?;
    }
    Ok(())
}

/// The directory and everything in it, files 0600 and directories 0700.
/// Symbolic links are left alone: their modes mean nothing.
fn tighten_tree(dir: &Path) -> Result<()> {
    tighten(dir, DIRECTORY_MODE)?;
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            tighten_tree(&entry.path())?;
        } else if kind.is_file() {
            tighten(&entry.path(), FILE_MODE)?;
        }
    }
    Ok(())
}

/// Takes away what `mode` does not grant, and says so.
fn tighten(path: &Path, mode: u32) -> Result<()> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_symlink() => m,
        _ => return Ok(()),
    };
    let old = metadata.permissions().mode() & 0o7777;
    let new = old & mode;
    if new != old {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(new))
            .with_context(|| format!("cannot restrict the permissions of {}", path.display()))?;
        tracing::warn!(path = %path.display(), from = format!("{old:o}"), to = format!("{new:o}"),
            "tightened the permissions of {}: only the service's user may read it", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_open_directory_is_tightened_and_links_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("compiled")).unwrap();
        std::fs::write(data.join("tiergate.db"), b"").unwrap();
        std::fs::write(data.join("compiled/a.cwasm"), b"").unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"").unwrap();
        std::os::unix::fs::symlink(&outside, data.join("link")).unwrap();
        for (path, m) in [
            (data.clone(), 0o755),
            (data.join("compiled"), 0o775),
            (data.join("tiergate.db"), 0o644),
            (data.join("compiled/a.cwasm"), 0o664),
            (outside.clone(), 0o644),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
        }
        keep_private(&data, &[data.join("tiergate.db")]).unwrap();
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("compiled")), 0o700);
        assert_eq!(mode(&data.join("tiergate.db")), 0o600);
        assert_eq!(mode(&data.join("compiled/a.cwasm")), 0o600);
        assert_eq!(
            mode(&outside),
            0o644,
            "a link's target is not the service's"
        );
        // A stricter mode is kept as it is.
        std::fs::set_permissions(
            data.join("tiergate.db"),
            std::fs::Permissions::from_mode(0o400),
        )
        .unwrap();
        keep_private(&data, &[data.join("tiergate.db")]).unwrap();
        assert_eq!(mode(&data.join("tiergate.db")), 0o400);
    }
}
