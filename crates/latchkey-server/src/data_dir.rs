//! The data directory and the master key: what other local users must not read.
//!
//! The directory is kept `0700` and everything `latchkey serve` writes there (the SQLite
//! database and its journal files, the dev outbox, the dev master key) `0600`, on creation and
//! again at every start, so a deployment made by an older version is tightened too.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use latchkey_core::master_key::{MasterKey, MasterKeyError};
use thiserror::Error;

use crate::config::MasterKeySource;

#[derive(Debug, Error)]
pub enum DataDirError {
    #[error("could not prepare the data directory {0}")]
    Prepare(PathBuf, #[source] std::io::Error),
    #[error("could not read the master key file {0}")]
    ReadMasterKey(PathBuf, #[source] std::io::Error),
    #[error("could not create the master key file {0}")]
    WriteMasterKey(PathBuf, #[source] std::io::Error),
    #[error("the master key file {0} does not hold a master key")]
    InvalidMasterKey(PathBuf, #[source] MasterKeyError),
}

/// Files `serve` may keep in the data directory.
const PRIVATE_FILES: &[&str] = &[
    "latchkey.db",
    "latchkey.db-wal",
    "latchkey.db-shm",
    "outbox.jsonl",
    "master.key",
];

/// Creates `dir` (0700) and the SQLite file `database` in it if missing (0600: SQLite gives
/// its journal files the database's mode), and takes group and other access away from what
/// is already there.
pub fn prepare(dir: &Path, database: Option<&Path>) -> Result<(), DataDirError> {
    let failed = |e| DataDirError::Prepare(dir.to_owned(), e);
    std::fs::create_dir_all(dir).map_err(failed)?;
    restrict(dir, 0o700).map_err(failed)?;
    if let Some(database) = database {
        match private_file().create_new(true).open(database) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(failed(e)),
        }
    }
    for name in PRIVATE_FILES {
        let path = dir.join(name);
        if path.exists() {
            restrict(&path, 0o600).map_err(failed)?;
        }
    }
    Ok(())
}

/// The master key from its source; in `--dev`, made on first start.
pub fn master_key(source: &MasterKeySource) -> Result<MasterKey, DataDirError> {
    let (path, dev) = match source {
        MasterKeySource::Value(key) => return Ok(key.clone()),
        MasterKeySource::File(path) => (path, false),
        MasterKeySource::DevFile(path) => (path, true),
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            MasterKey::parse(&text).map_err(|e| DataDirError::InvalidMasterKey(path.clone(), e))
        }
        Err(e) if dev && e.kind() == std::io::ErrorKind::NotFound => {
            let key = MasterKey::generate(&mut rand::rngs::OsRng);
            let written = private_file()
                .create_new(true)
                .open(path)
                .and_then(|mut file| writeln!(file, "{}", key.to_text()));
            written.map_err(|e| DataDirError::WriteMasterKey(path.clone(), e))?;
            Ok(key)
        }
        Err(e) => Err(DataDirError::ReadMasterKey(path.clone(), e)),
    }
}

/// Options for a file only its owner may read.
fn private_file() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// The file's permission bits (0 when it does not exist).
    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o777)
    }

    #[test]
    fn the_directory_and_its_files_are_private_to_the_owner() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).expect("dir");
        restrict(&dir, 0o755).expect("open it up");
        let outbox = dir.join("outbox.jsonl");
        std::fs::write(&outbox, "{}\n").expect("outbox");
        restrict(&outbox, 0o644).expect("open it up");

        prepare(&dir, Some(&dir.join("latchkey.db"))).expect("prepared");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("latchkey.db")), 0o600);
        assert_eq!(mode(&outbox), 0o600);
    }

    #[test]
    fn a_dev_master_key_is_made_once_and_read_back() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("master.key");
        let source = MasterKeySource::DevFile(path.clone());
        let made = master_key(&source).expect("made");
        assert_eq!(mode(&path), 0o600);
        let again = master_key(&source).expect("read");
        assert_eq!(made.to_text(), again.to_text());

        let missing = MasterKeySource::File(tmp.path().join("absent.key"));
        assert!(matches!(
            master_key(&missing),
            Err(DataDirError::ReadMasterKey(..))
        ));
        std::fs::write(&path, "garbage").expect("overwrite");
        assert!(matches!(
            master_key(&MasterKeySource::File(path)),
            Err(DataDirError::InvalidMasterKey(..))
        ));
    }
}
