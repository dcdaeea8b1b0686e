//! The data directory holds the event store, the read models, the server secret,
//! uploaded items, archives and mail with reset links: only the server's own user may
//! read any of it. Directories are created 0700 and files 0600 where they are made,
//! whatever the process's umask (the test harness and embedders keep theirs).

use std::fs::OpenOptions;
use std::path::Path;

/// Owner only: read, write, enter.
pub const DIR_MODE: u32 = 0o700;
/// Owner only: read, write.
pub const FILE_MODE: u32 = 0o600;

/// `create_dir_all` with every directory it creates 0700.
pub fn create_dir_all(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(DIR_MODE);
    }
    builder.create(path)
}

/// Takes group and other access away from an existing file or directory.
pub fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let current = std::fs::metadata(path)?.permissions().mode();
        if current & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Options that create a file 0600 (an existing file keeps its mode: see `restrict`).
pub fn file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(FILE_MODE);
    }
    options
}

/// The same for tokio.
pub fn tokio_file_options() -> tokio::fs::OpenOptions {
    let mut options = tokio::fs::OpenOptions::new();
    #[cfg(unix)]
    options.mode(FILE_MODE);
    options
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn directories_and_files_are_the_owners_alone() {
        let root = std::env::temp_dir().join(format!("medledger-private-{}", uuid::Uuid::new_v4()));
        let nested = root.join("a/b");
        create_dir_all(&nested).unwrap();
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&nested), 0o700);
        let file = nested.join("f");
        file_options().write(true).create_new(true).open(&file).unwrap();
        assert_eq!(mode(&file), 0o600);

        // A data directory made world-readable by hand is tightened.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        restrict(&root, DIR_MODE).unwrap();
        assert_eq!(mode(&root), 0o700);
        let _ = std::fs::remove_dir_all(root);
    }
}
