//! The server's signing secret: `MEDLEDGER_SECRET_KEY`, or generated once at random and
//! kept in the data directory. Never a constant.

use std::io::Write as _;
use std::path::Path;

use rand::RngCore as _;

use crate::private_files;

pub const SECRET_FILE: &str = "secret.key";

pub fn load_or_create(env_value: Option<&str>, data_dir: &Path) -> std::io::Result<Vec<u8>> {
    if let Some(v) = env_value.filter(|v| !v.is_empty()) {
        return Ok(v.as_bytes().to_vec());
    }
    let path = data_dir.join(SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            // A key file left readable by others (an older version, a copy) is tightened.
            private_files::restrict(&path, private_files::FILE_MODE)?;
            return Ok(text.trim().as_bytes().to_vec());
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    private_files::create_dir_all(data_dir)?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let encoded = hex::encode(bytes);
    match private_files::file_options().write(true).create_new(true).open(&path) {
        Ok(mut f) => {
            f.write_all(encoded.as_bytes())?;
            f.sync_all()?;
            Ok(encoded.into_bytes())
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(std::fs::read_to_string(&path)?.trim().as_bytes().to_vec()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused_and_env_wins() {
        let dir = std::env::temp_dir().join(format!("medledger-secret-{}", uuid::Uuid::new_v4()));
        let a = load_or_create(None, &dir).unwrap();
        let b = load_or_create(None, &dir).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(load_or_create(Some("from-env"), &dir).unwrap(), b"from-env");
        let other = std::env::temp_dir().join(format!("medledger-secret-{}", uuid::Uuid::new_v4()));
        assert_ne!(load_or_create(None, &other).unwrap(), a);
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(other);
    }
}
